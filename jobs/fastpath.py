"""The request path's two hot statements, enqueue and status poll, tuned for many threads of a web process.

bench/jobs.py measured the plain path (ORM creates + django-q2's ``async_task`` in one transaction;
``job_as_dict`` for the status) far over the targets from 16 threads on a 2-core machine (enqueue p95
<= 30 ms, status p95 <= 15 ms; figures in bench/README.md), so these stay, here and nowhere else:

* ``insert_queued_job``: the job, its ``created`` event and its django-q2 wake-up task in ONE statement,
  built by the ORM's own insert compiler once per process, the task signed as django-q2 signs it
  (tests/test_jobs_fastpath.py compares the row with what ``async_task`` writes; django-q2 is pinned);
* ``job_status_document``: the status document in ``job_as_dict``'s shape built by PostgreSQL as one JSON
  text column.

Both run straight through libpq (``PQexecPrepared``, with the interpreter lock released) outside a
transaction and when nothing watches the connection, through a Django cursor otherwise; and both pass
a fair gate that lets ``settings.REQUEST_DB_CONCURRENCY`` request threads in at a time (default 4 per
core; 0 turns it off), in arrival order: the interpreter lock otherwise goes to whichever thread the OS
wakes first, which left some waiting through several others' round trips. A hand-off gate, not a
semaphore: a semaphore lets the releasing thread take the slot again before the waiter it woke runs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.sql import Literal

from jobs.models import ALL_VERSIONS, CrateJob, JobEvent
from jobs.queue import RUN_JOB_TASK, WAKE_UP_OPTIONS, wake_workers

P = ParamSpec("P")
R = TypeVar("R")


# --- the fair gate ------------------------------------------------------------------------------------


class FairGate:
    """At most ``limit`` threads inside, admitted first come, first served; re-entrant per thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = limit
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._local = threading.local()

    def __enter__(self) -> FairGate:
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        if depth:  # already inside: a nested call must not wait for its own slot
            return self
        with self._mutex:
            if self._free and not self._waiters:
                self._free -= 1
                return self
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the thread that hands its slot over
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._local.depth -= 1
        if self._local.depth:
            return
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # the slot passes on; _free stays as it is
            else:
                self._free += 1

    @property
    def waiting(self) -> int:
        with self._mutex:
            return len(self._waiters)


_gate: FairGate | None = None
_gate_mutex = threading.Lock()


def request_gate() -> FairGate | None:
    """The process's gate for ``settings.REQUEST_DB_CONCURRENCY`` (None when that is 0)."""
    global _gate
    limit = int(settings.REQUEST_DB_CONCURRENCY)
    if limit <= 0:
        return None
    gate = _gate
    if gate is None or gate.limit != limit:
        with _gate_mutex:
            if _gate is None or _gate.limit != limit:
                _gate = FairGate(limit)
            gate = _gate
    return gate


