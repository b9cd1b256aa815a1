"""Worker liveness and restart recovery.

Every qcluster worker process runs a small monitor thread (started from
django-q2's ``post_spawn`` signal, so only in qcluster) that records a
``WorkerHeartbeat`` and sweeps:

- ``running`` jobs whose heartbeat is stale AND whose job advisory lock is
  free (their worker is truly gone) go back to ``queued`` with a ``recovered``
  event and a wake-up task; they resume from their checkpoint;
- due ``queued`` jobs with no wake-up task waiting for them (tokens lost with a
  killed cluster, or a retry whose back-off has passed) get one.

django-q2 also redelivers a killed task after ``Q_CLUSTER["retry"]`` seconds;
by then the sweeper has long requeued the job and the late token finds nothing.
A schedule runs the same sweep every minute as a fallback.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import ProgrammingError, close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from crates.errors import database_unavailable
from jobs import queue
from jobs.concurrency import heartbeat_interval, job_is_locked
from jobs.models import CrateJob, JobEvent, WorkerHeartbeat

logger = logging.getLogger(__name__)

# Transaction-level advisory key: one sweeper at a time across all processes ("FDXW").
_SWEEP_LOCK_KEY = 0x4644585700000001
_monitor_started = False
_started_at = None


def recovery_grace_seconds() -> float:
    """How long a running job's heartbeat must have been still (two missed beats) for the sweeper to look at it.

    The free job lock is the proof of death: a worker takes it before the job
    becomes ``running`` and lets go only after the final status is written, and
    its session dies with the process or after JOB_HEARTBEAT_STALE_SECONDS of
    silence (``idle_session_timeout``). So the heartbeat only needs to be
    late, not JOB_HEARTBEAT_STALE_SECONDS old, and recovery takes seconds.
    """
    return min(float(settings.JOB_HEARTBEAT_STALE_SECONDS), 2 * heartbeat_interval())


def worker_alive_seconds() -> float:
    return max(15.0, 3 * monitor_interval())


def monitor_interval() -> float:
    return max(1.0, heartbeat_interval())


# --- worker heartbeats ------------------------------------------------------------------


def touch_worker(*, current_job_id: uuid.UUID | None, update_job: bool = True) -> None:
    """Record that this process is alive (and which job it runs)."""
    global _started_at
    now = timezone.now()
    _started_at = _started_at or now
    row = WorkerHeartbeat(
        worker_id=f"{socket.gethostname()}:{os.getpid()}", hostname=socket.gethostname(), pid=os.getpid(),
        started_at=_started_at, last_seen=now, current_job_id=current_job_id,
    )
    WorkerHeartbeat.objects.bulk_create(
        [row], update_conflicts=True, unique_fields=["worker_id"],
        update_fields=["last_seen", "current_job_id"] if update_job else ["last_seen"],
    )


# --- the sweep ----------------------------------------------------------------------------


def sweep() -> dict:
    """Recover dead jobs and wake stranded ones; one sweeper at a time, the others skip."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", (_SWEEP_LOCK_KEY,))
        if not cursor.fetchone()[0]:
            return {"skipped": True, "recovered": [], "woken": 0}
        recovered = recover_stale_jobs()
    woken = wake_stranded_jobs()
    return {"skipped": False, "recovered": [str(pk) for pk in recovered], "woken": woken}


def recover_stale_jobs() -> list[uuid.UUID]:
    now = timezone.now()
    grace = recovery_grace_seconds()
    cutoff = now - timedelta(seconds=grace)
    candidates = list(
        CrateJob.objects.filter(status=CrateJob.Status.RUNNING)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
        .values_list("pk", flat=True)[:100]
    )
    recovered = []
    for pk in candidates:
        with transaction.atomic():
            job = CrateJob.objects.select_for_update(skip_locked=True).filter(
                pk=pk, status=CrateJob.Status.RUNNING
            ).first()
            # A held job lock means a live worker (its heartbeat writes are just slow): leave it alone.
            if job is None or job_is_locked(pk):
                continue
            _recover(job=job, silent_for=(now - (job.heartbeat_at or job.started_at or now)).total_seconds())
        recovered.append(pk)
    return recovered


