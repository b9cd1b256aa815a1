"""Job services, selectors, runner and sweeper in the test process (no qcluster): fast mechanics checks.

The runner runs here exactly as on a worker (dedicated lock connection, reporter
thread), so these tests use transaction=True where it runs.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ

from crates.errors import CrateNotFound, InvalidCrateName, InvalidInput, InvalidVersion, JobNotFound, JobStateError
from crates.models import Crate, CrateRelease, Document
from crates.services import restore_crate
from jobs import queue, recovery, retention, selectors, services
from jobs.concurrency import LockConnection, job_is_locked, slots_in_use
from jobs.models import CrateJob, JobEvent, WorkerHeartbeat
from jobs.runner import JobProgress, run_next_job
from tests import pipelines
from tests.jobs_helpers import wait_for

FAKE = "tests.pipelines.slow_ingest"


def events(job) -> list[str]:
    return list(JobEvent.objects.filter(job=job).order_by("created_at", "id").values_list("event_type", flat=True))


def run_until_idle(limit: int = 10) -> list[str]:
    outcomes = []
    for _ in range(limit):
        outcome = run_next_job()
        outcomes.append(outcome)
        if outcome.startswith("idle"):
            return outcomes
    return outcomes


@pytest.fixture
def fake_pipeline(settings, tmp_path, monkeypatch):
    settings.FERRODEX_INGEST_FUNCTION = FAKE
    settings.JOB_HEARTBEAT_STALE_SECONDS = 2
    settings.JOB_RETRY_BACKOFF_SECONDS = 0.3
    ledger = tmp_path / "ledger.txt"
    monkeypatch.setenv("FERRODEX_TEST_LEDGER", str(ledger))
    return ledger


def ledger_counts(ledger: Path) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for line in ledger.read_text().splitlines():
        crate, index, _pid = line.split()
        counts[(crate, int(index))] = counts.get((crate, int(index)), 0) + 1
    return counts


# --- enqueue -------------------------------------------------------------------------


@pytest.mark.django_db
def test_enqueue_validates_before_touching_the_database(settings):
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"
    for bad in ("", "1abc", "a b", "x" * 65, "café"):
        with pytest.raises(InvalidCrateName):
            services.enqueue_ingest(name=bad, requested_by="api")
    with pytest.raises(InvalidVersion):
        services.enqueue_ingest(name="serde", version="1.0", requested_by="api")
    with pytest.raises(InvalidInput):
        services.enqueue_ingest(name="serde", requested_by="robot")
    assert not CrateJob.objects.exists()


@pytest.mark.django_db
def test_enqueue_creates_a_queued_job_and_its_wake_up_task_atomically(settings):
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"
    result = services.enqueue_ingest(name="Serde-Json", version=" 1.0.3 ", requested_by="api")
    job = result.job
    assert not result.deduplicated
    assert (job.status, job.crate_name, job.normalized_name, job.requested_version) == (
        "queued", "Serde-Json", "serde_json", "1.0.3")
    assert events(job) == ["created"]
    # The task carries no work, only which job sent it.
    (task,) = [row.task for row in OrmQ.objects.all()]
    assert task["func"] == "jobs.tasks.run_job" and task["args"] == (str(job.pk),)
    # Written in the job's transaction: a rolled-back enqueue leaves neither job nor task.
    with pytest.raises(RuntimeError), transaction.atomic():
        services.enqueue_ingest(name="tokio", requested_by="api")
        raise RuntimeError("the caller's transaction fails")
    assert CrateJob.objects.count() == 1 and OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_enqueue_dedupes_active_jobs_per_crate_and_version():
    first = services.enqueue_ingest(name="serde_json", requested_by="api")
    again = services.enqueue_ingest(name="SERDE-JSON", version="latest", force=True, requested_by="mcp")
    assert again.deduplicated and again.job.pk == first.job.pk
    assert CrateJob.objects.get(pk=first.job.pk).options == {"force": True}  # upgraded while still queued
    other_version = services.enqueue_ingest(name="serde_json", version="1.0.0", requested_by="api")
    assert not other_version.deduplicated and other_version.job.pk != first.job.pk
    CrateJob.objects.filter(pk=first.job.pk).update(status="complete", finished_at=timezone.now())
    after_finish = services.enqueue_ingest(name="serde_json", requested_by="api")
    assert not after_finish.deduplicated and after_finish.job.pk != first.job.pk


@pytest.mark.django_db
def test_a_stronger_request_is_refused_not_dropped_when_the_active_job_already_runs():
    Crate.objects.create(name="itoa", normalized_name="itoa")
    ingest = services.enqueue_ingest(name="itoa", requested_by="api").job
    CrateJob.objects.filter(pk=ingest.pk).update(status="running", attempts=1)
    # The same request joins the running job as before...
    assert services.enqueue_ingest(name="itoa", requested_by="mcp").job.pk == ingest.pk
    # ...but force would be lost: the running job ends "already up to date" without it.
    with pytest.raises(JobStateError) as info:
        services.enqueue_ingest(name="itoa", force=True, requested_by="mcp")
    assert str(ingest.pk) in str(info.value) and "running" in str(info.value)
    assert CrateJob.objects.get(pk=ingest.pk).options == {"force": False}

    removal = services.enqueue_removal(name="itoa", soft=True, requested_by="api").job
    CrateJob.objects.filter(pk=removal.pk).update(status="running", attempts=1)
    # A hard removal must not turn into the running soft delete (the crate would stay, only hidden).
    with pytest.raises(JobStateError):
        services.enqueue_removal(name="itoa", soft=False, requested_by="api")
    assert CrateJob.objects.get(pk=removal.pk).options == {"soft": True}
    assert CrateJob.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_enqueues_of_one_crate_create_one_job():
    barrier = threading.Barrier(8)
    results, errors = [], []

    def enqueue():
        try:
            barrier.wait()
            results.append(services.enqueue_ingest(name="tokio", requested_by="api"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert CrateJob.objects.count() == 1
    assert {r.job.pk for r in results} == {CrateJob.objects.get().pk}
    assert sorted(r.deduplicated for r in results) == [False] + [True] * 7


# --- running in-process -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_job_runs_to_complete_with_final_counts_and_events(fake_pipeline):
    job = services.enqueue_ingest(name="job-n30-b10-d1-basic", requested_by="cli").job
    assert run_next_job() == "complete"
    job.refresh_from_db()
    assert job.status == "complete" and job.progress == 100 and job.attempts == 1
    assert (job.items_found, job.items_processed, job.documents, job.http_requests) == (30, 30, 30, 2)
    assert job.finished_at >= job.started_at and job.resolved_version == "1.0.0"
    assert job.result["release_id"] == CrateRelease.objects.get(state="active").pk
    kinds = events(job)
    assert kinds[:2] == ["created", "started"] and kinds[-1] == "completed"
    stages = [e.data["stage"] for e in JobEvent.objects.filter(job=job, event_type="progress").order_by("id")]
    assert stages == ["resolve", "fetch", "parse", "store", "activate", "done"]
    assert max(ledger_counts(fake_pipeline).values()) == 1
    assert run_next_job().startswith("idle")


@pytest.mark.django_db(transaction=True)
def test_cancel_queued_job_it_never_runs(fake_pipeline, settings):
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"
    job = services.enqueue_ingest(name="serde", requested_by="api").job
    cancelled = services.cancel_job(job_id=str(job.pk))
    assert cancelled.status == "cancelled" and cancelled.finished_at and cancelled.cancel_requested_at
    assert run_next_job().startswith("idle")
    job.refresh_from_db()
    assert job.status == "cancelled" and job.attempts == 0 and job.started_at is None
    assert events(job) == ["created", "cancel_requested", "cancelled"]
    with pytest.raises(JobStateError, match="already finished"):
        services.cancel_job(job_id=job.pk)
    with pytest.raises(JobNotFound):
        services.cancel_job(job_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(JobNotFound, match="not a job id"):
        services.cancel_job(job_id="nope")


@pytest.mark.django_db(transaction=True)
def test_cancel_a_job_waiting_for_its_retry_does_not_say_it_never_ran(fake_pipeline):
    job = services.enqueue_ingest(name="flaky-n40-b10-d1-net", requested_by="api").job
    assert run_next_job() == "retrying"
    cancelled = services.cancel_job(job_id=job.pk)
    assert cancelled.status == "cancelled"
    assert cancelled.stage_message == "Cancelled while waiting to retry after attempt 1 (cancelled by request)"
    last = JobEvent.objects.filter(job=job).order_by("id").last()
    assert (last.event_type, last.message) == ("cancelled", "Cancelled while waiting for attempt 2")


@pytest.mark.django_db(transaction=True)
def test_transient_failure_retries_with_backoff_and_resumes_from_checkpoint(fake_pipeline):
    job = services.enqueue_ingest(name="flaky-n40-b10-d1-net", requested_by="api").job
    assert run_next_job() == "retrying"
    job.refresh_from_db()
    assert job.status == "queued" and job.attempts == 1 and job.run_after > timezone.now()
    assert job.error_type == "UpstreamUnavailable" and "503" in job.error_message
    # Written once and read while the job waits: it says when, not only "in N s" (which would soon be false).
    assert job.stage_message.startswith(f"Retrying at {job.run_after:%H:%M:%S} UTC (in ")
    assert job.error_message in job.stage_message
    assert job.checkpoint["next"] == 20  # two committed batches
    # Not due yet: a wake-up finds nothing to do.
    assert run_next_job().startswith("idle")
    wait_for(lambda: queue.due_queued_jobs().exists(), timeout=5, what="the back-off to pass")
    assert run_next_job() == "complete"
    job.refresh_from_db()
    assert job.status == "complete" and job.attempts == 2 and job.documents == 40
    assert events(job) == ["created", "started", *["progress"] * 4, "retried", "started", *["progress"] * 6,
                           "completed"]
    counts = ledger_counts(fake_pipeline)
    assert len(counts) == 40 and max(counts.values()) == 1  # the retry did not redo committed batches
    assert Document.objects.filter(release__state="active").count() == 40


@pytest.mark.django_db(transaction=True)
def test_transient_failures_give_up_after_max_attempts(fake_pipeline, settings, monkeypatch):
    settings.JOB_MAX_ATTEMPTS = 2
    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    monkeypatch.setattr(pipelines, "_attempt", lambda job_id: 1)  # flaky on every attempt
    job = services.enqueue_ingest(name="flaky-n20-b5-d1-down", requested_by="api").job
    assert run_until_idle() == ["retrying", "failed", "idle: no queued job"]
    job.refresh_from_db()
    assert job.status == "failed" and job.attempts == 2
    assert "Gave up after 2 attempts" in job.error_message and job.error_type == "UpstreamUnavailable"


@pytest.mark.django_db(transaction=True)
def test_permanent_failure_fails_at_once_with_an_actionable_message(fake_pipeline):
    missing = services.enqueue_ingest(name="missing-crate", requested_by="api").job
    boom = services.enqueue_ingest(name="boom-crate", requested_by="api").job
    assert run_until_idle() == ["failed", "failed", "idle: no queued job"]
    missing.refresh_from_db()
    boom.refresh_from_db()
    assert missing.attempts == 1 and missing.error_type == "CrateNotFound"
    assert missing.error_message == "crates.io has no crate named 'missing-crate'; check the spelling."
    assert events(missing) == ["created", "started", "progress", "failed"]
    assert boom.error_type == "ValueError" and "Unexpected error ValueError" in boom.error_message
    assert "the fake pipeline exploded" in boom.traceback and "Traceback" in boom.traceback


@pytest.mark.django_db(transaction=True)
def test_operator_retry_is_a_new_job_resuming_from_the_checkpoint(fake_pipeline, settings):
    settings.JOB_MAX_ATTEMPTS = 1
    failed = services.enqueue_ingest(name="flaky-n40-b10-d1-op", requested_by="api").job
    assert run_next_job() == "failed"
    failed.refresh_from_db()
    assert failed.checkpoint["next"] == 20
    with pytest.raises(JobStateError):
        services.retry_job(job_id=services.enqueue_ingest(name="serde", requested_by="api").job.pk,
                           requested_by="admin")
    retry = services.retry_job(job_id=failed.pk, requested_by="admin")
    assert not retry.deduplicated and retry.job.retry_of_id == failed.pk and retry.job.checkpoint == failed.checkpoint
    assert services.retry_job(job_id=failed.pk, requested_by="admin").job.pk == retry.job.pk  # deduplicated
    assert events(failed)[-1] == "retried"
    services.cancel_job(job_id=CrateJob.objects.get(normalized_name="serde").pk)
    # The retry job's attempt 1 counts as a first attempt of the fake: make it succeed.
    CrateJob.objects.filter(pk=retry.job.pk).update(attempts=1)
    assert run_next_job() == "complete"
    counts = ledger_counts(fake_pipeline)
    assert len(counts) == 40 and max(counts.values()) == 1


@pytest.mark.django_db(transaction=True)
def test_slots_cap_running_jobs_and_a_token_waits_then_gives_up(fake_pipeline, settings):
    settings.MAX_CONCURRENT_JOBS = 2
    settings.JOB_TIMEOUT = 4  # the wait budget is a quarter of it
    settings.JOB_WAIT_SLOT_SECONDS = 0.1
    job = services.enqueue_ingest(name="job-n10-wait", requested_by="api").job
    holders = [LockConnection(), LockConnection()]
    try:
        assert [h.try_acquire_slot() for h in holders] == [0, 1]
        assert slots_in_use() == 2
        OrmQ.objects.all().delete()
        started = time.monotonic()
        assert run_next_job() == "no free slot; left a fresh wake-up task"
        assert 0.9 < time.monotonic() - started < 3
        assert OrmQ.objects.count() == 1
        job.refresh_from_db()
        assert job.status == "queued"
        holders[1].release_slot()
        assert run_next_job() == "complete"
    finally:
        for holder in holders:
            holder.close()
    assert slots_in_use() == 0


@pytest.mark.django_db(transaction=True)
def test_jobs_start_in_creation_order(fake_pipeline):
    names = [f"job-n5-b5-d1-order{i}" for i in range(4)]
    jobs = [services.enqueue_ingest(name=n, requested_by="api").job for n in names]
    run_until_idle()
    started = list(JobEvent.objects.filter(event_type="started").order_by("id").values_list("job_id", flat=True))
    assert started == [j.pk for j in jobs]


# --- progress object -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_progress_is_monotonic_and_cancel_is_seen_by_the_reporter(settings):
    settings.JOB_HEARTBEAT_STALE_SECONDS = 2
    job = services.enqueue_ingest(name="serde", requested_by="api").job
    with LockConnection() as locks:
        claimed = queue.claim_next_job(locks=locks, worker_id="test:1")
        assert claimed.pk == job.pk and job_is_locked(job.pk)
        progress = JobProgress(job=claimed, locks=locks)
        progress.start()
        try:
            progress.stage("fetch", "downloading", 10)
            progress.update(percent=40, items_found=7, http_requests=3)
            progress.update(percent=25)  # lower: ignored
            progress.stage("parse", "parsing", 15)  # lower than 40: ignored, but the stage changes
            wait_for(lambda: CrateJob.objects.get(pk=job.pk).stage == "parse", timeout=3, what="stage flush")
            row = CrateJob.objects.get(pk=job.pk)
            assert (row.progress, row.items_found, row.http_requests) == (40, 7, 3)
            progress.check_cancelled()  # not cancelled yet
            services.cancel_job(job_id=job.pk)
            asked = time.monotonic()
            wait_for(progress._cancelled.is_set, timeout=2, interval=0.01, what="cancel flag")
            assert time.monotonic() - asked < 0.5
            with pytest.raises(Exception, match="cancelled"):
                progress.check_cancelled()
        finally:
            progress.stop()
    assert not job_is_locked(job.pk)  # closing the lock session released it
    assert [e.message.split(":")[0] for e in JobEvent.objects.filter(job=job, event_type="progress")] == [
        "fetch", "parse"]


@pytest.mark.django_db(transaction=True)
def test_a_flush_never_queues_behind_a_transaction_holding_the_job_row():
    """The pipeline's batch transactions hold the job row; a flush gives up after 500 ms and keeps its events."""
    import psycopg
    from django.db import DatabaseError

    from tests.jobs_helpers import test_database_url

    job = services.enqueue_ingest(name="serde", requested_by="api").job
    with LockConnection() as locks:
        claimed = queue.claim_next_job(locks=locks, worker_id="test:1")
        progress = JobProgress(job=claimed, locks=locks)
        progress.stage("fetch", "downloading", 10)
        outcome = {}

        def flush() -> None:  # the reporter's own thread and connection, as in a worker
            started = time.monotonic()
            try:
                progress._flush()
                outcome["ok"] = True
            except DatabaseError as exc:
                outcome["error"] = exc
            finally:
                outcome["seconds"] = time.monotonic() - started
                connection.close()

        with psycopg.connect(test_database_url()) as holder:  # a batch transaction holding the row
            holder.execute("SELECT 1 FROM crate_jobs WHERE id = %s FOR UPDATE", [job.pk])
            thread = threading.Thread(target=flush)
            thread.start()
            thread.join(5)
            assert "error" in outcome and 0.4 < outcome["seconds"] < 2, outcome
        assert not JobEvent.objects.filter(job=job, event_type="progress").exists()
        thread = threading.Thread(target=flush)
        thread.start()
        thread.join(5)
    assert outcome.get("ok") and CrateJob.objects.get(pk=job.pk).stage == "fetch"
    assert list(JobEvent.objects.filter(job=job, event_type="progress").values_list("message", flat=True)) == [
        "fetch: downloading"]


