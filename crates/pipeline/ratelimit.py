"""Per-host request rate limit shared by every worker process and machine.

The next free request slot of each upstream host lives in ``crates.models.HostRateLimit``. Taking a slot is one
short transaction (row lock, read, move the slot forward, commit); the caller then sleeps *without* holding any
lock until its slot comes. Times come from the database clock, so workers on machines whose clocks disagree
still space their requests correctly.

Call ``acquire_slot`` outside ``transaction.atomic()``. If the caller is inside one anyway, the slot is taken on a
separate connection: committing the slot must not wait for (or be rolled back with) the caller's transaction,
and the row lock must not be held until that transaction ends.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from crates.models import HostRateLimit

logger = logging.getLogger(__name__)

# Requests reach the server some milliseconds after their slot, by an amount that varies with load. Spacing
# slots 10 % wider than 1/rps leaves slack in every one-second window whatever the rps, so "at most rps
# requests in any 1 s window" holds despite that jitter.
SPACING_MARGIN = 1.10


def acquire_slot(*, host: str, rps: float) -> float:
    """Wait until this process may send one request to ``host``; return the seconds waited.

    ``rps`` <= 0 disables the limit (no database access at all).
    """
    if rps <= 0:
        return 0.0
    interval = SPACING_MARGIN / rps
    with _slot_connection() as conn:
        deadline = _reserve_slot(connection=conn, host=host.lower(), interval=interval)
    # Sleep to a deadline, not for a duration: the commit round trip must not push the request later.
    wait = deadline - time.monotonic()
    if wait > 0:
        logger.debug("rate limit: waiting %.3fs for a slot on %s", wait, host)
        time.sleep(wait)
    return max(wait, 0.0)


def defer_host(*, host: str, seconds: float) -> None:
    """Push the host's next slot at least ``seconds`` into the future (the host answered 429 Retry-After).

    Every worker then backs off, not only the one that was told to.
    """
    if seconds <= 0:
        return
    with _slot_connection() as conn:
        table = _table(conn)
        _ensure_row(conn=conn, table=table, host=host.lower())
        with conn.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET next_slot_at = GREATEST(next_slot_at, clock_timestamp() + %s) WHERE host = %s",
                [timedelta(seconds=seconds), host.lower()],
            )


@contextlib.contextmanager
def _slot_connection() -> Iterator[BaseDatabaseWrapper]:
    default = connections[DEFAULT_DB_ALIAS]
    if not default.in_atomic_block:
        yield default
        return
    # Same settings dict as the default connection, so the same database (the test database included). Opened
    # per call and closed at once: this path is rare, and a kept connection would leak into thread pools.
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        yield side
    finally:
        side.close()


def _table(conn: BaseDatabaseWrapper) -> str:
    return conn.ops.quote_name(HostRateLimit._meta.db_table)


def _ensure_row(*, conn: BaseDatabaseWrapper, table: str, host: str) -> None:
    with conn.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (host, next_slot_at) VALUES (%s, clock_timestamp()) ON CONFLICT (host) DO NOTHING",
            [host],
        )


def _reserve_slot(*, connection: BaseDatabaseWrapper, host: str, interval: float) -> float:
    """Book the next slot for ``host``; return when it starts on this process' ``time.monotonic()`` clock."""
    conn = connection
    table = _table(conn)
    conn.ensure_connection()
    _ensure_row(conn=conn, table=table, host=host)
    conn.set_autocommit(False)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"SELECT next_slot_at FROM {table} WHERE host = %s FOR UPDATE", [host])
            (next_slot,) = cursor.fetchone()
            # Read the clock only once the lock is ours: waiting for the lock takes time.
            cursor.execute("SELECT clock_timestamp()")
            (now,) = cursor.fetchone()
            local_now = time.monotonic()
            slot = max(now, next_slot)
            cursor.execute(
                f"UPDATE {table} SET next_slot_at = %s WHERE host = %s",
                [slot + timedelta(seconds=interval), host],
            )
        conn.commit()
    except BaseException:
        # A broken connection cannot roll back either; the original error is the one worth raising.
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    finally:
        conn.set_autocommit(True)
    return local_now + (slot - now).total_seconds()
