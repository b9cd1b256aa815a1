"""Progress, heartbeat and cancel of a running job: the reporter thread of ``jobs.runner``.

While a job runs, a reporter thread owns every write to the job row except the
checkpoint: it flushes progress at least every second and at once on a stage
change, beats the heartbeat, keeps the lock connection alive and polls
``cancel_requested_at`` every 0.1 s. The pipeline's own threads never block on
it, so a pipeline that holds the job row in a batch transaction (the checkpoint
is written there) cannot deadlock against progress writes.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic

from django.db import DatabaseError, close_old_connections, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from crates.errors import Cancelled, FerrodexError
from crates.pipeline.types import Progress
from jobs.concurrency import LockConnection, heartbeat_interval
from jobs.models import CrateJob, JobEvent
from jobs.recovery import touch_worker

logger = logging.getLogger(__name__)

# Reporter cadence: cancel poll / wake-up tick, and the longest gap between progress writes.
TICK_SECONDS = 0.1
FLUSH_SECONDS = 1.0


class JobLost(FerrodexError):
    """This attempt no longer owns its job: the job was recovered elsewhere, or the lock session died.

    Transient, so the pipeline keeps the building release that the new owner resumes.
    """

    code = "job_lost"
    transient = True


# In a qcluster worker the reporter's database connection outlives its job (``keep_reporter_db``);
# elsewhere each job's reporter opens and closes its own.
_keep_reporter_db = False
_idle_reporter_db: BaseDatabaseWrapper | None = None
_idle_reporter_db_mutex = threading.Lock()


def keep_reporter_db() -> None:
    """Keep the reporter's connection between jobs (each qcluster worker process)."""
    global _keep_reporter_db
    _keep_reporter_db = True


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
    if _keep_reporter_db:
        wrapper.close_if_unusable_or_obsolete()  # broken, or older than CONN_MAX_AGE: the next job reconnects
        with _idle_reporter_db_mutex:
            if _idle_reporter_db is None:
                if not wrapper.allow_thread_sharing:
                    # Handed from one reporter thread to the next, never used by two at once.
                    wrapper.inc_thread_sharing()
                _idle_reporter_db = wrapper
                return
    wrapper.close()


# --- progress, heartbeat and cancel --------------------------------------------------


def _percent(value: float) -> float:
    return max(0.0, min(100.0, round(float(value), 1)))


class JobProgress:
    """``crates.pipeline.types.Progress`` for a job. Thread-safe; never blocks the pipeline on the database."""

    def __init__(
        self, *, job: CrateJob, locks: LockConnection, display: Progress | None = None, worker: bool = True
    ) -> None:
        self.job = job
        self.locks = locks
        self.display = display  # a command's progress bar, told what the job row is told
        self.worker = worker  # a qcluster worker: its heartbeat row names the job
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
        if self.display is not None:
            self.display.stage(name, message, percent)

    def update(self, *, percent: float | None = None, message: str | None = None, **counters: int) -> None:
        with self._mutex:
            if percent is not None:
                self._percent = max(self._percent, _percent(percent))
            if message is not None:
                self._message = message[:500]
            for key, value in counters.items():
                if key in CrateJob.COUNTERS and value is not None:
                    self._counters[key] = int(value)
            self._dirty = True
        if self.display is not None:
            self.display.update(percent=percent, message=message, **counters)

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
            params = [self._percent, self._stage, self._message, *(counters.get(key) for key in CrateJob.COUNTERS),
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
        if not self.locks.ping():
            logger.error("job %s: the lock session is gone; stopping this attempt", self.job.pk)
            self._lost.set()
        if self.worker:
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
    counters = ", ".join(f"{name} = GREATEST({name}, %s)" for name in CrateJob.COUNTERS)
    return (
        f'WITH job AS (UPDATE "{CrateJob._meta.db_table}" SET progress = GREATEST(progress, %s), stage = %s, '
        f"stage_message = %s, heartbeat_at = statement_timestamp(), {counters} "
        f"WHERE id = %s AND status = '{CrateJob.Status.RUNNING}' AND attempts = %s RETURNING id), "
        f'events AS (INSERT INTO "{JobEvent._meta.db_table}" (job_id, event_type, message, data, created_at) '
        "SELECT job.id, e.item->>'type', e.item->>'message', e.item->'data', (e.item->>'at')::timestamptz "
        "FROM job, jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(item, n) ORDER BY e.n) "
        "SELECT count(*) FROM job"
    )