# --- recovery -------------------------------------------------------------------------


def _running_job(name: str, *, attempts: int = 1, silent: float = 60) -> CrateJob:
    stale = timezone.now() - timedelta(seconds=silent)
    return CrateJob.objects.create(crate_name=name, normalized_name=name, status="running", attempts=attempts,
                                   started_at=stale, heartbeat_at=stale, worker_id="gone:1")


@pytest.mark.django_db(transaction=True)
def test_sweeper_requeues_only_jobs_whose_worker_is_gone(settings):
    settings.JOB_HEARTBEAT_STALE_SECONDS = 2
    settings.JOB_MAX_ATTEMPTS = 3
    dead = _running_job("dead")
    alive_but_slow = _running_job("slow")
    _running_job("fresh", silent=0)
    exhausted = _running_job("exhausted", attempts=3)
    stopping = _running_job("stopping")
    CrateJob.objects.filter(pk=stopping.pk).update(cancel_requested_at=timezone.now())
    with LockConnection() as holder:
        assert holder.try_lock_job(alive_but_slow.pk)
        result = recovery.sweep()
    assert set(result["recovered"]) == {str(dead.pk), str(exhausted.pk), str(stopping.pk)}
    status = dict(CrateJob.objects.values_list("normalized_name", "status"))
    assert status == {"dead": "queued", "slow": "running", "fresh": "running", "exhausted": "failed",
                      "stopping": "cancelled"}
    assert events(dead) == ["recovered"]
    assert "stopped unexpectedly 3 times" in CrateJob.objects.get(pk=exhausted.pk).error_message
    assert OrmQ.objects.count() >= 1  # the requeued job got a wake-up task


