"""Seconds to first answer: how soon a newly added crate answers, and how soon a fresh MCP server does.

On a fresh bench database (crates, jobs and the embedding cache emptied first), with the docs.rs replica at the
default RATE_LIMIT_RPS, a live qcluster worker and gunicorn (2 workers), both with the local model:

- per replica crate: seconds from ``POST /api/v1/crates`` to the first hit of ``GET /api/v1/search`` for the crate
  (keyword/path, before the embeddings), and to the job's completion; the longest time the job's percent stood
  still while embedding, and the ETA the job showed a quarter of the way into its embedding against the time it
  really took from there;
- cancel: a forced re-ingest of tokio with the embedding cache emptied is cancelled once its embedding pass has
  made some vectors; seconds from ``POST /jobs/{id}/cancel`` to the job reading "cancelled";
- runmcp: a fresh ``manage.py runmcp`` (stdio, local model) idle for 10 s after start, then ``search_rust_docs``;
  also once with EMBEDDING_PRELOAD=0, the stall the preload removes.

    .venv/bin/python bench/first_answer.py [--crates tokio,serde] [--port 8830] [--cancels 3] [--mcp-runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    bench_database_url,
    print_table,
    replica_crates,
    replica_env,
    replica_server,
    run_command,
    write_results,
)

TARGETS = {"first_answer_s": 5.0, "first_answer_share": 0.25, "mcp_first_search_ms": 300.0, "cancel_s": 1.0}
POLL_S = 0.05


def _fresh_database(env: dict[str, str]) -> None:
    """Migrated, with no crate, job or cached embedding: every ingest is a first one and runs the model."""
    run_command([sys.executable, "manage.py", "migrate", "-v0"], env)
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("TRUNCATE crates_crate, crates_craterelease, crates_document, crates_chunk, "
                     "crates_embeddingcache, crates_fetchedartifact, crate_jobs, jobs_jobevent CASCADE")


def _truncate_cache(env: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("TRUNCATE crates_embeddingcache")


class Api:
    def __init__(self, port: int, key: str) -> None:
        self.base, self.key = f"http://127.0.0.1:{port}/api/v1", key

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def job(self, job_id: str) -> dict:
        return self.call("GET", f"/jobs/{job_id}")[1]


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path):
    fh = open(log, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        fh.close()


def _wait(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def _models_ready(api: Api, worker_log: Path) -> None:
    """Start measuring once the worker and both web workers hold the model (what a running portal has)."""
    _wait(lambda: "embedding model ready" in worker_log.read_text(errors="replace"), timeout=180, what="the worker")
    streak = [0]

    def web_ready() -> bool:
        ready = api.call("GET", "/health")[1].get("checks", {}).get("embedder", {}).get("ready")
        streak[0] = streak[0] + 1 if ready else 0
        return streak[0] >= 8  # both gunicorn workers answered ready (requests spread over them)

    _wait(web_ready, timeout=180, what="the web workers' models")


def measure_crate(api: Api, crate: dict) -> dict:
    name, lib = crate["name"], crate["crate_name"]
    query = urllib.parse.urlencode({"q": lib, "crate": name, "limit": 5})
    started = time.monotonic()
    status, body = api.call("POST", "/crates", {"name": name, "version": crate["version"]})
    if status != 202:
        raise SystemExit(f"POST /crates {name}: {status} {body}")
    job_id = body["job"]["id"]
    first = semantic = None
    samples: list[tuple[float, int, int, str, str]] = []
    while True:
        now = time.monotonic() - started
        if first is None:
            code, found = api.call("GET", f"/search?{query}")
            if code == 200 and found["results"]:
                first, semantic = now, found["results"][0].get("semantic")
        job = api.job(job_id)
        samples.append((now, job["progress"], job["counters"]["embeddings"], job["stage"], job["stage_message"]))
        if job["finished"]:
            break
        time.sleep(POLL_S)
    if job["status"] != "complete":
        raise SystemExit(f"{name}: job {job['status']}: {job.get('error')}")
    done = samples[-1][0]
    embedding = [s for s in samples if s[3] == "embed"]
    gap = 0.0
    if embedding:
        last_change, last = embedding[0][0], embedding[0][1]
        for t, percent, *_ in embedding[1:]:
            if percent != last:
                gap, last_change, last = max(gap, t - last_change), t, percent
        gap = max(gap, embedding[-1][0] - last_change)
    eta_said = eta_real = None
    if len(embedding) > 4:
        quarter = embedding[len(embedding) // 4]
        match = re.search(r"about (\d+) (s|min) left", quarter[4])
        if match:
            eta_said = int(match.group(1)) * (60 if match.group(2) == "min" else 1)
            eta_real = round(embedding[-1][0] - quarter[0], 1)
    return {
        "crate": name, "chunks": job["counters"]["chunks"], "first_answer_s": round(first or done, 2),
        "complete_s": round(done, 2), "share": round((first or done) / done, 3), "semantic_at_first": semantic,
        "embed_s": round(embedding[-1][0] - embedding[0][0], 1) if embedding else 0.0,
        "max_percent_gap_s": round(gap, 2), "eta_said_s": eta_said, "eta_real_s": eta_real,
        "sample_message": next((s[4] for s in embedding if "left" in s[4]), ""),
    }


def measure_cancel(api: Api, env: dict[str, str], crate: str) -> float:
    _truncate_cache(env)
    _status, body = api.call("POST", "/crates", {"name": crate, "force": True})
    job_id = body["job"]["id"]
    _wait(lambda: ((j := api.job(job_id))["stage"] == "embed" and j["counters"]["embeddings"] > 0) or j["finished"],
          timeout=300, what="the embedding pass")
    asked = time.monotonic()
    api.call("POST", f"/jobs/{job_id}/cancel")
    while (job := api.job(job_id))["status"] != "cancelled":
        if job["finished"]:
            raise SystemExit(f"cancel of {crate}: job {job['status']}")
        time.sleep(0.01)
    return round(time.monotonic() - asked, 3)


def measure_mcp(env: dict[str, str], *, idle: float, query: str) -> dict:
    import anyio
    from mcp import Client, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["manage.py", "runmcp"], cwd=str(ROOT), env=env)

    async def flow() -> dict:
        started = time.monotonic()
        with open(os.devnull, "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                await anyio.sleep(max(0.0, idle - (time.monotonic() - started)))
                asked = time.monotonic()
                result = await client.call_tool("search_rust_docs", {"query": query})
                answered = time.monotonic()
        return {"first_search_ms": round((answered - asked) * 1000, 1),
                "start_to_answer_s": round(answered - started, 2), "results": len(result.structured_content["results"])}

    return anyio.run(flow)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crates", default="", help="comma-separated replica crates (default: all)")
    parser.add_argument("--port", type=int, default=8830)
    parser.add_argument("--cancels", type=int, default=3)
    parser.add_argument("--cancel-crate", default="tokio")
    parser.add_argument("--mcp-runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--db-name", default="ferrodex_bench_first")
    parser.add_argument("--results", default="first_answer", help="name of the JSON file under bench/results")
    args = parser.parse_args()

    wanted = [c for c in args.crates.split(",") if c]
    crates = [c for c in replica_crates() if not wanted or c["name"] in wanted]
    env = {**os.environ, "DATABASE_URL": bench_database_url(args.db_name), "HF_HUB_OFFLINE": "1", "DEBUG": "0",
           "EMBEDDING_PROVIDER": "local", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    env.pop("RATE_LIMIT_RPS", None)
    _fresh_database(env)
    key = run_command([sys.executable, "manage.py", "create_api_key", "bench-first-answer", "-q"], env).strip()
    logs = ROOT / "var" / "bench-first-answer"
    logs.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows, cancels = [], []
    with replica_server() as base:
        served = {**env, **{k: v for k, v in replica_env(base).items() if k != "RATE_LIMIT_RPS"}}
        gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application", "--bind",
                    f"127.0.0.1:{args.port}", "--workers", "2", "--threads", "4", "--log-level", "warning"]
        with _process([sys.executable, "manage.py", "qcluster"], {**served, "LOG_LEVEL": "INFO"},
                      logs / "qcluster.log"), _process(gunicorn, served, logs / "gunicorn.log"):
            api = Api(args.port, key)
            _wait(lambda: _reachable(api), timeout=120, what="gunicorn")
            _models_ready(api, logs / "qcluster.log")
            for crate in crates:
                print(f"  {crate['name']} ...", file=sys.stderr)
                rows.append(measure_crate(api, crate))
            for _ in range(args.cancels):
                cancels.append(measure_cancel(api, env, args.cancel_crate))
        query = crates[0]["crate_name"]
        mcp = [measure_mcp(served, idle=args.idle, query=query) for _ in range(args.mcp_runs)]
        cold = measure_mcp({**served, "EMBEDDING_PRELOAD": "0"}, idle=args.idle, query=query)
    load_after = os.getloadavg()

    for row in rows:
        row["target_met"] = row["first_answer_s"] <= TARGETS["first_answer_s"] and (
            row["complete_s"] <= 20 or row["share"] <= TARGETS["first_answer_share"])
    print_table(rows, ["crate", "chunks", "first_answer_s", "complete_s", "share", "semantic_at_first", "embed_s",
                       "max_percent_gap_s", "eta_said_s", "eta_real_s", "target_met"])
    print(f"\ncancel during the local model's embedding ({args.cancel_crate}): {cancels} s")
    print_table([*({"runmcp": "preload", **m} for m in mcp), {"runmcp": "EMBEDDING_PRELOAD=0", **cold}],
                ["runmcp", "first_search_ms", "start_to_answer_s", "results"])
    print(f"\nload average before {load_before}, after {load_after} (2 cores shared with other work)")
    write_results(args.results, {
        "targets": TARGETS, "crates": rows, "cancel_s": cancels, "mcp": mcp, "mcp_without_preload": cold,
        "idle_s": args.idle, "load_before": load_before, "load_after": load_after,
        "conditions": "docs.rs replica at the default RATE_LIMIT_RPS; qcluster worker and gunicorn (2 workers x 4 "
                      "threads) with the local model preloaded; fresh database and empty embedding cache",
    })


def _reachable(api: Api) -> bool:
    with contextlib.suppress(OSError):
        return api.call("GET", "/crates")[0] == 200
    return False


if __name__ == "__main__":
    main()
