"""The request path's fast path (jobs.fastpath) agrees with the ORM and django-q2 it stands in for, and the worker's
savings.

- ``selectors.job_status``: one round trip, the exact shape of ``job_as_dict(get_job(...), events=True)``;
- ``services.enqueue_ingest``: the row the insert plan writes is the row the ORM would write, and the
  wake-up task is a real django-q2 task that does not save its (worthless) result;
- ``queue.has_due_queued_job`` / ``wake_if_unserved``: the same answer as ``due_queued_jobs()``;
- a qcluster worker keeps its lock session and its reporter connection between jobs, and recovers from a
  session the server ended.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from crates.errors import JobNotFound
from jobs import fastpath, progress, queue, runner, selectors, services
from jobs.concurrency import job_is_locked, slots_in_use
from jobs.fastpath import FairGate
from jobs.models import CrateJob, JobEvent


def status_pair(pk) -> tuple[dict, dict]:
    return selectors.job_status(job_id=pk), selectors.job_as_dict(selectors.get_job(job_id=pk), events=True)


@pytest.mark.django_db
def test_job_status_is_job_as_dict_with_events_in_one_statement(django_assert_num_queries):
    queued = services.enqueue_ingest(name="Serde-Json", version="1.0.3", force=True, requested_by="mcp").job
    failed = services.enqueue_ingest(name="tokio", requested_by="api").job
    now = datetime(2036, 3, 4, 5, 6, 7, 120000, tzinfo=UTC)  # after every event written below
    CrateJob.objects.filter(pk=failed.pk).update(
        status="failed", started_at=now - timedelta(seconds=3.456), finished_at=now, error_message="Boom; retry.",
        error_type="UpstreamUnavailable", attempts=2, worker_id="host:7", items_found=9, items_processed=4,
        documents=4, chunks=7, embeddings=7, http_requests=3, resolved_version="1.2.3", progress=40,
        stage="store", stage_message="storing", heartbeat_at=now, cancel_requested_at=now, run_after=now,
        result={"nested": {"k": [1, 2.5, None]}, "ü": "ß"}, options={"force": False, "extra": [1]},
    )
    retried = services.retry_job(job_id=failed.pk, requested_by="cli").job
    # 60 events: only the latest 50 come back, oldest first; equal timestamps are ordered by id; fractions
    # with trailing zeros and none at all render as Python renders them.
    stamps = [now, now, now.replace(microsecond=0), now + timedelta(microseconds=5)]
    for i in range(60):
        JobEvent.objects.create(job_id=failed.pk, event_type="progress", message=f"m{i}", data={"i": i})
    for event, at in zip(JobEvent.objects.filter(job_id=failed.pk).order_by("-id")[:4], stamps, strict=True):
        JobEvent.objects.filter(pk=event.pk).update(created_at=at)

    for pk in (queued.pk, failed.pk, retried.pk):
        fast, orm = status_pair(pk)
        assert fast == orm
    fast = selectors.job_status(job_id=str(failed.pk))
    assert len(fast["events"]) == 50 and fast["events"][0]["message"] == "m10"
    assert [(e["message"], e["at"]) for e in fast["events"][-4:]] == [
        ("m57", "2036-03-04T05:06:07+00:00"), ("m58", "2036-03-04T05:06:07.120000+00:00"),
        ("m59", "2036-03-04T05:06:07.120000+00:00"), ("m56", "2036-03-04T05:06:07.120005+00:00")]
    assert fast["result"] == {"nested": {"k": [1, 2.5, None]}, "ü": "ß"} and fast["duration_s"] == 3.46
    assert fast["error"] == {"type": "UpstreamUnavailable", "message": "Boom; retry."}
    assert selectors.job_status(job_id=retried.pk)["retry_of"] == str(failed.pk)
    with django_assert_num_queries(1):
        selectors.job_status(job_id=failed.pk)


@pytest.mark.django_db
def test_job_status_of_a_removal_and_of_a_running_job():
    from crates.models import Crate

    Crate.objects.create(name="anyhow")
    removal = services.enqueue_removal(name="anyhow", requested_by="admin").job
    fast, orm = status_pair(removal.pk)
    assert fast == orm and fast["version"] is None and fast["operation"] == "remove"
    running = services.enqueue_ingest(name="semver", requested_by="api").job
    CrateJob.objects.filter(pk=running.pk).update(status="running", started_at=timezone.now() - timedelta(seconds=5))
    fast, orm = status_pair(running.pk)
    # Unfinished: the durations run on the clock, so only they may differ between the two reads.
    for key in ("duration_s", "last_attempt_duration_s"):
        assert 5 <= fast.pop(key) <= orm.pop(key) + 1
    assert fast == orm


@pytest.mark.django_db
def test_job_status_of_an_unknown_or_malformed_id_is_job_not_found():
    with pytest.raises(JobNotFound, match="finished jobs are kept"):
        selectors.job_status(job_id=uuid.uuid4())
    with pytest.raises(JobNotFound, match="not a job id"):
        selectors.job_status(job_id="nope")


@pytest.mark.django_db
def test_enqueue_writes_what_the_orm_would_write_and_a_task_that_saves_no_result():
    before = timezone.now()
    result = services.enqueue_ingest(name="Serde-Json", requested_by="api")
    returned = result.job
    stored = CrateJob.objects.get(pk=returned.pk)
    reference = CrateJob(crate_name="Serde-Json", normalized_name="serde_json", requested_version="latest",
                         options={"force": False}, requested_by="api")
    for field in CrateJob._meta.concrete_fields:
        if field.attname in ("id", "created_at"):
            continue
        assert getattr(stored, field.attname) == getattr(reference, field.attname), field.name
        assert getattr(returned, field.attname) == getattr(stored, field.attname), field.name
    assert before <= stored.created_at == returned.created_at <= timezone.now()
    assert not returned._state.adding and returned.is_finished is False
    (event,) = JobEvent.objects.filter(job_id=stored.pk)
    assert (event.event_type, event.data, event.created_at) == ("created", {"requested_by": "api"}, stored.created_at)
    (row,) = OrmQ.objects.all()
    task = SignedPackage.loads(row.payload)
    assert (task["func"], task["args"], task["save"]) == ("jobs.tasks.run_job", (str(stored.pk),), False)
    assert row.key == "ferrodex" and row.lock <= timezone.now()


@pytest.mark.django_db
def test_the_insert_plan_adapts_values_as_the_fields_do():
    """Values passed to psycopg unchanged are exactly what the fields' own adaptation would give, and the
    constant defaults written into the statement are the adapted defaults, as literals."""
    from django.db import connection as conn
    from psycopg.sql import Literal

    aware, naive = timezone.now(), datetime(2030, 1, 2, 3, 4, 5)
    given = {"id": uuid.uuid4(), "crate_name": "Serde", "normalized_name": None, "options": {"force": True},
             "operation": CrateJob.Operation.INGEST, "requested_by": "api", "checkpoint": {}, "retry_of_id": None,
             "created_at": aware, "heartbeat_at": naive, "requested_version": str(uuid.uuid4())}
    plan = fastpath._row_insert(CrateJob, "default")
    values = plan.values(given)
    with pytest.warns(RuntimeWarning):  # the naive datetime still goes through the field, which warns
        fast = iter(plan.params(values, given, conn))
    with pytest.warns(RuntimeWarning):
        slow = [f.get_db_prep_save(v, conn) for f, v in zip(plan.fields, values, strict=True)]
    placeholders = plan.statement(frozenset(given)).split("VALUES (", 1)[1].rstrip(")").split(", ")
    for field, placeholder, b in zip(plan.fields, placeholders, slow, strict=True):
        if placeholder == "%s":
            a = next(fast)
            assert type(a) is type(b) and (a == b or getattr(a, "obj", a) == getattr(b, "obj", b)), field.name
        else:
            assert field.attname not in given and placeholder == Literal(b).as_string().replace("%", "%%")
    assert next(fast, None) is None


def test_the_wake_up_task_is_the_package_async_task_builds():
    """The enqueue path signs its own task dict: same keys in the same order and same values as django-q2's
    ``async_task`` (ids, name and start time aside), signed so that django-q2's own ``SignedPackage`` loads it."""
    from django_q.tasks import async_task

    class Keep:
        list_key = "ferrodex"

        def enqueue(self, package):
            self.package = package

    job_id = uuid.uuid4()
    keep = Keep()
    async_task(queue.RUN_JOB_TASK, str(job_id), broker=keep, q_options=dict(queue.WAKE_UP_OPTIONS))
    reference = SignedPackage.loads(keep.package)
    key, package = fastpath._wake_up_payload(job_id=job_id, alias="default")
    ours = SignedPackage.loads(package)
    assert key == "ferrodex" and list(ours) == list(reference)
    varying = ("id", "name", "started")
    assert {k: v for k, v in ours.items() if k not in varying} == {
        k: v for k, v in reference.items() if k not in varying}
    assert ours["id"] == job_id.hex and len(ours["id"]) == len(reference["id"])
    assert isinstance(ours["name"], str) and str(job_id) in ours["name"]
    assert abs((ours["started"] - reference["started"]).total_seconds()) < 5
    # The signer that derives its key once signs exactly as Django's.
    from django.core.signing import TimestampSigner
    from django_q.conf import Conf

    for value in ("", "abc:1Qz", package.rsplit(":", 1)[0]):
        assert fastpath._task_signer().signature(value) == TimestampSigner(
            key=Conf.SECRET_KEY, salt=Conf.PREFIX).signature(value)