@pytest.mark.django_db(transaction=True)
def test_sweeper_wakes_due_queued_jobs_that_have_no_wake_up_task(settings):
    settings.JOB_HEARTBEAT_STALE_SECONDS = 2
    job = services.enqueue_ingest(name="serde", requested_by="api").job
    OrmQ.objects.all().delete()  # the token was lost with a killed cluster
    CrateJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(seconds=30))
    assert recovery.sweep()["woken"] == 1
    assert recovery.sweep()["woken"] == 0  # one waiting task is enough
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_zombie_attempt_cannot_commit_after_its_job_was_recovered(fake_pipeline):
    from jobs.runner import JobLost, checkpoint_saver

    job = services.enqueue_ingest(name="serde", requested_by="api").job
    with LockConnection() as locks:
        claimed = queue.claim_next_job(locks=locks, worker_id="test:1")
    save = checkpoint_saver(job=claimed)
    save({"next": 1})
    CrateJob.objects.filter(pk=job.pk).update(status="queued")  # recovered by a sweeper meanwhile
    with pytest.raises(JobLost):
        save({"next": 2})
    assert CrateJob.objects.get(pk=job.pk).checkpoint == {"next": 1}


# --- removal ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_removal_job_cancels_queued_ingest_and_deletes_the_crate(fake_pipeline):
    services.enqueue_ingest(name="job-n20-b10-d1-gone", requested_by="api")
    assert run_next_job() == "complete"
    with pytest.raises(CrateNotFound):
        services.enqueue_removal(name="never-added", requested_by="api")
    pending = services.enqueue_ingest(name="job-n20-b10-d1-gone", force=True, requested_by="api").job
    soft = services.enqueue_removal(name="JOB_n20_b10_d1_gone", soft=True, requested_by="admin")
    pending.refresh_from_db()
    assert pending.status == "cancelled" and soft.job.requested_version == "*"
    assert soft.job.crate_name == "job-n20-b10-d1-gone"
    assert run_next_job() == "complete"
    crate = Crate.objects.get()
    assert crate.deleted_at is not None and Document.objects.count() == 20
    assert restore_crate(name="job-n20-b10-d1-gone").deleted_at is None
    hard = services.enqueue_removal(name="job-n20-b10-d1-gone", requested_by="admin").job
    assert run_next_job() == "complete"
    hard.refresh_from_db()
    assert hard.result["documents"] == 20 and hard.documents == 20
    assert not Crate.objects.exists() and not Document.objects.exists()
    assert "Removed job-n20-b10-d1-gone (all versions)" in hard.stage_message


