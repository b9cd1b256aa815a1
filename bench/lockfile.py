"""Lockfile benchmark: how long the one service behind add_rust_crates_from_lockfile / POST /lockfiles takes on a
Cargo.lock at the 2,000-package limit (all crates.io, plus a manifest naming 50 direct dependencies).

On its own database (``ferrodex_bench_lockfile`` on the embedded server, or BENCH_DATABASE_URL), per run:
parse + check only (``read_lockfile``), a first call that queues 2,000 jobs and saves the project, and the same
call again (every job deduplicated). No worker runs: the point is the request path.

    .venv/bin/python bench/lockfile.py [--packages 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_database_url, print_table, write_results

CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"


def lockfile(packages: int) -> tuple[str, str]:
    parts = ["version = 4\n"]
    names = [f"bench-crate-{i}" for i in range(packages - 1)]
    for name in names:
        parts.append(f'\n[[package]]\nname = "{name}"\nversion = "1.{len(name)}.0"\nsource = "{CRATES_IO}"\n')
    deps = "".join(f' "{n}",\n' for n in names[:50])
    parts.append(f'\n[[package]]\nname = "bench-app"\nversion = "0.1.0"\ndependencies = [\n{deps}]\n')
    manifest = '[package]\nname = "bench-app"\nversion = "0.1.0"\n\n[dependencies]\n' + "".join(
        f'{n} = {{ version = "1", features = ["std"] }}\n' for n in names[:50]
    )
    return "".join(parts), manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = bench_database_url("ferrodex_bench_lockfile")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from crates import projects
    from crates.models import Project
    from jobs.models import CrateJob

    text, manifest = lockfile(args.packages)
    timings: dict[str, list[float]] = {"parse": [], "queue": [], "again": []}
    for _ in range(args.runs):
        CrateJob.objects.filter(crate_name__startswith="bench-crate-").delete()
        Project.objects.filter(name="bench").delete()
        started = time.perf_counter()
        projects.read_lockfile(lockfile=text, manifest=manifest, direct_only=False)
        timings["parse"].append(time.perf_counter() - started)
        started = time.perf_counter()
        first = projects.add_from_lockfile(lockfile=text, manifest=manifest, project="bench", requested_by="cli")
        timings["queue"].append(time.perf_counter() - started)
        started = time.perf_counter()
        again = projects.add_from_lockfile(lockfile=text, manifest=manifest, project="bench", requested_by="cli")
        timings["again"].append(time.perf_counter() - started)
        assert len(first.jobs) == args.packages - 1 and all(j["deduplicated"] for j in again.jobs)
    rows = [
        {"step": step, "median_s": round(statistics.median(v), 3), "max_s": round(max(v), 3),
         "per_package_ms": round(statistics.median(v) / args.packages * 1000, 3)}
        for step, v in timings.items()
    ]  # fmt: skip
    print(f"Cargo.lock with {args.packages} packages ({len(text):,} bytes), {args.runs} runs")
    print_table(rows, ["step", "median_s", "max_s", "per_package_ms"])
    CrateJob.objects.filter(crate_name__startswith="bench-crate-").delete()
    write_results("lockfile", {"packages": args.packages, "bytes": len(text), "runs": args.runs, "rows": rows})


if __name__ == "__main__":
    main()
