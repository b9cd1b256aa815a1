"""What the two fronts for programs share (JSON API and MCP): input limits and checks, the error body, and
the reads both make, so the two check and answer alike. No django-ninja here: MCP uses it too.

The output models the fronts share live in ``crates.schemas`` and ``jobs.schemas``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from crates import selectors
from crates.errors import InvalidInput
from crates.search.scope import KINDS

MAX_PAGE = 100_000
MAX_PAGE_SIZE = 100
MAX_QUERY_LENGTH = 500
MAX_SEARCH_LIMIT = 50
MAX_ITEM_PATH_LENGTH = 1000
# Long enough for any real crate name / version; longer input is refused by the schema, unread.
MAX_NAME_INPUT = 200
AUTH_HINT = (
    "Send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
    "(create one with 'manage.py create_api_key NAME' or in the admin)."
)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def as_dict(value: Any) -> dict[str, Any]:
    """Selectors answer with dataclasses or dicts; the schemas take dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return value
    return dict(vars(value))


# Kinds as Rust spells them ('fn', 'mod') and as rustdoc names its pages and anchors ('tymethod', 'structfield').
KIND_SYNONYMS = {
    "fn": "function", "mod": "module", "type": "type_alias", "const": "constant", "tymethod": "method",
    "structfield": "field", "associatedtype": "assoc_type", "associatedconstant": "assoc_const",
    "traitalias": "trait_alias", "typedef": "type_alias", "prim": "primitive",
}  # fmt: skip


def _kind(word: str) -> str:
    word = word.strip().lower().replace(" ", "_")
    if word in KINDS:
        return word
    if word in KIND_SYNONYMS:
        return KIND_SYNONYMS[word]
    singular = word[:-1] if word.endswith("s") else word  # "structs", "fns"
    return KIND_SYNONYMS.get(singular, singular) if singular in KINDS or singular in KIND_SYNONYMS else word


def kind_words() -> set[str]:
    """Every word ``parse_kinds`` takes for a kind, lower case (the schema states them: config.api_fields)."""
    words = KINDS | set(KIND_SYNONYMS)
    return {w for w in words | {f"{w}s" for w in words} if _kind(w) in KINDS}


def parse_kinds(value: str | None) -> list[str] | None:
    if not value:
        return None
    kinds = list(dict.fromkeys(_kind(k) for k in value.split(",") if k.strip()))
    unknown = sorted(set(kinds) - KINDS)
    if unknown:
        raise InvalidInput(
            f"Unknown item kind(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; "
            f"use one or more of: {', '.join(sorted(KINDS))}.",
            field="kind",
        )
    return kinds or None


def check_item_path(path: str) -> str:
    """An item path is Rust (`a::b::C`); file-system or URL tricks are refused before any lookup."""
    if len(path) > MAX_ITEM_PATH_LENGTH:  # as sent, as the schema states it
        raise InvalidInput(f"Item paths are at most {MAX_ITEM_PATH_LENGTH} characters.", field="path")
    path = path.strip()
    if not path:
        raise InvalidInput("An item path is required, e.g. `tokio::sync::Mutex`.", field="path")
    if "\x00" in path or "/" in path or "\\" in path or ".." in path:
        raise InvalidInput(
            "An item path is a Rust path such as `tokio::sync::Mutex`; '/', '\\', '..' and NUL are not allowed.",
            field="path",
        )
    return path


# --- the reads both fronts make; they answer in the shapes of crates.schemas ------------------------


def crate_page(*, search: str | None, include_deleted: bool, page: int, page_size: int) -> dict[str, Any]:
    """``CratePage``."""
    return as_dict(
        selectors.list_crates(
            search=search.strip() if search else None,
            include_deleted=include_deleted,
            page=page,
            page_size=page_size,
        )
    )


def search_results(
    *, query: str, crate: str | None, version: str | None, kind: str | None, limit: int, project: str | None = None
) -> dict[str, Any]:
    """``SearchOut``."""
    text = query.strip()
    if not text:
        raise InvalidInput("The search query is empty.", field="q")
    if "\x00" in text:
        raise InvalidInput("The search query contains a NUL character (\\x00); remove it and search again.", field="q")
    hits = selectors.search_docs(
        query=text,
        crate=crate or None,
        version=version,
        kinds=parse_kinds(kind),
        limit=limit,
        project=project or None,
    )
    results = [as_dict(hit) for hit in hits]
    return {"query": text, "count": len(results), "results": results, **selectors.search_notice(query=text)}


def item_detail(*, crate: str, path: str, version: str | None, project: str | None = None) -> dict[str, Any]:
    """``ItemOut``."""
    return as_dict(
        selectors.get_item(
            crate=crate,
            path=check_item_path(path),
            version=version,
            project=project or None,
        )
    )
