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
    twins: list[str] = Field(
        default_factory=list, description="The same item documented in a sibling module (sync/unsync, bytes...)"
    )


class SearchOut(BaseModel):
    query: str
    count: int
    results: list[SearchHitOut]
    missing_crates: list[str] = Field(
        default_factory=list, description="Crates the query names that are not indexed: no result comes from them"
    )
    notice: str = Field("", description="How to add the missing crates; empty when none is missing")


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
    matched: str = Field(
        "exact",
        description="How the path asked for found this item: exact, alias, suffix (the only item whose path "
        "ends so) or case_insensitive (the only one, ignoring case). Never another item in its place.",
    )
    requested: str = Field("", description="The path as asked for, cleaned (generic arguments, `fn`... removed)")