@pytest.mark.django_db
def test_the_task_row_is_the_row_django_q2_async_task_writes():
    """The contract with django-q2 (pinned in pyproject.toml to the version this ran against): the OrmQ row the
    enqueue writes in its one statement is the row ``async_task`` writes for the same wake-up."""
    from django_q.tasks import async_task

    job = services.enqueue_ingest(name="serde", requested_by="api").job
    ours = OrmQ.objects.get()
    async_task(queue.RUN_JOB_TASK, str(job.pk), q_options=dict(queue.WAKE_UP_OPTIONS))
    theirs = OrmQ.objects.exclude(pk=ours.pk).get()
    assert ours.key == theirs.key and abs((ours.lock - theirs.lock).total_seconds()) < 5
    mine, reference = SignedPackage.loads(ours.payload), SignedPackage.loads(theirs.payload)
    assert list(mine) == list(reference)
    varying = ("id", "name", "started")
    assert {k: v for k, v in mine.items() if k not in varying} == {
        k: v for k, v in reference.items() if k not in varying}
    assert ours.task == mine and OrmQ.objects.count() == 2


@pytest.mark.django_db
def test_a_dedupe_conflict_inside_a_callers_transaction_leaves_it_usable():
    with transaction.atomic():
        first = services.enqueue_ingest(name="itoa", requested_by="api")
        again = services.enqueue_ingest(name="ITOA", requested_by="cli")
        assert again.deduplicated and again.job.pk == first.job.pk
        assert CrateJob.objects.count() == 1  # the transaction still works after the conflict
    assert OrmQ.objects.count() == 1 and JobEvent.objects.count() == 1


