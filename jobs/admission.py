"""Fair admission of a process's request threads to the job statements (enqueue, status poll).

A threaded web process (gunicorn's gthread workers, the ASGI server's thread pool) can send more
request threads into the database at once than the machine has cores for their backends. Each of
those threads then takes the interpreter lock in turn for its own parameters and rows, and the lock
goes to whichever thread the OS wakes first, not to the one that has waited longest: on 2 cores,
16 threads enqueueing at once left some waiting through several others' whole round trips (p95
~2.5x the median). The gate lets ``settings.REQUEST_DB_CONCURRENCY`` threads in at a time (default:
4 per core) and the others wait in arrival order, each woken only when its turn comes; the same
throughput, a tail ~20% shorter in bench/jobs.py. 0 turns it off.

Only calls outside a transaction go through the gate: inside one, the caller may hold row locks
that the threads inside the gate wait for, and waiting for their slot would close the circle.

A hand-off gate, not a ``threading.Semaphore``: a semaphore lets the thread that just released
take the slot again before the waiter it woke runs, which is exactly the unfairness to avoid.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


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
        if gate is None or any(c.in_atomic_block for c in connections.all(initialized_only=True)):
            return func(*args, **kwargs)
        with gate:
            return func(*args, **kwargs)

    return wrapper
