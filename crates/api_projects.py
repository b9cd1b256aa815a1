"""JSON API for projects: a Cargo.lock (and Cargo.toml) in, one ingest job per locked crates.io version out.

Thin handlers over crates.projects, the same service the MCP tool and ``ingest_crate --lockfile`` call.
"""

from __future__ import annotations

import dataclasses

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import ConfigDict

from crates import projects
from crates.api_common import ERRORS, READ_AUTH, WRITE_AUTH, BodyBool, refuse_unknown_query
from crates.fronts import MAX_NAME_INPUT
from crates.lockfiles import MAX_LOCKFILE_BYTES, MAX_MANIFEST_BYTES
from crates.schemas import LockfileOut, ProjectDetailOut, ProjectListOut

router = Router()


class LockfileIn(Schema):
    model_config = ConfigDict(extra="forbid")

    lockfile: str = Field(..., max_length=MAX_LOCKFILE_BYTES, description="The text of Cargo.lock (v1 to v4).")
    manifest: str | None = Field(
        None, max_length=MAX_MANIFEST_BYTES, description="The text of the project's Cargo.toml (a workspace's too)."
    )
    direct_only: BodyBool = Field(False, description="Only the direct dependencies (normal, dev and build).")
    project: str | None = Field(
        None, max_length=MAX_NAME_INPUT, description="Save the locked versions under this name for search and items."
    )


@router.post(
    "/lockfiles",
    auth=WRITE_AUTH,
    response={202: LockfileOut, **ERRORS},
    summary="Ingest the exact versions a Cargo.lock locks (one job per crate); optionally save them as a project",
)
def add_lockfile(request: HttpRequest, payload: LockfileIn):
    refuse_unknown_query(request)
    result = projects.add_from_lockfile(
        lockfile=payload.lockfile,
        manifest=payload.manifest,
        direct_only=payload.direct_only,
        project=payload.project,
        requested_by="api",
    )
    return Status(202, dataclasses.asdict(result))


@router.get("/projects", auth=READ_AUTH, response={200: ProjectListOut, **ERRORS}, summary="Saved projects")
def list_projects(request: HttpRequest):
    refuse_unknown_query(request)
    return {"items": projects.list_projects()}


@router.get(
    "/projects/{name}",
    auth=READ_AUTH,
    response={200: ProjectDetailOut, **ERRORS},
    summary="One project: its locked crates, which are direct, the features it enables, which are ingested",
)
def get_project(request: HttpRequest, name: str):
    refuse_unknown_query(request)
    return projects.project_detail(name=name)


class ProjectDeletedOut(Schema):
    project: str
    deleted: bool
    packages: int


@router.delete(
    "/projects/{name}",
    auth=WRITE_AUTH,
    response={200: ProjectDeletedOut, **ERRORS},
    summary="Forget a project (the crates' documentation stays)",
)
def delete_project(request: HttpRequest, name: str):
    refuse_unknown_query(request)
    return projects.delete_project(name=name)