@pytest.mark.django_db(transaction=True)
def test_a_running_ingest_stopped_by_a_removal_does_not_promise_the_previous_release(fake_pipeline):
    services.enqueue_ingest(name="job-n20-b10-d1-gone", requested_by="api")
    assert run_next_job() == "complete"
    services.enqueue_ingest(name="job-n20-b10-d1-gone", force=True, requested_by="api")
    with LockConnection() as locks:
        running = queue.claim_next_job(locks=locks, worker_id="test:1")
    removal = services.enqueue_removal(name="job-n20-b10-d1-gone", requested_by="api").job
    assert queue.finish_cancelled(job=running)
    running.refresh_from_db()
    assert running.status == "cancelled"
    assert running.stage_message.startswith(f"Cancelled for the removal of job-n20-b10-d1-gone (job {removal.pk})")
    assert "previous release stays" not in running.stage_message


@pytest.mark.django_db(transaction=True)
def test_ingest_queued_after_a_removal_waits_for_it(fake_pipeline):
    services.enqueue_ingest(name="job-n10-b10-d1-order", requested_by="api")
    run_next_job()
    removal = services.enqueue_removal(name="job-n10-b10-d1-order", requested_by="api").job
    again = services.enqueue_ingest(name="job-n10-b10-d1-order", requested_by="api").job
    assert list(queue.due_queued_jobs().values_list("pk", flat=True)) == [removal.pk]
    assert run_until_idle() == ["complete", "complete", "idle: no queued job"]
    again.refresh_from_db()
    assert again.status == "complete" and Document.objects.count() == 10


