"""The queue of jobs: wake-up tokens, claim, the outcomes of an attempt, requeue, and cancelling.

The job row is the queue (django-q2 tasks only wake workers up): the request path
(``jobs.services``) writes queued jobs, the runner claims and finishes them, and
the sweeper (``jobs.recovery``) requeues the ones whose worker died.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db import router, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from jobs.models import CrateJob, JobEvent

logger = logging.getLogger(__name__)

Status = CrateJob.Status
Operation = CrateJob.Operation
EventType = JobEvent.Type

RUN_JOB_TASK = "jobs.tasks.run_job"
# A wake-up token's own result is worthless (the job row is the record); django-q2 still saves failures.
# Saving successes made django-q2's monitor prune its result table for every token, tens of ms each.
WAKE_UP_OPTIONS = {"save": False}


def record_event(*, job_id: uuid.UUID, event_type: str, message: str = "", data: dict | None = None) -> JobEvent:
    return JobEvent.objects.create(job_id=job_id, event_type=event_type, message=message[:2000], data=data or {})


def wake_workers(*, job_id: uuid.UUID | None = None, count: int = 1) -> None:
    """Put wake-up tasks on the django-q2 queue. Tasks carry no work: the database is the queue."""
    from django_q.tasks import async_task

    for _ in range(count):
        async_task(RUN_JOB_TASK, str(job_id) if job_id else "", q_options=dict(WAKE_UP_OPTIONS))


def wake_after_commit(*, job_id: uuid.UUID) -> None:
    """Send the wake-up task so that workers see it exactly when they can see the job.

    With django-q2's ORM broker on the jobs database, the task row is written in
    the same transaction (one commit, and no job without a task if the process
    dies right after committing). Any other broker gets it after the commit.
    """
    from django_q.conf import Conf

    if Conf.ORM and router.db_for_write(CrateJob) == Conf.ORM:
        wake_workers(job_id=job_id)
    else:
        transaction.on_commit(lambda: wake_workers(job_id=job_id), robust=True)


def due_queued_jobs(*, now=None) -> QuerySet[CrateJob]:
    """Queued jobs that may start now, ingests behind an earlier removal of the same crate excepted."""
    now = now or timezone.now()
    earlier_removal = CrateJob.objects.filter(
        operation=Operation.REMOVE,
        normalized_name=OuterRef("normalized_name"),
        status__in=CrateJob.ACTIVE_STATUSES,
        created_at__lt=OuterRef("created_at"),
    )
    return (
        CrateJob.objects.filter(status=Status.QUEUED)
        .filter(Q(run_after__isnull=True) | Q(run_after__lte=now))
        .exclude(Q(operation=Operation.INGEST) & Exists(earlier_removal))
    )


def has_due_queued_job() -> bool:
    """Whether a wake-up token has anything to run: every token asks this first."""
    return due_queued_jobs().exists()


def wake_if_unserved() -> bool:
    """Send a wake-up task if due queued jobs exist and no token is waiting in the broker; True if sent.

    A waiting token runs the oldest due job whichever job it was sent for, so
    one is enough; more would only make the workers pick up empty tokens.
    """
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if not has_due_queued_job():
        return False
    orm_broker = Conf.ORM and router.db_for_read(CrateJob) == Conf.ORM and not Conf.BROKER_CLASS
    if orm_broker and OrmQ.objects.using(Conf.ORM).filter(key=Conf.CLUSTER_NAME, lock__lte=timezone.now()).exists():
        return False
    wake_workers()
    return True


def claim_next_job(*, locks, worker_id: str) -> CrateJob | None:
    """Take the oldest due queued job: row lock (SKIP LOCKED) plus the job's advisory lock, then mark it running."""
    skipped: list[uuid.UUID] = []
    for _ in range(5):
        with transaction.atomic():
            job = (
                due_queued_jobs()
                .exclude(pk__in=skipped)
                .select_for_update(skip_locked=True, no_key=True)
                .order_by("created_at")
                .first()
            )
            if job is None:
                return None
            if not locks.try_lock_job(job.pk):
                # Still held by a worker that is just letting go of it (a retry being requeued).
                skipped.append(job.pk)
                continue
            _mark_claimed(job=job, worker_id=worker_id)
        logger.info("job %s (%s %s) claimed by %s, attempt %d", job.pk, job.operation, job.crate_name,
                    worker_id, job.attempts)
        return job
    return None


