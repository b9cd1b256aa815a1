"""Helpers for job tests: real ``manage.py qcluster`` processes on the test database, and polling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL for the database the tests run on (the test database once pytest-django set it up)."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="") + (":" + quote(s["PASSWORD"], safe="") if s["PASSWORD"] else ":")
    host = s["HOST"] or ""
    if host.startswith("/"):  # a Unix socket directory goes in the query string
        return f"postgresql://{auth}@/{quote(s['NAME'])}?host={quote(host, safe='/')}"
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{quote(s['NAME'])}"


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class QCluster:
    """One ``python manage.py qcluster`` in its own process group, killed (the whole group) on stop."""

    def __init__(self, *, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "Q_POLL": "0.05",
            "Q_WORKERS": "2",
            "JOB_HEARTBEAT_STALE_SECONDS": "2",
            "JOB_WAIT_SLOT_SECONDS": "0.1",
            "FERRODEX_INGEST_FUNCTION": "tests.pipelines.slow_ingest",
            "EMBEDDING_PROVIDER": "hash",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None

    def start(self, *, wait: bool = True) -> QCluster:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=BASE_DIR, env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"qcluster exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return self.log().count("ready for work") >= int(self.env["Q_WORKERS"]) and "running." in self.log()

        wait_for(ready, timeout=timeout, interval=0.1, what="qcluster to start")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group of this cluster only
            self.proc.wait(timeout=10)
        if self.proc is not None:
            self._log.close()
        self.proc = None


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def worker_pid(worker_id: str) -> int:
    return int(worker_id.rsplit(":", 1)[1])


def db_session_pids() -> set[int]:
    """Backend pids of the client sessions on the test database other than this connection."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return {row[0] for row in cursor.fetchall()}