# --- retention ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_retention_deletes_only_old_finished_jobs_and_their_events(settings):
    settings.JOB_RETENTION_DAYS = 7
    now = timezone.now()
    old, recent = now - timedelta(days=8), now - timedelta(days=6)

    def job(name, status, finished):
        j = CrateJob.objects.create(crate_name=name, normalized_name=name, status=status, finished_at=finished)
        JobEvent.objects.create(job=j, event_type="created")
        return j

    doomed = [job("a", "complete", old), job("b", "failed", old), job("c", "cancelled", old)]
    kept = [job("d", "complete", recent), job("e", "queued", None), job("f", "running", None)]
    CrateJob.objects.filter(pk__in=[j.pk for j in kept[1:]]).update(created_at=now - timedelta(days=30))
    retry = CrateJob.objects.create(crate_name="b", normalized_name="b", retry_of=doomed[1])
    WorkerHeartbeat.objects.create(worker_id="old:1", hostname="old", pid=1, started_at=old, last_seen=old)
    assert retention.purge_old_jobs() == 3
    assert set(CrateJob.objects.values_list("pk", flat=True)) == {j.pk for j in kept} | {retry.pk}
    assert JobEvent.objects.count() == 3
    assert CrateJob.objects.get(pk=retry.pk).retry_of_id is None
    assert not WorkerHeartbeat.objects.exists()
    assert retention.purge_old_jobs(days=0) == 1  # the recent complete one


