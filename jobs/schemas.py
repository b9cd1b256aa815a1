"""Output models of a job (``jobs.selectors.job_as_dict``): ONE set for the JSON API and the MCP tools."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, create_model

from crates.schemas import OpenModel, PageOut
from jobs.models import CrateJob

JobCounters = create_model("JobCounters", __base__=OpenModel, **{name: (int, 0) for name in CrateJob.COUNTERS})


class JobErrorOut(BaseModel):
    type: str
    message: str


class JobEventOut(OpenModel):
    type: str
    message: str
    data: dict[str, Any] = {}
    at: datetime | None = None


class JobOut(OpenModel):
    """``jobs.selectors.job_as_dict``: the one shape of a job in the API, MCP and the admin."""

    id: UUID
    operation: str = Field(description="ingest or remove")
    crate: str
    version: str | None = Field(None, description="Requested version; null for 'every version' (removals)")
    resolved_version: str | None = None
    status: str = Field(description="queued, running, complete, failed or cancelled")
    finished: bool
    progress: float = Field(description="0-100, to a tenth")
    stage: str = ""
    stage_message: str = ""
    counters: JobCounters
    options: dict[str, Any] = {}
    requested_by: str = ""
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = Field(None, description="Seconds from the first attempt's start to the finish "
                                     "(or now), waits between attempts included")
    last_attempt_duration_s: float | None = Field(None, description="Seconds of the last (or current) attempt")
    error: JobErrorOut | None = None
    result: dict[str, Any] | None = None
    retry_of: UUID | None = None
    retryable: bool = Field(False, description="A retry may help: cancelled, or failed with an error that may "
                            "not happen again (not an unknown crate or version, nor an invalid name)")


class JobDetailOut(JobOut):
    events: list[JobEventOut] = []


class JobPage(PageOut[JobOut]):
    pass


class JobAcceptedOut(BaseModel):
    """A request that starts a job answers at once with it (or with the identical job under way)."""

    job: JobOut
    deduplicated: bool = Field(description="True when an identical job was already queued or running")