def claim_job(*, job_id: uuid.UUID, locks, worker_id: str) -> CrateJob | None:
    """Take this queued job (a foreground run of it), as ``claim_next_job`` takes the oldest: None if it is
    not queued any more or another process holds it."""
    with transaction.atomic():
        job = CrateJob.objects.select_for_update(skip_locked=True, no_key=True).filter(
            pk=job_id, status=Status.QUEUED).first()
        if job is None or not locks.try_lock_job(job.pk):
            return None
        _mark_claimed(job=job, worker_id=worker_id)
    logger.info("job %s (%s %s) claimed by %s, attempt %d", job.pk, job.operation, job.crate_name,
                worker_id, job.attempts)
    return job


def _mark_claimed(*, job: CrateJob, worker_id: str) -> None:
    now = timezone.now()
    job.status = Status.RUNNING
    job.attempts += 1
    job.started_at = now
    job.first_started_at = job.first_started_at or now
    job.heartbeat_at = now
    job.worker_id = worker_id
    job.run_after = None
    job.save(update_fields=["status", "attempts", "started_at", "first_started_at", "heartbeat_at", "worker_id",
                            "run_after"])
    record_event(
        job_id=job.pk, event_type=EventType.STARTED,
        message=f"Attempt {job.attempts} started on {worker_id}",
        data={"attempt": job.attempts, "worker_id": worker_id, "resumed": bool(job.checkpoint)},
    )


def running_job(*, job: CrateJob) -> QuerySet[CrateJob]:
    """The job's row as long as this attempt still owns it: every write of the runner is fenced by it."""
    return CrateJob.objects.filter(pk=job.pk, status=Status.RUNNING, attempts=job.attempts)


def finish_complete(*, job: CrateJob, result: dict, counters: dict, message: str) -> bool:
    with transaction.atomic():
        updated = running_job(job=job).update(
            status=Status.COMPLETE, progress=100, stage="done", stage_message=message[:500],
            finished_at=timezone.now(), heartbeat_at=timezone.now(), result=result,
            resolved_version=str(result.get("version") or "")[:128] or F("resolved_version"),
            error_message="", error_type="", traceback="", **counters,
        )
        if updated:
            record_event(job_id=job.pk, event_type=EventType.COMPLETED, message=message, data={"result": result})
    return bool(updated)


def finish_failed(*, job: CrateJob, message: str, error_type: str, traceback: str) -> bool:
    with transaction.atomic():
        updated = running_job(job=job).update(
            status=Status.FAILED, finished_at=timezone.now(), heartbeat_at=timezone.now(),
            error_message=message, error_type=error_type[:100], traceback=traceback,
            stage_message=f"Failed: {message}"[:500],
        )
        if updated:
            record_event(job_id=job.pk, event_type=EventType.FAILED, message=message,
                         data={"error_type": error_type, "attempt": job.attempts})
    return bool(updated)


def finish_cancelled(*, job: CrateJob) -> bool:
    now = timezone.now()
    with transaction.atomic():
        updated = running_job(job=job).update(
            status=Status.CANCELLED, finished_at=now, heartbeat_at=now,
            cancel_requested_at=Coalesce(F("cancel_requested_at"), Now()),
            stage_message=_cancelled_message(job=job),
        )
        if updated:
            record_event(job_id=job.pk, event_type=EventType.CANCELLED,
                         message="Stopped at the next check; work of this attempt was rolled back")
    return bool(updated)


