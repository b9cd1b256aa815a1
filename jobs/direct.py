"""The request path's two hottest statements (enqueue, status poll), sent straight through libpq.

A web process serves many status polls and enqueues at once from its threads, and
every microsecond a thread holds the interpreter lock is one the other threads wait.
Through a Django cursor, psycopg runs its query machinery, the socket I/O and the
result conversion with the lock held (~0.15 ms of a status poll, ~0.2 ms of an
enqueue). Here the whole round trip is one blocking libpq call (``PQexecPrepared``),
which psycopg runs with the lock released; only the parameter dumping and the row
loading (psycopg's own C transformer) hold it.

It is the same prepared SQL, values and rows as ``jobs.services.prepared_cursor``,
which stays the path inside a transaction and whenever something watches the
connection (query logging under DEBUG or a test's query counter, execute wrappers):
those need the Django cursor.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

from django.db import connections
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

_STATE = "_ferrodex_direct_state"
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


class _Session:
    """What the direct path keeps per psycopg connection: its transformer and the statements it prepared."""

    __slots__ = ("connection", "prepared", "transformer")

    def __init__(self, connection) -> None:
        self.connection = connection
        self.transformer = Transformer(connection)
        self.prepared: set[bytes] = set()


def fetch_all(*, using: str, sql: str, params: Sequence) -> list[tuple]:
    """The rows of ``sql`` (``%s`` placeholders), run as a prepared statement on ``using``'s connection."""
    db = connections[using]
    session = _direct_session(db)
    if session is None:
        from jobs.services import prepared_cursor  # jobs.services sends its enqueue through here

        with prepared_cursor(using=using) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description is not None else []
    with db.wrap_database_errors:
        return _run(session, sql=sql, params=params)


def _direct_session(db) -> _Session | None:
    if db.queries_logged or db.execute_wrappers:
        return None
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    connection = db.connection
    # Autocommit, between transactions only. psycopg deallocates every prepared statement of the session
    # at a rollback once it prepared one of its own, so a statement prepared here can vanish; outside a
    # transaction the direct path notices, prepares it again and retries, inside one the error would
    # abort the caller's transaction. (A transaction also needs psycopg to send its BEGIN.)
    if not connection.autocommit or connection.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return None
    state = db.__dict__.get(_STATE)
    if state is None or state.connection is not connection:
        state = db.__dict__[_STATE] = _Session(connection)
    return state


def _run(session: _Session, *, sql: str, params: Sequence) -> list[tuple]:
    pgconn = session.connection.pgconn
    name, numbered = _preparable(sql)
    transformer = session.transformer
    # Text values and no declared types: the server types each parameter from where it is used.
    values = transformer.dump_sequence(list(params), [PyFormat.TEXT] * len(params))
    for attempt in (1, 2):
        if name not in session.prepared:
            _check(session, pgconn.prepare(name, numbered))
            session.prepared.add(name)
        result = pgconn.exec_prepared(name, values)
        if attempt == 1 and _statement_lost(result):
            session.prepared.clear()  # deallocated: by psycopg at a rollback, or a pooler's DISCARD ALL
            continue
        break
    _check(session, result)
    if result.status != pq.ExecStatus.TUPLES_OK or not result.ntuples:
        return []
    transformer.set_pgresult(result)
    try:
        return transformer.load_rows(0, result.ntuples, tuple)
    finally:
        transformer.set_pgresult(None)


def _statement_lost(result) -> bool:
    return result.status == pq.ExecStatus.FATAL_ERROR and result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"


def _check(session: _Session, result) -> None:
    if result.status not in _OK:
        raise errors.error_from_result(result, encoding=session.connection.info.encoding)


@functools.lru_cache(maxsize=64)
def _preparable(sql: str) -> tuple[bytes, bytes]:
    """(statement name, the SQL with ``$1, $2, ...`` for its ``%s`` placeholders), once per SQL text.

    The SQL given here has no other ``%``, or ``%%`` for a literal one.
    """
    name = b"ferrodex_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest().encode()
    pieces = sql.replace("%%", "\0").split("%s")
    numbered = pieces[0] + "".join(f"${i}{piece}" for i, piece in enumerate(pieces[1:], start=1))
    return name, numbered.replace("\0", "%").encode()