def admitted(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` inside the request gate."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        gate = request_gate()
        # Inside a transaction the caller may hold row locks that the threads inside the gate wait for:
        # waiting for a slot would close the circle.
        if gate is None or any(c.in_atomic_block for c in connections.all(initialized_only=True)):
            return func(*args, **kwargs)
        with gate:
            return func(*args, **kwargs)

    return wrapper


# --- straight through libpq ------------------------------------------------------------------

_STATE = "_ferrodex_direct_state"
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


class _Session:
    """What the direct path keeps per psycopg connection: its transformer and the statements it prepared."""

    __slots__ = ("connection", "prepared", "transformer")

    def __init__(self, connection) -> None:
        self.connection = connection
        self.transformer = Transformer(connection)
        self.prepared: set[bytes] = set()


def _fetch_all(*, using: str, sql: str, params: Sequence) -> list[tuple]:
    """The rows of ``sql`` (``%s`` placeholders), run as a prepared statement on ``using``'s connection."""
    db = connections[using]
    session = _direct_session(db)
    if session is None:
        with db.cursor() as cursor:
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


# --- the enqueue ----------------------------------------------------------------------------------


@admitted
def insert_queued_job(*, job: dict, event: dict) -> CrateJob:
    """Write the job, its ``created`` event and its wake-up task in ONE statement; return the job.

    The request path is this one round trip and one commit: data-modifying CTEs
    whose SQL the ORM's own insert compiler builds once per process (so new
    model fields are picked up), run as a prepared statement. With django-q2's
    ORM broker on the jobs database the task row goes in the same statement, so
    workers see the task exactly when they can see the job; any other broker
    gets the task after the commit.
    """
    alias = router.db_for_write(CrateJob)
    connection = connections[alias]
    job_insert, event_insert = _row_insert(CrateJob, alias), _row_insert(JobEvent, alias)
    job_values = job_insert.values(job)
    params = job_insert.params(job_values, job, connection) + event_insert.params(event_insert.values(event), event,
                                                                                  connection)
    payload = _wake_up_payload(job_id=job["id"], alias=alias)
    if payload is not None:
        task_insert = _row_insert(_orm_queue_model(), alias)
        task = dict(zip(_TASK_KEYS, (payload[0], payload[1], job["created_at"]), strict=True))
        params += task_insert.params(task_insert.values(task), task, connection)
    # Inside a caller's transaction a savepoint keeps a dedupe conflict from breaking it;
    # in autocommit the statement is its own transaction.
    guard = transaction.atomic(using=alias) if connection.in_atomic_block else nullcontext()
    sql = _enqueue_sql(alias, with_task=payload is not None, job_keys=frozenset(job), event_keys=frozenset(event))
    with guard:
        _fetch_all(using=alias, sql=sql, params=params)
    instance = CrateJob(*job_values)
    instance._state.adding, instance._state.db = False, alias
    if payload is None:
        transaction.on_commit(lambda: wake_workers(job_id=instance.pk), using=alias, robust=True)
    return instance


@functools.cache
def _enqueue_sql(alias: str, *, with_task: bool, job_keys: frozenset, event_keys: frozenset) -> str:
    inserts = [_row_insert(CrateJob, alias).statement(job_keys), _row_insert(JobEvent, alias).statement(event_keys)]
    if with_task:
        inserts.append(_row_insert(_orm_queue_model(), alias).statement(frozenset(_TASK_KEYS)))
    return "WITH " + ", ".join(f"s{i} AS ({sql})" for i, sql in enumerate(inserts)) + " SELECT 1"


_TASK_KEYS = ("key", "payload", "lock")


class _RowInsert:
    """A one-row INSERT of every concrete column of ``model``, compiled once by the ORM's insert compiler.

    Per call only the given values are adapted; every other column gets its
    field default, adapted once (callable defaults other than dict/list, and
    auto_now fields, are evaluated per row).
    """

    _PER_ROW, _CONSTANT, _NOW = range(3)

    def __init__(self, model, alias: str) -> None:
        meta = model._meta
        connection = connections[alias]
        self.fields = tuple(f for f in meta.local_concrete_fields if f is not meta.auto_field)
        self.sql = _insert_statement(model(), alias)[0]
        self.plan = []
        for f in self.fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                self.plan.append((f, self._NOW, None, None))
            elif not f.has_default() or not callable(f.default) or f.default in (dict, list):
                self.plan.append((f, self._CONSTANT, f.get_db_prep_save(f.get_default(), connection),
                                  _passthrough_type(f, connection)))
            else:
                self.plan.append((f, self._PER_ROW, None, _passthrough_type(f, connection)))

    def values(self, given: dict) -> list:
        """Python values of the row in field order: the given ones, else the field defaults."""
        return [
            given[f.attname] if f.attname in given else timezone.now() if kind == self._NOW else f.get_default()
            for f, kind, _constant, _passthrough in self.plan
        ]

    def statement(self, given_keys: frozenset) -> str:
        """The INSERT for rows given ``given_keys``, with every other constant default written as a literal: fewer
        parameters for psycopg to adapt and send and for PostgreSQL to bind."""
        parts = self.sql.split("%s")
        if len(parts) != len(self.plan) + 1:  # pragma: no cover - the ORM's insert SQL has one %s per column
            raise RuntimeError(f"unexpected insert SQL for {self.fields[0].model.__name__}: {self.sql}")
        pieces = [parts[0]]
        for (f, kind, constant, _passthrough), part in zip(self.plan, parts[1:], strict=True):
            literal = kind == self._CONSTANT and f.attname not in given_keys
            pieces += [Literal(constant).as_string().replace("%", "%%") if literal else "%s", part]
        return "".join(pieces)

    def params(self, values: list, given: dict, connection) -> list:
        """The parameters of ``statement(given)``: values adapted for the database, constant defaults left out
        (they are literals), and values that the field would hand to psycopg unchanged not run through its
        adaptation."""
        params = []
        for (f, kind, _constant, passthrough), value in zip(self.plan, values, strict=True):
            if kind == self._CONSTANT and f.attname not in given:
                continue
            if passthrough and (value is None or (isinstance(value, passthrough) and (
                passthrough is not datetime or value.tzinfo is not None
            ))):
                params.append(value)
            else:
                params.append(f.get_db_prep_save(value, connection))
        return params


def _passthrough_type(field, connection) -> type | tuple:
    """The Python type whose values (and None) ``field.get_db_prep_save`` returns unchanged on PostgreSQL; ()
    when there is none.

    Exact field classes only: a subclass may adapt differently. Aware datetimes only: a naive one is made
    aware (with a warning) by the field. JSON fields always adapt (None is JSON null or SQL NULL by field).
    """
    from django.db import models

    if connection.vendor != "postgresql":
        return ()
    kind = type(field)
    if kind in (models.CharField, models.TextField, models.SlugField):
        return str
    if kind is models.UUIDField:
        return uuid.UUID
    if kind is models.DateTimeField and settings.USE_TZ:
        return datetime
    return ()


@functools.cache
def _row_insert(model, alias: str) -> _RowInsert:
    return _RowInsert(model, alias)


def _insert_statement(obj, alias: str) -> tuple[str, tuple]:
    meta = obj._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    ((sql, params),) = query.get_compiler(using=alias).as_sql()
    return sql, tuple(params)


def _orm_queue_model():
    from django_q.models import OrmQ

    return OrmQ


@functools.cache
def _task_signer():
    """django-q2's ``SignedPackage.dumps`` signer, built once: its per-call construction was a third of the cost."""
    from django.core.signing import TimestampSigner, b64_encode
    from django.utils.encoding import force_bytes
    from django_q.conf import Conf

    class TaskSigner(TimestampSigner):
        """Django's signature with the HMAC key derived once (``salted_hmac`` derives it at every call)."""

        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            derived = hashlib.sha256(force_bytes(self.salt + "signer") + force_bytes(self.key)).digest()
            self._mac = hmac.new(derived, digestmod=hashlib.sha256)

        def signature(self, value, key=None):
            if self.algorithm != "sha256" or (key is not None and key != self.key):
                return super().signature(value, key)
            mac = self._mac.copy()
            mac.update(force_bytes(value))
            return b64_encode(mac.digest()).decode()

    return TaskSigner(key=Conf.SECRET_KEY, salt=Conf.PREFIX)


def _wake_up_task(*, job_id: uuid.UUID) -> dict:
    """The task dict ``async_task(RUN_JOB_TASK, str(job_id), q_options=WAKE_UP_OPTIONS)`` builds, same keys in the
    same order (a test compares the two), without its per-call broker and option lookups.

    The id is the job's (one enqueue token per job, and job ids are random UUIDs like django-q2's) and the name
    says which job it was sent for, instead of a second random UUID and its humanhash words.
    """
    from django_q.conf import Conf

    task = {"id": job_id.hex, "name": f"wake-up {job_id}", "func": RUN_JOB_TASK, "args": (str(job_id),),
            **WAKE_UP_OPTIONS}
    if Conf.CACHED:
        task["cached"] = Conf.CACHED
    if Conf.ACK_FAILURES:
        task["ack_failure"] = Conf.ACK_FAILURES
    task["kwargs"] = {}
    task["started"] = timezone.now()
    return task


def _wake_up_payload(*, job_id: uuid.UUID, alias: str) -> tuple[str, str] | None:
    """(queue key, signed task) of the OrmQ row ``async_task`` would write; None when the broker is not the ORM
    on ``alias`` or django-q2 runs tasks synchronously (then ``wake_workers`` sends it after the commit)."""
    from django_q.conf import Conf
    from django_q.signals import pre_enqueue
    from django_q.signing import PickleSerializer

    if not Conf.ORM or alias != Conf.ORM or Conf.BROKER_CLASS or Conf.SYNC:
        return None
    task = _wake_up_task(job_id=job_id)
    pre_enqueue.send(sender="django_q", task=task)
    return Conf.CLUSTER_NAME, _task_signer().sign_object(task, serializer=PickleSerializer, compress=Conf.COMPRESSED)


# --- the status poll ------------------------------------------------------------------------------


@admitted
def job_status_document(*, job_id: uuid.UUID, events_limit: int) -> dict | None:
    """The job as ``jobs.selectors.job_as_dict`` renders it, with its latest events; None if there is none.

    ``max_attempts`` is None and ``duration_s`` the microseconds between start and finish (or None): what
    depends on settings or the clock is the caller's.
    """
    alias = router.db_for_read(CrateJob)
    rows = _fetch_all(using=alias, sql=_status_sql(alias, events_limit), params=[job_id])
    return json.loads(rows[0][0]) if rows else None


@functools.cache
def _status_sql(alias: str, events_limit: int) -> str:
    """The job as ``job_as_dict`` renders it plus its latest events (oldest first), as ONE JSON text column.

    Left to Python: max_attempts (a setting), the duration (``duration_s`` carries
    the microseconds between start and finish; a running job's runs on the
    clock) and ``result or None`` (Python's falsiness of a JSON value).
    """
    qn = connections[alias].ops.quote_name
    job, event = CrateJob._meta, JobEvent._meta

    def jc(name: str) -> str:
        return f"j.{qn(job.get_field(name).column)}"

    def ec(name: str) -> str:
        return f"e.{qn(event.get_field(name).column)}"

    finished = ", ".join(f"'{status}'" for status in CrateJob.FINISHED_STATUSES)
    counters = ", ".join(f"'{name}', {jc(name)}" for name in CrateJob.COUNTERS)
    times = ", ".join(f"'{name}', {_iso_sql(jc(name))}" for name in (
        "created_at", "started_at", "finished_at", "heartbeat_at", "cancel_requested_at", "run_after"))
    event_json = (f"json_build_object('type', {ec('event_type')}, 'message', {ec('message')}, 'data', {ec('data')}, "
                  f"'at', {_iso_sql(ec('created_at'))})")
    events = (
        f"(SELECT json_agg({event_json} ORDER BY {ec('created_at')}, {ec('id')}) "
        f"FROM (SELECT * FROM {qn(event.db_table)} x "
        f"WHERE x.{qn(event.get_field('job').column)} = j.{qn(job.pk.column)} "
        f"ORDER BY x.{qn(event.get_field('created_at').column)} DESC, x.{qn(event.pk.column)} DESC "
        f"LIMIT {events_limit}) e)"
    )
    return (
        "SELECT json_build_object("
        f"'id', j.{qn(job.pk.column)}, 'operation', {jc('operation')}, 'crate', {jc('crate_name')}, "
        f"'normalized_name', {jc('normalized_name')}, 'version', NULLIF({jc('requested_version')}, '{ALL_VERSIONS}'), "
        f"'resolved_version', NULLIF({jc('resolved_version')}, ''), 'status', {jc('status')}, "
        f"'finished', {jc('status')} IN ({finished}), 'progress', {jc('progress')}, 'stage', {jc('stage')}, "
        f"'stage_message', {jc('stage_message')}, 'counters', json_build_object({counters}), "
        f"'options', {jc('options')}, 'requested_by', {jc('requested_by')}, 'attempts', {jc('attempts')}, "
        f"'max_attempts', NULL, 'worker_id', NULLIF({jc('worker_id')}, ''), {times}, "
        f"'first_started_at', {_iso_sql(jc('first_started_at'))}, "
        f"'duration_s', (extract(epoch FROM {jc('finished_at')} - coalesce({jc('first_started_at')}, "
        f"{jc('started_at')})) * 1000000)::bigint, "
        f"'last_attempt_duration_s', (extract(epoch FROM {jc('finished_at')} - {jc('started_at')}) * 1000000)::bigint, "
        f"'error', CASE WHEN {jc('error_message')} <> '' "
        f"THEN json_build_object('type', {jc('error_type')}, 'message', {jc('error_message')}) END, "
        f"'result', {jc('result')}, 'retry_of', j.{qn(job.get_field('retry_of').column)}, "
        f"'events', {events})::text "
        f"FROM {qn(job.db_table)} j WHERE j.{qn(job.pk.column)} = %s"
    )


def _iso_sql(column: str) -> str:
    """A timestamptz as ``datetime.isoformat()`` renders Django's UTC datetimes: no fraction when it is zero."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second', {utc}) = {utc} "
            f"THEN '' ELSE to_char({utc}, '.US') END || '+00:00'")
