"""Store stage and the ingest orchestrator on real rustdoc fixtures (local files, no network)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from crates.errors import InvalidInput, UpstreamUnavailable
from crates.models import Chunk, Crate, CrateRelease, Document
from crates.pipeline import embed_pass, ingest, store
from crates.pipeline import release as release_mod
from crates.pipeline.ingest import run_ingest
from crates.pipeline.types import NullProgress, ParsedItem
from crates.selectors import get_item
from tests.search_corpus import item, store_release

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURE_JSON = Path(__file__).parent / "fixtures" / "rustdoc" / "ferro_fixture.json.zst"
FIXTURE_DOCS = Path(__file__).parent / "fixtures" / "html" / "ferro_fixture"


@pytest.fixture(autouse=True)
def _hash_embedder(settings):
    settings.EMBEDDING_PROVIDER = "hash"


def _ingest(**kwargs):
    return run_ingest(name="ferro-fixture", progress=NullProgress(), json_file=FIXTURE_JSON, **kwargs)


class Recorder(NullProgress):
    def __init__(self) -> None:
        self.percents: list[float] = []
        self.stages: list[str] = []
        self.counters: dict[str, int] = {}

    def stage(self, name, message, percent):
        self.stages.append(name)
        self.percents.append(percent)

    def update(self, *, percent=None, message=None, **counters):
        if percent is not None:
            self.percents.append(percent)
        self.counters.update(counters)


def test_local_json_ingest_stores_an_active_release_with_embedded_chunks():
    progress = Recorder()
    result = run_ingest(name="ferro-fixture", progress=progress, json_file=FIXTURE_JSON)
    release = CrateRelease.objects.get(pk=result.release_id)
    assert release.state == "active"
    assert release.docs_source == "rustdoc-json"
    assert release.version == "0.3.1"
    assert release.document_count == Document.objects.filter(release=release).count() > 30
    assert release.chunk_count == Chunk.objects.filter(release=release).count() >= release.document_count
    assert release.embedding_count == release.chunk_count
    assert Document.objects.filter(release=release, path="ferro_fixture::Counter::with_capacity").exists()
    assert Crate.objects.by_name("ferro_fixture").get().latest_version == "0.3.1"
    assert progress.percents == sorted(progress.percents)
    assert progress.percents[-1] == 100
    assert progress.stages[0] == "parse" and progress.stages[-1] == "done"


def test_reingest_same_version_swaps_atomically_and_leaves_one_active_release():
    first = _ingest()
    second = _ingest(force=True)
    assert first.release_id != second.release_id
    active = CrateRelease.objects.filter(crate__normalized_name="ferro_fixture", version="0.3.1", state="active")
    assert list(active.values_list("pk", flat=True)) == [second.release_id]
    assert not CrateRelease.objects.filter(pk=first.release_id).exists()
    assert second.embedded_new == 0  # every chunk's embedding came from the cache


def test_failed_ingest_leaves_previous_release_active_and_untouched(monkeypatch):
    first = _ingest()
    docs_before = Document.objects.filter(release_id=first.release_id).count()
    calls = {"n": 0}
    real_store_batch = store.store_batch

    def failing_store_batch(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real_store_batch(**kwargs)

    monkeypatch.setattr(store, "store_batch", failing_store_batch)
    monkeypatch.setattr(release_mod, "batch_size_for", lambda total: 4)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _ingest(force=True)
    assert CrateRelease.objects.filter(crate__normalized_name="ferro_fixture").count() == 1
    release = CrateRelease.objects.get(pk=first.release_id)
    assert release.state == "active"
    assert Document.objects.filter(release=release).count() == docs_before


def _ingest_failing_at_store(monkeypatch, settings, *, failing_call: int) -> dict:
    """An ingest in batches of 5 whose ``failing_call``-th batch store fails transiently; its last checkpoint."""
    settings.INGEST_WRITERS = 1
    saved: list[dict] = []
    real_store_batch = store.store_batch
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise UpstreamUnavailable("database went away")
        return real_store_batch(**kwargs)

    monkeypatch.setattr(store, "store_batch", flaky)
    monkeypatch.setattr(release_mod, "batch_size_for", lambda total: 5)
    with pytest.raises(UpstreamUnavailable):
        _ingest(save_checkpoint=saved.append)
    monkeypatch.setattr(store, "store_batch", real_store_batch)
    return saved[-1]


def test_transient_failure_keeps_building_release_and_resume_skips_committed_batches(monkeypatch, settings):
    checkpoint = _ingest_failing_at_store(monkeypatch, settings, failing_call=4)
    real_store_batch = store.store_batch
    building = CrateRelease.objects.get(pk=checkpoint["release_id"])
    assert building.state == "building"
    assert Document.objects.filter(release=building).count() == 15

    stored_again: list[str] = []

    def counting(**kwargs):
        stored_again.extend(s.item.path for s in kwargs["batch"])
        return real_store_batch(**kwargs)

    monkeypatch.setattr(store, "store_batch", counting)
    result = _ingest(checkpoint=checkpoint, save_checkpoint=lambda _: None)
    assert result.release_id == building.pk
    assert result.items_skipped_by_checkpoint == 15
    assert result.items_processed + 15 == checkpoint["items_total"]
    first_fifteen = set(Document.objects.filter(release=building).order_by("id").values_list("path", flat=True)[:15])
    assert not first_fifteen & set(stored_again)  # committed batches are not redone
    building.refresh_from_db()
    assert building.state == "active"
    assert Document.objects.filter(release=building).count() == checkpoint["items_total"]


def _stored(release_id: int) -> list[tuple]:
    return list(
        Chunk.objects.filter(release_id=release_id)
        .order_by("document__path", "ordinal")
        .values_list("document__path", "ordinal", "text", "content_hash")
    )


def test_two_phase_mode_stores_the_same_release_and_embeds_every_chunk_once(monkeypatch, settings):
    from crates.pipeline.embed import get_embedder

    settings.INGEST_OVERLAP_STORE = "on"
    overlapped = _ingest()
    reference = _stored(overlapped.release_id)
    Crate.objects.all().delete()
    from crates.models import EmbeddingCache

    EmbeddingCache.objects.all().delete()

    settings.INGEST_OVERLAP_STORE = "off"
    monkeypatch.setattr(embed_pass, "MAX_CALL_TEXTS", 8)  # many model calls
    monkeypatch.setattr(release_mod, "batch_size_for", lambda total: 4)
    embedder = get_embedder()
    sent: list[str] = []
    real_embed = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda texts: (sent.extend(texts), real_embed(texts))[1])
    stored_while_embedding: list[int] = []
    real_store_batch = store.store_batch

    def store_batch(**kwargs):
        stored_while_embedding.append(len(sent))
        return real_store_batch(**kwargs)

    monkeypatch.setattr(store, "store_batch", store_batch)
    progress = Recorder()
    result = run_ingest(name="ferro-fixture", progress=progress, json_file=FIXTURE_JSON)
    assert _stored(result.release_id) == reference
    assert len(sent) == len(set(sent)) == len(reference)  # each chunk through the model once
    assert stored_while_embedding and max(stored_while_embedding) == 0  # every batch stored before the model
    assert progress.percents == sorted(progress.percents) and progress.percents[-1] == 100
    assert progress.stages[-3:] == ["embed", "activate", "done"]
    release = CrateRelease.objects.get(pk=result.release_id)
    assert (release.state, release.embedding_pending) == ("active", False)
    assert release.embedding_count == release.chunk_count == len(reference)


def test_embed_first_mode_reports_the_items_found_before_the_model_runs(monkeypatch, settings):
    from crates.pipeline.embed import get_embedder

    settings.INGEST_OVERLAP_STORE = "off"  # what a local CPU model gets: the whole release embedded first
    counters: dict[str, int] = {}
    seen_by_model: list[dict[str, int]] = []

    class Counting(NullProgress):
        def update(self, *, percent=None, message=None, **values):
            counters.update(values)

    embedder = get_embedder()
    real_embed = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda texts: (seen_by_model.append(dict(counters)), real_embed(texts))[1])
    result = run_ingest(name="ferro-fixture", progress=Counting(), json_file=FIXTURE_JSON)
    found = CrateRelease.objects.get(pk=result.release_id).document_count
    # The model pass is most of a big crate's run (tokio: ~50 s); the job showed "0 items found" all along.
    assert seen_by_model and seen_by_model[0].get("items_found") == found > 30


def test_embed_first_mode_makes_the_release_before_the_model_and_caches_every_vector(monkeypatch, settings):
    import threading

    from crates.models import EmbeddingCache
    from crates.pipeline.embed import get_embedder

    settings.INGEST_OVERLAP_STORE = "off"
    monkeypatch.setattr(embed_pass, "MAX_CALL_TEXTS", 8)
    embedder = get_embedder()
    real_embed, real_create = embedder.embed, release_mod.resume_or_create_release
    order: list[str] = []

    def embed(texts):
        order.append("model")
        # Nothing runs beside the model (its own thread, watched for a cancel): the writers are done.
        assert not [t for t in threading.enumerate() if t.name.startswith("ferrodex-store")]
        return real_embed(texts)

    def create(**kwargs):
        order.append("release")
        return real_create(**kwargs)

    monkeypatch.setattr(embedder, "embed", embed)
    monkeypatch.setattr(release_mod, "resume_or_create_release", create)
    result = _ingest()
    assert order[0] == "release" and order.count("release") == 1 and order.count("model") > 1
    release = CrateRelease.objects.get(pk=result.release_id)
    assert release.state == "active" and release.embedding_count == release.chunk_count > 8
    # The last group's vectors reach the cache too (with the first stored batch), not only the earlier groups'.
    hashes = set(Chunk.objects.filter(release=release).values_list("content_hash", flat=True))
    cached = set(EmbeddingCache.objects.filter(content_hash__in=hashes).values_list("content_hash", flat=True))
    assert cached == hashes


def test_the_crates_io_description_is_asked_beside_the_pipeline_and_counted(monkeypatch, settings, fake_docsrs):
    import threading

    from crates.pipeline.embed import get_embedder
    from tests.fakes import ferro_fixture_json, zstd

    settings.INGEST_OVERLAP_STORE = "off"
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=zstd(ferro_fixture_json()),
                          description="Fixture crate.", repository="https://example.invalid/ferro")
    embedder = get_embedder()
    real_embed, real_describe = embedder.embed, ingest.describe_release
    model_started = threading.Event()
    asked: list[tuple[str, bool]] = []

    def embed(texts):
        model_started.set()
        return real_embed(texts)

    def describe(**kwargs):
        # Asked before the model in sequence, this wait would time out.
        asked.append((threading.current_thread().name, model_started.wait(timeout=10)))
        return real_describe(**kwargs)

    monkeypatch.setattr(embedder, "embed", embed)
    monkeypatch.setattr(ingest, "describe_release", describe)
    progress = Recorder()
    result = run_ingest(name="ferro-fixture", progress=progress)
    assert asked == [("ferrodex-describe", True)]
    assert not [t for t in threading.enumerate() if t.name == "ferrodex-describe"]
    crate = CrateRelease.objects.get(pk=result.release_id).crate
    assert (crate.description, crate.repository) == ("Fixture crate.", "https://example.invalid/ferro")
    assert fake_docsrs.paths(service="api") == ["/api/v1/crates/ferro-fixture"]
    assert result.http_requests == len(fake_docsrs.requests) == 3  # index, docs.rs JSON, crates.io
    assert progress.counters["http_requests"] == 3


def test_embed_first_mode_fails_cleanly_when_the_release_cannot_be_made(monkeypatch, settings):
    from crates.pipeline.embed import get_embedder

    settings.INGEST_OVERLAP_STORE = "off"
    sent: list[str] = []
    monkeypatch.setattr(get_embedder(), "embed", lambda texts: sent.extend(texts) or [])

    def create(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(release_mod, "resume_or_create_release", create)
    with pytest.raises(RuntimeError, match="database went away"):
        _ingest()
    assert not sent  # the model is not started for a release that could not be made
    assert not CrateRelease.objects.exists()


def test_a_model_failure_withdraws_a_first_ingest_and_a_retry_embeds_without_storing_again(monkeypatch, settings):
    from crates.errors import EmbeddingError
    from crates.pipeline.embed import get_embedder

    settings.INGEST_OVERLAP_STORE = "off"
    embedder = get_embedder()
    real_embed = embedder.embed
    searchable_meanwhile: list[bool] = []

    def failing(texts):
        searchable_meanwhile.append(get_item(crate="ferro-fixture", path="ferro_fixture::Counter").path != "")
        raise EmbeddingError("model crashed")

    monkeypatch.setattr(embedder, "embed", failing)
    saved: list[dict] = []
    with pytest.raises(EmbeddingError, match="model crashed"):
        _ingest(save_checkpoint=saved.append)
    assert searchable_meanwhile == [True]  # get_item answered while the model ran
    release = CrateRelease.objects.get(pk=saved[-1]["release_id"])
    # Withdrawn: nothing half-built is searchable, but its documents and chunks stay for the retry.
    assert release.state == "building" and release.embedding_pending
    assert release.crate.latest_version == ""
    stored = Document.objects.filter(release=release).count()
    assert stored > 30

    monkeypatch.setattr(embedder, "embed", real_embed)
    restored: list[int] = []
    real_store_batch = store.store_batch
    monkeypatch.setattr(store, "store_batch", lambda **kw: (restored.append(1), real_store_batch(**kw))[1])
    result = _ingest(checkpoint=saved[-1])
    assert result.release_id == release.pk and not restored  # nothing stored twice
    release.refresh_from_db()
    assert (release.state, release.embedding_pending) == ("active", False)
    assert release.document_count == stored and release.embedding_count == release.chunk_count


def test_overlap_mode_follows_where_the_model_runs(settings):
    from crates.pipeline.embedders.hashing import HashEmbedder
    from crates.pipeline.embedders.local import LocalEmbedder

    settings.INGEST_OVERLAP_STORE = "auto"
    assert release_mod.overlap_store(HashEmbedder(count_tokens=len)) is True
    assert release_mod.overlap_store(LocalEmbedder()) is False  # not loaded: the flag is on the class setup
    settings.INGEST_OVERLAP_STORE = "on"
    assert release_mod.overlap_store(LocalEmbedder()) is True


def test_store_batch_is_idempotent_when_a_batch_is_retried():
    crate = Crate.objects.create(name="dup")
    release = CrateRelease.objects.create(crate=crate, version="1.0.0", docs_source="rustdoc-json")
    item = ParsedItem(path="dup::f", name="f", kind="function", signature="pub fn f()", docs="Does f.")
    from crates.pipeline.types import ChunkData

    chunk = ChunkData(ordinal=0, text="dup::f (function)\npub fn f()\n\nDoes f.", token_count=9, content_hash="h")
    batch = [store.StoredItem(item=item, chunks=[chunk], vectors=[None])]
    # Same path, other kind (a macro and a function may share one): a different document, never replaced.
    namesake = ParsedItem(path="dup::f", name="f", kind="macro", signature="macro_rules! f", docs="")
    store.store_batch(release=release, package="dup", local=False,
                      batch=[store.StoredItem(item=namesake, chunks=[chunk], vectors=[None])])
    for _ in range(2):
        store.store_batch(release=release, package="dup", local=False, batch=batch)
    assert sorted(Document.objects.filter(release=release).values_list("kind", flat=True)) == ["function", "macro"]
    assert Chunk.objects.filter(release=release).count() == 2
    # Without the look-up for earlier rows (a release made by this very run), a repeat still cannot
    # store a duplicate: the unique (release, path, kind) constraint refuses the whole batch.
    import psycopg

    with pytest.raises(psycopg.errors.UniqueViolation):
        store.store_batch(release=release, package="dup", local=False, batch=batch, replace=False)
    assert Chunk.objects.filter(release=release).count() == 2


def test_ingest_crate_command_reports_and_fails_cleanly(tmp_path):
    out = io.StringIO()
    call_command("ingest_crate", "ferro-fixture", "--json-file", str(FIXTURE_JSON), stdout=out, stderr=io.StringIO())
    assert "documents" in out.getvalue()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("ingest_crate", "x", "--json-file", str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="CorruptArtifact"):
        call_command("ingest_crate", "x", "--json-file", str(bad), stderr=io.StringIO())
    with pytest.raises(CommandError, match="InvalidCrateName"):
        call_command("ingest_crate", "9lives", stderr=io.StringIO())


def test_ingest_crate_is_a_job_run_in_the_foreground():
    from jobs.models import CrateJob

    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_crate", "ferro-fixture", "--json-file", str(FIXTURE_JSON), stdout=out, stderr=err)
    job = CrateJob.objects.get()
    assert (job.status, job.requested_by, job.operation, job.attempts) == ("complete", "cli", "ingest", 1)
    assert job.options == {"force": False, "json_file": str(FIXTURE_JSON.resolve())}
    assert job.worker_id.startswith("cli:") and job.progress == 100 and job.documents > 30
    assert job.result["documents"] == job.documents and f"{job.documents} documents" in out.getvalue()
    assert f"job {job.pk}: complete" in err.getvalue()
    kinds = list(job.events.order_by("id").values_list("event_type", flat=True))
    assert kinds[:2] == ["created", "started"] and kinds[-1] == "completed" and "progress" in kinds

    # A failure is a failed job with the error, and the command fails with it.
    with pytest.raises(CommandError, match="CorruptArtifact"):
        call_command("ingest_crate", "x", "--json-file", str(FIXTURE_JSON.parent / "README.md"), stderr=io.StringIO())
    failed = CrateJob.objects.get(crate_name="x")
    assert (failed.status, failed.error_type, failed.requested_by) == ("failed", "CorruptArtifact", "cli")


def test_ingest_crate_runs_the_identical_queued_job_instead_of_a_second_one():
    from jobs import services
    from jobs.models import CrateJob

    queued = services.enqueue_ingest(name="ferro-fixture", json_file=FIXTURE_JSON, requested_by="api").job
    call_command("ingest_crate", "ferro_fixture", "--json-file", str(FIXTURE_JSON), stdout=io.StringIO(),
                 stderr=io.StringIO())
    assert CrateJob.objects.count() == 1
    queued.refresh_from_db()
    assert queued.status == "complete" and queued.worker_id.startswith("cli:")


def test_ingest_crate_follows_the_identical_ingest_a_worker_runs(monkeypatch):
    import threading

    from django.db import connections
    from django.utils import timezone

    from jobs import foreground, services
    from jobs.models import CrateJob

    monkeypatch.setattr(foreground, "FOLLOW_POLL_SECONDS", 0.05)
    running = services.enqueue_ingest(name="ferro-fixture", json_file=FIXTURE_JSON, requested_by="api").job
    CrateJob.objects.filter(pk=running.pk).update(status="running", attempts=1, worker_id="host:1",
                                                  stage="embed", stage_message="embedding", progress=60)

    def worker_finishes():
        time.sleep(0.5)
        CrateJob.objects.filter(pk=running.pk).update(
            status="complete", progress=100, finished_at=timezone.now(), result={
                "crate_name": "ferro_fixture", "version": "0.3.1", "documents": 7, "chunks": 9, "embeddings": 9,
                "embedded_new": 9, "http_requests": 0, "up_to_date": False})
        connections.close_all()

    thread = threading.Thread(target=worker_finishes)
    thread.start()
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_crate", "ferro-fixture", "--json-file", str(FIXTURE_JSON), stdout=out, stderr=err)
    thread.join()
    assert CrateJob.objects.count() == 1
    assert "ferro_fixture 0.3.1: 7 documents" in out.getvalue() and "this command followed it" in err.getvalue()


def test_ingest_crate_command_refuses_a_directory_as_json_file(tmp_path):
    # It ended in an IsADirectoryError traceback.
    with pytest.raises(CommandError, match="is a directory; give the rustdoc JSON file"):
        call_command("ingest_crate", "x", "--json-file", str(tmp_path), stderr=io.StringIO())


def test_removing_the_last_version_removes_the_crate():
    from crates.errors import CrateNotFound
    from crates.search.engine import search
    from crates.selectors import list_crates
    from crates.services import remove_crate

    widget = item("qa_two::Widget", "struct", "pub struct Widget", "A widget.")
    store_release(crate="qa-two", version="1.0.0", items=[widget])
    store_release(crate="qa-two", version="1.1.0", items=[widget])

    first = remove_crate(name="qa-two", version="1.1.0")
    assert not first.get("crate_removed") and Crate.objects.get().latest_version == "1.0.0"
    last = remove_crate(name="QA_two", version="1.0.0")

    # Not an empty crate left listed with no version, whose search said "an ingest may still be running".
    assert not Crate.objects.exists()
    assert last["crate_removed"] and last["releases"] == 1
    assert list_crates(search="qa-two").total == 0
    with pytest.raises(CrateNotFound, match="not indexed"):
        search(query="Widget", crate="qa-two")


def test_local_docs_of_another_library_do_not_replace_a_stored_crate():
    run_ingest(name="ferro-fixture", progress=NullProgress(), json_file=FIXTURE_JSON)
    serialize = item("serde::Serialize", "trait", "pub trait Serialize", "")
    store_release(crate="serde", version="1.0.152", items=[serialize])
    with pytest.raises(InvalidInput, match="library 'ferro_fixture', but 'serde' is stored with the library 'serde'"):
        run_ingest(name="serde", version="1.0.152", progress=NullProgress(), json_file=FIXTURE_JSON)
    with pytest.raises(InvalidInput, match="library 'ferro_fixture'"):
        run_ingest(name="serde", version="1.0.152", progress=NullProgress(), doc_dir=FIXTURE_DOCS)
    assert get_item(crate="serde", path="serde::Serialize").kind == "trait"
    # A crate new to Ferrodex may name its library differently from the package.
    result = run_ingest(name="ferro-renamed", progress=NullProgress(), json_file=FIXTURE_JSON)
    assert result.documents > 0


def test_doc_dir_ingest_uses_the_html_parser():
    result = run_ingest(name="ferro-fixture", version="0.3.1", progress=NullProgress(), doc_dir=FIXTURE_DOCS)
    release = CrateRelease.objects.get(pk=result.release_id)
    assert release.docs_source == "html"
    assert Document.objects.filter(release=release, path="ferro_fixture::Counter").exists()


# -- through the fake docs.rs over HTTP --------------------------------------------------------------------------


def test_remote_json_ingest_costs_three_requests_and_a_refresh_is_one_conditional_request(fake_docsrs):
    from tests.fakes import ferro_fixture_json, zstd

    fake_docsrs.add_crate(
        "ferro-fixture",
        versions=["0.3.0", "0.3.1", "0.4.0-beta.1"],
        json_bytes=zstd(ferro_fixture_json()),
        description="Fixture crate.",
    )
    result = run_ingest(name="ferro-fixture", progress=NullProgress())
    assert (result.crate_name, result.version) == ("ferro-fixture", "0.3.1")
    assert result.http_requests <= 3
    release = CrateRelease.objects.get(pk=result.release_id)
    assert release.etag
    assert release.crate.description == "Fixture crate."  # from the crates.io API
    doc = Document.objects.get(release=release, path="ferro_fixture::Counter")
    assert doc.url.endswith("/ferro-fixture/0.3.1/ferro_fixture/struct.Counter.html")

    fake_docsrs.reset_log()
    again = run_ingest(name="ferro-fixture", progress=NullProgress())
    assert again.up_to_date
    assert again.release_id == result.release_id
    assert len(fake_docsrs.docsrs_requests()) == 1  # a conditional GET answered 304
    # Nothing is made, so the crates.io description is not asked for: the index and the 304.
    assert fake_docsrs.count(service="api") == 0 and again.http_requests == 2

    # Another spelling of the same crate lands on the same crate row.
    renamed = run_ingest(name="Ferro_Fixture", progress=NullProgress(), force=True)
    assert renamed.crate_name == "ferro-fixture"
    assert Crate.objects.count() == 1


def test_adding_a_soft_deleted_crate_whose_release_is_current_restores_it(fake_docsrs):
    from crates.search.engine import search
    from crates.services import remove_crate
    from jobs.models import CrateJob
    from jobs.runner import _complete_message
    from tests.fakes import ferro_fixture_json, zstd

    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=zstd(ferro_fixture_json()))
    first = run_ingest(name="ferro-fixture", progress=NullProgress())
    remove_crate(name="ferro-fixture", soft=True)

    again = run_ingest(name="ferro-fixture", progress=NullProgress())

    # The same as when a new release is made (activate_release): the crate is listed and searchable again.
    assert Crate.objects.get().deleted_at is None
    assert search(query="Counter", crate="ferro-fixture")
    assert again.up_to_date and again.restored and again.release_id == first.release_id
    job = CrateJob(operation=CrateJob.Operation.INGEST, crate_name="ferro-fixture", requested_version="latest")
    message = _complete_message(job=job, result={"up_to_date": True, "restored": True, "version": "0.3.1"}, counters={})
    assert "restored" in message and "nothing to do" not in message
    # A crate that was not hidden reports plainly.
    assert not run_ingest(name="ferro-fixture", progress=NullProgress()).restored


def test_remote_html_only_ingest_goes_through_the_download_zip(fake_docsrs):
    from tests.fakes import ferro_fixture_doc_zip

    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], zip_bytes=ferro_fixture_doc_zip())
    result = run_ingest(name="ferro-fixture", progress=NullProgress())
    release = CrateRelease.objects.get(pk=result.release_id)
    assert release.docs_source == "html"
    assert result.http_requests <= 4
    assert Document.objects.filter(release=release, path="ferro_fixture::sync::Mutex::lock").exists()


def test_release_without_docs_fails_with_a_clear_message_and_stores_nothing(fake_docsrs):
    from crates.errors import NoDocumentation

    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], doc_status=False)
    with pytest.raises(NoDocumentation, match="no documentation"):
        run_ingest(name="ferro-fixture", progress=NullProgress())
    assert not CrateRelease.objects.exists()


def test_a_release_without_docs_names_the_other_versions_to_ask_for(fake_docsrs):
    from crates.errors import NoDocumentation
    from tests.fakes import ferro_fixture_json, zstd

    fake_docsrs.add_crate(
        "ferro-fixture", versions=["0.2.0", "0.3.0", "0.3.1", "0.4.0-rc.1"], yanked=["0.3.2"],
        json_bytes=zstd(ferro_fixture_json()),
    )  # fmt: skip
    fake_docsrs.set_release("ferro-fixture", "0.3.1", json_bytes=None, doc_status=False)  # docs.rs build failed

    with pytest.raises(NoDocumentation) as caught:
        run_ingest(name="ferro-fixture", progress=NullProgress())  # "latest" is 0.3.1

    message = str(caught.value)
    assert "docs.rs has no documentation for ferro-fixture 0.3.1" in message
    assert message.endswith("Ask for another version instead, e.g. 0.3.0, 0.2.0, 0.4.0-rc.1.")
    assert caught.value.context["available"] == ["0.3.0", "0.2.0", "0.4.0-rc.1"]
    assert run_ingest(name="ferro-fixture", version="0.3.0", progress=NullProgress()).version == "0.3.0"


def test_unknown_crate_fails_before_any_docs_rs_request(fake_docsrs):
    from crates.errors import CrateNotFound

    with pytest.raises(CrateNotFound):
        run_ingest(name="no-such-crate", progress=NullProgress())
    assert fake_docsrs.docsrs_requests() == []


def test_activate_release_supersedes_counts_and_sets_the_latest_version():
    from django.utils import timezone

    from crates.pipeline.types import ChunkData

    crate = Crate.objects.create(name="act", deleted_at=timezone.now())  # a soft-deleted crate comes back
    newer = CrateRelease.objects.create(crate=crate, version="1.10.0", docs_source="rustdoc-json", state="active")
    old = CrateRelease.objects.create(crate=crate, version="1.9.0", docs_source="rustdoc-json", state="active")
    building = CrateRelease.objects.create(crate=crate, version="1.9.0", docs_source="rustdoc-json")
    items = [ParsedItem(path=f"act::f{i}", name=f"f{i}", kind="function", docs="Does f.") for i in range(3)]
    batch = [
        store.StoredItem(
            item=item,
            chunks=[ChunkData(ordinal=n, text=f"{item.path} {n}", token_count=2, content_hash=f"{item.path}{n}")
                    for n in range(2)],
            vectors=[[1.0] + [0.0] * 383, None],  # one chunk of each item has no vector
        )
        for item in items
    ]
    store.store_batch(release=building, package="act", local=False, batch=batch)

    activated = store.activate_release(release=building)
    assert (activated.document_count, activated.chunk_count, activated.embedding_count) == (3, 6, 3)
    stored = CrateRelease.objects.get(pk=building.pk)
    assert stored.state == "active" and stored.ingested_at is not None
    assert (stored.document_count, stored.chunk_count, stored.embedding_count) == (3, 6, 3)
    assert not CrateRelease.objects.filter(pk=old.pk).exists()  # superseded, then discarded
    assert CrateRelease.objects.get(pk=newer.pk).state == "active"  # another version: untouched
    crate.refresh_from_db()
    assert crate.deleted_at is None and crate.latest_version == "1.10.0"  # semver order, not text order

    again = CrateRelease.objects.create(crate=crate, version="2.0.0-rc.1", docs_source="rustdoc-json")
    store.activate_release(release=again)
    crate.refresh_from_db()
    assert crate.latest_version == "2.0.0-rc.1"


class _OtherModel:
    """Another provider of the same dimension (what a worker with another EMBEDDING_PROVIDER builds)."""

    def __init__(self, model_name: str = "some-other-model-v2") -> None:
        from crates.pipeline.embedders.hashing import HashEmbedder

        self._inner = HashEmbedder()
        self.model_name, self.dimension, self.max_tokens = model_name, self._inner.dimension, self._inner.max_tokens

    def count_tokens(self, text):
        return self._inner.count_tokens(text)

    def embed(self, texts):
        return [[-x for x in vector] for vector in self._inner.embed(texts)]  # other vectors, same norm


def _interrupted_hash_ingest(monkeypatch, settings) -> dict:
    return _ingest_failing_at_store(monkeypatch, settings, failing_call=3)


def test_a_resumed_job_embeds_with_the_model_its_release_records_not_the_workers(monkeypatch, settings):
    from crates.models import EmbeddingCache
    from crates.pipeline import embed
    from crates.pipeline.embedders.hashing import MODEL_NAME, HashEmbedder

    checkpoint = _interrupted_hash_ingest(monkeypatch, settings)
    real_get_embedder = embed.get_embedder
    # The worker that resumes is configured with another provider of the same dimension.
    monkeypatch.setattr(ingest, "get_embedder", lambda provider=None: (
        real_get_embedder(provider=provider) if provider else _OtherModel()))

    result = _ingest(checkpoint=checkpoint)
    release = CrateRelease.objects.get(pk=result.release_id)
    assert release.pk == checkpoint["release_id"] and release.state == "active"
    assert release.embedding_model == MODEL_NAME
    chunks = list(Chunk.objects.filter(release=release).values_list("text", "embedding", "staged_embedding"))
    expected = HashEmbedder().embed([text for text, *_ in chunks])
    for (_text, vector, staged), want in zip(chunks, expected, strict=True):
        vector = vector if vector is not None else staged  # a vector may still be staged (Chunk.staged_embedding)
        assert max(abs(a - b) for a, b in zip(vector, want, strict=True)) < 1e-5
    assert not EmbeddingCache.objects.filter(model="some-other-model-v2").exists()


def test_a_resumed_job_whose_model_this_worker_cannot_make_is_refused_clearly(monkeypatch, settings):
    from crates.errors import EmbeddingModelMismatch

    checkpoint = _interrupted_hash_ingest(monkeypatch, settings)
    CrateRelease.objects.filter(pk=checkpoint["release_id"]).update(embedding_model="a-model-no-provider-makes")
    monkeypatch.setattr(ingest, "get_embedder", lambda provider=None: _OtherModel())

    with pytest.raises(EmbeddingModelMismatch, match=r"a-model-no-provider-makes.*some-other-model-v2") as caught:
        _ingest(checkpoint=checkpoint)
    assert caught.value.transient is False
    assert not CrateRelease.objects.filter(pk=checkpoint["release_id"]).exists()  # a retry starts afresh
    assert not Chunk.objects.filter(release_id=checkpoint["release_id"]).exists()


def _cache_download(name: str, version: str) -> None:
    from crates.models import FetchedArtifact

    FetchedArtifact.objects.create(crate_name=name, version=version, kind="json", url="http://docs.invalid/x",
                                   sha256="0" * 64, size=1, body=b"x")  # fmt: skip


def test_a_hard_delete_removes_the_crates_cached_downloads_too():
    from crates.models import FetchedArtifact
    from crates.services import remove_crate

    _ingest()
    _cache_download("ferro_fixture", "0.3.1")
    _cache_download("ferro_fixture", "0.2.0")  # a download whose ingest never finished
    _cache_download("other_crate", "1.0.0")
    remove_crate(name="ferro-fixture")
    left = set(FetchedArtifact.objects.values_list("crate_name", "version"))
    assert left == {("other_crate", "1.0.0")}


def test_a_hard_delete_of_one_version_removes_only_that_versions_cached_download():
    from crates.models import FetchedArtifact
    from crates.services import remove_crate

    _ingest()
    old = item("ferro_fixture::Old", "struct", "pub struct Old", "Old.")
    store_release(crate="ferro-fixture", version="0.2.0", items=[old])
    _cache_download("ferro_fixture", "0.3.1")
    _cache_download("ferro_fixture", "0.2.0")
    remove_crate(name="ferro-fixture", version="0.2.0")
    assert set(FetchedArtifact.objects.values_list("crate_name", "version")) == {("ferro_fixture", "0.3.1")}
    remove_crate(name="ferro-fixture", soft=True)  # a soft delete is reversible: the cache stays
    assert FetchedArtifact.objects.count() == 1


def test_the_embedding_pass_says_how_far_it_is_and_how_long_is_left(monkeypatch, settings):
    """Percent, the embeddings counter and the message (with an ETA from the measured rate) move with every
    model call, and a first ingest's message says since when it is searchable by keyword and path."""
    from crates.pipeline.embed_pass import eta_text

    assert (eta_text(None), eta_text(0), eta_text(0.2), eta_text(24.6), eta_text(150)) == ("",
        "", " (about 1 s left)", " (about 25 s left)", " (about 2 min left)")
    settings.INGEST_OVERLAP_STORE = "off"
    monkeypatch.setattr(embed_pass, "MAX_CALL_TEXTS", 5)
    seen: list[tuple[float | None, int | None, str | None]] = []

    class Watching(NullProgress):
        def update(self, *, percent=None, message=None, **counters):
            if "embeddings" in counters:
                seen.append((percent, counters["embeddings"], message))

    result = run_ingest(name="ferro-fixture", progress=Watching(), json_file=FIXTURE_JSON)
    release = CrateRelease.objects.get(pk=result.release_id)
    calls = [(p, e, m) for p, e, m in seen if p is not None and "chunks" in m]  # the pass's, not the store's
    assert len(calls) >= release.chunk_count // 5
    assert [e for _p, e, _m in calls] == sorted(e for _p, e, _m in calls)
    assert [p for p, _e, _m in calls] == sorted(p for p, _e, _m in calls) and calls[-1][1] == release.chunk_count
    assert all(m.startswith("searchable by keyword and path since ") for _p, _e, m in calls)
    assert f"embedding {calls[0][1]} of {release.chunk_count} chunks (about " in calls[0][2]
