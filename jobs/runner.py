"""Runs jobs on a qcluster worker: slot, claim, pipeline, progress, heartbeat, cancel, outcome.

A django-q2 task is only a wake-up token (``jobs.tasks.run_job``). The worker
that gets one takes a concurrency slot, claims the OLDEST due queued job and
runs it, so jobs start in order whatever token woke the worker; a token that
finds nothing to do returns at once.

While a job runs, a reporter thread owns every write to the job row except the
checkpoint: it flushes progress at least every second and at once on a stage
change, beats the heartbeat, keeps the lock connection alive and polls
``cancel_requested_at`` every 0.1 s. The pipeline's own threads never block on
it, so a pipeline that holds the job row in a batch transaction (the checkpoint
is written there) cannot deadlock against progress writes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import random
import socket
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import monotonic

import psycopg
import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    router,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.module_loading import import_string

from crates.errors import Cancelled, FerrodexError
from jobs import services
from jobs.concurrency import LockConnection, heartbeat_interval
from jobs.models import CrateJob, JobEvent

logger = logging.getLogger(__name__)

COUNTERS = ("items_found", "items_processed", "documents", "chunks", "embeddings", "http_requests")
# Reporter cadence: cancel poll / wake-up tick, and the longest gap between progress writes.
TICK_SECONDS = 0.1
FLUSH_SECONDS = 1.0
# A waiting token gives up its worker after this long and leaves a fresh token behind.
MAX_SLOT_WAIT_SECONDS = 300.0
# How long a removal waits for a cancelled ingest of the same crate to stop.
REMOVAL_WAIT_SECONDS = 120.0
MAX_RETRY_DELAY_SECONDS = 900.0


class JobLost(FerrodexError):
    """This attempt no longer owns its job: the job was recovered elsewhere, or the lock session died.

    Transient, so the pipeline keeps the building release that the new owner resumes.
    """

    code = "job_lost"
    transient = True


class _IngestStillRunning(FerrodexError):
    code = "ingest_still_running"
    transient = True


def current_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- entry point --------------------------------------------------------------------


def run_next_job() -> str:
    """Wait for a free slot, claim the oldest due queued job and run it. Returns what happened."""
    from jobs.recovery import touch_worker

    worker_id = current_worker_id()
    deadline = monotonic() + min(MAX_SLOT_WAIT_SECONDS, settings.JOB_TIMEOUT / 4)
    locks: LockConnection | None = None
    outcome = "idle"
    try:
        while True:
            if not services.has_due_queued_job():
                return "idle: no queued job"
            locks = locks or _lock_session()
            if locks.try_acquire_slot() is None:
                if monotonic() > deadline:
                    services.wake_workers()
                    return "no free slot; left a fresh wake-up task"
                time.sleep(settings.JOB_WAIT_SLOT_SECONDS)
                continue
            job = services.claim_next_job(locks=locks, worker_id=worker_id)
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
    services.wake_if_unserved()
    return outcome


# --- the lock session ----------------------------------------------------------------

# In a qcluster worker the lock session and the reporter's database connection outlive
# their job: opening them per job cost two PostgreSQL backend starts (each with a cold
# catalog cache) for every job. Elsewhere (tests, management commands calling
# run_next_job) each job opens and closes its own.
_reuse_sessions = False
_idle_lock_session: LockConnection | None = None
_idle_reporter_db: BaseDatabaseWrapper | None = None
_idle_reporter_db_mutex = threading.Lock()


def reuse_worker_sessions() -> None:
    """Keep this process's lock session and reporter connection between jobs (each qcluster worker process)."""
    global _reuse_sessions
    _reuse_sessions = True


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


def _adopt_reporter_db(alias: str) -> None:
    """Make the connection the previous job's reporter left this thread's connection for ``alias``."""
    global _idle_reporter_db
    with _idle_reporter_db_mutex:
        wrapper, _idle_reporter_db = _idle_reporter_db, None
    if wrapper is not None:
        connections[alias] = wrapper


def _release_reporter_db(alias: str) -> None:
    """End of a reporter thread: in a qcluster worker keep its connection for the next job, else close it."""
    global _idle_reporter_db
    wrapper = connections[alias]
    if _reuse_sessions:
        wrapper.close_if_unusable_or_obsolete()  # broken, or older than CONN_MAX_AGE: the next job reconnects
        with _idle_reporter_db_mutex:
            if _idle_reporter_db is None:
                if not wrapper.allow_thread_sharing:
                    # Handed from one reporter thread to the next, never used by two at once.
                    wrapper.inc_thread_sharing()
                _idle_reporter_db = wrapper
                return
    wrapper.close()


