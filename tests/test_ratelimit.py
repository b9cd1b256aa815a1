"""The per-host rate limit shared through PostgreSQL: within a process, across transactions, across processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from werkzeug import Response

from crates.models import HostRateLimit
from crates.pipeline import ratelimit
from crates.pipeline.http import HttpClient

REPO = Path(__file__).resolve().parent.parent


def unique_host() -> str:
    return f"{uuid.uuid4().hex[:12]}.test:443"


def test_disabled_limit_touches_no_database(fake_docsrs):
    # No django_db mark: any database access here would raise.
    assert ratelimit.acquire_slot(host="docs.rs", rps=0) == 0.0
    assert ratelimit.acquire_slot(host="docs.rs", rps=-1) == 0.0
    fake_docsrs.add_route("/ping", lambda _request: Response("pong"))
    with HttpClient(rps=0) as client:
        assert client.get(f"{fake_docsrs.base_url}/ping").text == "pong"


@pytest.mark.django_db(transaction=True)
def test_slots_are_spaced_by_one_over_rps():
    host = unique_host()
    stamps = []
    for _ in range(4):
        ratelimit.acquire_slot(host=host, rps=10)
        stamps.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # Each slot is 1/rps (+10 %) after the previous one; scheduling noise of a busy machine is allowed.
    assert all(gap >= 0.08 for gap in gaps), gaps
    assert stamps[-1] - stamps[0] >= 3 * 0.1, gaps
    assert HostRateLimit.objects.filter(host=host).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_429_pushes_back_every_worker():
    host = unique_host()
    ratelimit.defer_host(host=host, seconds=1.0)
    started = time.monotonic()
    waited = ratelimit.acquire_slot(host=host, rps=100)
    assert 0.8 <= waited <= 1.05
    assert time.monotonic() - started >= 0.8


@pytest.mark.django_db
def test_inside_an_outer_transaction_the_slot_commits_and_no_lock_is_held():
    # pytest-django runs this test inside a transaction, like a caller inside transaction.atomic().
    assert connection.in_atomic_block
    host = unique_host()
    ratelimit.acquire_slot(host=host, rps=1)
    result: dict[str, float] = {}

    def other_worker() -> None:
        try:
            result["waited"] = ratelimit.acquire_slot(host=host, rps=1)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    thread.join(timeout=10)
    # While our transaction is still open, another connection took the next slot: the first one was committed
    # (it waited for it) and the row is not locked until our transaction ends (it did not hang).
    assert not thread.is_alive(), "the rate-limit row stayed locked by the outer transaction"
    assert 0.3 <= result["waited"] <= 1.1


def database_url() -> str:
    """A libpq URL for the test database, for subprocesses."""
    conf = connection.settings_dict
    auth = ""
    if conf.get("USER") or conf.get("PASSWORD"):
        auth = f"{quote(conf.get('USER') or '', safe='')}:{quote(conf.get('PASSWORD') or '', safe='')}@"
    host, name = conf.get("HOST") or "", quote(conf["NAME"], safe="")
    if host.startswith("/"):
        return f"postgresql://{auth}/{name}?host={quote(host, safe='')}"
    port = f":{conf['PORT']}" if conf.get("PORT") else ""
    return f"postgresql://{auth}{host}{port}/{name}"


WORKER = """
import sys, time
import django
django.setup()
from crates.pipeline.http import HttpClient
url, worker, count, start_at, rps = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
client = HttpClient(rps=rps)
time.sleep(max(0.0, start_at - time.time()))
for i in range(count):
    client.get(f"{url}?worker={worker}&i={i}")
print(client.request_count)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_rate_limit_holds_across_two_processes(fake_docsrs):
    rps, per_worker = 2.0, 5
    fake_docsrs.add_route("/ping", lambda _request: Response("pong"))
    env = {
        **os.environ,
        **fake_docsrs.env(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url(),
        "PYTHONPATH": str(REPO),
        "LOG_LEVEL": "WARNING",
    }
    # Both start sending at the same moment, after Django has started in each.
    start_at = time.time() + 4.0
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, f"{fake_docsrs.base_url}/ping", str(w), str(per_worker), str(start_at), "2"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in (1, 2)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert stdout.strip() == str(per_worker)

    pings = sorted((r for r in fake_docsrs.requests if r.path == "/ping"), key=lambda r: r.at)
    assert sorted(r.query.split("&")[0] for r in pings) == ["worker=1"] * per_worker + ["worker=2"] * per_worker
    arrivals = [(round(r.at - start_at, 3), r.query) for r in pings]
    assert pings[0].at >= start_at - 0.05, arrivals
    # Never more than `rps` requests in any one-second window at the server ...
    assert fake_docsrs.max_in_window(1.0, requests=pings) <= rps, arrivals
    # ... which forces the ten requests of the two processes to share one schedule.
    assert pings[-1].at - pings[0].at >= (2 * per_worker - 1) / rps - 0.1, arrivals
