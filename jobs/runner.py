"""Runs jobs on a qcluster worker: slot, claim, pipeline, outcome (progress: ``jobs.progress``).

A django-q2 task is only a wake-up token (``jobs.tasks.run_job``). The worker
that gets one takes a concurrency slot, claims the OLDEST due queued job and
runs it, so jobs start in order whatever token woke the worker; a token that
finds nothing to do returns at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from time import monotonic

import psycopg
import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
)
from django.utils.module_loading import import_string

from crates.errors import Cancelled, FerrodexError
from crates.pipeline.types import Progress
from jobs import queue
from jobs.concurrency import LockConnection
from jobs.models import ALL_VERSIONS, LOCAL_SOURCES, CrateJob
from jobs.progress import JobLost, JobProgress, keep_reporter_db
from jobs.recovery import start_worker_monitor, touch_worker

logger = logging.getLogger(__name__)

# A waiting token gives up its worker after this long and leaves a fresh token behind.
MAX_SLOT_WAIT_SECONDS = 300.0
# How long a removal waits for a cancelled ingest of the same crate to stop.
REMOVAL_WAIT_SECONDS = 120.0
MAX_RETRY_DELAY_SECONDS = 900.0


class _IngestStillRunning(FerrodexError):
    code = "ingest_still_running"
    transient = True


def current_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- entry point --------------------------------------------------------------------


def run_next_job() -> str:
    """Wait for a free slot, claim the oldest due queued job and run it. Returns what happened."""
    worker_id = current_worker_id()
    deadline = monotonic() + min(MAX_SLOT_WAIT_SECONDS, settings.JOB_TIMEOUT / 4)
    locks: LockConnection | None = None
    outcome = "idle"
    try:
        while True:
            if not queue.has_due_queued_job():
                return "idle: no queued job"
            locks = locks or _lock_session()
            if locks.try_acquire_slot() is None:
                if monotonic() > deadline:
                    queue.wake_workers()
                    return "no free slot; left a fresh wake-up task"
                time.sleep(settings.JOB_WAIT_SLOT_SECONDS)
                continue
            job = queue.claim_next_job(locks=locks, worker_id=worker_id)
            if job is None:
                return "idle: nothing claimable"
            touch_worker(current_job_id=job.pk)
            outcome = execute_job(job=job, locks=locks)
            break
    finally:
        if locks is not None:
            _end_lock_session(locks)
    touch_worker(current_job_id=None)
    # Every queued job got its own token; this one is for jobs that lost theirs (e.g. held behind a removal).
    queue.wake_if_unserved()
    return outcome


def on_worker_spawn(sender=None, **kwargs) -> None:
    """django-q2 ``post_spawn`` receiver: runs in each new worker process."""
    from crates.pipeline.warmup import start_background_load
    from jobs.priority import lower_worker_priority

    # The monitor keeps the worker's first priority: it may restart a crashed embedded PostgreSQL, which
    # must not inherit JOB_WORKER_NICE (raising a priority back needs privileges). Its sessions are niced.
    niced = threading.Event()
    monitor = start_worker_monitor(after=niced)
    lower_worker_priority(spare={monitor} if monitor else set())  # threads started later inherit it
    niced.set()
    reuse_worker_sessions()
    start_background_load()  # the first job's embedding pass (and its cancel) need not wait for the model


# --- the lock session ----------------------------------------------------------------

# In a qcluster worker the lock session and the reporter's database connection outlive
# their job: opening them per job cost two PostgreSQL backend starts (each with a cold
# catalog cache) for every job. Elsewhere (tests, management commands calling
# run_next_job) each job opens and closes its own.
_reuse_sessions = False
_idle_lock_session: LockConnection | None = None


def reuse_worker_sessions() -> None:
    """Keep this process's lock session and reporter connection between jobs (each qcluster worker process)."""
    global _reuse_sessions
    _reuse_sessions = True
    keep_reporter_db()


def _lock_session() -> LockConnection:
    global _idle_lock_session
    locks, _idle_lock_session = _idle_lock_session, None
    if locks is not None and _lock_session_usable(locks):
        return locks
    if locks is not None:
        locks.close()
    return LockConnection()


def _lock_session_usable(locks: LockConnection) -> bool:
    """An idle session may have been ended by ``idle_session_timeout``: check with a round trip, quietly."""
    if locks.conn.closed or locks.conn.broken:
        return False
    try:
        locks.conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _end_lock_session(locks: LockConnection) -> None:
    """Release every lock of the job; keep the session for the next job in a qcluster worker."""
    global _idle_lock_session
    if not _reuse_sessions:
        locks.close()
        return
    locks.slot = locks.job_key = None
    try:
        locks.conn.execute("SELECT pg_advisory_unlock_all()")
    except psycopg.Error:
        locks.close()  # the session (and with it every lock) is gone anyway
        return
    _idle_lock_session = locks


