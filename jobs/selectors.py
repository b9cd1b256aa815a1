"""Reads on jobs, and the one serialiser the API, MCP and admin use."""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from crates.errors import InvalidInput, JobNotFound
from crates.names import normalize_crate_name, validate_crate_name
from jobs import fastpath
from jobs.models import CrateJob, JobEvent, WorkerHeartbeat, retry_can_help
from jobs.services import ALL_VERSIONS, parse_job_id

MAX_PAGE_SIZE = 100
EVENTS_IN_STATUS = 50


@dataclass(slots=True)
class Page:
    items: list[dict] = field(default_factory=list)
    page: int = 1
    page_size: int = 20
    total: int = 0
    pages: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def get_job(*, job_id: uuid.UUID | str) -> CrateJob:
    pk = parse_job_id(job_id)
    try:
        return CrateJob.objects.get(pk=pk)
    except CrateJob.DoesNotExist:
        raise _not_found(pk) from None


def job_status(*, job_id: uuid.UUID | str) -> dict:
    """``job_as_dict(get_job(job_id=...), events=True)``: the status poll of every client (API, MCP)."""
    pk = parse_job_id(job_id)
    data = fastpath.job_status_document(job_id=pk, events_limit=EVENTS_IN_STATUS)
    if data is None:
        raise _not_found(pk)
    data["max_attempts"] = settings.JOB_MAX_ATTEMPTS
    first_started = data.pop("first_started_at") or data["started_at"]
    for key, start in (("duration_s", first_started), ("last_attempt_duration_s", data["started_at"])):
        run_us = data[key]  # microseconds between start and finish, when both are set
        if run_us is not None:
            data[key] = round(timedelta(microseconds=run_us).total_seconds(), 2)
        elif start:
            data[key] = _seconds_between(datetime.fromisoformat(start), None)
    data["result"] = data["result"] or None
    data["retryable"] = retry_can_help(status=data["status"], error_type=(data["error"] or {}).get("type"))
    data["events"] = data.pop("events") or []  # last: the key order of job_as_dict
    return data


def job_events(*, job_id: uuid.UUID | str, limit: int = 50) -> list[JobEvent]:
    """The job's most recent ``limit`` events, oldest first."""
    pk = parse_job_id(job_id)
    latest = list(JobEvent.objects.filter(job_id=pk).order_by("-created_at", "-id")[: max(1, limit)])
    latest.reverse()
    return latest


def list_jobs(*, status: str | None = None, crate: str | None = None, page: int = 1, page_size: int = 20) -> Page:
    """Jobs, newest first, optionally filtered by status and crate (any spelling of the name)."""
    jobs = CrateJob.objects.all()
    if status:
        if status not in CrateJob.Status.values:
            raise InvalidInput(f"Unknown job status {status!r}; use one of {', '.join(CrateJob.Status.values)}.")
        jobs = jobs.filter(status=status)
    if crate:
        jobs = jobs.filter(normalized_name=normalize_crate_name(validate_crate_name(crate, field="crate")))
    page_size = max(1, min(MAX_PAGE_SIZE, int(page_size)))
    page = max(1, int(page))
    total = jobs.count()
    offset = (page - 1) * page_size
    rows = list(jobs.order_by("-created_at")[offset: offset + page_size])
    return Page(items=[job_as_dict(job) for job in rows], page=page, page_size=page_size, total=total,
                pages=math.ceil(total / page_size))


def workers_alive() -> int:
    """How many workers sent a heartbeat recently (any process, any machine)."""
    from jobs.recovery import worker_alive_seconds

    since = timezone.now() - timedelta(seconds=worker_alive_seconds())
    return WorkerHeartbeat.objects.filter(last_seen__gte=since).count()