def execute_job(*, job: CrateJob, locks: LockConnection) -> str:
    """Run a claimed job to its outcome: complete, failed, cancelled, or queued again for a retry."""
    progress = JobProgress(job=job, locks=locks)
    progress.start()
    try:
        result = _run_operation(job=job, progress=progress)
    except Cancelled:
        progress.stop()
        services.finish_cancelled(job=job)
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
        return _handle_failure(job=job, exc=exc, tb=tb)
    finally:
        progress.stop()
    result_data = _json_safe(result)
    counters = _final_counters(job=job, progress=progress, result=result_data)
    message = _complete_message(job=job, result=result_data, counters=counters)
    if not services.finish_complete(job=job, result=result_data, counters=counters, message=message):
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
    return run_ingest(
        name=job.crate_name,
        version=job.requested_version,
        force=bool(job.options.get("force")),
        progress=progress,
        checkpoint=dict(job.checkpoint) or None,
        save_checkpoint=checkpoint_saver(job=job),
        job_id=job.pk,
    )


def checkpoint_saver(*, job: CrateJob) -> Callable[[dict], None]:
    """Writes the checkpoint in the caller's transaction, fenced by the attempt.

    A zombie attempt (its job recovered elsewhere) gets JobLost here, which rolls
    back the batch it was about to commit.
    """

    def save_checkpoint(checkpoint: dict) -> None:
        if not services.running_job(job=job).update(checkpoint=checkpoint):
            raise JobLost(f"job {job.pk} attempt {job.attempts} no longer owns the job")

    return save_checkpoint


def _run_removal(*, job: CrateJob, progress: JobProgress) -> dict:
    from crates.services import remove_crate

    progress.stage("wait", "waiting for running ingests of this crate to stop", 0)
    services.cancel_ingests_older_than(removal=job)
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
    version = None if job.requested_version == services.ALL_VERSIONS else job.requested_version
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


def _handle_failure(*, job: CrateJob, exc: Exception, tb: str) -> str:
    transient = is_transient(exc)
    if isinstance(exc, DatabaseError):
        connection.close()  # the outcome must not go through a broken connection
    if transient and job.attempts < settings.JOB_MAX_ATTEMPTS:
        delay = retry_delay(attempt=job.attempts)
        message = _error_message(exc)
        if services.requeue_after_failure(job=job, message=message, error_type=type(exc).__name__, delay=delay):
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
    services.finish_failed(job=job, message=message, error_type=type(exc).__name__, traceback=tb)
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
    return {key: value for key, value in counters.items() if key in COUNTERS}


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


# --- progress, heartbeat and cancel --------------------------------------------------


def _percent(value: float) -> int:
    return max(0, min(100, int(value)))