@pytest.mark.django_db
def test_due_check_and_wake_agree_with_the_orm_queryset():
    def agree() -> bool:
        fast = queue.has_due_queued_job()
        assert fast == queue.due_queued_jobs().exists()
        return fast

    assert not agree()
    from crates.models import Crate

    Crate.objects.create(name="log")
    ingest = services.enqueue_ingest(name="later", requested_by="api").job
    CrateJob.objects.filter(pk=ingest.pk).update(run_after=timezone.now() + timedelta(minutes=5))
    assert not agree()  # backing off
    removal = services.enqueue_removal(name="log", requested_by="api").job
    blocked = services.enqueue_ingest(name="log", requested_by="api").job
    CrateJob.objects.filter(pk=removal.pk).update(status="running")
    assert not agree()  # the ingest waits for the earlier removal
    CrateJob.objects.filter(pk=removal.pk).update(status="complete", finished_at=timezone.now())
    assert agree()

    # A token already waiting serves it: no second one. Without one, exactly one is sent.
    assert OrmQ.objects.count() == 3 and queue.wake_if_unserved() is False and OrmQ.objects.count() == 3
    OrmQ.objects.all().delete()
    assert queue.wake_if_unserved() is True and OrmQ.objects.count() == 1
    CrateJob.objects.filter(pk=blocked.pk).update(status="cancelled", finished_at=timezone.now())
    OrmQ.objects.all().delete()
    assert queue.wake_if_unserved() is False and not OrmQ.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_hot_statements_are_server_side_prepared_and_the_orm_queries_are_not():
    # Django opens connections with prepare_threshold=None, under which psycopg ignored prepare=True:
    # the "prepared" status poll was parsed and planned by PostgreSQL on every call.
    job = services.enqueue_ingest(name="itoa", requested_by="api").job
    for _ in range(3):
        selectors.job_status(job_id=job.pk)
    queue.has_due_queued_job()
    CrateJob.objects.filter(pk=job.pk).count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        prepared = dict(cursor.fetchall())
    assert {sql for sql in prepared if "json_agg" in sql} and {sql for sql in prepared if "crate_jobs" in sql
                                                               and "INSERT" in sql}
    (status_runs,) = [runs for sql, runs in prepared.items() if "json_agg" in sql]
    assert status_runs == 3  # one statement, prepared once, executed three times
    assert not any("COUNT(*)" in sql for sql in prepared)  # the ORM keeps Django's unprepared default


