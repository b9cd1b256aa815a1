"""JSON API for crates, search and items: thin handlers over crates.selectors and jobs.services."""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from pydantic import ConfigDict, WithJsonSchema

from config.api_fields import ITEM_PATH_PATTERN, MAX_ITEM_PATH_LENGTH, QUERY_PATTERN, crate_name, kind_pattern, version
from crates import selectors, trait_graph
from crates import services as crate_services
from crates.api_common import ERRORS, READ_AUTH, WRITE_AUTH, BodyBool, PageParams, QueryBool, refuse_unknown_query
from crates.fronts import (
    MAX_NAME_INPUT,
    MAX_QUERY_LENGTH,
    MAX_SEARCH_LIMIT,
    check_item_path,
    crate_page,
    item_detail,
    kind_words,
    search_results,
)
from crates.names import CRATE_NAME_PATTERN, MAX_CRATE_NAME_LENGTH
from crates.schemas import CrateDetailOut, CratePage, ImplementationsOut, ItemOut, SearchOut
from crates.search.scope import KINDS
from jobs import services as job_services
from jobs.api import JobAccepted, accepted

router = Router()

# --- request schemas (the output models are shared with MCP: crates.schemas) ------------------


class CrateIn(Schema):
    # A misspelt option ({"foce": true}) must not quietly queue a job without it.
    model_config = ConfigDict(extra="forbid")

    name: str = crate_name(description="Crate name as on crates.io, e.g. `serde_json`.")
    version: str | None = version(description="Exact SemVer version, or `latest` / omitted for the newest release.")
    force: BodyBool = Field(False, description="Re-ingest even if this version is already stored and unchanged.")


class CrateListParams(PageParams):
    search: str | None = Field(None, max_length=MAX_CRATE_NAME_LENGTH * 2, description="Filter by name.")
    include_deleted: QueryBool = Field(False, description="Also list soft-deleted crates (true/false, 1/0).")


class RemoveParams(Schema):
    version: str | None = version(exact=True, description="Remove only this version's releases (exact SemVer).")
    soft: QueryBool = Field(
        False, description="Hide the crate from list and search instead of deleting it (not with a `version`: 422)."
    )


class SearchParams(Schema):
    q: str = Field(
        ..., min_length=1, max_length=MAX_QUERY_LENGTH,
        description="Words, an identifier, a path, or a type query: `&str -> Value`, `-> JoinHandle`, `type:Duration`.",
        json_schema_extra={"pattern": QUERY_PATTERN},
    )
    crate: str | None = crate_name(None)
    version: str | None = version()
    kind: str | None = Field(
        None, max_length=300, description="Item kind(s), comma-separated: " + ", ".join(sorted(KINDS)),
        json_schema_extra={"pattern": kind_pattern(kind_words())},
    )
    limit: int = Field(10, ge=1, le=MAX_SEARCH_LIMIT)
    project: str | None = Field(
        None, max_length=MAX_NAME_INPUT, description="Only the versions its Cargo.lock locks (POST /lockfiles)"
    )


class ItemParams(Schema):
    version: str | None = version()
    project: str | None = Field(None, max_length=MAX_NAME_INPUT, description="At the version this project locks")


# Path parameters, described with the rules their validators apply (which word the errors).
CratePath = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": CRATE_NAME_PATTERN, "maxLength": MAX_NAME_INPUT})
]
ItemPath = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": ITEM_PATH_PATTERN, "maxLength": MAX_ITEM_PATH_LENGTH})
]


# --- crates -----------------------------------------------------------------------------------


@router.post(
    "/crates",
    auth=WRITE_AUTH,
    response={202: JobAccepted, **ERRORS},
    summary="Add (ingest) a crate; answers at once with a job to poll",
)
def add_crate(request: HttpRequest, payload: CrateIn):
    refuse_unknown_query(request)
    return accepted(
        job_services.enqueue_ingest(name=payload.name, version=payload.version, force=payload.force, requested_by="api")
    )


@router.get("/crates", auth=READ_AUTH, response={200: CratePage, **ERRORS}, summary="List crates with their stats")
def list_crates(request: HttpRequest, params: Query[CrateListParams]):
    refuse_unknown_query(request, CrateListParams)
    return crate_page(
        search=params.search, include_deleted=params.include_deleted, page=params.page, page_size=params.page_size
    )


@router.get(
    "/crates/{name}",
    auth=READ_AUTH,
    response={200: CrateDetailOut, **ERRORS},
    url_name="get_crate",
    summary="One crate: stats, releases and its latest job",
)
def get_crate(request: HttpRequest, name: CratePath):
    refuse_unknown_query(request)
    return selectors.get_crate(name=name)


@router.delete(
    "/crates/{name}",
    auth=WRITE_AUTH,
    response={202: JobAccepted, **ERRORS},
    summary="Remove a crate (or one version) in a background job",
)
def remove_crate(request: HttpRequest, name: CratePath, params: Query[RemoveParams]):
    refuse_unknown_query(request, RemoveParams)
    return accepted(
        job_services.enqueue_removal(name=name, version=params.version, soft=params.soft, requested_by="api")
    )


@router.post(
    "/crates/{name}/restore",
    auth=WRITE_AUTH,
    response={200: CrateDetailOut, **ERRORS},
    summary="Undo a soft delete",
)
def restore_crate(request: HttpRequest, name: CratePath):
    refuse_unknown_query(request)
    crate = crate_services.restore_crate(name=name)
    return selectors.get_crate(name=crate.name)


# --- search and items -------------------------------------------------------------------------


@router.get(
    "/search",
    auth=READ_AUTH,
    response={200: SearchOut, **ERRORS},
    tags=["search"],
    summary="Search the documentation (vector + keyword + path signals; type queries: '&str -> Value')",
)
def search(request: HttpRequest, params: Query[SearchParams]):
    refuse_unknown_query(request, SearchParams)
    return search_results(
        query=params.q, crate=params.crate, version=params.version, kind=params.kind, limit=params.limit,
        project=params.project,
    )


@router.get(
    "/items/{crate}/{path:path}/implementations",
    auth=READ_AUTH,
    response={200: ImplementationsOut, **ERRORS},
    tags=["search"],
    summary="A trait's implementors in the crate, or the traits a type implements (with generics and bounds)",
)
def item_implementations(request: HttpRequest, crate: CratePath, path: ItemPath, params: Query[ItemParams]):
    refuse_unknown_query(request, ItemParams)
    return trait_graph.item_implementations(crate=crate, path=check_item_path(path), version=params.version)


@router.get(
    "/items/{crate}/{path:path}",
    auth=READ_AUTH,
    response={200: ItemOut, **ERRORS},
    tags=["search"],
    summary="One documented item by its public path, e.g. /items/tokio/tokio::sync::Mutex",
)
def get_item(request: HttpRequest, crate: CratePath, path: ItemPath, params: Query[ItemParams]):
    refuse_unknown_query(request, ItemParams)
    return item_detail(crate=crate, path=path, version=params.version, project=params.project)