class JobProgress:
    """``crates.pipeline.types.Progress`` for a job. Thread-safe; never blocks the pipeline on the database."""

    def __init__(self, *, job: CrateJob, locks: LockConnection) -> None:
        self.job = job
        self.locks = locks
        self.http_requests_base = job.http_requests  # requests of earlier attempts; the pipeline counts per attempt
        self._mutex = threading.Lock()
        self._percent = job.progress
        self._stage = job.stage
        self._message = job.stage_message
        self._counters: dict[str, int] = {}
        self._dirty = False
        self._pending_events: list[dict] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._cancelled = threading.Event()
        self._lost = threading.Event()
        self._last_poll = monotonic()
        self._last_direct_check = 0.0
        self._alias = router.db_for_write(CrateJob)
        self._thread = threading.Thread(target=self._run, name=f"ferrodex-job-{job.pk}", daemon=True)

    # Progress protocol -------------------------------------------------------------

    def stage(self, name: str, message: str, percent: float) -> None:
        with self._mutex:
            self._percent = max(self._percent, _percent(percent))
            self._message = message[:500]
            if name[:32] != self._stage:
                self._stage = name[:32]
                self._pending_events.append({
                    "type": JobEvent.Type.PROGRESS, "message": f"{name}: {message}"[:2000],
                    "data": {"stage": name, "percent": self._percent}, "at": timezone.now().isoformat(),
                })
            self._dirty = True
        self._wake.set()

    def update(self, *, percent: float | None = None, message: str | None = None, **counters: int) -> None:
        with self._mutex:
            if percent is not None:
                self._percent = max(self._percent, _percent(percent))
            if message is not None:
                self._message = message[:500]
            for key, value in counters.items():
                if key in COUNTERS and value is not None:
                    self._counters[key] = int(value)
            self._dirty = True

    def check_cancelled(self) -> None:
        if self._lost.is_set():
            raise JobLost(f"job {self.job.pk} attempt {self.job.attempts} no longer owns the job")
        if self._cancelled.is_set():
            raise Cancelled("The job was cancelled.", job_id=str(self.job.pk))
        now = monotonic()
        if now - self._last_poll > 1.0 and now - self._last_direct_check > TICK_SECONDS:
            # The reporter is behind (a slow database); read the flag directly, a plain read never blocks.
            self._last_direct_check = now
            self._observe(CrateJob.objects.filter(pk=self.job.pk)
                          .values_list("status", "attempts", "cancel_requested_at").first())
            if self._lost.is_set() or self._cancelled.is_set():
                self.check_cancelled()

    # runner side ---------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        with self._mutex:
            return self._counters_snapshot()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the reporter after a last flush; idempotent."""
        if self._thread.is_alive():
            self._stopping.set()
            self._wake.set()
            self._thread.join(timeout=30)

    # reporter thread -----------------------------------------------------------------

    def _run(self) -> None:
        interval = heartbeat_interval()
        last_flush = last_beat = monotonic()
        _adopt_reporter_db(self._alias)
        try:
            while True:
                stopping = self._stopping.is_set()
                try:
                    self._poll()
                    now = monotonic()
                    beat = now - last_beat >= interval
                    if stopping or beat or self._pending_events or (self._dirty and now - last_flush >= FLUSH_SECONDS):
                        self._flush()
                        last_flush = now
                    if beat:
                        last_beat = now
                        self._beat()
                except DatabaseError:
                    logger.warning("job %s: progress write failed; will retry", self.job.pk, exc_info=True)
                    close_old_connections()
                if stopping:
                    return
                self._wake.wait(TICK_SECONDS)
                self._wake.clear()
        finally:
            _release_reporter_db(self._alias)

    def _observe(self, row: tuple | None) -> None:
        if row is None or row[0] != CrateJob.Status.RUNNING or row[1] != self.job.attempts:
            self._lost.set()
        elif row[2] is not None:
            self._cancelled.set()

    def _poll(self) -> None:
        with _reporter_cursor(self._alias) as cursor:
            cursor.execute(_poll_sql(), [self.job.pk])
            self._observe(cursor.fetchone())
        self._last_poll = monotonic()

    def _flush(self) -> None:
        """Progress, counters (never lowered), heartbeat and the pending stage events: ONE prepared statement."""
        with self._mutex:
            counters = self._counters_snapshot()
            params = [self._percent, self._stage, self._message, *(counters.get(key) for key in COUNTERS),
                      self.job.pk, self.job.attempts]
            events, self._pending_events = self._pending_events, []
            self._dirty = False
        try:
            with _reporter_cursor(self._alias) as cursor:
                cursor.execute(_flush_sql(), [*params, json.dumps(events)])
                updated = cursor.fetchone()[0]
            if not updated:
                self._lost.set()
        except DatabaseError:
            with self._mutex:
                self._pending_events = events + self._pending_events
                self._dirty = True
            raise

    def _counters_snapshot(self) -> dict[str, int]:
        """Counters as stored on the job (call with the mutex held)."""
        counters = dict(self._counters)
        if "http_requests" in counters:
            counters["http_requests"] += self.http_requests_base
        return counters

    def _beat(self) -> None:
        from jobs.recovery import touch_worker

        if not self.locks.ping():
            logger.error("job %s: the lock session is gone; stopping this attempt", self.job.pk)
            self._lost.set()
        touch_worker(current_job_id=self.job.pk)


# --- the reporter's SQL ------------------------------------------------------------------
# The reporter writes several times a second per running job: constant statements, not ORM
# queries compiled at every tick.


@contextmanager
def _reporter_cursor(alias: str) -> Iterator:
    """A cursor whose session never queues long behind a row lock.

    The pipeline holds the job row in its batch transactions (the checkpoint is
    written there); a flush that waited for one would stall cancel polling.
    Failing after 500 ms is fine: the next tick tries again.
    """
    with connections[alias].cursor() as cursor:
        session = cursor.connection
        if session not in _lock_timeout_sessions:
            cursor.execute("SELECT set_config('lock_timeout', '500ms', false)")
            _lock_timeout_sessions.add(session)
        yield cursor


_lock_timeout_sessions: weakref.WeakSet = weakref.WeakSet()


@functools.cache
def _poll_sql() -> str:
    return f'SELECT status, attempts, cancel_requested_at FROM "{CrateJob._meta.db_table}" WHERE id = %s'


@functools.cache
def _flush_sql() -> str:
    """Parameters: percent, stage, message, the COUNTERS (NULL: unchanged), job id, attempt, events as JSON.

    GREATEST ignores NULL, and keeps progress and counters monotonic. The events
    go in only if the attempt still owns the job, in their order (ids follow it).
    """
    counters = ", ".join(f"{name} = GREATEST({name}, %s)" for name in COUNTERS)
    return (
        f'WITH job AS (UPDATE "{CrateJob._meta.db_table}" SET progress = GREATEST(progress, %s), stage = %s, '
        f"stage_message = %s, heartbeat_at = statement_timestamp(), {counters} "
        f"WHERE id = %s AND status = '{CrateJob.Status.RUNNING}' AND attempts = %s RETURNING id), "
        f'events AS (INSERT INTO "{JobEvent._meta.db_table}" (job_id, event_type, message, data, created_at) '
        "SELECT job.id, e.item->>'type', e.item->>'message', e.item->'data', (e.item->>'at')::timestamptz "
        "FROM job, jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(item, n) ORDER BY e.n) "
        "SELECT count(*) FROM job"
    )
