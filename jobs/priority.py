"""Background work yields the CPU to interactive requests.

On a small machine the web server, the MCP server and the qcluster workers share
a few cores. A qcluster worker process therefore runs at a lower CPU priority
(``JOB_WORKER_NICE``, default 10; 0 disables it): when both want the CPU, a
request gets ~10 times the share of a job, and an idle machine still gives the
job all of it.

Much of a job's CPU is spent by its PostgreSQL backends. Those are reniced too,
but only where that is certainly safe: a backend of a PostgreSQL on this machine
whose data directory is also its socket directory (the embedded server's
layout), verified to be a ``postgres`` child of that server's postmaster. A
backend serves one connection and ends with it, so no other client inherits
the lower priority. A shared or remote server is never touched.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

# Set in a qcluster worker process once it runs niced; its new database sessions follow.
_backend_nice: int | None = None


def lower_worker_priority(*, spare: set[int] = frozenset()) -> int:
    """Renice every thread of this process but ``spare`` to JOB_WORKER_NICE (never raises a priority).

    On Linux niceness belongs to each thread and new threads inherit their
    creator's, so the threads that exist already are reniced one by one. Returns the niceness.
    """
    global _backend_nice
    nice = int(settings.JOB_WORKER_NICE)
    if nice <= 0:
        return os.getpriority(os.PRIO_PROCESS, 0)
    for tid in _thread_ids():
        if tid not in spare:
            _renice(pid=tid, nice=nice)
    _backend_nice = nice if settings.JOB_WORKER_NICE_DATABASE else None
    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is not None and wrapper.vendor == "postgresql":
            lower_backend_priority(wrapper.connection)
    logger.info("worker %s runs at nice %d", os.getpid(), os.getpriority(os.PRIO_PROCESS, 0))
    return os.getpriority(os.PRIO_PROCESS, 0)


def lower_backend_priority(session) -> bool:
    """Renice the backend of a new psycopg ``session`` when this is a niced worker and it is safe; True if done."""
    if _backend_nice is None:
        return False
    info = session.info
    postmaster = local_postmaster_pid(socket_dir=info.host)
    if postmaster is None or not _is_postgres_child(pid=info.backend_pid, parent=postmaster):
        return False
    return _renice(pid=info.backend_pid, nice=_backend_nice)


def on_connection_created(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: a worker's Django connections get a niced backend too."""
    if _backend_nice is not None and connection.vendor == "postgresql":
        lower_backend_priority(connection.connection)


def local_postmaster_pid(*, socket_dir: str | None) -> int | None:
    """The postmaster pid of the server behind a Unix socket in its own data directory, else None.

    A TCP host may be another machine; a socket directory without postmaster.pid
    (/run/postgresql) belongs to a system server that is not ours to renice.
    """
    if not socket_dir or not socket_dir.startswith("/") or not sys.platform.startswith("linux"):
        return None
    try:
        lines = (Path(socket_dir) / "postmaster.pid").read_text().splitlines()
        if len(lines) < 2 or Path(lines[1]).resolve() != Path(socket_dir).resolve():
            return None
        return int(lines[0])
    except (OSError, ValueError):
        return None


def _is_postgres_child(*, pid: int, parent: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return comm == "postgres" and ppid == parent


def _thread_ids() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: niceness is per process
        return [0]


def _renice(*, pid: int, nice: int) -> bool:
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < nice:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        return True
    except OSError as exc:  # gone already, or not ours to renice
        logger.debug("could not renice %s to %d: %s", pid, nice, exc)
        return False
