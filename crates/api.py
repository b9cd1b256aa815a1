"""JSON API for crates, search and items: thin handlers over crates.selectors and jobs.services."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from config.api_common import (
    ERRORS,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    MAX_QUERY_LENGTH,
    MAX_SEARCH_LIMIT,
    READ_AUTH,
    WRITE_AUTH,
    Open,
    as_dict,
    check_item_path,
    checked,
    optional_version,
    parse_kinds,
)
from crates import selectors
from crates.errors import InvalidInput
from crates.names import MAX_CRATE_NAME_LENGTH, validate_crate_name, validate_version
from crates.search.scope import KINDS
from jobs import services as job_services
from jobs.api import JobAccepted, accepted

router = Router()

# --- schemas ----------------------------------------------------------------------------------


class CrateIn(Schema):
    name: str = Field(..., max_length=200, description="Crate name as on crates.io, e.g. `serde_json`.")
    version: str | None = Field(
        None, max_length=200, description="Exact SemVer version, or `latest` / omitted for the newest release."
    )
    force: bool = Field(False, description="Re-ingest even if this version is already stored and unchanged.")


class CrateSummaryOut(Open):
    name: str
    description: str | None = None
    repository: str | None = None
    latest_version: str | None = None
    docs_source: str | None = None
    documents: int = 0
    chunks: int = 0
    embeddings: int = 0
    last_updated: datetime | None = None
    deleted: bool = False
    latest_job_status: str | None = None
    latest_job_id: UUID | None = None


class CratePage(Schema):
    items: list[CrateSummaryOut]
    page: int
    page_size: int
    total: int
    pages: int


class CrateDetailOut(CrateSummaryOut):
    releases: list[dict[str, Any]] = []
    latest_job: dict[str, Any] | None = None


class CrateListParams(Schema):
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)
    search: str | None = Field(None, max_length=MAX_CRATE_NAME_LENGTH * 2, description="Filter by name.")
    include_deleted: bool = False


class RemoveParams(Schema):
    version: str | None = Field(None, max_length=200, description="Remove only this version's releases.")
    soft: bool = Field(False, description="Hide the crate from list and search instead of deleting it.")


class SearchParams(Schema):
    q: str = Field(..., min_length=1, max_length=MAX_QUERY_LENGTH, description="Words, an identifier or a path.")
    crate: str | None = Field(None, max_length=200)
    version: str | None = Field(None, max_length=200)
    kind: str | None = Field(
        None, max_length=300, description="Item kind(s), comma-separated: " + ", ".join(sorted(KINDS))
    )
    limit: int = Field(10, ge=1, le=MAX_SEARCH_LIMIT)


class SearchHitOut(Open):
    crate: str
    version: str
    path: str
    kind: str
    signature: str = ""
    snippet: str = ""
    url: str = ""
    score: float
    signals: list[str] = []


class SearchOut(Schema):
    query: str
    count: int
    results: list[SearchHitOut]


class ItemChildOut(Open):
    path: str
    kind: str
    signature: str = ""
    summary: str = ""


class ItemOut(Open):
    crate: str
    version: str
    path: str
    kind: str
    signature: str = ""
    docs: str = ""
    url: str = ""
    deprecated: bool = False
    deprecation_note: str = ""
    parent_path: str = ""
    children: list[ItemChildOut] = []
    metadata: dict[str, Any] = {}


class ItemParams(Schema):
    version: str | None = Field(None, max_length=200)


# --- helpers ----------------------------------------------------------------------------------


# --- crates -----------------------------------------------------------------------------------


@router.post(
    "/crates",
    auth=WRITE_AUTH,
    response={202: JobAccepted, **ERRORS},
    summary="Add (ingest) a crate; answers at once with a job to poll",
)
def add_crate(request: HttpRequest, payload: CrateIn):
    result = job_services.enqueue_ingest(
        name=payload.name, version=payload.version, force=payload.force, requested_by="api"
    )
    return Status(202, accepted(result.job, deduplicated=result.deduplicated))


@router.get("/crates", auth=READ_AUTH, response={200: CratePage, **ERRORS}, summary="List crates with their stats")
def list_crates(request: HttpRequest, params: Query[CrateListParams]):
    page = selectors.list_crates(
        search=params.search.strip() if params.search else None,
        include_deleted=params.include_deleted,
        page=params.page,
        page_size=params.page_size,
    )
    return as_dict(page)


@router.get(
    "/crates/{name}",
    auth=READ_AUTH,
    response={200: CrateDetailOut, **ERRORS},
    url_name="get_crate",
    summary="One crate: stats, releases and its latest job",
)
def get_crate(request: HttpRequest, name: str):
    return selectors.get_crate(name=checked("name", validate_crate_name, name))


@router.delete(
    "/crates/{name}",
    auth=WRITE_AUTH,
    response={202: JobAccepted, **ERRORS},
    summary="Remove a crate (or one version) in a background job",
)
def remove_crate(request: HttpRequest, name: str, params: Query[RemoveParams]):
    version = None
    if params.version is not None:
        version = checked("version", validate_version, params.version)
        if version == "latest":
            # Deleting "the newest version" by accident would be hard to undo; ask for it by number.
            raise InvalidInput(
                "Give the exact version to remove (e.g. '1.0.3'), or no version to remove the whole crate.",
                field="version",
            )
    result = job_services.enqueue_removal(
        name=checked("name", validate_crate_name, name),
        version=version,
        soft=params.soft,
        requested_by="api",
    )
    return Status(202, accepted(result.job, deduplicated=result.deduplicated))


@router.post(
    "/crates/{name}/restore",
    auth=WRITE_AUTH,
    response={200: CrateDetailOut, **ERRORS},
    summary="Undo a soft delete",
)
def restore_crate(request: HttpRequest, name: str):
    crate = job_services.restore_crate(name=checked("name", validate_crate_name, name))
    return selectors.get_crate(name=crate.name)


# --- search and items -------------------------------------------------------------------------


@router.get(
    "/search",
    auth=READ_AUTH,
    response={200: SearchOut, **ERRORS},
    tags=["search"],
    summary="Search the documentation (vector + keyword + path signals)",
)
def search(request: HttpRequest, params: Query[SearchParams]):
    query = params.q.strip()
    if not query or "\x00" in query:
        raise InvalidInput("The search query is empty.", field="q")
    hits = selectors.search_docs(
        query=query,
        crate=checked("crate", validate_crate_name, params.crate) if params.crate else None,
        version=optional_version("version", params.version),
        kinds=parse_kinds(params.kind),
        limit=params.limit,
    )
    results = [as_dict(hit) for hit in hits]
    return {"query": query, "count": len(results), "results": results}


@router.get(
    "/items/{crate}/{path:path}",
    auth=READ_AUTH,
    response={200: ItemOut, **ERRORS},
    tags=["search"],
    summary="One documented item by its public path, e.g. /items/tokio/tokio::sync::Mutex",
)
def get_item(request: HttpRequest, crate: str, path: str, params: Query[ItemParams]):
    detail = selectors.get_item(
        crate=checked("crate", validate_crate_name, crate),
        path=check_item_path(path),
        version=optional_version("version", params.version),
    )
    return as_dict(detail)
