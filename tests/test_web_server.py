"""The web server scripts/up runs (gunicorn with config/gunicorn.conf.py): requests too long for it still get
the API's one JSON error shape, and a query the API can take reaches Django's validation."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.jobs_helpers import BASE_DIR, wait_for
from tests.jobs_helpers import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def web(tmp_path):
    port = _free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.conf.py", "config.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2"],
        cwd=BASE_DIR, env={**os.environ, "DATABASE_URL": database_url(), "LOG_LEVEL": "WARNING",
                           "EMBEDDING_PROVIDER": "hash"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
        try:
            return requests.get(f"{base}/api/v1/health", timeout=10).status_code in (200, 503)
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=60, interval=0.2, what="gunicorn")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    error = response.json()["error"]
    assert error["code"] == code
    return error["message"]


def test_a_request_line_or_header_too_long_for_the_server_answers_in_the_json_error_shape(web):
    message = _error(requests.get(f"{web}/api/v1/search", params={"q": "x" * 10_000}, timeout=10), 414, "uri_too_long")
    assert "8190" in message
    message = _error(requests.get(f"{web}/api/v1/crates", headers={"X-Big": "y" * 70_000}, timeout=10), 431,
                     "header_too_large")  # fmt: skip
    assert "8190" in message


def test_every_query_the_api_takes_reaches_its_validation(web):
    # The longest valid query as %-encoded UTF-8 (12 bytes a character) is ~6 KB: past gunicorn's default 4094.
    longest = "\U0001f980" * 500
    response = requests.get(f"{web}/api/v1/search", params={"q": longest, "crate": "nothing-here"}, timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "crate_not_found"
    one_more = requests.get(f"{web}/api/v1/search", params={"q": longest + "x"}, timeout=10)
    assert "q" in {f["field"] for f in one_more.json()["error"]["details"]["fields"]}
    _error(one_more, 422, "validation_error")


def test_each_worker_loads_the_query_embedder_at_start_not_at_its_first_search(web):
    # The first search of a fresh worker built the embedder (numpy, a tokenizer; the local model takes seconds).
    def loaded():
        embedder = requests.get(f"{web}/api/v1/health", timeout=10).json()["checks"]["embedder"]
        return embedder.get("loaded") is True

    wait_for(loaded, timeout=30, interval=0.2, what="the worker to load its query embedder without a search")
