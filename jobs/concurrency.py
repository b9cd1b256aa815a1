"""Cross-process coordination with PostgreSQL advisory locks.

A running job holds, on a dedicated connection of its own (autocommit, outside
Django's connection handling):

- one of ``MAX_CONCURRENT_JOBS`` *slot* locks, which caps the jobs running at
  once across every worker process and machine, and
- a *job* lock, so two workers can never run the same job.

Session advisory locks vanish with the session, so a worker that dies
(kill -9, lost machine) frees its slot and its job without anybody cleaning
up. The session also carries ``idle_session_timeout``: the runner pings the
connection every heartbeat, so a worker that freezes or loses the network
loses its locks after ``JOB_HEARTBEAT_STALE_SECONDS`` and its job can be
recovered. A job whose lock is free is therefore not being run by anybody.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid

import psycopg
from django.conf import settings
from django.db import connection, transaction

from jobs.priority import lower_backend_priority

logger = logging.getLogger(__name__)

# First key of the two-int advisory locks that are concurrency slots ("FDXS").
SLOT_NAMESPACE = 0x46445853
# Session settings of the lock connection; the TCP keepalives catch a lost machine on TCP connections.
_SESSION_SETTINGS = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "application_name": "ferrodex-job-locks",
}


def job_lock_key(job_id: uuid.UUID | str) -> int:
    """A signed 64-bit advisory lock key for a job (bigint form; never collides with the slot keys)."""
    digest = hashlib.blake2b(uuid.UUID(str(job_id)).bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def heartbeat_interval() -> float:
    """Seconds between heartbeats (and lock pings): at least four per staleness window, at most 2 s apart."""
    return max(0.5, min(2.0, settings.JOB_HEARTBEAT_STALE_SECONDS / 4))


MIN_IDLE_SESSION_MS = 15_000


class LockConnection:
    """A dedicated autocommit psycopg connection that holds a job's slot and job locks."""

    def __init__(self) -> None:
        params = connection.get_connection_params()
        for key in ("cursor_factory", "context"):
            params.pop(key, None)
        options = " ".join(
            [params.pop("options", ""), *(f"-c {k}={v}" for k, v in self._session_settings().items())]
        ).strip()
        self.conn = psycopg.connect(**params, autocommit=True, options=options)
        lower_backend_priority(self.conn)
        self.slot: int | None = None
        self.job_key: int | None = None

    @staticmethod
    def _session_settings() -> dict[str, str]:
        # A floor well above the longest GIL-holding call of a live worker (json.loads
        # of a big rustdoc file, seconds under load): a busy worker must not lose its
        # locks. A dead one loses them at once, when its socket closes.
        stale_ms = int(settings.JOB_HEARTBEAT_STALE_SECONDS * 1000)
        return {**_SESSION_SETTINGS, "idle_session_timeout": str(max(stale_ms, MIN_IDLE_SESSION_MS))}

    def _scalar(self, sql: str, params: tuple = ()) -> object:
        with self.conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    def try_acquire_slot(self, *, slots: int | None = None) -> int | None:
        """Take a free slot (0..N-1) and return its number, or None when all are taken."""
        if self.slot is not None:
            return self.slot
        total = settings.MAX_CONCURRENT_JOBS if slots is None else slots
        for slot in range(max(1, total)):
            if self._scalar("SELECT pg_try_advisory_lock(%s, %s)", (SLOT_NAMESPACE, slot)):
                self.slot = slot
                return slot
        return None

    def release_slot(self) -> None:
        if self.slot is not None:
            self._scalar("SELECT pg_advisory_unlock(%s, %s)", (SLOT_NAMESPACE, self.slot))
            self.slot = None

    def try_lock_job(self, job_id: uuid.UUID | str) -> bool:
        key = job_lock_key(job_id)
        if self._scalar("SELECT pg_try_advisory_lock(%s)", (key,)):
            self.job_key = key
            return True
        return False

    def unlock_job(self) -> None:
        if self.job_key is not None:
            self._scalar("SELECT pg_advisory_unlock(%s)", (self.job_key,))
            self.job_key = None

    def ping(self) -> bool:
        """Keep the session (and its locks) alive; False when the locks are gone."""
        try:
            return self._scalar("SELECT 1") == 1
        except psycopg.Error:
            logger.warning("job lock connection lost", exc_info=True)
            return False

    def close(self) -> None:
        """Release every lock now (a closing session lets go a moment later), then close."""
        self.slot = None
        self.job_key = None
        with contextlib.suppress(psycopg.Error):
            if not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock_all()")
        with contextlib.suppress(psycopg.Error):
            self.conn.close()

    def __enter__(self) -> LockConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def job_is_locked(job_id: uuid.UUID | str) -> bool:
    """True when some session holds the job's lock, i.e. a live worker is running it.

    Uses a transaction-level try-lock on Django's connection, released at the end
    of the caller's transaction (or at once in autocommit).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", (job_lock_key(job_id),))
        return not cursor.fetchone()[0]


def slots_in_use() -> int:
    """Concurrency slots currently held, across every process (pg_locks is per cluster; filter by database)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = %s AND objsubid = 2",
            (SLOT_NAMESPACE,),
        )
        return cursor.fetchone()[0]
