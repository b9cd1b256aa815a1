"""Output models of crates, search hits and items: ONE set for the JSON API and the MCP tools.

Plain pydantic models (no django-ninja import), so the MCP server can use them as tool output
schemas and ninja as response schemas. They take the dicts/dataclasses the selectors answer with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

ItemT = TypeVar("ItemT")


class OpenModel(BaseModel):
    """Documents the known fields and passes any newer ones through, so a selector can grow a field
    without breaking the API or an MCP client."""

    model_config = ConfigDict(extra="allow")


class PageOut(BaseModel, Generic[ItemT]):
    """The shape of ``crates.selectors.Page`` / ``jobs.selectors.list_jobs``; subclass it per item type."""

    items: list[ItemT]
    page: int
    page_size: int
    total: int
    pages: int


class CrateSummaryOut(OpenModel):
    name: str
    description: str | None = None
    repository: str | None = None
    latest_version: str | None = None
    versions: list[str] = Field(default_factory=list, description="Every searchable version, newest first")
    docs_source: str | None = None
    documents: int = 0
    chunks: int = 0
    embeddings: int = 0
    last_updated: datetime | None = None
    deleted: bool = False
    latest_job_status: str | None = None
    latest_job_id: UUID | None = None
    features: dict[str, Any] | None = Field(
        None, description="The newest release's crate features (sparse index): {default, features: {name: enables}}"
    )


class CratePage(PageOut[CrateSummaryOut]):
    pass


class CrateDetailOut(CrateSummaryOut):
    releases: list[dict[str, Any]] = []
    latest_job: dict[str, Any] | None = None


class ItemRefOut(OpenModel):
    """Where a documented item is (crate, version, path) and what it is (kind, signature)."""

    crate: str
    version: str
    path: str
    kind: str
    signature: str = ""


class GateOut(OpenModel):
    """What an item needs to compile: a crate feature or platform gate, from its `cfg`."""

    cfg: str = Field(description='The gate in Rust syntax, e.g. `all(feature = "net", unix)`')
    features: list[str] = []
    platforms: list[str] = []
    text: str = Field("", description="In words, with the Cargo.toml line to add when a feature is needed")
    needs_features: list[str] | None = Field(
        None, description="With a project saved with its manifest: features it needs that the project does not enable"
    )
    cargo_toml: str | None = None
    badge: str = ""


class SearchHitOut(ItemRefOut):
    snippet: str = ""
    url: str = ""
    score: float
    signals: list[str] = []
    gate: GateOut | None = None
    semantic: str | None = Field(
        None, description="While the crate is still being embedded: how many of its chunks semantic ranking covers"
    )
    twins: list[str] = Field(
        default_factory=list, description="The same item documented in a sibling module (sync/unsync, bytes...)"
    )
    type_match: str = Field("", description="How a type query matched, e.g. 'Duration → Sleep'")


class SearchOut(BaseModel):
    query: str
    count: int
    results: list[SearchHitOut]
    missing_crates: list[str] = Field(
        default_factory=list, description="Crates the query names that are not indexed: no result comes from them"
    )
    notice: str = Field("", description="How to add the missing crates; empty when none is missing")


class ImplementationOut(OpenModel):
    """One ``impl Trait for Type`` (crates.trait_graph)."""

    trait: str
    trait_path: str = ""
    type: str
    type_path: str = ""
    declaration: str = ""
    bounds: str = ""
    blanket: bool = False
    negative: bool = False


class ItemChildOut(OpenModel):
    path: str
    kind: str
    signature: str = ""
    summary: str = ""


class ItemOut(ItemRefOut):
    docs: str = ""
    url: str = ""
    deprecated: bool = False
    deprecation_note: str = ""
    parent_path: str = ""
    children: list[ItemChildOut] = []
    metadata: dict[str, Any] = {}
    gate: GateOut | None = Field(None, description="The feature/platform gate, None when the item has none")
    matched: str = Field(
        "exact",
        description="How the path asked for found this item: exact, alias, suffix (the only item whose path "
        "ends so) or case_insensitive (the only one, ignoring case). Never another item in its place.",
    )
    requested: str = Field("", description="The path as asked for, cleaned (generic arguments, `fn`... removed)")
    implementors: list[ImplementationOut] | None = Field(None, description="A trait's impls in the crate")
    implements: list[ImplementationOut] | None = Field(None, description="The traits a type implements")


# --- projects (a Cargo.lock saved under a name) ------------------------------------------------------


class LockfileJobOut(BaseModel):
    crate: str
    version: str
    deduplicated: bool = Field(description="An identical ingest was already queued or running: that job is reused")
    job: dict[str, Any]
    dependency_kinds: list[str] | None = Field(
        None, description="A direct dependency's kinds from the manifest (normal, dev, build); None if not known"
    )


class SkippedPackageOut(BaseModel):
    crate: str
    version: str
    reason: str = Field(description="path, git, registry, already_active, not_direct or toolchain")
    detail: str = ""


class LockfileOut(BaseModel):
    project: str | None = None
    lockfile_version: int
    packages: int
    direct_from: str | None = Field(
        None, description="How direct dependencies were found: 'manifest' (normal, dev and build tables) or 'lockfile'"
    )
    jobs: list[LockfileJobOut]
    skipped: list[SkippedPackageOut]
    warnings: list[str] = []


class ProjectOut(OpenModel):
    name: str
    lockfile_version: int
    direct_only: bool
    has_manifest: bool
    packages: int
    ingested: int = Field(description="Locked versions that are ingested and searchable")
    created_at: datetime
    updated_at: datetime


class ProjectCrateOut(OpenModel):
    crate: str
    version: str
    source: str
    direct: bool
    dependency_kinds: list[str] = []
    features: list[str] = []
    default_features: bool = True
    ingested: bool


class ProjectDetailOut(ProjectOut):
    crates: list[ProjectCrateOut]


class ProjectListOut(BaseModel):
    items: list[ProjectOut]


class ImplementationsOut(BaseModel):
    crate: str
    version: str
    item: str | None = None
    trait: str | None = None
    type: str | None = None
    count: int
    implementations: list[ImplementationOut]
