"""Which PostgreSQL backends a niced worker may renice: only those of the embedded local server."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection

from jobs import priority


def test_only_a_server_whose_socket_is_in_its_data_directory_counts_as_local(tmp_path):
    assert priority.local_postmaster_pid(socket_dir=None) is None
    assert priority.local_postmaster_pid(socket_dir="db.example.com") is None  # TCP: maybe another machine
    assert priority.local_postmaster_pid(socket_dir=str(tmp_path)) is None  # a plain socket directory
    (tmp_path / "postmaster.pid").write_text(f"4242\n{tmp_path}-other\n")
    assert priority.local_postmaster_pid(socket_dir=str(tmp_path)) is None  # its data directory is elsewhere
    (tmp_path / "postmaster.pid").write_text(f"4242\n{tmp_path}\n")
    assert priority.local_postmaster_pid(socket_dir=str(tmp_path)) == (4242 if os.name == "posix" else None)


@pytest.mark.django_db
def test_outside_a_niced_worker_nothing_is_reniced(settings, monkeypatch):
    connection.ensure_connection()
    assert priority.lower_backend_priority(connection.connection) is False  # not a worker process
    settings.JOB_WORKER_NICE = 0
    before = os.getpriority(os.PRIO_PROCESS, 0)
    assert priority.lower_worker_priority() == before and priority._backend_nice is None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads niceness from Linux /proc")
@pytest.mark.django_db
def test_a_niced_worker_renices_its_backend_only_on_the_embedded_server(monkeypatch):
    connection.ensure_connection()
    session = connection.connection
    backend = session.info.backend_pid
    monkeypatch.setattr(priority, "_backend_nice", 10)  # as lower_worker_priority leaves it, minus the renice
    if priority.local_postmaster_pid(socket_dir=session.info.host) is None:
        assert priority.lower_backend_priority(session) is False
        return
    try:
        assert priority.lower_backend_priority(session) is True
        assert os.getpriority(os.PRIO_PROCESS, backend) == 10
        # A pid that is not a child of that server is refused (here: this test process).
        impostor = SimpleNamespace(info=SimpleNamespace(host=session.info.host, backend_pid=os.getpid()))
        assert priority.lower_backend_priority(impostor) is False
    finally:
        connection.close()  # the reniced backend ends with its session