def execute_job(
    *, job: CrateJob, locks: LockConnection, display: Progress | None = None, retry_transient: bool = True
) -> str:
    """Run a claimed job to its outcome: complete, failed, cancelled, or queued again for a retry.

    ``display`` also gets the pipeline's progress (a command's progress bar). Without ``retry_transient``
    (a foreground run, whose user is waiting) a transient error fails the job instead of requeueing it.
    """
    progress = JobProgress(job=job, locks=locks, display=display, worker=display is None)
    progress.start()
    try:
        result = _run_operation(job=job, progress=progress)
    except Cancelled:
        progress.stop()
        queue.finish_cancelled(job=job)
        logger.info("job %s cancelled", job.pk)
        return "cancelled"
    except JobLost as exc:
        progress.stop()
        logger.warning("job %s: %s; leaving it to its new owner", job.pk, exc)
        return "lost"
    except SystemExit as exc:  # django-q2's TimeoutException: the worker is about to be replaced
        progress.stop()
        _fail(job=job, exc=exc, tb=traceback.format_exc(), transient=False)
        raise
    except Exception as exc:
        tb = traceback.format_exc()
        progress.stop()
        return _handle_failure(job=job, exc=exc, tb=tb, retry=retry_transient)
    finally:
        progress.stop()
    result_data = _json_safe(result)
    counters = _final_counters(job=job, progress=progress, result=result_data)
    message = _complete_message(job=job, result=result_data, counters=counters)
    if not queue.finish_complete(job=job, result=result_data, counters=counters, message=message):
        logger.warning("job %s finished but another worker owns it now; result not recorded", job.pk)
        return "lost"
    logger.info("job %s complete: %s", job.pk, message)
    if job.operation != CrateJob.Operation.REMOVE:
        _queue_indexing(job=job)
    return "complete"


def _queue_indexing(*, job: CrateJob) -> None:
    """The ingest staged its vectors (searchable at once, by exact scan); HNSW-index them in the background."""
    from django_q.tasks import async_task

    try:
        async_task("jobs.tasks.index_staged_chunks", q_options={"save": False})
    except Exception:  # the every-minute schedule indexes them anyway
        logger.warning("job %s: could not queue the indexing of its staged embeddings", job.pk, exc_info=True)


# --- the operations -----------------------------------------------------------------


def _run_operation(*, job: CrateJob, progress: JobProgress) -> object:
    if job.operation == CrateJob.Operation.REMOVE:
        return _run_removal(job=job, progress=progress)
    return _run_ingest(job=job, progress=progress)


def _run_ingest(*, job: CrateJob, progress: JobProgress) -> object:
    run_ingest = import_string(settings.FERRODEX_INGEST_FUNCTION)
    # Local docs (``ingest_crate --json-file`` / ``--doc-dir``): the path is in the job's options.
    local = {key: Path(job.options[key]) for key in LOCAL_SOURCES if job.options.get(key)}
    return run_ingest(
        name=job.crate_name,
        version=job.requested_version,
        force=bool(job.options.get("force")),
        progress=progress,
        checkpoint=dict(job.checkpoint) or None,
        save_checkpoint=checkpoint_saver(job=job),
        job_id=job.pk,
        **local,
        # Only when asked (a lockfile's exact version): test pipelines need not take the keyword.
        **({"allow_yanked": True} if job.options.get("allow_yanked") else {}),
    )


def checkpoint_saver(*, job: CrateJob) -> Callable[[dict], None]:
    """Writes the checkpoint in the caller's transaction, fenced by the attempt.

    A zombie attempt (its job recovered elsewhere) gets JobLost here, which rolls
    back the batch it was about to commit.
    """

    def save_checkpoint(checkpoint: dict) -> None:
        if not queue.running_job(job=job).update(checkpoint=checkpoint):
            raise JobLost(f"job {job.pk} attempt {job.attempts} no longer owns the job")

    return save_checkpoint


def _run_removal(*, job: CrateJob, progress: JobProgress) -> dict:
    from crates.services import remove_crate

    progress.stage("wait", "waiting for running ingests of this crate to stop", 0)
    queue.cancel_ingests_older_than(removal=job)
    deadline = monotonic() + REMOVAL_WAIT_SECONDS
    running_ingests = CrateJob.objects.filter(
        operation=CrateJob.Operation.INGEST, normalized_name=job.normalized_name, status=CrateJob.Status.RUNNING
    )
    while running_ingests.exists():
        progress.check_cancelled()
        if monotonic() > deadline:
            raise _IngestStillRunning(
                f"An ingest of {job.crate_name} is still running after {REMOVAL_WAIT_SECONDS:.0f} s; "
                "the removal will be retried."
            )
        time.sleep(0.2)
    progress.check_cancelled()
    soft = bool(job.options.get("soft"))
    version = None if job.requested_version == ALL_VERSIONS else job.requested_version
    progress.stage("remove", f"{'hiding' if soft else 'deleting'} {job.crate_name} {version or '(all versions)'}", 10)
    summary = remove_crate(name=job.crate_name, version=version, soft=soft)
    progress.update(percent=99, documents=summary.get("documents", 0), chunks=summary.get("chunks", 0))
    return summary


