"""JSON API for jobs: thin handlers over jobs.selectors and jobs.services."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from django.urls import reverse
from ninja import Field, Query, Router, Schema, Status

from config.api_common import ERRORS, MAX_PAGE, MAX_PAGE_SIZE, READ_AUTH, WRITE_AUTH, Open, as_dict, checked
from crates.names import validate_crate_name
from jobs import selectors, services
from jobs.models import CrateJob

router = Router()


class JobCounters(Open):
    items_found: int = 0
    items_processed: int = 0
    documents: int = 0
    chunks: int = 0
    embeddings: int = 0
    http_requests: int = 0


class JobErrorOut(Schema):
    type: str
    message: str


class JobEventOut(Open):
    type: str
    message: str
    data: dict[str, Any] = {}
    at: datetime | None = None


class JobOut(Open):
    """``jobs.selectors.job_as_dict``: the one shape of a job in the API, MCP and the admin."""

    id: UUID
    operation: str = Field(description="ingest or remove")
    crate: str
    version: str | None = Field(None, description="Requested version; null for 'every version' (removals)")
    resolved_version: str | None = None
    status: str = Field(description="queued, running, complete, failed or cancelled")
    finished: bool
    progress: int = Field(description="0-100")
    stage: str = ""
    stage_message: str = ""
    counters: JobCounters
    options: dict[str, Any] = {}
    requested_by: str = ""
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    error: JobErrorOut | None = None
    result: dict[str, Any] | None = None
    retry_of: UUID | None = None


class Links(Schema):
    job: str
    crate: str


class JobAccepted(Schema):
    job: JobOut
    deduplicated: bool
    links: Links


def accepted(job: CrateJob, *, deduplicated: bool) -> dict[str, Any]:
    """The 202 body of every request that starts (or finds) a job."""
    return {
        "job": selectors.job_as_dict(job),
        "deduplicated": deduplicated,
        "links": {
            "job": reverse("api-v1:get_job", kwargs={"job_id": job.id}),
            "crate": reverse("api-v1:get_crate", kwargs={"name": job.crate_name}),
        },
    }


class JobListParams(Schema):
    status: CrateJob.Status | None = Field(None, description="queued, running, complete, failed or cancelled.")
    crate: str | None = Field(None, max_length=200)
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)


class JobPage(Schema):
    items: list[JobOut]
    page: int
    page_size: int
    total: int
    pages: int


class JobDetailOut(JobOut):
    events: list[JobEventOut] = []


@router.get("/jobs", auth=READ_AUTH, response={200: JobPage, **ERRORS}, summary="List jobs, newest first")
def list_jobs(request: HttpRequest, params: Query[JobListParams]):
    page = selectors.list_jobs(
        status=params.status.value if params.status else None,
        crate=checked("crate", validate_crate_name, params.crate) if params.crate else None,
        page=params.page,
        page_size=params.page_size,
    )
    return as_dict(page)


@router.get(
    "/jobs/{job_id}",
    auth=READ_AUTH,
    response={200: JobDetailOut, **ERRORS},
    url_name="get_job",
    summary="One job: status, progress, stage, counters, timestamps, error and recent events",
)
def get_job(request: HttpRequest, job_id: UUID):
    return selectors.job_as_dict(selectors.get_job(job_id=job_id), events=True)


@router.post(
    "/jobs/{job_id}/cancel",
    auth=WRITE_AUTH,
    response={200: JobDetailOut, **ERRORS},
    summary="Ask a queued or running job to stop (409 if it has finished)",
)
def cancel_job(request: HttpRequest, job_id: UUID):
    return selectors.job_as_dict(services.cancel_job(job_id=job_id), events=True)


@router.post(
    "/jobs/{job_id}/retry",
    auth=WRITE_AUTH,
    response={202: JobAccepted, **ERRORS},
    summary="Run a failed or cancelled job again (409 otherwise)",
)
def retry_job(request: HttpRequest, job_id: UUID):
    result = services.retry_job(job_id=job_id, requested_by="api")
    return Status(202, accepted(result.job, deduplicated=result.deduplicated))
