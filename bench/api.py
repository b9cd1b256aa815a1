"""API latency benchmark under gunicorn: POST /crates, GET /jobs/{id}, GET /search at 1 and 16 clients.

It builds its own database (``ferrodex_bench_api`` on the embedded server, or BENCH_DATABASE_URL),
ingests documentation to search (crates from ../shared/docsrs-replica when present, else the
committed ferro_fixture rustdoc JSON), creates an API key, starts gunicorn and drives it with a
thread-per-client load generator over keep-alive connections (stdlib ``http.client``). No worker
runs, so queued jobs stay queued; each POST names a new crate so none is deduplicated.

    .venv/bin/python bench/api.py [--requests 400] [--clients 1,16] [--workers 2] [--threads 4]
                                  [--endpoints post,job,search] [--embedding-provider local|hash] [--skip-ingest]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPLICA_ROOT,
    ROOT,
    bench_database_url,
    free_port,
    print_table,
    replica_crates,
    replica_env,
    replica_server,
    run_command,
    write_results,
)

FIXTURE_JSON = ROOT / "tests" / "fixtures" / "rustdoc" / "ferro_fixture.json.zst"
TARGETS_MS = {("POST /crates", 1): 25.0, ("GET /jobs/{id}", 1): 10.0}
WORDS_A = ["parse", "serialize", "read", "write", "lock", "spawn", "convert", "format", "compare", "iterate"]
WORDS_B = ["a string", "json value", "bytes", "error", "mutex", "task", "number", "map", "stream", "struct"]
WORDS_C = ["", "safely", "asynchronously", "with options", "into a type", "from a reader"]


def prepare(env: dict[str, str], crates: list[str]) -> list[str]:
    """Migrate the bench database and ingest what the search requests will hit; return crate names."""
    py = sys.executable
    run_command([py, "manage.py", "migrate", "-v0"], env)
    if crates and REPLICA_ROOT.exists():
        with replica_server() as base:
            ingest_env = {**env, **replica_env(base)}
            for name in crates:
                print(f"  ingesting {name} from the docs.rs replica", file=sys.stderr)
                run_command([py, "manage.py", "ingest_crate", name], ingest_env)
        return crates
    print("  ingesting ferro_fixture from tests/fixtures", file=sys.stderr)
    run_command([py, "manage.py", "ingest_crate", "ferro_fixture", "--json-file", str(FIXTURE_JSON)], env)
    return ["ferro_fixture"]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *, port: int, workers: int, threads: int):
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c", "config/gunicorn.conf.py", "config.wsgi:application",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--log-level", "warning",
        "--backlog", "2048",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/crates", timeout=2).read()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Endpoint:
    """Makes the requests of one endpoint; thread-safe counters give every request its own input."""

    def __init__(self, name: str, expected: int) -> None:
        self.name = name
        self.expected = expected
        self._counter = itertools.count()

    def next_index(self) -> int:
        return next(self._counter)

    def request(self, conn: http.client.HTTPConnection, i: int) -> tuple[int, bytes]:
        raise NotImplementedError


class PostCrates(Endpoint):
    def __init__(self, key: str, run_id: str) -> None:
        super().__init__("POST /crates", 202)
        self.key = key
        self.run_id = run_id
        self.job_ids: list[str] = []
        self._lock = threading.Lock()

    def request(self, conn, i):
        body = json.dumps({"name": f"bench_{self.run_id}_{i}"})
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        conn.request("POST", "/api/v1/crates", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status == 202:
            with self._lock:
                self.job_ids.append(json.loads(data)["job"]["id"])
        return resp.status, data


class GetJob(Endpoint):
    def __init__(self, job_ids: list[str]) -> None:
        super().__init__("GET /jobs/{id}", 200)
        self.job_ids = job_ids

    def request(self, conn, i):
        conn.request("GET", f"/api/v1/jobs/{self.job_ids[i % len(self.job_ids)]}")
        resp = conn.getresponse()
        return resp.status, resp.read()


class Search(Endpoint):
    def __init__(self, crates: list[str]) -> None:
        super().__init__("GET /search", 200)
        # Distinct queries, so every request pays for its query embedding (no per-process cache hit).
        self.queries = [" ".join(filter(None, q)) for q in itertools.product(WORDS_A, WORDS_B, WORDS_C)]
        random.Random(7).shuffle(self.queries)
        self.crates = crates
        self.offset = 0

    def request(self, conn, i):
        from urllib.parse import urlencode

        query = self.queries[(self.offset + i) % len(self.queries)]
        params = {"q": query, "limit": 10}
        if i % 2:
            params["crate"] = self.crates[i % len(self.crates)]
        conn.request("GET", "/api/v1/search?" + urlencode(params))
        resp = conn.getresponse()
        return resp.status, resp.read()


def drive(endpoint: Endpoint, *, port: int, clients: int, total: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        barrier.wait()
        while True:
            i = endpoint.next_index()
            if i >= total:
                break
            start = time.perf_counter()
            try:
                status, body = endpoint.request(conn, i)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            mine.append((time.perf_counter() - start) * 1000)
            if status != endpoint.expected:
                with lock:
                    errors.append(f"HTTP {status}: {body[:200]!r}")
        conn.close()
        with lock:
            latencies.extend(mine)

    endpoint._counter = itertools.count()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")

    return {
        "endpoint": endpoint.name,
        "clients": clients,
        "requests": total,
        "errors": len(errors),
        "error_samples": errors[:5],
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_ms": statistics.fmean(ordered) if ordered else float("nan"),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "req_per_s": len(ordered) / elapsed if elapsed else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per endpoint and client count")
    parser.add_argument("--clients", default="1,16")
    # As scripts/up runs it: one process per core (search embeds queries on the CPU), threads for I/O waits.
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (gthread when > 1)")
    parser.add_argument("--endpoints", default="post,job,search", help="any of post,job,search")
    parser.add_argument("--embedding-provider", default=os.environ.get("EMBEDDING_PROVIDER", "local"))
    parser.add_argument("--crates", default="serde_json,tokio", help="replica crates to ingest for search")
    parser.add_argument("--db-name", default="ferrodex_bench_api")
    parser.add_argument("--skip-ingest", action="store_true", help="reuse what the bench database holds")
    args = parser.parse_args()

    db = bench_database_url(args.db_name)
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "HF_HUB_OFFLINE": "1",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "0",
        "EMBEDDING_PROVIDER": args.embedding_provider,
    }
    wanted = [c for c in args.crates.split(",") if c]
    if REPLICA_ROOT.exists():
        known = {c["name"] for c in replica_crates()}
        wanted = [c for c in wanted if c in known]
    crates = wanted or ["ferro_fixture"]
    if not args.skip_ingest:
        crates = prepare(env, wanted)
    key = run_command([sys.executable, "manage.py", "create_api_key", "bench", "-q"], env).strip()

    port = free_port()
    run_id = f"{int(time.time())}"
    # The machine may be shared: record how busy it was, the figures depend on it.
    load_before = os.getloadavg()
    rows = []
    with gunicorn(env, port=port, workers=args.workers, threads=args.threads):
        search = Search(crates)
        post = PostCrates(key, run_id)
        # Warm-up: every worker loads the embedding model and opens its database connection.
        drive(search, port=port, clients=min(16, args.workers * 3), total=args.workers * 6)
        search.offset = args.workers * 6
        drive(post, port=port, clients=2, total=20)
        for clients in [int(c) for c in args.clients.split(",")]:
            post.run_id = f"{run_id}c{clients}"
            chosen = {"post": post, "job": GetJob(post.job_ids), "search": search}
            for endpoint in [chosen[name] for name in args.endpoints.split(",")]:
                row = drive(endpoint, port=port, clients=clients, total=args.requests)
                if endpoint is search:
                    search.offset += args.requests
                rows.append(row)
                print(f"  {row['endpoint']:15} x{clients:<3} p95 {row['p95_ms']:.1f} ms", file=sys.stderr)

    print_table(rows, ["endpoint", "clients", "requests", "errors", "p50_ms", "p95_ms", "p99_ms", "max_ms",
                       "req_per_s"])  # fmt: skip
    targets = {
        f"{name} p95 <= {limit} ms at {clients} client": next(
            (r["p95_ms"] <= limit for r in rows if r["endpoint"] == name and r["clients"] == clients), None
        )
        for (name, clients), limit in TARGETS_MS.items()
    }
    targets["no errors at 16 clients"] = all(r["errors"] == 0 for r in rows if r["clients"] == 16)
    write_results(
        "api",
        {
            "server": f"gunicorn, {args.workers} workers x {args.threads} thread(s)",
            "embedding_provider": args.embedding_provider,
            "search_crates": crates,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "rows": rows,
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