# --- outcomes -----------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, FerrodexError):
        return exc.transient
    return isinstance(exc, OperationalError | InterfaceError | requests.ConnectionError | requests.Timeout)


def retry_delay(*, attempt: int) -> float:
    base = settings.JOB_RETRY_BACKOFF_SECONDS * 2 ** max(0, attempt - 1)
    return min(MAX_RETRY_DELAY_SECONDS, base) * random.uniform(0.9, 1.1)


def _handle_failure(*, job: CrateJob, exc: Exception, tb: str, retry: bool) -> str:
    transient = is_transient(exc)
    if isinstance(exc, DatabaseError):
        connection.close()  # the outcome must not go through a broken connection
    if transient and retry and job.attempts < settings.JOB_MAX_ATTEMPTS:
        delay = retry_delay(attempt=job.attempts)
        message = _error_message(exc)
        if queue.requeue_after_failure(job=job, message=message, error_type=type(exc).__name__, delay=delay):
            logger.warning("job %s attempt %d failed (%s); retrying in %.1f s", job.pk, job.attempts, message, delay)
        return "retrying"
    _fail(job=job, exc=exc, tb=tb, transient=transient)
    return "failed"


def _fail(*, job: CrateJob, exc: BaseException, tb: str, transient: bool) -> None:
    message = _error_message(exc)
    if isinstance(exc, SystemExit):
        message = (
            f"The job ran longer than JOB_TIMEOUT ({settings.JOB_TIMEOUT} s) and was stopped. "
            "Raise JOB_TIMEOUT for very large crates, then retry the job."
        )
    elif transient:
        tries = f"{job.attempts} attempt{'s' if job.attempts != 1 else ''}"
        message = f"{message} Gave up after {tries}; retry the job once the problem is fixed."
    queue.finish_failed(job=job, message=message, error_type=type(exc).__name__, traceback=tb)
    logger.error("job %s failed: %s", job.pk, message)


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, FerrodexError):
        return str(exc)
    if isinstance(exc, OperationalError | InterfaceError):
        return f"Lost the connection to the database ({str(exc).strip()[:300]})."
    if isinstance(exc, requests.RequestException):
        return f"Network error talking to an upstream server ({str(exc)[:300]})."
    return (
        f"Unexpected error {type(exc).__name__}: {str(exc)[:500]}. This is a bug or an environment problem; "
        "the traceback has the details. Retry the job once it is fixed."
    )


def _json_safe(result: object) -> dict:
    if result is None:
        return {}
    if dataclasses.is_dataclass(result):
        data = dataclasses.asdict(result)
    elif isinstance(result, dict):
        data = dict(result)
    else:
        data = dict(vars(result))
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder, default=str))


def _final_counters(*, job: CrateJob, progress: JobProgress, result: dict) -> dict:
    counters = progress.counters()
    if job.operation == CrateJob.Operation.INGEST and not result.get("up_to_date"):
        for key in ("documents", "chunks", "embeddings"):
            if isinstance(result.get(key), int):
                counters[key] = result[key]
        if isinstance(result.get("items_processed"), int):
            done = result["items_processed"] + int(result.get("items_skipped_by_checkpoint") or 0)
            counters["items_processed"] = max(done, counters.get("items_processed", 0))
    if isinstance(result.get("http_requests"), int):
        counters["http_requests"] = progress.http_requests_base + result["http_requests"]
    return {key: value for key, value in counters.items() if key in CrateJob.COUNTERS}


def _complete_message(*, job: CrateJob, result: dict, counters: dict) -> str:
    if job.operation == CrateJob.Operation.REMOVE:
        if result.get("soft"):
            return f"Hid {result.get('crate', job.crate_name)} from list and search (restore to undo)"
        last = "; it was the last version, so the crate is gone too" if result.get("crate_removed") else ""
        return (f"Removed {result.get('crate', job.crate_name)} {result.get('version') or '(all versions)'}: "
                f"{result.get('releases', 0)} releases, {result.get('documents', 0)} documents, "
                f"{result.get('chunks', 0)} chunks{last}")
    name = result.get("crate_name") or job.crate_name
    version = result.get("version") or job.requested_version
    if result.get("up_to_date") and result.get("restored"):
        return f"{name} {version} is already up to date; restored it (it was soft-deleted): listed and searchable again"
    if result.get("up_to_date"):
        return f"{name} {version} is already up to date; nothing to do (force re-ingests it)"
    return (f"Indexed {name} {version}: {counters.get('documents', 0)} documents, {counters.get('chunks', 0)} "
            f"chunks, {counters.get('embeddings', 0)} embeddings")


