"""End to end through a real HTTP server (gunicorn) and a real worker (qcluster), both subprocesses on the
test database: add (202) -> the job completes on the worker -> search finds an item -> remove -> search
finds nothing. Documentation comes from the fake docs.rs (tests/fakes.py) serving the real ferro_fixture
rustdoc JSON."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from crates.apikeys import create_api_key
from tests.fakes import ferro_fixture_json, zstd
from tests.jobs_helpers import BASE_DIR, QCluster, wait_for
from tests.jobs_helpers import test_database_url as database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stack(fake_docsrs, tmp_path):
    """Fake docs.rs with ferro-fixture 0.3.1, one qcluster and one gunicorn; yields the API and docs.rs URLs."""
    fake_docsrs.add_crate("ferro-fixture", versions=["0.2.0", "0.3.1"], json_bytes=zstd(ferro_fixture_json()))
    env = {
        **fake_docsrs.env(),
        "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest",
        "EMBEDDING_PROVIDER": "hash",
    }
    worker = QCluster(log_path=tmp_path / "qcluster.log", env=env).start()
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    web = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "4"],
        cwd=BASE_DIR, env={**os.environ, **env, "DATABASE_URL": database_url(), "LOG_LEVEL": "WARNING"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"

    def up() -> bool:
        assert web.poll() is None, (tmp_path / "gunicorn.log").read_text()
        try:
            return requests.get(f"{base}/crates", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=60, interval=0.2, what="gunicorn")
        yield base, fake_docsrs.base_url
    finally:
        web.terminate()
        web.wait(timeout=20)
        log.close()
        worker.stop()


def wait_job(base: str, job_id: str, *, timeout: float = 120) -> dict:
    def finished():
        job = requests.get(f"{base}/jobs/{job_id}", timeout=10).json()
        return job if job["finished"] else None

    return wait_for(finished, timeout=timeout, interval=0.25, what=f"job {job_id}")


def test_add_complete_search_remove_over_http(stack):
    base, docsrs = stack
    key = create_api_key(name="e2e")[1]
    auth = {"Authorization": f"Bearer {key}"}

    assert requests.post(f"{base}/crates", json={"name": "ferro-fixture"}, timeout=10).status_code == 401

    started = time.monotonic()
    response = requests.post(f"{base}/crates", json={"name": "ferro-fixture"}, headers=auth, timeout=10)
    assert response.status_code == 202
    # 202 means "accepted", not "done": the answer must not wait for the ingest.
    assert time.monotonic() - started < 5
    job = response.json()["job"]
    assert job["status"] == "queued"

    done = wait_job(base, job["id"])
    assert done["status"] == "complete", done
    assert done["resolved_version"] == "0.3.1" and done["progress"] == 100
    assert done["counters"]["documents"] > 30
    assert {"created", "started", "completed"} <= {e["type"] for e in done["events"]}

    crates = requests.get(f"{base}/crates", timeout=10).json()["items"]
    assert [(c["name"], c["latest_version"]) for c in crates] == [("ferro-fixture", "0.3.1")]

    hits = requests.get(f"{base}/search", params={"q": "Counter with capacity"}, timeout=10).json()
    hit = next(h for h in hits["results"] if h["path"] == "ferro_fixture::Counter::with_capacity")
    # Ingested from (fake) docs.rs, so the URL is absolute and points there.
    assert hit["url"].startswith(f"{docsrs}/ferro-fixture/0.3.1/") and ".html" in hit["url"]
    item = requests.get(f"{base}/items/ferro-fixture/ferro_fixture::Counter::with_capacity", timeout=10)
    assert item.status_code == 200 and item.json()["kind"] == "method"

    removal = requests.delete(f"{base}/crates/ferro-fixture", headers=auth, timeout=10)
    assert removal.status_code == 202 and removal.json()["job"]["operation"] == "remove"
    assert wait_job(base, removal.json()["job"]["id"])["status"] == "complete"

    after = requests.get(f"{base}/search", params={"q": "Counter with capacity"}, timeout=10)
    assert after.status_code == 200 and after.json()["results"] == []
    assert requests.get(f"{base}/crates/ferro-fixture", timeout=10).status_code == 404
    health = requests.get(f"{base}/health", timeout=10).json()
    assert health["checks"]["queue"]["workers_alive"] >= 1 and health["status"] == "ok"
