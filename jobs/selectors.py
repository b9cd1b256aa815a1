"""Reads on jobs, and the one serialiser the API, MCP and admin use."""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from crates.errors import InvalidInput, JobNotFound
from crates.names import normalize_crate_name
from jobs.models import CrateJob, JobEvent, WorkerHeartbeat
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
        raise JobNotFound(f"There is no job {pk}; finished jobs are kept {settings.JOB_RETENTION_DAYS} days.",
                          job_id=str(pk)) from None


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
        jobs = jobs.filter(normalized_name=normalize_crate_name(crate))
    page_size = max(1, min(MAX_PAGE_SIZE, int(page_size)))
    page = max(1, int(page))
    total = jobs.count()
    offset = (page - 1) * page_size
    rows = list(jobs.order_by("-created_at")[offset: offset + page_size])
    return Page(items=[job_as_dict(job) for job in rows], page=page, page_size=page_size, total=total,
                pages=math.ceil(total / page_size))


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
    """The one JSON shape of a job. No traceback here (it can leak paths); the admin shows it from the model."""
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
        "counters": {
            "items_found": job.items_found,
            "items_processed": job.items_processed,
            "documents": job.documents,
            "chunks": job.chunks,
            "embeddings": job.embeddings,
            "http_requests": job.http_requests,
        },
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
        "duration_s": _duration(job),
        "error": {"type": job.error_type, "message": job.error_message} if job.error_message else None,
        "result": job.result or None,
        "retry_of": str(job.retry_of_id) if job.retry_of_id else None,
    }
    if events:
        # Plain rows, not model instances: this is the status poll every UI makes.
        rows = list(
            JobEvent.objects.filter(job_id=job.pk).order_by("-created_at", "-id")
            .values_list("event_type", "message", "data", "created_at")[:EVENTS_IN_STATUS]
        )
        data["events"] = [
            {"type": kind, "message": message, "data": extra, "at": _iso(at)}
            for kind, message, extra, at in reversed(rows)
        ]
    return data


def event_as_dict(event: JobEvent) -> dict:
    return {"type": event.event_type, "message": event.message, "data": event.data, "at": _iso(event.created_at)}


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _duration(job: CrateJob) -> float | None:
    if not job.started_at:
        return None
    end = job.finished_at or timezone.now()
    return round((end - job.started_at).total_seconds(), 2)
