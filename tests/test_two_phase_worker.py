"""Two-phase availability on a real qcluster worker and the real database: a first ingest is searchable by
keyword and path (and answers get_item) while its embeddings are held back, its progress moves during the
embedding pass, vector hits come once the model is let through; a re-ingest keeps the old release searchable
throughout; a cancel in the embedding pass withdraws a first ingest."""

from __future__ import annotations

import pytest

from crates.fronts import search_results
from crates.models import Crate, CrateRelease, EmbeddingCache
from crates.selectors import get_item, search_docs
from jobs import services
from jobs.models import CrateJob
from mcp_bridge.server import check_rust_status, search_rust_docs
from tests.fakes import ferro_fixture_json, zstd
from tests.jobs_helpers import QCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GATED = "tests.gated_embedder.GatedEmbedder"
PATH = "ferro_fixture::Counter"


@pytest.fixture
def gated(fake_docsrs, tmp_path, settings):
    """A worker whose model calls wait on the gate file (number of calls allowed); yields the gate."""
    settings.EMBEDDING_PROVIDER = GATED  # this process's searches embed their queries with the same vectors
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=zstd(ferro_fixture_json()))
    gate = tmp_path / "gate"
    gate.write_text("0")
    env = {**fake_docsrs.env(), "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest",
           "EMBEDDING_PROVIDER": GATED, "FERRODEX_TEST_GATE": str(gate), "Q_WORKERS": "1"}
    worker = QCluster(log_path=tmp_path / "qcluster.log", env=env).start()
    try:
        yield gate
    finally:
        worker.stop()


def _job(job_id) -> CrateJob:
    return CrateJob.objects.get(pk=job_id)


def _active() -> CrateRelease | None:
    return CrateRelease.objects.filter(crate__normalized_name="ferro_fixture", state="active").first()


def test_a_first_ingest_is_searchable_by_keyword_and_path_while_its_embeddings_are_held(gated):
    job_id = services.enqueue_ingest(name="ferro-fixture", requested_by="api").job.pk
    release = wait_for(_active, timeout=60, what="the release to become searchable")
    assert release.embedding_pending and release.embedding_count == 0 < release.chunk_count

    hits = search_docs(query="Counter", crate="ferro-fixture")
    assert hits and hits[0].path == PATH
    assert all("vector" not in hit.signals for hit in hits)
    assert hits[0].semantic == f"0/{release.chunk_count} chunks"
    assert get_item(crate="ferro-fixture", path=PATH).path == PATH
    # The API and MCP say it too (their one search payload, and the tool's text).
    note = f"0/{release.chunk_count} chunks"
    assert search_results(query="Counter", crate="ferro-fixture", version=None, kind=None, limit=5)["results"][0][
        "semantic"] == note
    assert f"[semantic: {note}]" in search_rust_docs(query="Counter", crate="ferro-fixture").content[0].text

    job = wait_for(lambda: (j := _job(job_id)).stage == "embed" and j, timeout=30, what="the embedding stage")
    assert job.stage_message.startswith("searchable by keyword and path since ")
    assert f"embedding 0 of {release.chunk_count} chunks" in job.stage_message
    assert (job.items_found, job.documents, job.chunks) == (release.document_count, release.document_count,
                                                            release.chunk_count)
    held_percent = job.progress
    assert "searchable by keyword and path since" in check_rust_status(job_id=str(job_id)).content[0].text

    gated.write_text("1")  # one model call
    job = wait_for(lambda: (j := _job(job_id)).embeddings > 0 and j, timeout=30, what="the first model call")
    assert 0 < job.embeddings < release.chunk_count and job.progress > held_percent
    assert f"embedding {job.embeddings} of {release.chunk_count} chunks" in job.stage_message
    release.refresh_from_db()
    assert release.embedding_pending and release.embedding_count == job.embeddings
    assert search_docs(query="Counter", crate="ferro-fixture")[0].semantic == (
        f"{job.embeddings}/{release.chunk_count} chunks")

    gated.write_text("1000")
    job = wait_for(lambda: (j := _job(job_id)).is_finished and j, timeout=60, what="the job to finish")
    assert job.status == "complete", job.error_message
    assert (job.progress, job.embeddings) == (100, release.chunk_count)
    release.refresh_from_db()
    assert (release.state, release.embedding_pending) == ("active", False)
    assert release.embedding_count == release.chunk_count
    hits = search_docs(query="increment the counter by one", crate="ferro-fixture")
    assert any("vector" in hit.signals for hit in hits)
    assert all(hit.semantic is None for hit in hits)


def test_a_reingest_keeps_the_active_release_searchable_until_it_is_complete(gated):
    gated.write_text("1000")
    first = services.enqueue_ingest(name="ferro-fixture", requested_by="api").job.pk
    wait_for(lambda: _job(first).status == "complete", timeout=60, what="the first ingest")
    old = _active()
    gated.write_text("0")  # this worker has made calls already: every further one waits
    EmbeddingCache.objects.all().delete()  # so the re-ingest has vectors to make

    job_id = services.enqueue_ingest(name="ferro-fixture", force=True, requested_by="api").job.pk
    wait_for(lambda: _job(job_id).stage == "embed", timeout=60, what="the re-ingest's embedding stage")
    building = CrateRelease.objects.get(pk=_job(job_id).checkpoint["release_id"])
    assert building.state == "building" and building.pk != old.pk
    for _ in range(3):
        assert _active().pk == old.pk
        hits = search_docs(query="increment the counter by one", crate="ferro-fixture")
        assert any("vector" in hit.signals for hit in hits) and all(hit.semantic is None for hit in hits)
    assert "searchable by keyword" not in _job(job_id).stage_message

    gated.write_text("1000000")
    wait_for(lambda: _job(job_id).status == "complete", timeout=60, what="the re-ingest")
    assert _active().pk == building.pk
    assert not CrateRelease.objects.filter(pk=old.pk).exists()


def test_cancel_in_the_embedding_pass_withdraws_a_first_ingest_and_a_retry_resumes_it(gated):
    job_id = services.enqueue_ingest(name="ferro-fixture", requested_by="api").job.pk
    release = wait_for(_active, timeout=60, what="the release to become searchable")
    wait_for(lambda: _job(job_id).stage == "embed", timeout=30, what="the embedding stage")
    services.cancel_job(job_id=job_id)  # while the model call is held: the pass sees it without waiting for it
    job = wait_for(lambda: (j := _job(job_id)).is_finished and j, timeout=30, what="the cancel")
    assert job.status == "cancelled"
    release.refresh_from_db()
    assert release.state == "building"  # withdrawn: nothing half-built stays searchable
    assert Crate.objects.get(normalized_name="ferro_fixture").latest_version == ""
    assert not search_docs(query="Counter")
    documents = release.documents.count()
    assert documents > 30

    gated.write_text("1000")
    retry = services.retry_job(job_id=job_id, requested_by="api").job
    job = wait_for(lambda: (j := _job(retry.pk)).is_finished and j, timeout=60, what="the retry")
    assert job.status == "complete", job.error_message
    assert job.result["release_id"] == release.pk
    assert job.result["items_skipped_by_checkpoint"] == documents  # stored documents were not redone
    release.refresh_from_db()
    assert (release.state, release.embedding_pending) == ("active", False)
    assert release.embedding_count == release.chunk_count