@pytest.mark.django_db
def test_ensure_schedules_is_idempotent():
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("ensure_schedules", verbosity=0)
    call_command("ensure_schedules", verbosity=0)
    rows = {s.name: (s.func, s.schedule_type, s.minutes) for s in Schedule.objects.all()}
    assert rows == {
        "ferrodex: purge finished jobs": ("jobs.tasks.purge_old_jobs", "D", None),
        "ferrodex: recover stale jobs": ("jobs.tasks.sweep", "I", 1),
        "ferrodex: index staged embeddings": ("jobs.tasks.index_staged_chunks", "I", 1),
    }


# --- selectors ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_selectors_and_the_job_serialiser():
    jobs = [services.enqueue_ingest(name=f"crate{i}", requested_by="api").job for i in range(5)]
    CrateJob.objects.filter(pk=jobs[0].pk).update(status="failed", finished_at=timezone.now(), error_message="x")
    CrateJob.objects.filter(pk=jobs[1].pk).update(status="running", started_at=timezone.now())
    for i in range(60):
        JobEvent.objects.create(job=jobs[2], event_type="progress", message=str(i))
    WorkerHeartbeat.objects.create(worker_id="h:1", hostname="h", pid=1, started_at=timezone.now(),
                                   last_seen=timezone.now(), current_job_id=jobs[1].pk)
    WorkerHeartbeat.objects.create(worker_id="h:2", hostname="h", pid=2, started_at=timezone.now(),
                                   last_seen=timezone.now() - timedelta(minutes=5))

    assert selectors.get_job(job_id=str(jobs[3].pk)).pk == jobs[3].pk
    with pytest.raises(JobNotFound):
        selectors.get_job(job_id="5b2b4d70-0000-4000-8000-000000000000")
    recent = selectors.job_events(job_id=jobs[2].pk, limit=50)
    assert len(recent) == 50 and recent[-1].message == "59" and recent[0].message == "10"

    page = selectors.list_jobs(page=2, page_size=2)
    assert (page.total, page.pages, len(page.items)) == (5, 3, 2)
    assert [j["crate"] for j in page.items] == ["crate2", "crate1"]
    assert [j["crate"] for j in selectors.list_jobs(status="queued").items] == ["crate4", "crate3", "crate2"]
    assert selectors.list_jobs(crate="CRATE0").items[0]["status"] == "failed"
    with pytest.raises(InvalidInput):
        selectors.list_jobs(status="exploded")

    health = selectors.health_summary()
    assert (health["queued"], health["running"], health["failed_24h"], health["workers_alive"]) == (3, 1, 1, 1)
    assert health["workers"][0]["current_job_id"] == str(jobs[1].pk)
    assert health["oldest_queued_age_s"] >= 0

    data = selectors.job_as_dict(jobs[0], events=True)
    assert data["id"] == str(jobs[0].pk) and data["status"] == "queued"  # the object as loaded
    fresh = selectors.job_as_dict(selectors.get_job(job_id=jobs[0].pk), events=True)
    assert fresh["status"] == "failed" and fresh["finished"] and fresh["error"] == {"type": "", "message": "x"}
    assert fresh["events"][0]["type"] == "created" and "traceback" not in fresh
    assert set(fresh["counters"]) == {"items_found", "items_processed", "documents", "chunks", "embeddings",
                                      "http_requests"}


