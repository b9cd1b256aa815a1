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


class SearchHitOut(ItemRefOut):
    snippet: str = ""
    url: str = ""
    score: float
    signals: list[str] = []
    type_match: str = Field("", description="How a type query matched, e.g. 'Duration → Sleep'")


class SearchOut(BaseModel):
    query: str
    count: int
    results: list[SearchHitOut]


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
    implementors: list[ImplementationOut] | None = Field(None, description="A trait's impls in the crate")
    implements: list[ImplementationOut] | None = Field(None, description="The traits a type implements")


class ImplementationsOut(BaseModel):
    crate: str
    version: str
    item: str | None = None
    trait: str | None = None
    type: str | None = None
    count: int
    implementations: list[ImplementationOut]