@pytest.mark.django_db(transaction=True)
def test_the_direct_libpq_path_answers_as_the_cursor_does_and_survives_deallocation():
    """Outside a transaction the status poll and the enqueue go straight through libpq."""
    job = services.enqueue_ingest(name="itoa", requested_by="api").job
    fast = selectors.job_status(job_id=job.pk)
    assert fast == selectors.job_as_dict(selectors.get_job(job_id=job.pk), events=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'ferrodex_%%'")
        assert len(cursor.fetchall()) == 2  # the status poll and the enqueue, prepared by the direct path
        # What a pooler's DISCARD ALL does, and psycopg at a rollback once it prepared statements of its own.
        cursor.execute("DEALLOCATE ALL")
    assert selectors.job_status(job_id=job.pk) == fast
    again = services.enqueue_ingest(name="ITOA", requested_by="cli")  # the dedupe index's IntegrityError
    assert again.deduplicated and again.job.pk == job.pk and CrateJob.objects.count() == 1
    with connection.execute_wrapper(lambda execute, *args: execute(*args)):  # watched: the Django cursor
        assert selectors.job_status(job_id=job.pk) == fast
    with pytest.raises(JobNotFound):
        selectors.job_status(job_id=uuid.uuid4())


@pytest.fixture
def worker_lock_sessions(monkeypatch):
    monkeypatch.setattr(runner, "_reuse_sessions", True)
    monkeypatch.setattr(progress, "_keep_reporter_db", True)
    yield
    idle, runner._idle_lock_session = runner._idle_lock_session, None
    if idle is not None:
        idle.close()  # an open session would keep the test database from being dropped
    reporter_db, progress._idle_reporter_db = progress._idle_reporter_db, None
    if reporter_db is not None:
        reporter_db.close()


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_lock_session_between_jobs_and_replaces_a_dead_one(settings, worker_lock_sessions):
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.slow_ingest"
    first = services.enqueue_ingest(name="job-n5-b5-d0-one", requested_by="cli").job
    second = services.enqueue_ingest(name="job-n5-b5-d0-two", requested_by="cli").job
    third = services.enqueue_ingest(name="job-n5-b5-d0-three", requested_by="cli").job

    assert runner.run_next_job() == "complete"
    session = runner._idle_lock_session
    backend = session.conn.info.backend_pid
    reporter_backend = progress._idle_reporter_db.connection.info.backend_pid
    assert slots_in_use() == 0 and not job_is_locked(first.pk)  # the session stays, its locks do not

    assert runner.run_next_job() == "complete"
    assert runner._idle_lock_session is session and session.conn.info.backend_pid == backend
    # The progress reporter (a new thread per job) wrote through the same connection as the first job's.
    assert progress._idle_reporter_db.connection.info.backend_pid == reporter_backend
    assert JobEvent.objects.filter(job_id=second.pk, event_type="progress").count() >= 5
    assert slots_in_use() == 0 and not job_is_locked(second.pk)

    # The server ends the idle session (idle_session_timeout, a restart): the next job opens a new one.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
    assert runner.run_next_job() == "complete"
    assert runner._idle_lock_session is not session and runner._idle_lock_session.conn.info.backend_pid != backend
    assert set(CrateJob.objects.values_list("status", flat=True)) == {"complete"}
    assert CrateJob.objects.get(pk=third.pk).attempts == 1


# --- the fair gate in front of the two statements --------------------------------------------


def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.002)


