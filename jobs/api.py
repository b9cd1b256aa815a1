"""JSON API for jobs: thin handlers over jobs.selectors and jobs.services."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest
from django.urls import reverse
from ninja import Field, Query, Router, Schema, Status

from config.api_fields import crate_name
from crates.api_common import ERRORS, READ_AUTH, WRITE_AUTH, PageParams, refuse_unknown_query
from crates.fronts import as_dict
from jobs import selectors, services
from jobs.models import CrateJob
from jobs.schemas import JobAcceptedOut, JobDetailOut, JobPage

router = Router()

# The output models are shared with MCP: jobs.schemas.


class Links(Schema):
    job: str
    crate: str


class JobAccepted(JobAcceptedOut):
    links: Links


def accepted(result: services.EnqueueResult) -> Status:
    """The 202 answer of every request that starts (or finds) a job."""
    job = result.job
    return Status(
        202,
        {
            "job": selectors.job_as_dict(job),
            "deduplicated": result.deduplicated,
            "links": {
                "job": reverse("api-v1:get_job", kwargs={"job_id": job.id}),
                "crate": reverse("api-v1:get_crate", kwargs={"name": job.crate_name}),
            },
        },
    )


class JobListParams(PageParams):
    status: CrateJob.Status | None = Field(None, description="queued, running, complete, failed or cancelled.")
    crate: str | None = crate_name(None)


@router.get("/jobs", auth=READ_AUTH, response={200: JobPage, **ERRORS}, summary="List jobs, newest first")
def list_jobs(request: HttpRequest, params: Query[JobListParams]):
    refuse_unknown_query(request, JobListParams)
    page = selectors.list_jobs(
        status=params.status.value if params.status else None,
        crate=params.crate,
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
    refuse_unknown_query(request)
    return selectors.job_status(job_id=job_id)


@router.post(
    "/jobs/{job_id}/cancel",
    auth=WRITE_AUTH,
    response={200: JobDetailOut, **ERRORS},
    summary="Ask a queued or running job to stop (409 if it has finished)",
)
def cancel_job(request: HttpRequest, job_id: UUID):
    refuse_unknown_query(request)
    return selectors.job_as_dict(services.cancel_job(job_id=job_id), events=True)


@router.post(
    "/jobs/{job_id}/retry",
    auth=WRITE_AUTH,
    response={202: JobAccepted, **ERRORS},
    summary="Run a failed or cancelled job again (409 otherwise)",
)
def retry_job(request: HttpRequest, job_id: UUID):
    refuse_unknown_query(request)
    return accepted(services.retry_job(job_id=job_id, requested_by="api"))
