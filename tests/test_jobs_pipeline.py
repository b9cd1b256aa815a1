"""The REAL ingest pipeline as a job on a real qcluster worker, against the fake docs.rs (tests/fakes.py).

Real rustdoc JSON of the fixture crate, the hash embedder (same chunking as the
model, no model load), the real HTTP client, store and activation.
"""

from __future__ import annotations

import re
import time

import pytest

from crates.models import Chunk, Crate, CrateRelease, Document
from jobs import services
from jobs.models import CrateJob, JobEvent
from tests.fakes import ferro_fixture_json, zstd
from tests.jobs_helpers import QCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def finished(job) -> CrateJob:
    return wait_for(lambda: CrateJob.objects.filter(pk=job.pk, status__in=["complete", "failed", "cancelled"]).first(),
                    timeout=90, interval=0.05, what=f"job {job.pk} to finish")


def test_real_pipeline_runs_end_to_end_on_a_worker(fake_docsrs, settings, tmp_path):
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"
    fake_docsrs.add_crate("ferro-fixture", versions=["0.2.0", "0.3.1"], json_bytes=zstd(ferro_fixture_json()),
                          description="A fixture crate")
    worker = QCluster(
        log_path=tmp_path / "qcluster.log",
        env={**fake_docsrs.env(), "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest",
             "EMBEDDING_PROVIDER": "hash", "Q_WORKERS": "1"},
    ).start()
    try:
        job = finished(services.enqueue_ingest(name="Ferro-Fixture", requested_by="api").job)
        assert job.status == "complete", f"{job.error_message}\n{job.traceback}\n{worker.log()[-3000:]}"
        release = CrateRelease.objects.get(state="active")
        assert (release.version, release.docs_source, job.resolved_version) == ("0.3.1", "rustdoc-json", "0.3.1")
        assert job.progress == 100 and job.attempts == 1
        assert job.documents == release.document_count == Document.objects.filter(release=release).count() > 30
        assert job.chunks == Chunk.objects.filter(release=release).count() >= job.documents
        assert job.embeddings == job.chunks and job.items_processed == job.items_found > 30
        assert job.http_requests == len(fake_docsrs.requests) <= 3, fake_docsrs.paths()
        assert Document.objects.filter(release=release, path="ferro_fixture::Counter::with_capacity").exists()
        stages = [e.data["stage"] for e in JobEvent.objects.filter(job=job, event_type="progress").order_by("id")]
        assert stages[0] == "resolve" and stages[-1] == "done" and {"fetch", "parse", "activate"} <= set(stages)
        assert Crate.objects.get().description == "A fixture crate"

        # Same release again, no force: one conditional request, nothing rebuilt.
        fake_docsrs.reset_log()
        again = finished(services.enqueue_ingest(name="ferro_fixture", requested_by="api").job)
        assert again.status == "complete" and again.result["up_to_date"]
        assert "already up to date" in again.stage_message
        assert CrateRelease.objects.get(state="active").pk == release.pk
        assert len(fake_docsrs.docsrs_requests()) == 1

        # A crate docs.rs has never heard of fails at once, with the resolver's message, and no retry.
        missing = finished(services.enqueue_ingest(name="no-such-crate", requested_by="api").job)
        assert missing.status == "failed" and missing.attempts == 1
        assert missing.error_type == "CrateNotFound" and "no-such-crate" in missing.error_message
    finally:
        worker.stop()


def test_cancel_is_observed_while_the_upstream_keeps_failing(fake_docsrs, settings, tmp_path):
    # Each 503 is followed by a backoff of up to 5 s, for 6 attempts: cancel used to wait for all of them.
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=zstd(ferro_fixture_json()))
    json_path = "/crate/ferro-fixture/0.3.1/json"
    fake_docsrs.fail(json_path, status=503, times=None)
    worker = QCluster(
        log_path=tmp_path / "qcluster.log",
        env={**fake_docsrs.env(), "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest",
             "EMBEDDING_PROVIDER": "hash", "Q_WORKERS": "1", "HTTP_BACKOFF_BASE": "5", "HTTP_BACKOFF_MAX": "5"},
    ).start()
    try:
        job = services.enqueue_ingest(name="ferro-fixture", requested_by="api").job
        wait_for(lambda: fake_docsrs.count(json_path) >= 1, timeout=60, interval=0.02, what="the first 503")
        asked = time.monotonic()
        services.cancel_job(job_id=job.pk)
        done = wait_for(lambda: CrateJob.objects.filter(pk=job.pk, status__in=["cancelled", "failed"]).first(),
                        timeout=4, interval=0.02, what="the cancel to be observed")
        latency = time.monotonic() - asked
        assert done.status == "cancelled", f"{done.status}: {done.error_message}\n{worker.log()[-3000:]}"
        assert latency < 2.0, latency
        assert fake_docsrs.count(json_path) < 6  # it did not spend the retry budget first
        assert not CrateRelease.objects.exists()
    finally:
        worker.stop()


def test_a_retry_wait_shows_a_countdown_and_when_it_will_retry(fake_docsrs, settings, tmp_path):
    """A 429 with Retry-After: the job's stage message says when the download will be tried again and counts
    down (it used to say "Retrying in N s" once and keep saying it), then gives the stage its message back."""
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=zstd(ferro_fixture_json()))
    json_path = "/crate/ferro-fixture/0.3.1/json"
    fake_docsrs.fail(json_path, status=429, times=1, headers={"Retry-After": "4"})
    worker = QCluster(
        log_path=tmp_path / "qcluster.log",
        env={**fake_docsrs.env(), "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest",
             "EMBEDDING_PROVIDER": "hash", "Q_WORKERS": "1", "HTTP_BACKOFF_MAX": "10"},
    ).start()
    try:
        job = services.enqueue_ingest(name="ferro-fixture", requested_by="api").job
        seen: list[str] = []

        def waiting_message():
            message = CrateJob.objects.filter(pk=job.pk).values_list("stage_message", flat=True).first() or ""
            if message.startswith("Retrying in") and message not in seen:
                seen.append(message)
            return len(seen) >= 3

        wait_for(waiting_message, timeout=30, interval=0.05, what="a counting-down retry notice")
        done = finished(job)
        assert done.status == "complete", f"{done.error_message}\n{worker.log()[-3000:]}"
        first = re.fullmatch(
            r"Retrying in \d s \(at (\d\d:\d\d:\d\d) UTC\) after HTTP 429 from \S+ \(attempt 1 of \d+\); "
            r".*ferro-fixture 0\.3\.1.*", seen[0])
        assert first, seen
        countdown = [int(re.match(r"Retrying in (\d+) s", message)[1]) for message in seen]
        assert countdown == sorted(countdown, reverse=True) and len(set(countdown)) >= 3, seen
        assert {re.search(r"at (\S+) UTC", message)[1] for message in seen} == {first[1]}  # one instant, stated once
        assert done.attempts == 1  # the HTTP client's own retry, not a job retry
    finally:
        worker.stop()
