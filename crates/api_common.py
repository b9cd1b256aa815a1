"""Pieces the JSON API's routers share (django-ninja): API-key auth, strict booleans, the error models,
pagination and the unknown-parameter check. Kept apart from ``config.api`` so routers can import them
without importing the API that mounts them; what MCP shares too is in ``crates.fronts``.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Schema
from ninja.errors import AuthenticationError, AuthorizationError
from ninja.security import APIKeyHeader, HttpBearer
from pydantic import BeforeValidator, StrictBool

from crates.apikeys import find_api_key, verify_api_key
from crates.errors import InvalidInput
from crates.fronts import AUTH_HINT, MAX_PAGE, MAX_PAGE_SIZE
from crates.models import ApiKey

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
