"""kill -9 of a whole ``qcluster`` in the middle of a REAL ingest, then recovery on a new cluster.

The workers run ``crates.pipeline.ingest.run_ingest`` (the real HTTP client against the fake
docs.rs, the real parser, chunker, hash embedder and store with two writer threads) on the real
rustdoc JSON of ``tests/fixtures/crates/many_items`` (~2,000 documented items). Once a real
fraction of the items is committed, the cluster's process group gets SIGKILL; a new cluster must
recover the job and finish it from its checkpoint.

"Stored twice" is counted by the database, not by the pipeline: a statement trigger created by
this test logs every committed document insert, with the job attempt that made it.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import zstandard
from django.db import connection

from crates.models import Chunk, CrateRelease, Document, EmbeddingCache
from crates.pipeline.embed import reset_embedders
from crates.pipeline.ingest import run_ingest
from crates.pipeline.parse_json import parse_rustdoc_json
from crates.pipeline.types import NullProgress
from jobs import services
from jobs.models import CrateJob, JobEvent
from tests.conftest import FIXTURES
from tests.jobs_helpers import QCluster, db_session_pids, wait_for, worker_pid

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FIXTURE = FIXTURES / "rustdoc" / "many_items.json.zst"
CRATE, REFERENCE, VERSION = "many-items", "many-items-ref", "0.1.0"
# The job is killed once this share of the items is committed (and not yet more than the upper bound).
KILL_WINDOW = (0.20, 0.60)
WORKER_ENV = {
    "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest",
    "EMBEDDING_PROVIDER": "hash",
    "INGEST_WRITERS": "2",
    "Q_WORKERS": "1",
    # The production default, not the 2 s of the fake-pipeline tests: it is also the lock session's idle
    # timeout, and parsing this 7 MB rustdoc JSON holds the GIL for over a second (several on a busy machine),
    # long enough for a 2 s timeout to cost the live first attempt its job lock before the kill. Recovery is
    # as fast either way: the sweeper needs a heartbeat 2 intervals old (4 s at most) and a free job lock.
    "JOB_HEARTBEAT_STALE_SECONDS": "60",
}
LOG_TABLE = "recovery_test_document_inserts"


@pytest.fixture
def insert_log(transactional_db):
    """Log every committed insert into crates_document (release, path, kind, attempt of its job)."""
    documents, releases, jobs = Document._meta.db_table, CrateRelease._meta.db_table, CrateJob._meta.db_table
    with connection.cursor() as cursor:
        _drop_insert_log(cursor)
        cursor.execute(f"""
            CREATE TABLE {LOG_TABLE} (
                id bigserial PRIMARY KEY, release_id bigint, path text, kind text, attempt int, backend_pid int
            );
            CREATE FUNCTION {LOG_TABLE}_fn() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {LOG_TABLE} (release_id, path, kind, attempt, backend_pid)
                SELECT i.release_id, i.path, i.kind, j.attempts, pg_backend_pid()
                FROM inserted i
                LEFT JOIN {releases} r ON r.id = i.release_id
                LEFT JOIN {jobs} j ON j.id = r.job_id;
                RETURN NULL;
            END $$;
            CREATE TRIGGER {LOG_TABLE}_trg AFTER INSERT ON {documents}
                REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {LOG_TABLE}_fn();
        """)
    yield
    with connection.cursor() as cursor:
        _drop_insert_log(cursor)


def _drop_insert_log(cursor) -> None:
    cursor.execute(f"""
        DROP TRIGGER IF EXISTS {LOG_TABLE}_trg ON {Document._meta.db_table};
        DROP FUNCTION IF EXISTS {LOG_TABLE}_fn();
        DROP TABLE IF EXISTS {LOG_TABLE};
    """)


def logged_inserts(*, release_id: int) -> list[tuple[str, str, int]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT path, kind, attempt FROM {LOG_TABLE} WHERE release_id = %s", [release_id])
        return cursor.fetchall()


def release_snapshot(*, release: CrateRelease, crate: str) -> tuple[dict, dict]:
    """Everything an ingest decides about a release, keyed by (path, kind): documents, and chunks with vectors."""
    url_prefix = f"/{crate}/{release.version}/"
    # The crate's name is in its URLs, and so in the links of its docs (and in the docs' content hash): the
    # reference crate, the same artifact under another name, differs there only.
    documents = {
        (d["path"], d["kind"]): (
            d["name"], d["parent_path"], d["signature"], d["docs"].replace(url_prefix, "/CRATE/"), d["deprecated"],
            d["deprecation_note"], json.dumps(d["metadata"], sort_keys=True), d["url"].replace(url_prefix, "/CRATE/"),
        )
        for d in Document.objects.filter(release=release).values()
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT d.path, d.kind, c.ordinal, c.content_hash, c.token_count, c.text,
                       md5(coalesce(c.embedding, c.staged_embedding)::text)
                FROM {Chunk._meta.db_table} c JOIN {Document._meta.db_table} d ON d.id = c.document_id
                WHERE c.release_id = %s""",
            [release.pk],
        )
        chunks = {(path, kind, ordinal): rest for path, kind, ordinal, *rest in cursor.fetchall()}
    return documents, chunks