def _cancelled_message(*, job: CrateJob) -> str:
    """What a stopped job's stage says: the previous release stays, unless a removal stopped it to delete it."""
    removal = (
        CrateJob.objects.filter(operation=Operation.REMOVE, normalized_name=job.normalized_name,
                                status__in=CrateJob.ACTIVE_STATUSES, created_at__gte=job.created_at)
        .order_by("created_at").first()
    )  # fmt: skip
    if removal is None:
        return "Cancelled; the previous release stays active"
    return f"Cancelled for the removal of {job.crate_name} (job {removal.pk}), which deletes or hides what is stored"


def requeue_after_failure(*, job: CrateJob, message: str, error_type: str, delay: float) -> bool:
    """Put a job that hit a transient error back in the queue; it resumes from its checkpoint after ``delay``."""
    run_after = timezone.now() + timedelta(seconds=delay)
    with transaction.atomic():
        updated = running_job(job=job).update(
            status=Status.QUEUED, run_after=run_after, worker_id="", error_message=message,
            # The message is written once and read for as long as the job waits: an absolute time stays true.
            error_type=error_type[:100],
            stage_message=f"Retrying at {run_after:%H:%M:%S} UTC (in {delay:.0f} s): {message}"[:500],
        )
        if updated:
            record_event(job_id=job.pk, event_type=EventType.RETRIED,
                         message=f"Attempt {job.attempts} failed ({message}); retrying in {delay:.0f} s",
                         data={"error_type": error_type, "attempt": job.attempts, "delay_s": round(delay, 1),
                               "run_after": run_after.isoformat()})
    return bool(updated)


def cancel_locked(*, job: CrateJob, reason: str) -> None:
    now = timezone.now()
    if job.status == Status.QUEUED:
        job.status = Status.CANCELLED
        job.cancel_requested_at = now
        job.finished_at = now
        job.run_after = None
        # A queued job with attempts behind it is waiting for its retry: it did run.
        if job.attempts:
            job.stage_message = f"Cancelled while waiting to retry after attempt {job.attempts} ({reason})"[:500]
            event_message = f"Cancelled while waiting for attempt {job.attempts + 1}"
        else:
            job.stage_message = f"Cancelled before it started ({reason})"[:500]
            event_message = "Cancelled while queued; it never ran"
        job.save(update_fields=["status", "cancel_requested_at", "finished_at", "run_after", "stage_message"])
        record_event(job_id=job.pk, event_type=EventType.CANCEL_REQUESTED, message=reason)
        record_event(job_id=job.pk, event_type=EventType.CANCELLED, message=event_message)
        logger.info("job %s cancelled while queued (%s)", job.pk, reason)
    elif job.status == Status.RUNNING and job.cancel_requested_at is None:
        job.cancel_requested_at = now
        job.save(update_fields=["cancel_requested_at"])
        record_event(job_id=job.pk, event_type=EventType.CANCEL_REQUESTED,
                     message=f"{reason}; the worker stops at its next check")
        logger.info("job %s asked to stop (%s)", job.pk, reason)


def cancel_ingests_older_than(*, removal: CrateJob) -> list[uuid.UUID]:
    """Stop the active ingests of a removal's crate that were queued before it.

    ``enqueue_removal`` cancels them before writing the removal, so these are the ones an 'add' queued in
    between: older than the removal, nothing holds them back, and the removal would wait for a whole ingest.
    """
    return cancel_active_ingests(normalized_name=removal.normalized_name, reason=f"removal of {removal.crate_name}",
                                  created_before=removal.created_at)


def cancel_active_ingests(*, normalized_name: str, reason: str, created_before=None) -> list[uuid.UUID]:
    active = CrateJob.objects.filter(
        operation=Operation.INGEST, normalized_name=normalized_name, status__in=CrateJob.ACTIVE_STATUSES
    )
    if created_before is not None:
        active = active.filter(created_at__lt=created_before)
    with transaction.atomic():
        jobs = list(active.select_for_update())
        for job in jobs:
            cancel_locked(job=job, reason=reason)
    return [job.pk for job in jobs]
