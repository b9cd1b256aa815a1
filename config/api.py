"""The JSON API (django-ninja), mounted at /api/v1/: the routers of crates and jobs, the health endpoint,
and the error handlers of ``crates.api_errors`` (every error in one shape).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import NinjaAPI, Status
from ninja.openapi.docs import Swagger
from ninja.openapi.schema import OpenAPISchema

from config.health import system_health
from crates.api import router as crates_router
from crates.api_common import ErrorOut, open_read_access
from crates.api_errors import JsonBodyParser, install_error_handlers
from crates.api_projects import router as projects_router
from jobs.api import router as jobs_router


class _Schema(OpenAPISchema):
    """ninja lists only the key schemes of an operation; a read that is open (``API_READ_REQUIRES_KEY`` off,
    read per request as the auth check reads it) also gets ``{}``, OpenAPI's "no key needed", so generated
    clients and Swagger UI do not demand a key for it. A key that is sent must still be valid."""

    def operation_security(self, operation) -> list[dict[str, Any]] | None:
        security = super().operation_security(operation)
        if security and open_read_access in operation.auth_callbacks and not settings.API_READ_REQUIRES_KEY:
            security = [{}, *security]
        return security

    def operation_details(self, operation) -> dict[str, Any]:
        """Swagger UI draws an open read ([{}, key]) with a closed lock and a write with an open one: every
        operation says in words whether it needs a key."""
        details = super().operation_details(operation)
        security = details.get("security")
        needs_key = bool(security) and {} not in security
        note = (
            "**Needs an API key**: `Authorization: Bearer <key>` or `X-API-Key: <key>`."
            if needs_key
            else "**No API key needed** (a key that is sent must be valid)."
        )
        label = 'API key required' if needs_key else 'no key needed'
        details["summary"] = f"{details.get('summary') or ''} ({label})".strip()
        details["description"] = f"{note}\n\n{details.get('description') or ''}".strip()
        return details


class _FerrodexAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict | None = None):
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        return _Schema(self, path_prefix)


api = _FerrodexAPI(
    title="Ferrodex API",
    version="1",
    description=(
        "Rust crate documentation from docs.rs, searchable. Adding or removing a crate is asynchronous: "
        "the answer is 202 with a job; poll `GET /jobs/{id}` until its status is `complete` or `failed`. "
        "Write endpoints need an API key (`Authorization: Bearer <key>` or `X-API-Key`); reads need none unless "
        "the server sets API_READ_REQUIRES_KEY. Each endpoint's summary says which: '(API key required)' or "
        "'(no key needed)'. Swagger UI's lock icons do not: it draws a closed lock on the open reads."
    ),
    urls_namespace="api-v1",
    # ninja is in INSTALLED_APPS, so Swagger UI's assets come from our static files, not a CDN.
    docs=Swagger(settings={"persistAuthorization": True, "tryItOutEnabled": False}),
    docs_url="/docs",
    parser=JsonBodyParser(),
)


install_error_handlers(api)


@api.get(
    "/health",
    auth=None,
    response={200: dict[str, Any], 503: dict[str, Any]},
    tags=["system"],
    summary="Health of the database, the vector extension, the job queue and the embedder",
)
def health(request: HttpRequest):
    report = system_health()
    return Status(200 if report["status"] == "ok" else 503, report)


api.add_router("/", crates_router, tags=["crates"])
api.add_router("/", jobs_router, tags=["jobs"])
api.add_router("/", projects_router, tags=["projects"])

__all__ = ["ErrorOut", "api"]
