"""Pieces shared by the fronts: API-key auth and the error body (API); input checks, limits and the
read requests both make (API and MCP), so the two fronts check and answer alike.

Kept apart from ``config.api`` so routers can import them without importing the API that mounts them.
The output models the fronts share live in ``crates.schemas`` and ``jobs.schemas``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Schema
from ninja.errors import AuthenticationError, AuthorizationError
from ninja.security import APIKeyHeader, HttpBearer
from pydantic import BeforeValidator, StrictBool

from crates import selectors
from crates.apikeys import find_api_key, verify_api_key
from crates.errors import InvalidInput
from crates.models import ApiKey
from crates.names import LATEST, validate_crate_name, validate_version
from crates.search.scope import KINDS

T = TypeVar("T")

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


# Booleans are strict: pydantic's lax mode takes "yes", "on", "t" or 1 for true, so {"force": "yes"} or a typo
# such as ?soft=flase would run a request the caller did not mean. A JSON body takes true/false only.
BodyBool = StrictBool
_QUERY_TRUE, _QUERY_FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


def _query_bool(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _QUERY_TRUE:
            return True
        if text in _QUERY_FALSE:
            return False
    raise ValueError(f"must be true or false (or 1 / 0), not {str(value)[:40]!r}")


# A query string carries text: true/false and 1/0 are the usual spellings, anything else is refused.
QueryBool = Annotated[bool, BeforeValidator(_query_bool)]


class ErrorBody(Schema):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorOut(Schema):
    """Every error response of the API has this shape."""

    error: ErrorBody


ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


def refuse_unknown_query(request: HttpRequest, params: type[Schema] | None = None) -> None:
    """A misspelt query parameter ('?crates=tokio', '?sfot=true') is refused instead of quietly ignored.

    django-ninja keeps only the names it knows from the query string, so a schema's ``extra="forbid"`` never
    sees the others: each handler with query parameters calls this first.
    """
    allowed = set(params.model_fields) if params else set()
    unknown = sorted(name for name in request.GET if name not in allowed)
    if unknown:
        takes = f"takes {', '.join(sorted(allowed))}" if allowed else "takes no query parameters"
        if request.method == "POST" and request.path_info.endswith("/crates"):
            takes += " (its options go in the JSON body)"
        raise InvalidInput(
            f"Unknown parameter {unknown[0][:50]!r} (misspelt?); this endpoint {takes}. "
            "/api/v1/docs lists the parameters of each endpoint.",
            field=unknown[0][:50],
        )


class PageParams(Schema):
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)


def _check_key(raw: str) -> ApiKey:
    key = verify_api_key(raw=raw)
    if key is not None:
        return key
    if find_api_key(raw=raw) is not None:
        raise AuthorizationError(403, "This API key has been revoked; ask an administrator for a new one.")
    raise AuthenticationError(401, "The API key is not valid. " + AUTH_HINT)


class ApiKeyBearer(HttpBearer):
    """``Authorization: Bearer <key>``."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey:
        return _check_key(token.strip())


class ApiKeyXHeader(APIKeyHeader):
    """``X-API-Key: <key>``."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        if key is None:
            return None
        return _check_key(key.strip())


class AnonymousReader:
    """Stands in for a key when reads are open, so handlers can tell who asked."""

    name = "anonymous"

    def __bool__(self) -> bool:
        return True


ANONYMOUS = AnonymousReader()


def open_read_access(request: HttpRequest) -> AnonymousReader | None:
    """Lets reads through without a key unless ``API_READ_REQUIRES_KEY`` is set (read per request)."""
    if getattr(settings, "API_READ_REQUIRES_KEY", False):
        return None
    return ANONYMOUS


# A key that is sent must be valid even where none is needed: a typo should not pass silently.
WRITE_AUTH = [ApiKeyBearer(), ApiKeyXHeader()]
READ_AUTH = [ApiKeyBearer(), ApiKeyXHeader(), open_read_access]


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def as_dict(value: Any) -> dict[str, Any]:
    """Selectors answer with dataclasses or dicts; the schemas take dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return value
    return dict(vars(value))


def checked(field: str, validator: Callable[[Any], T], value: Any) -> T:
    """Run a name/version validator, naming the request field in the 422 it may raise."""
    try:
        return validator(value)
    except InvalidInput as exc:
        exc.context["field"] = field
        raise


def optional_version(field: str, value: str | None) -> str | None:
    """None for "no version" / "latest" (the newest release), else a valid SemVer string."""
    if value is None:
        return None
    version = checked(field, validate_version, value)
    return None if version == LATEST else version


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
    path = path.strip()
    if not path:
        raise InvalidInput("An item path is required, e.g. `tokio::sync::Mutex`.", field="path")
    if len(path) > MAX_ITEM_PATH_LENGTH:
        raise InvalidInput(f"Item paths are at most {MAX_ITEM_PATH_LENGTH} characters.", field="path")
    if "\x00" in path or "/" in path or "\\" in path or ".." in path:
        raise InvalidInput(
            "An item path is a Rust path such as `tokio::sync::Mutex`; '/', '\\', '..' and NUL are not allowed.",
            field="path",
        )
    return path


def removal_version(value: str | None, *, whole_crate_hint: str) -> str | None:
    """The exact version a removal targets, or None for the whole crate."""
    if value is None:
        return None
    version = checked("version", validate_version, value)
    if version == LATEST:
        # Deleting "the newest version" by accident would be hard to undo; ask for it by number.
        raise InvalidInput(f"Give the exact version to remove (e.g. '1.0.3'), or {whole_crate_hint}.", field="version")
    return version


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
    *, query: str, crate: str | None, version: str | None, kind: str | None, limit: int
) -> dict[str, Any]:
    """``SearchOut``."""
    text = query.strip()
    if not text:
        raise InvalidInput("The search query is empty.", field="q")
    if "\x00" in text:
        raise InvalidInput("The search query contains a NUL character (\\x00); remove it and search again.", field="q")
    crate = checked("crate", validate_crate_name, crate) if crate else None
    hits = selectors.search_docs(
        query=text, crate=crate, version=optional_version("version", version), kinds=parse_kinds(kind), limit=limit
    )
    results = [as_dict(hit) for hit in hits]
    return {"query": text, "count": len(results), "results": results, **selectors.search_notice(query=text)}


def item_detail(*, crate: str, path: str, version: str | None) -> dict[str, Any]:
    """``ItemOut``."""
    return as_dict(
        selectors.get_item(
            crate=checked("crate", validate_crate_name, crate),
            path=check_item_path(path),
            version=optional_version("version", version),
        )
    )