@pytest.mark.django_db(transaction=True)
def test_a_removal_stops_an_ingest_queued_while_the_removal_was_being_queued(fake_pipeline, monkeypatch):
    """The API's 'add' can land between a removal's cancel step and its own row: that ingest is older than the
    removal, so nothing holds it back and nothing had cancelled it. The removal stops it when it starts instead
    of waiting for a whole ingest (REMOVAL_WAIT_SECONDS, then a retry)."""
    from jobs import runner

    monkeypatch.setattr(runner, "REMOVAL_WAIT_SECONDS", 0.5)
    services.enqueue_ingest(name="job-n20-b10-d1-gone", requested_by="api")
    assert run_next_job() == "complete"
    removal = services.enqueue_removal(name="job-n20-b10-d1-gone", requested_by="api").job
    raced = services.enqueue_ingest(name="job-n20-b10-d1-gone", force=True, requested_by="api").job
    CrateJob.objects.filter(pk=raced.pk).update(created_at=removal.created_at - timedelta(milliseconds=5))
    with LockConnection() as locks:
        assert queue.claim_next_job(locks=locks, worker_id="test:1").pk == raced.pk  # a live worker runs it
        run_next_job()
        raced.refresh_from_db()
        assert raced.cancel_requested_at is not None
        assert "removal of job-n20-b10-d1-gone" in JobEvent.objects.filter(job=raced).last().message


