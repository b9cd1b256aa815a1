"""Helpers shared by the benchmarks: a bench database, the replica server, tables, JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED = Path(os.environ.get("FERRODEX_SHARED", ROOT.parent / "shared"))
# REPLICA_ROOT: another replica to serve, e.g. the extended one bench/replica/build.py writes.
REPLICA_ROOT = Path(os.environ.get("REPLICA_ROOT") or SHARED / "docsrs-replica")
REPLICA_TOOL = SHARED / "tools" / "docsrs_replica.py"


def machine() -> dict:
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class CpuShare:
    """Where the machine's CPU time went while a measurement ran (/proc/stat), in percent.

    ``steal`` is time the hypervisor gave to other guests while this one wanted to run: on a
    shared VM it stalls whatever was on the CPU (a lock holder, a backend) and moves latency
    tails by itself, so a row carries it next to its percentiles.
    """

    def __enter__(self) -> CpuShare:
        self._start = _cpu_ticks()
        return self

    def __exit__(self, *exc) -> None:
        delta = [b - a for a, b in zip(self._start, _cpu_ticks(), strict=True)]
        total = sum(delta) or 1
        # user nice system idle iowait irq softirq steal
        self.idle = round(100 * sum(delta[3:5]) / total, 1)
        self.steal = round(100 * delta[7] / total, 1)


def _cpu_ticks() -> list[int]:
    try:
        with open("/proc/stat") as fh:
            return [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return [0] * 8


def bench_database_url(name: str = "ferrodex_bench") -> str:
    """A separate database on the embedded server (or DATABASE_URL's server), created if missing."""
    if os.environ.get("BENCH_DATABASE_URL"):
        return os.environ["BENCH_DATABASE_URL"]
    sys.path.insert(0, str(ROOT))
    from config.embedded_db import database_url

    base = os.environ.get("DATABASE_URL") or database_url(ROOT / "var" / "pgdata")
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    head, _, query = base.partition("?")
    return head.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def replica_server(*extra: str, root: Path | None = None, port: int | None = None):
    """Run ../shared/tools/docsrs_replica.py (on ``root``, a copy of the replica, if given); yield its base URL."""
    if not REPLICA_TOOL.exists():
        raise SystemExit(f"{REPLICA_TOOL} not found: the benchmarks need the docs.rs replica in ../shared")
    # REPLICA_PORT: a port of the caller's own range on a shared machine.
    port = port or int(os.environ.get("REPLICA_PORT") or 0) or free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REPLICA_TOOL), "--root", str(root or REPLICA_ROOT), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(base + "/__stats", timeout=1).read()
                break
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_command(cmd: list[str], env: dict[str, str]) -> str:
    """Run a command from the checkout; on failure print its stderr's tail and stop the benchmark."""
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return out.stdout


def replica_env(base: str) -> dict[str, str]:
    return {
        "DOCSRS_BASE_URL": base,
        "CRATES_INDEX_URL": base + "/index",
        "CRATES_API_URL": base,
        "RATE_LIMIT_RPS": "0",
    }


def replica_crates(root: Path | None = None) -> list[dict]:
    return json.loads(((root or REPLICA_ROOT) / "manifest.json").read_text())["crates"]


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else str(value)


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path
