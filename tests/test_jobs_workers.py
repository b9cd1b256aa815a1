"""Jobs on real ``manage.py qcluster`` processes: completion, progress, cancel, concurrency limit, kill -9.

The workers run the fake pipeline of tests/pipelines.py (real Documents, real
checkpoints, per-job behaviour from the crate name); the test process itself
has a pipeline that raises, so nothing can run on the request path.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest
from django.db.models import Count

from crates.models import CrateRelease, Document
from jobs import selectors, services
from jobs.concurrency import slots_in_use
from jobs.models import CrateJob, JobEvent
from tests import pipelines
from tests.jobs_helpers import QCluster, kill9, wait_for, worker_pid

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Each cluster has 2 workers: reaching 3 running jobs needs both clusters, and 4 workers can exceed it.
MAX_JOBS = 3
CLUSTER_ENV = {"MAX_CONCURRENT_JOBS": str(MAX_JOBS), "JOB_HEARTBEAT_STALE_SECONDS": "2"}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jobs") / "ledger.txt"


@pytest.fixture(scope="module")
def cluster(django_db_setup, ledger, tmp_path_factory):
    qc = QCluster(log_path=tmp_path_factory.mktemp("qc") / "cluster-a.log",
                  env={**CLUSTER_ENV, "FERRODEX_TEST_LEDGER": str(ledger)})
    qc.start()
    yield qc
    qc.stop()


@pytest.fixture(autouse=True)
def _request_path_never_runs_the_pipeline(settings, cluster, ledger):
    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"
    settings.MAX_CONCURRENT_JOBS = MAX_JOBS
    ledger.write_text("")
    yield
    # Leave no job running into the next test's database flush.
    wait_for(lambda: not CrateJob.objects.filter(status__in=["queued", "running"]).exists(), timeout=30,
             what="the workers to go idle")


def ledger_counts(ledger: Path, crate: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for line in ledger.read_text().splitlines():
        name, index, _pid = line.split()
        if name == crate:
            counts[int(index)] = counts.get(int(index), 0) + 1
    return counts


def wait_status(job, statuses, timeout=30):
    return wait_for(lambda: CrateJob.objects.filter(pk=job.pk, status__in=statuses).first(), timeout=timeout,
                    interval=0.01, what=f"job {job.crate_name} to be {statuses}")


def test_enqueue_returns_at_once_and_a_real_worker_completes_with_monotonic_progress(cluster, ledger):
    started = time.perf_counter()
    result = services.enqueue_ingest(name="job-n300-b10-d100-progress", requested_by="api")
    enqueue_s = time.perf_counter() - started
    assert enqueue_s < 0.2 and result.job.status == "queued"

    samples = []
    while True:
        job = CrateJob.objects.get(pk=result.job.pk)
        samples.append((time.monotonic(), job.progress, job.items_processed, job.heartbeat_at, job.status))
        if job.is_finished:
            break
        assert time.monotonic() - samples[0][0] < 30, "job did not finish"
        time.sleep(0.02)

    assert job.status == "complete", job.error_message
    assert job.progress == 100 and job.documents == 300 and job.items_processed == 300
    assert worker_pid(job.worker_id) != os.getpid()
    progress = [s[1] for s in samples]
    items = [s[2] for s in samples]
    assert progress == sorted(progress) and items == sorted(items)
    assert len(set(progress)) > 5  # it really moved while we watched, it did not jump to 100
    # Progress/heartbeat writes at least every 2 s while running.
    beats = sorted({s[3] for s in samples if s[3] is not None and s[4] == "running"})
    assert len(beats) >= 3 and max((b - a).total_seconds() for a, b in itertools.pairwise(beats)) <= 2
    kinds = list(JobEvent.objects.filter(job=job).values_list("event_type", flat=True))
    assert kinds == ["created", "started", *["progress"] * 6, "completed"]
    assert Document.objects.filter(release__state="active").count() == 300
    assert max(ledger_counts(ledger, "job_n300_b10_d100_progress").values()) == 1
    # Worker liveness comes from the database, so any process sees the cluster's two workers.
    health = selectors.health_summary()
    assert health["workers_alive"] == 2 and (health["queued"], health["running"]) == (0, 0)
    assert {w["pid"] for w in health["workers"]} >= {worker_pid(job.worker_id)}


def test_cancel_running_job_is_observed_within_one_second_and_keeps_the_previous_release(cluster):
    name = "job-n300-b10-d20-cancel"
    first = services.enqueue_ingest(name=name, requested_by="api").job
    assert wait_status(first, ["complete", "failed"]).status == "complete"
    previous = CrateRelease.objects.get(state="active")

    job = services.enqueue_ingest(name=name, force=True, requested_by="api").job
    wait_for(lambda: CrateJob.objects.filter(pk=job.pk, items_processed__gte=50).exists(), timeout=20,
             interval=0.01, what="the job to be under way")
    assert CrateRelease.objects.filter(state="building").count() == 1
    asked = time.monotonic()
    assert services.cancel_job(job_id=job.pk).status == "running"
    done = wait_status(job, ["cancelled", "complete", "failed"], timeout=5)
    latency = time.monotonic() - asked
    assert done.status == "cancelled" and latency < 1.0, latency
    print(f"\ncancel -> cancelled observed in {latency * 1000:.0f} ms")
    assert done.items_processed < 300 and done.cancel_requested_at and done.finished_at
    kinds = list(JobEvent.objects.filter(job=job).values_list("event_type", flat=True))
    assert kinds[-2:] == ["cancel_requested", "cancelled"]
    # The building release is rolled back, the previous one is untouched and still active.
    assert list(CrateRelease.objects.values_list("pk", "state")) == [(previous.pk, "active")]
    assert Document.objects.filter(release=previous).count() == 300


def test_concurrency_limit_holds_across_two_clusters_and_each_job_runs_once(cluster, ledger, tmp_path):
    second = QCluster(log_path=tmp_path / "cluster-b.log",
                      env={**CLUSTER_ENV, "FERRODEX_TEST_LEDGER": str(ledger)}).start()
    try:
        names = [f"job-n20-b5-d200-cc{i}" for i in range(8)]
        jobs = [services.enqueue_ingest(name=n, requested_by="api").job for n in names]
        running_samples, slot_samples = [], []
        deadline = time.monotonic() + 60
        while CrateJob.objects.exclude(status="complete").exists():
            running_samples.append(CrateJob.objects.filter(status="running").count())
            slot_samples.append(slots_in_use())
            assert time.monotonic() < deadline, "jobs did not finish"
            time.sleep(0.01)
        pgids = {os.getpgid(worker_pid(j.worker_id)) for j in CrateJob.objects.all()}
        cluster_pgids = {cluster.proc.pid, second.proc.pid}
    finally:
        second.stop()

    # The limit was reached (so both clusters ran jobs at once) and never exceeded.
    assert max(running_samples) == MAX_JOBS and max(slot_samples) <= MAX_JOBS
    assert pgids == cluster_pgids
    finished = list(CrateJob.objects.order_by("started_at"))
    assert all(j.status == "complete" and j.attempts == 1 for j in finished)
    # Exact, not sampled: no instant had more than MAX_JOBS jobs between start and finish.
    edges = sorted([(j.started_at, 1) for j in finished] + [(j.finished_at, -1) for j in finished])
    overlap = peak = 0
    for _at, step in edges:
        overlap += step
        peak = max(peak, overlap)
    assert peak <= MAX_JOBS
    started = JobEvent.objects.filter(event_type="started").values("job").annotate(n=Count("id"))
    assert sorted(row["n"] for row in started) == [1] * 8
    # Oldest first: each claim takes the oldest queued job, so a job can only be overtaken by the few
    # claims in flight at the same moment (one per worker), never by a job queued long after it.
    claim_order = list(JobEvent.objects.filter(event_type="started").order_by("id").values_list("job", flat=True))
    created_order = [j.pk for j in jobs]
    workers = 4
    assert all(abs(claim_order.index(pk) - created_order.index(pk)) < workers for pk in created_order), claim_order
    for name in names:
        counts = ledger_counts(ledger, name.replace("-", "_"))
        assert sorted(counts) == list(range(20)) and set(counts.values()) == {1}


def test_kill_9_of_the_worker_mid_job_resumes_from_the_checkpoint(cluster, ledger):
    name = "job-n3000-b10-d5-kill"
    total = pipelines.plan(name)["items"]
    job = services.enqueue_ingest(name=name, requested_by="api").job
    running = wait_for(lambda: CrateJob.objects.filter(pk=job.pk, items_processed__gte=total // 4).first(),
                       timeout=30, interval=0.01, what="the job to be a quarter done")
    victim = worker_pid(running.worker_id)
    kill9(victim)
    killed_at = time.monotonic()
    restarted = wait_for(
        lambda: CrateJob.objects.filter(pk=job.pk, status="running", attempts=2).first(), timeout=30,
        interval=0.02, what="the job to run again",
    )
    recovery_s = time.monotonic() - killed_at
    done = wait_status(job, ["complete", "failed"], timeout=60)
    assert done.status == "complete", done.error_message
    assert worker_pid(restarted.worker_id) != victim and recovery_s < 10
    kinds = list(JobEvent.objects.filter(job=job).values_list("event_type", flat=True))
    assert kinds.count("recovered") == 1 and kinds.count("started") == 2

    # Identical to an uninterrupted run: every item once, nothing missing, nothing extra.
    release = CrateRelease.objects.get(state="active")
    stored = dict(Document.objects.filter(release=release).values_list("path", "content_hash"))
    assert stored == {pipelines.item_path(name, i): pipelines.item_hash(name, i) for i in range(total)}
    assert CrateRelease.objects.count() == 1
    counts = ledger_counts(ledger, name.replace("-", "_"))
    redone = sum(1 for n in counts.values() if n > 1)
    assert sorted(counts) == list(range(total))
    assert redone <= total // 100, f"{redone} items processed twice"
    print(f"\nkill -9 -> running again in {recovery_s:.2f} s; items redone: {redone}/{total}")


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads niceness from Linux /proc")
def test_the_worker_and_its_embedded_server_backends_run_niced(cluster):
    from django.db import connection

    from jobs.priority import local_postmaster_pid

    job = services.enqueue_ingest(name="job-n200-b10-d50-nice", requested_by="api").job
    running = wait_for(lambda: CrateJob.objects.filter(pk=job.pk, status="running", items_processed__gte=20).first(),
                       timeout=20, interval=0.01, what="the job to be under way")
    pid = worker_pid(running.worker_id)
    # Every thread of the worker process (main, progress reporter...): Linux renices per thread. All but the
    # monitor, which may restart a crashed embedded PostgreSQL and must not hand it the worker's priority.
    niceness = sorted(_nice(int(tid)) for tid in os.listdir(f"/proc/{pid}/task"))
    assert len(niceness) >= 3 and niceness[0] == 0 and set(niceness[1:]) == {10}
    assert _nice(cluster.proc.pid) == 0  # the cluster's own processes (sentinel, pusher, monitor) are not
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name = 'ferrodex-job-locks'")
        lock_backends = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT pg_backend_pid()")
        own_backend = cursor.fetchone()[0]
    assert lock_backends
    if local_postmaster_pid(socket_dir=connection.settings_dict["HOST"]) is not None:
        # The embedded server: the job's lock session runs niced, this (interactive) session does not.
        assert {_nice(p) for p in lock_backends} == {10} and _nice(own_backend) == 0
    wait_status(job, ["complete"])