def health_summary() -> dict:
    """Queue depth, recent outcomes and live workers, from the database (valid across processes and machines)."""
    from jobs.recovery import worker_alive_seconds

    now = timezone.now()
    day_ago = now - timedelta(hours=24)
    by_status = dict(
        CrateJob.objects.filter(status__in=CrateJob.ACTIVE_STATUSES)
        .values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    recent = CrateJob.objects.filter(finished_at__gte=day_ago).aggregate(
        failed=Count("pk", filter=Q(status=CrateJob.Status.FAILED)),
        complete=Count("pk", filter=Q(status=CrateJob.Status.COMPLETE)),
        cancelled=Count("pk", filter=Q(status=CrateJob.Status.CANCELLED)),
    )
    oldest = CrateJob.objects.filter(status=CrateJob.Status.QUEUED).aggregate(oldest=Min("created_at"))["oldest"]
    alive_since = now - timedelta(seconds=worker_alive_seconds())
    workers = [
        {
            "worker_id": w.worker_id, "hostname": w.hostname, "pid": w.pid,
            "started_at": _iso(w.started_at), "last_seen": _iso(w.last_seen),
            "last_seen_age_s": round((now - w.last_seen).total_seconds(), 1),
            "current_job_id": str(w.current_job_id) if w.current_job_id else None,
        }
        for w in WorkerHeartbeat.objects.filter(last_seen__gte=alive_since).order_by("worker_id")
    ]
    return {
        "queued": by_status.get(CrateJob.Status.QUEUED, 0),
        "running": by_status.get(CrateJob.Status.RUNNING, 0),
        "failed_24h": recent["failed"],
        "complete_24h": recent["complete"],
        "cancelled_24h": recent["cancelled"],
        "workers_alive": len(workers),
        "oldest_queued_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
        "max_concurrent_jobs": settings.MAX_CONCURRENT_JOBS,
        "workers": workers,
    }


def job_as_dict(job: CrateJob, *, events: bool = False) -> dict:
    """The one JSON shape of a job. No traceback here (it can leak paths); the admin shows it from the model.

    ``jobs.fastpath`` builds the same document in SQL for the status poll (tests/test_jobs_fastpath.py
    compares the two).
    """
    data = {
        "id": str(job.pk),
        "operation": job.operation,
        "crate": job.crate_name,
        "normalized_name": job.normalized_name,
        "version": None if job.requested_version == ALL_VERSIONS else job.requested_version,
        "resolved_version": job.resolved_version or None,
        "status": job.status,
        "finished": job.is_finished,
        "progress": job.progress,
        "stage": job.stage,
        "stage_message": job.stage_message,
        "counters": {name: getattr(job, name) for name in CrateJob.COUNTERS},
        "options": job.options,
        "requested_by": job.requested_by,
        "attempts": job.attempts,
        "max_attempts": settings.JOB_MAX_ATTEMPTS,
        "worker_id": job.worker_id or None,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "heartbeat_at": _iso(job.heartbeat_at),
        "cancel_requested_at": _iso(job.cancel_requested_at),
        "run_after": _iso(job.run_after),
        # The whole (first start to finish, back-offs between attempts included) and the last attempt alone.
        "duration_s": _seconds_between(job.first_started_at or job.started_at, job.finished_at),
        "last_attempt_duration_s": _seconds_between(job.started_at, job.finished_at),
        "error": {"type": job.error_type, "message": job.error_message} if job.error_message else None,
        "result": job.result or None,
        "retry_of": str(job.retry_of_id) if job.retry_of_id else None,
        "retryable": job.retryable,
    }
    if events:
        rows = list(
            JobEvent.objects.filter(job_id=job.pk).order_by("-created_at", "-id")
            .values_list("event_type", "message", "data", "created_at")[:EVENTS_IN_STATUS]
        )
        data["events"] = [
            {"type": kind, "message": message, "data": extra, "at": _iso(at)}
            for kind, message, extra, at in reversed(rows)
        ]
    return data


def _not_found(pk: uuid.UUID) -> JobNotFound:
    return JobNotFound(f"There is no job {pk}; finished jobs are kept {settings.JOB_RETENTION_DAYS} days.",
                       job_id=str(pk))


def event_as_dict(event: JobEvent) -> dict:
    return {"type": event.event_type, "message": event.message, "data": event.data, "at": _iso(event.created_at)}


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _seconds_between(started_at, finished_at) -> float | None:
    if not started_at:
        return None
    end = finished_at or timezone.now()
    return round((end - started_at).total_seconds(), 2)