def _recover(*, job: CrateJob, silent_for: float) -> None:
    who = job.worker_id or "its worker"
    now = timezone.now()
    if job.cancel_requested_at is not None:
        job.status, job.finished_at = CrateJob.Status.CANCELLED, now
        job.stage_message = "Cancelled (the worker stopped while cancelling)"
        job.save(update_fields=["status", "finished_at", "stage_message"])
        queue.record_event(job_id=job.pk, event_type=JobEvent.Type.CANCELLED,
                              message=f"{who} stopped while cancelling; the job is cancelled")
        _discard_building_release(job=job)
    elif job.attempts >= settings.JOB_MAX_ATTEMPTS:
        message = (
            f"The worker running this job stopped unexpectedly {job.attempts} times (killed, out of memory, "
            "or machine lost). Check the worker logs, then retry the job; it resumes from its checkpoint."
        )
        job.status, job.finished_at = CrateJob.Status.FAILED, now
        job.error_message, job.error_type, job.stage_message = message, "WorkerLost", f"Failed: {message}"[:500]
        job.save(update_fields=["status", "finished_at", "error_message", "error_type", "stage_message"])
        queue.record_event(job_id=job.pk, event_type=JobEvent.Type.FAILED, message=message,
                              data={"error_type": "WorkerLost", "attempt": job.attempts})
    else:
        job.status, job.worker_id, job.run_after = CrateJob.Status.QUEUED, "", None
        job.stage_message = f"Requeued after {who} stopped; resumes from its checkpoint"[:500]
        job.save(update_fields=["status", "worker_id", "run_after", "stage_message"])
        queue.record_event(
            job_id=job.pk, event_type=JobEvent.Type.RECOVERED,
            message=f"{who} stopped responding (no heartbeat for {silent_for:.0f} s, lock free); requeued",
            data={"worker_id": job.worker_id or who, "attempt": job.attempts, "silent_s": round(silent_for, 1)},
        )
        queue.wake_after_commit(job_id=job.pk)
    logger.warning("job %s recovered from dead worker %s -> %s", job.pk, who, job.status)


def _discard_building_release(*, job: CrateJob) -> None:
    release_id = (job.checkpoint or {}).get("release_id")
    if not release_id:
        return
    from crates.pipeline.store import discard_release, withdraw_release

    # One that was searchable while embedding is withdrawn, its rows kept for a retry, as the pipeline does.
    if not withdraw_release(release_id=release_id):
        discard_release(release_id=release_id)


def wake_stranded_jobs() -> int:
    """Give due queued jobs a wake-up task when none is waiting in the broker and a slot is free."""
    now = timezone.now()
    grace = timedelta(seconds=max(2.0, heartbeat_interval()))
    due = (
        queue.due_queued_jobs(now=now)
        .filter(Q(run_after__isnull=False) | Q(created_at__lte=now - grace))
        .count()
    )
    if not due:
        return 0
    free = settings.MAX_CONCURRENT_JOBS - CrateJob.objects.filter(status=CrateJob.Status.RUNNING).count()
    needed = min(due, free) - _pending_wakeups()
    if needed <= 0:
        return 0
    queue.wake_workers(count=needed)
    logger.info("woke %d stranded queued job(s)", needed)
    return needed


def _pending_wakeups() -> int:
    """Tasks in the ORM broker not yet taken by a cluster (0 with another broker: over-waking is harmless)."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if not Conf.ORM:
        return 0
    return OrmQ.objects.using(Conf.ORM).filter(key=get_broker().list_key, lock__lte=timezone.now()).count()


# --- the per-process monitor thread ----------------------------------------------------------


def start_worker_monitor(*, after: threading.Event | None = None) -> int | None:
    """Start this process's monitor thread (once), once ``after`` is set; its native thread id."""
    global _monitor_started
    if _monitor_started:
        return None
    _monitor_started = True
    thread = threading.Thread(target=_monitor_loop, args=(after,), name="ferrodex-worker-monitor", daemon=True)
    thread.start()  # returns once the thread runs: native_id is set
    return thread.native_id


def _monitor_loop(after: threading.Event | None = None) -> None:
    if after is not None:
        after.wait(30)
    from jobs.schedules import ensure_schedules

    first = True
    while True:
        try:
            close_old_connections()
            touch_worker(current_job_id=None, update_job=False)
            if first:
                ensure_schedules()
                first = False
            result = sweep()
            if result["recovered"]:
                logger.warning("recovered jobs from dead workers: %s", ", ".join(result["recovered"]))
        except ProgrammingError:
            logger.error("worker monitor: the jobs tables are missing; run `manage.py migrate`. Retrying in 30 s")
            close_old_connections()
            time.sleep(30)
        except Exception as exc:
            if (unavailable := database_unavailable(exc)) is not None:
                logger.warning("worker monitor: %s", unavailable.message)  # every beat: no traceback each time
                restart_crashed_embedded_database()
            else:
                logger.exception("worker monitor: sweep failed; trying again")
            close_old_connections()
        time.sleep(monitor_interval())


def restart_crashed_embedded_database() -> bool:
    """Bring back the embedded PostgreSQL if it crashed (not if it was stopped): True if it was restarted.

    Without this a kill -9 of its postmaster (or the OOM killer) left the web server, the workers and
    runmcp failing until an operator ran some command that starts it; every worker watches for it.
    """
    if settings.DATABASE_URL:
        return False
    from config.embedded_db import EmbeddedDatabaseError, restart_if_crashed

    try:
        return restart_if_crashed(settings.EMBEDDED_PGDATA)
    except (EmbeddedDatabaseError, OSError, subprocess.SubprocessError):
        logger.exception("worker monitor: could not start the embedded PostgreSQL in %s", settings.EMBEDDED_PGDATA)
        return False