def test_a_released_slot_goes_to_the_longest_waiter_not_back_to_the_releasing_thread():
    gate = FairGate(1)
    order: list[str] = []
    gate.__enter__()
    waiters = []
    for queued, name in enumerate(("a", "b", "c"), start=1):
        def run(name=name):
            with gate:
                order.append(name)
        thread = threading.Thread(target=run)
        thread.start()
        waiters.append(thread)
        _wait_until(lambda queued=queued: gate.waiting == queued)  # queued in this order
    gate.__exit__(None, None, None)
    with gate:  # the thread that just left asks again at once: it queues behind the three
        order.append("again")
    for thread in waiters:
        thread.join()
    assert order == ["a", "b", "c", "again"]


def test_no_more_than_the_limit_are_inside_at_once():
    gate = FairGate(3)
    inside, most, mutex = 0, 0, threading.Lock()

    def run():
        nonlocal inside, most
        for _ in range(20):
            with gate:
                with mutex:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with mutex:
                    inside -= 1

    threads = [threading.Thread(target=run) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 3 and inside == 0 and gate.waiting == 0


def test_a_thread_inside_can_enter_again_without_waiting_for_a_second_slot():
    gate = FairGate(1)
    done = threading.Event()

    def nested():
        with gate, gate:
            done.set()

    thread = threading.Thread(target=nested)
    thread.start()
    thread.join(timeout=5)
    assert done.is_set()
    with gate:  # and the one slot is free again afterwards
        pass


def test_the_limit_follows_the_setting_and_zero_turns_the_gate_off(settings):
    settings.REQUEST_DB_CONCURRENCY = 5
    assert fastpath.request_gate().limit == 5
    settings.REQUEST_DB_CONCURRENCY = 0
    assert fastpath.request_gate() is None


@pytest.mark.django_db(transaction=True)
def test_enqueue_and_status_pass_through_the_gate(settings, monkeypatch):
    settings.REQUEST_DB_CONCURRENCY = 2
    gate = fastpath.request_gate()
    entered: list[str] = []
    real_enter = FairGate.__enter__

    def enter(self):
        entered.append(threading.current_thread().name)
        return real_enter(self)

    monkeypatch.setattr(FairGate, "__enter__", enter)
    result = services.enqueue_ingest(name="serde", requested_by="api")
    assert selectors.job_status(job_id=result.job.pk)["status"] == "queued"
    assert len(entered) == 2 and gate.waiting == 0


@pytest.mark.django_db(transaction=True)
def test_a_caller_inside_a_transaction_does_not_wait_for_the_gate(settings):
    settings.REQUEST_DB_CONCURRENCY = 1
    gate = fastpath.request_gate()
    holder_in, release = threading.Event(), threading.Event()

    def hold():
        with gate:
            holder_in.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holder_in.wait(5)
    try:
        with transaction.atomic():  # it may hold locks the threads inside wait for: it goes straight in
            result = services.enqueue_ingest(name="tokio", requested_by="api")
            assert connection.in_atomic_block
        assert result.job.pk
    finally:
        release.set()
        holder.join()
