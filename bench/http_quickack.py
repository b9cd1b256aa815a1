"""Kept-alive requests to the replica with and without TCP_QUICKACK (crates/pipeline/http.py).

A server that writes a response's headers and body in two sends without TCP_NODELAY holds the body back until
the client ACKs the headers; Linux delays that ACK up to 40 ms on a kept-alive connection. This measures what
the quick-ACK costs and saves per request, with the three requests an ingest makes (index, JSON, crates.io).

    .venv/bin/python bench/http_quickack.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from bench.common import print_table, replica_server, write_results  # noqa: E402
from crates.pipeline import http  # noqa: E402

ROUNDS = 30


def _timings(base: str, *, quickack: bool) -> list[float]:
    urls = [f"{base}/index/it/oa/itoa", f"{base}/crate/itoa/1.0.1/json", f"{base}/api/v1/crates/itoa"]
    original = http._quickack
    if not quickack:
        http._quickack = lambda sock: None
    http._sessions.session = None  # a fresh session, so both runs start on a new connection
    try:
        session = http._thread_session()
        times = []
        for _ in range(ROUNDS):
            for url in urls:
                started = time.perf_counter()
                session.get(url, headers={"User-Agent": "ferrodex-bench"}).content  # noqa: B018
                times.append((time.perf_counter() - started) * 1000)
    finally:
        http._quickack = original
    return times[len(urls):]  # the first round opens the connection


def main() -> None:
    rows = []
    with replica_server() as base:
        for quickack in (True, False):
            times = sorted(_timings(base, quickack=quickack))
            rows.append({
                "quickack": "on" if quickack else "off",
                "requests": len(times),
                "median_ms": round(statistics.median(times), 2),
                "p90_ms": round(times[int(len(times) * 0.9)], 2),
            })  # fmt: skip
    print_table(rows, ["quickack", "requests", "median_ms", "p90_ms"])
    write_results("http_quickack", {"rows": rows})


if __name__ == "__main__":
    main()