@pytest.mark.django_db
def test_retention_discards_the_building_release_a_purged_failed_job_left_behind():
    """A job that gives up after transient failures keeps its building release, so an operator retry resumes it;
    once retention purges that job nobody can, and the release's documents and chunks stayed forever."""
    old = timezone.now() - timedelta(days=30)
    crate = Crate.objects.create(name="orphaned")
    left = CrateRelease.objects.create(crate=crate, version="1.0.0", docs_source="rustdoc-json")
    resumed = CrateRelease.objects.create(crate=crate, version="1.0.1", docs_source="rustdoc-json")
    recent = CrateRelease.objects.create(crate=crate, version="1.0.2", docs_source="rustdoc-json")
    CrateRelease.objects.filter(pk__in=[left.pk, resumed.pk]).update(created_at=old)
    for release in (left, resumed):
        job = services.enqueue_ingest(name="orphaned", version=release.version, requested_by="api").job
        checkpoint = {"release_id": release.pk}
        CrateJob.objects.filter(pk=job.pk).update(status="failed", finished_at=old, checkpoint=checkpoint)
    # An operator retried the second one: its new job resumes that release.
    CrateJob.objects.create(crate_name="orphaned", normalized_name="orphaned", requested_version="1.0.1",
                            operation="ingest", checkpoint={"release_id": resumed.pk})
    assert retention.purge_old_jobs() == 2
    assert set(CrateRelease.objects.values_list("version", flat=True)) == {"1.0.1", "1.0.2"}
    assert recent.pk in set(CrateRelease.objects.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_retried_jobs_duration_covers_every_attempt_and_names_the_last(fake_pipeline, settings):
    settings.JOB_RETRY_BACKOFF_SECONDS = 1.0
    job = services.enqueue_ingest(name="flaky-n40-b10-d1-timed", requested_by="api").job
    assert run_next_job() == "retrying"
    wait_for(lambda: queue.due_queued_jobs().exists(), timeout=5, what="the back-off to pass")
    assert run_next_job() == "complete"
    job.refresh_from_db()
    first_start = JobEvent.objects.filter(job=job, event_type="started").order_by("created_at").first().created_at
    whole = (job.finished_at - first_start).total_seconds()
    last = (job.finished_at - job.started_at).total_seconds()
    assert whole >= last + 0.5  # the back-off (1 s) lies between the attempts
    for shown in (selectors.job_status(job_id=job.pk), selectors.job_as_dict(job)):
        assert shown["duration_s"] == pytest.approx(whole, abs=0.05)
        assert shown["last_attempt_duration_s"] == pytest.approx(last, abs=0.05)
