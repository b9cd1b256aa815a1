"""The request gate in front of the job statements: a limit, arrival order, no waiting inside a transaction."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from jobs import admission, selectors, services
from jobs.admission import FairGate


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
    assert admission.request_gate().limit == 5
    settings.REQUEST_DB_CONCURRENCY = 0
    assert admission.request_gate() is None


@pytest.mark.django_db(transaction=True)
def test_enqueue_and_status_pass_through_the_gate(settings, monkeypatch):
    settings.REQUEST_DB_CONCURRENCY = 2
    gate = admission.request_gate()
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
    gate = admission.request_gate()
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
