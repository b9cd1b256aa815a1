"""Jobs benchmark: enqueue and status latency over 100k finished jobs, cancel latency, kill -9 recovery time.

It builds its own database (``ferrodex_bench_jobs`` on the embedded server, or BENCH_DATABASE_URL),
seeds 100,000 finished jobs with 3 events each (retention has not run), and starts a real
``manage.py qcluster`` on it running the fake pipeline of tests/pipelines.py (the point is job
mechanics, not ingestion). Then, through the service layer (jobs.services / jobs.selectors):

- enqueue (``enqueue_ingest``, a new crate each time) and status (``job_status``: the job with its recent
  events, what GET /api/v1/jobs/{id} and MCP check_rust_status serve; a random job) p50/p95/p99,
  sequential, from 16 threads of one process, and from 16 threads spread over 2 processes (the shape
  of the deployed web server: gunicorn worker processes with threads), while the worker runs the jobs;
  every thread warms its own connection before the timed calls;
- cancel latency: ``cancel_job`` on a running job until its status reads ``cancelled``;
- kill -9 of the worker running a job until the job is ``running`` again on another worker,
  for each ``--stale`` value of JOB_HEARTBEAT_STALE_SECONDS (60 is the default).

    .venv/bin/python bench/jobs.py [--requests 600] [--threads 16] [--processes 2] [--cancels 5] [--kills 2]
                                   [--stale 60,10]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, CpuShare, bench_database_url, print_table, write_results

SEED_JOBS = 100_000
TARGETS_MS = {"enqueue": 20.0, "status": 10.0, "cancel": 1000.0}


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(count: int) -> None:
    from django.db import connection

    from jobs.models import CrateJob

    have = CrateJob.objects.filter(crate_name__startswith="seed-").count()
    if have >= count:
        print(f"  {have} seeded finished jobs already present", file=sys.stderr)
        return
    print(f"  seeding {count - have} finished jobs with 3 events each", file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO crate_jobs (id, crate_name, normalized_name, requested_version, resolved_version, operation,
                status, progress, stage, stage_message, items_found, items_processed, documents, chunks, embeddings,
                http_requests, options, requested_by, attempts, checkpoint, heartbeat_at, worker_id,
                cancel_requested_at, created_at, started_at, finished_at, error_message, error_type, traceback,
                run_after, result)
            SELECT gen_random_uuid(), 'seed-' || g, 'seed_' || g, 'latest', '1.0.' || mod(g, 40), 'ingest',
                (ARRAY['complete', 'complete', 'failed', 'cancelled'])[1 + mod(g, 4)], 100, 'done', 'seeded',
                500, 500, 500, 900, 900, 3, '{"force": false}', 'api', 1, '{}', t, 'seed:1', NULL,
                t - interval '40 seconds', t - interval '30 seconds', t, '', '', '', NULL, '{}'
            FROM generate_series(%s, %s) AS g,
                 LATERAL (SELECT now() - (g * interval '5 seconds') AS t) AS times
            """,
            [have + 1, count],
        )
        cursor.execute(
            """
            INSERT INTO jobs_jobevent (job_id, event_type, message, data, created_at)
            SELECT j.id, e.kind, e.kind, '{}', j.created_at + e.offs
            FROM crate_jobs j
            CROSS JOIN (VALUES ('created', interval '0'), ('started', interval '10 seconds'),
                               ('completed', interval '40 seconds')) AS e(kind, offs)
            WHERE j.crate_name LIKE 'seed-%'
              AND NOT EXISTS (SELECT 1 FROM jobs_jobevent x WHERE x.job_id = j.id)
            """
        )
        cursor.execute("ANALYZE crate_jobs")
        cursor.execute("ANALYZE jobs_jobevent")


class Worker:
    def __init__(self, url: str, log: Path, *, stale: int) -> None:
        self.env = {
            **os.environ, "DATABASE_URL": url, "FERRODEX_INGEST_FUNCTION": "tests.pipelines.slow_ingest",
            "Q_WORKERS": "2", "MAX_CONCURRENT_JOBS": "3", "JOB_HEARTBEAT_STALE_SECONDS": str(stale),
            "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
        }
        self.log = log
        self.proc = None

    def __enter__(self) -> Worker:
        self._fh = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=self.env,
                                     stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.log.read_text(errors="replace").count("ready for work") < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"qcluster did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._fh.close()