def test_kill_9_of_the_cluster_mid_ingest_resumes_the_real_pipeline_from_its_checkpoint(
    fake_docsrs, settings, tmp_path, insert_log
):
    started = time.monotonic()
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"  # no job runs in this process
    settings.EMBEDDING_PROVIDER, settings.INGEST_WRITERS = "hash", 2
    reset_embedders()
    artifact = FIXTURE.read_bytes()
    parsed = parse_rustdoc_json(zstandard.ZstdDecompressor().decompressobj().decompress(artifact))
    expected = {(item.path, item.kind) for item in parsed.items}
    total = len(expected)
    assert total >= 2000
    fake_docsrs.add_crate(CRATE, versions=[VERSION], json_bytes=artifact)
    fake_docsrs.add_crate(REFERENCE, versions=[VERSION], json_bytes=artifact)
    env = {**fake_docsrs.env(), **WORKER_ENV}

    unrelated_sessions = db_session_pids()  # e.g. a live server thread of an earlier test module
    first = QCluster(log_path=tmp_path / "first.log", env=env).start()
    second = None
    try:
        job = services.enqueue_ingest(name=CRATE, requested_by="api").job

        def under_way() -> CrateRelease | None:
            state = CrateJob.objects.filter(pk=job.pk).values_list("status", "error_message").get()
            assert state[0] in ("queued", "running"), f"job ended before the kill: {state}\n{first.log()[-3000:]}"
            release = CrateRelease.objects.filter(job_id=job.pk, state="building").first()
            if state[0] != "running" or release is None:
                return None
            stored = Document.objects.filter(release=release).count()
            assert stored <= KILL_WINDOW[1] * total, f"missed the kill window: {stored}/{total} already stored"
            return release if stored >= KILL_WINDOW[0] * total else None

        release = wait_for(under_way, timeout=90, interval=0.01, what="the ingest to be 20% stored")
        victim = CrateJob.objects.get(pk=job.pk)
        killed_at = time.monotonic()
        first.stop()  # SIGKILL to the cluster's whole process group: sentinel, pusher, monitor and worker
        # Nothing of the dead cluster can commit any more once its database sessions are gone.
        dead_sessions = db_session_pids() - unrelated_sessions
        wait_for(lambda: not db_session_pids() & dead_sessions, timeout=20, interval=0.01,
                 what="the killed cluster's database sessions to end")
        sessions_gone_s = time.monotonic() - killed_at

        # What the first attempt left: its committed batches, nothing else.
        committed = set(Document.objects.filter(release=release).values_list("path", "kind"))
        first_inserts = logged_inserts(release_id=release.pk)
        texts_embedded_before = EmbeddingCache.objects.count()
        stuck = CrateJob.objects.get(pk=job.pk)
        lost = f"the first attempt did not live until the kill:\n{first.log()[-3000:]}"
        assert (stuck.status, stuck.attempts) == ("running", 1), lost
        assert KILL_WINDOW[0] * total <= len(committed) < total
        assert sorted(first_inserts) == sorted((path, kind, 1) for path, kind in committed)  # the log is sound

        second = QCluster(log_path=tmp_path / "second.log", env=env).start()
        ready_s = time.monotonic() - killed_at
        restarted = wait_for(lambda: CrateJob.objects.filter(pk=job.pk, status="running", attempts=2).first(),
                             timeout=30, interval=0.01, what="the job to run again")
        recovery_s = time.monotonic() - killed_at
        done = wait_for(lambda: CrateJob.objects.filter(pk=job.pk, status__in=["complete", "failed", "cancelled"])
                        .first(), timeout=90, interval=0.05, what="the recovered job to finish")
        assert done.status == "complete", f"{done.error_message}\n{done.traceback}\n{second.log()[-3000:]}"
        assert os.getpgid(worker_pid(restarted.worker_id)) == second.proc.pid
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert worker_pid(victim.worker_id) != worker_pid(done.worker_id)

    # The job: recovered once, two attempts, the second resumed the same building release.
    kinds = list(JobEvent.objects.filter(job=job).order_by("id").values_list("event_type", flat=True))
    assert kinds.count("recovered") == 1 and kinds.count("started") == 2 and kinds[-1] == "completed"
    assert kinds.index("recovered") < len(kinds) - 1 - kinds[::-1].index("started")
    assert done.attempts == 2 and done.progress == 100
    active = CrateRelease.objects.get(crate__normalized_name="many_items")
    assert (active.pk, active.state) == (release.pk, "active")
    assert done.result["release_id"] == release.pk
    assert done.result["items_skipped_by_checkpoint"] == len(committed)
    assert done.result["items_processed"] == total - len(committed)
    assert done.documents == done.items_processed == total
    # The artifact was cached with the first attempt: the second resolved again but did not download it.
    assert fake_docsrs.count(f"/crate/{CRATE}/{VERSION}/json") == 1

    # Exactly the expected documents, no duplicate (path, kind).
    keys = list(Document.objects.filter(release=active).values_list("path", "kind"))
    assert len(keys) == len(set(keys)) == total and set(keys) == expected

    # Stored twice, counted by the database: every committed insert into this release, by attempt.
    inserts = logged_inserts(release_id=release.pk)
    per_key: dict[tuple[str, str], int] = {}
    for path, kind, _attempt in inserts:
        per_key[path, kind] = per_key.get((path, kind), 0) + 1
    stored_twice = sorted(key for key, n in per_key.items() if n > 1)
    second_keys = {(path, kind) for path, kind, attempt in inserts if attempt == 2}
    assert {attempt for *_key, attempt in inserts} == {1, 2}
    assert set(per_key) == expected and len(inserts) == total + len(stored_twice)
    assert second_keys == (expected - committed) | set(stored_twice)
    assert len(stored_twice) <= total // 100, f"{len(stored_twice)} items stored twice: {stored_twice[:10]}"

    # Identical to an uninterrupted run of the same artifact (fresh embeddings: the cache is emptied first).
    EmbeddingCache.objects.all().delete()
    clean = run_ingest(name=REFERENCE, progress=NullProgress())
    reference = CrateRelease.objects.get(pk=clean.release_id)
    assert clean.items_skipped_by_checkpoint == 0 and clean.items_processed == total
    recovered_docs, recovered_chunks = release_snapshot(release=active, crate=CRATE)
    reference_docs, reference_chunks = release_snapshot(release=reference, crate=REFERENCE)
    assert recovered_docs == reference_docs
    assert recovered_chunks == reference_chunks
    assert all(row[-1] is not None for row in recovered_chunks.values())  # every chunk has its vector
    assert (active.document_count, active.chunk_count, active.embedding_count) == (
        reference.document_count, reference.chunk_count, reference.embedding_count)

    print(
        f"\nmany_items: {total} items; killed with {len(committed)} committed ({len(committed) / total:.0%}); "
        f"stored twice: {len(stored_twice)}; the second attempt stored {len(second_keys)} and skipped "
        f"{done.result['items_skipped_by_checkpoint']} by checkpoint\n"
        f"embedded but not yet stored at the kill (chunked again, vectors reused from the cache): "
        f"{texts_embedded_before - len(committed)} chunks; new texts embedded by the second attempt: "
        f"{done.result['embedded_new']}\n"
        f"kill -9 -> sessions gone {sessions_gone_s:.2f} s -> new cluster ready {ready_s:.2f} s -> "
        f"job running again {recovery_s:.2f} s; test took {time.monotonic() - started:.1f} s"
    )