def percentiles(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"n": len(ordered), "p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
            "max_ms": ordered[-1]}


def timed(fn, count: int, threads: int) -> list[float]:
    """Run ``count`` calls of ``fn`` from ``threads`` threads; every thread warms its own connection first."""
    from django.db import connection

    samples: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, count // threads)
    ready = threading.Barrier(threads + 1)

    def run(offset: int) -> None:
        mine = []
        try:
            for i in range(3):  # a thread's first call opens its connection: not what is measured
                fn(offset + per_thread + i)
            ready.wait()
            for i in range(per_thread):
                started = time.perf_counter()
                fn(offset + i)
                mine.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()
        with lock:
            samples.extend(mine)

    pool = [threading.Thread(target=run, args=(t * (per_thread + 3),)) for t in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait()
    cpu = time.process_time()
    for thread in pool:
        thread.join()
    # Python CPU per call in this process: the application's own cost, whatever else loads the machine.
    timed.cpu_ms = (time.process_time() - cpu) * 1000 / max(1, len(samples))
    return samples


def _calls(tag: str, ids: list):
    from jobs import selectors, services

    def enqueue(i: int) -> None:
        services.enqueue_ingest(name=f"job-n1-b1-d0-e{tag}x{i}", requested_by="api")

    def status(i: int) -> None:
        selectors.job_status(job_id=random.choice(ids))

    return {"enqueue": enqueue, "status": status}


def _process_round(url: str, metric: str, tag: str, ids: list, count: int, threads: int) -> tuple[list[float], float]:
    """One process of the multi-process mode (a web server's worker process with its threads)."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    samples = timed(_calls(tag, ids)[metric], count, threads)
    return samples, timed.cpu_ms


def bench_enqueue_and_status(requests: int, threads: int, processes: int, url: str) -> list[dict]:
    from jobs.models import CrateJob

    run_tag = f"{int(time.time()) % 100000}"
    ids = list(CrateJob.objects.values_list("pk", flat=True)[:SEED_JOBS])
    rows = []
    modes = [("sequential", 1, 1), (f"{threads} threads", threads, 1)]
    if processes > 1:
        modes.append((f"{threads} threads in {processes} processes", threads // processes, processes))
    for label, n_threads, n_procs in modes:
        tag = f"{run_tag}{label[:2].strip()}{n_procs}"
        calls = _calls(tag, ids)
        for _ in range(20):  # warm connections and caches
            calls["status"](0)
        for metric in ("enqueue", "status"):
            with CpuShare() as share:
                if n_procs == 1:
                    samples, cpu = timed(calls[metric], requests, n_threads), timed.cpu_ms
                else:
                    samples, cpu = _in_processes(url, metric, f"{tag}{metric[0]}", ids, requests, n_threads, n_procs)
            rows.append({"metric": metric, "mode": label, **percentiles(samples), "cpu_ms_per_call": cpu,
                         "steal_pct": share.steal, "idle_pct": share.idle, "target_p95_ms": TARGETS_MS[metric]})
        _cancel_queued()
    return rows


def _in_processes(url, metric, tag, ids, requests, threads, processes) -> tuple[list[float], float]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from django.db import connections

    connections.close_all()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        futures = [
            pool.submit(_process_round, url, metric, f"{tag}p{n}", ids, requests // processes, threads)
            for n in range(processes)
        ]
        results = [f.result() for f in futures]
    samples = [x for r in results for x in r[0]]
    return samples, sum(r[1] for r in results) / len(results)


def _cancel_queued() -> None:
    """Drop what the enqueue rounds left in the queue, so the next measurement starts from an idle worker."""
    from django.utils import timezone

    from jobs.models import CrateJob

    CrateJob.objects.filter(status="queued").update(status="cancelled", finished_at=timezone.now())
    deadline = time.monotonic() + 60
    while CrateJob.objects.filter(status="running").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _drop_stale_tokens() -> None:
    """Delete the wake-up tokens earlier runs left behind (their clusters were killed with SIGKILL).

    Thousands of them piled up; the worker spent the first part of the next run
    on them, with results its monitor saved one by one.
    """
    from django_q.models import OrmQ

    dropped, _ = OrmQ.objects.all().delete()
    if dropped:
        print(f"  dropped {dropped} wake-up tokens left by earlier runs", file=sys.stderr)


def _running(job_pk, *, attempts: int = 1, min_items: int = 1, timeout: float = 60):
    from jobs.models import CrateJob

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = CrateJob.objects.filter(pk=job_pk, status="running", attempts=attempts,
                                      items_processed__gte=min_items).first()
        if job:
            return job
        time.sleep(0.005)
    raise SystemExit(f"job {job_pk} did not reach running attempt {attempts}")


def bench_cancel(runs: int) -> dict:
    from jobs import services
    from jobs.models import CrateJob

    samples = []
    for i in range(runs):
        job = services.enqueue_ingest(name=f"job-n5000-b10-d20-cancel{int(time.time())}x{i}",
                                      requested_by="api").job
        _running(job.pk, min_items=20)
        started = time.perf_counter()
        services.cancel_job(job_id=job.pk)
        while CrateJob.objects.filter(pk=job.pk).values_list("status", flat=True).first() != "cancelled":
            time.sleep(0.002)
        samples.append((time.perf_counter() - started) * 1000)
    return {"metric": "cancel -> cancelled", "mode": "running job", **percentiles(samples),
            "target_p95_ms": TARGETS_MS["cancel"]}


def bench_kill(runs: int, stale: int) -> dict:
    from jobs import services
    from jobs.models import CrateJob

    samples = []
    for i in range(runs):
        job = services.enqueue_ingest(name=f"job-n50000-b10-d20-kill{int(time.time())}x{i}", requested_by="api").job
        running = _running(job.pk, min_items=20)
        os.kill(int(running.worker_id.rsplit(":", 1)[1]), signal.SIGKILL)
        killed = time.perf_counter()
        _running(job.pk, attempts=2, min_items=0, timeout=stale * 3 + 60)
        samples.append((time.perf_counter() - killed) * 1000)
        services.cancel_job(job_id=job.pk)
        while not CrateJob.objects.get(pk=job.pk).is_finished:
            time.sleep(0.05)
    return {"metric": "kill -9 -> running again", "mode": f"JOB_HEARTBEAT_STALE_SECONDS={stale}",
            **percentiles(samples), "target_p95_ms": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=640)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2,
                        help="also run the threads spread over this many processes, as the web server does")
    parser.add_argument("--cancels", type=int, default=5)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--stale", default="60,10", help="JOB_HEARTBEAT_STALE_SECONDS values for the kill runs")
    args = parser.parse_args()

    url = bench_database_url("ferrodex_bench_jobs")
    setup_django(url)
    seed(SEED_JOBS)
    from jobs.models import CrateJob

    _cancel_queued()
    _drop_stale_tokens()
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    stale_values = [int(s) for s in args.stale.split(",") if s]
    rows = []
    with Worker(url, logs / "jobs-qcluster.log", stale=stale_values[0]):
        print(f"  {CrateJob.objects.count()} jobs in the table; worker running", file=sys.stderr)
        rows += bench_enqueue_and_status(args.requests, args.threads, args.processes, url)
        rows.append(bench_cancel(args.cancels))
        if args.kills:
            rows.append(bench_kill(args.kills, stale_values[0]))
    for stale in stale_values[1:] if args.kills else ():
        with Worker(url, logs / f"jobs-qcluster-stale{stale}.log", stale=stale):
            rows.append(bench_kill(args.kills, stale))

    load = os.getloadavg()
    print(f"\nload average at the end (1/5/15 min, other work on the machine included): {load}")
    columns = ["metric", "mode", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms", "cpu_ms_per_call", "steal_pct",
               "idle_pct", "target_p95_ms"]
    print_table(rows, columns)
    write_results("jobs", {"jobs_in_table": CrateJob.objects.count(), "rows": rows, "load_average_end": load,
                           "notes": "service-layer calls in the bench process while a qcluster (2 workers, "
                                    "MAX_CONCURRENT_JOBS=3) runs the enqueued jobs with tests.pipelines.slow_ingest"})


if __name__ == "__main__":
    main()
