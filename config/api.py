"""The JSON API (django-ninja), mounted at /api/v1/.

Every error leaves here as ``{"error": {"code", "message", "details"}}``: domain errors from
``crates.errors`` keep their code and message, request validation becomes 422 with one entry per
field, and anything unexpected is logged and answered with an opaque 500 carrying an error id.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Swagger
from ninja.openapi.schema import OpenAPISchema
from ninja.parser import Parser

from config.api_common import AUTH_HINT, ErrorOut, error_body, open_read_access
from config.health import system_health
from crates import errors
from crates.api import router as crates_router
from crates.api_projects import router as projects_router
from jobs.api import router as jobs_router

logger = logging.getLogger(__name__)


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


# The one endpoint with a body is POST /crates; its smallest valid body, quoted in the body errors.
BODY_EXAMPLE = '{"name": "serde_json"}'


class _BodyNotJson(ValueError):
    """The body could not be read as JSON (ninja answers any parser error with a bare 400)."""


class _Parser(Parser):
    def parse_body(self, request: HttpRequest):
        try:
            return super().parse_body(request)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise _BodyNotJson(str(exc)) from exc


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
    parser=_Parser(),
)


def _json_safe(value: Any) -> Any:
    """Exception context can hold anything; the error body must still serialise."""
    return json.loads(json.dumps(value, default=str))


def _field_of(exc: errors.FerrodexError) -> str | None:
    field = exc.context.get("field")
    if isinstance(field, str):
        return field
    if isinstance(exc, errors.InvalidCrateName):
        return "name"
    if isinstance(exc, errors.InvalidVersion):
        return "version"
    return None


def status_for(exc: errors.FerrodexError) -> int:
    job_state_error = getattr(errors, "JobStateError", None)
    if isinstance(exc, errors.InvalidInput):
        return 422
    if isinstance(exc, errors.NotFound):
        return 404
    if (job_state_error is not None and isinstance(exc, job_state_error)) or isinstance(exc, errors.Cancelled):
        return 409
    if isinstance(exc, errors.EmbeddingError | errors.DatabaseUnavailable):
        return 503
    if isinstance(exc, errors.UpstreamError):
        return 502
    return 400


def _on_domain_error(request: HttpRequest, exc: errors.FerrodexError) -> HttpResponse:
    status = status_for(exc)
    details = {k: v for k, v in exc.context.items() if k != "field"}
    field = _field_of(exc)
    if status == 422:
        details["fields"] = [{"field": field or "request", "message": exc.message}]
    elif field:
        details["field"] = field
    response = api.create_response(request, error_body(exc.code, exc.message, _json_safe(details)), status=status)
    if isinstance(exc, errors.DatabaseUnavailable):
        response["Retry-After"] = str(exc.retry_after_seconds)
    return response


def _describe_validation_error(err: dict[str, Any]) -> dict[str, str]:
    loc = [str(part) for part in err.get("loc", ())]
    location = loc[0] if loc else "request"
    kind = str(err.get("type", ""))
    message = str(err.get("msg", "invalid value"))
    if location == "body" and len(loc) <= 2:
        # The body itself, located as ("body", <parameter name>): the parameter name is internal.
        if kind == "missing":
            message = f"The request needs a JSON object as its body, e.g. {BODY_EXAMPLE}."
        else:
            message = f"The body must be a JSON object, e.g. {BODY_EXAMPLE}: {message}"
        return {"field": "body", "location": location, "message": message, "type": kind}
    # Body errors are located as ("body", <parameter name>, <field>...); the parameter name is noise.
    parts = loc[2:] if location == "body" else loc[1:]
    return {"field": ".".join(parts) or location, "location": location, "message": message, "type": kind}


def _on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields = [_describe_validation_error(err) for err in exc.errors]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5]) or "the request is not valid"
    return api.create_response(
        request, error_body("validation_error", f"Invalid request: {summary}", {"fields": fields}), status=422
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "throttled",
}


def _on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, _BodyNotJson):
        message = (
            f"The request body is not valid JSON ({str(exc.__cause__)[:200]}). Send a JSON object with "
            f"Content-Type: application/json, e.g. {BODY_EXAMPLE}."
        )
        details = {"fields": [{"field": "body", "location": "body", "message": message, "type": "json_invalid"}]}
        return api.create_response(request, error_body("invalid_body", message, details), status=422)
    message = str(exc)
    if isinstance(exc, AuthenticationError) and message == "Unauthorized":
        message = _missing_key_message(request)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    response = api.create_response(request, error_body(code, message), status=exc.status_code)
    if exc.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="ferrodex"'
    return response


def _missing_key_message(request: HttpRequest) -> str:
    """Why no key was found: none was sent, or one was sent with another scheme (``Token``, ``Basic``)."""
    scheme = request.headers.get("Authorization", "").strip().partition(" ")[0]
    if scheme and scheme.lower() != "bearer":
        return f"The Authorization header uses the scheme {scheme[:30]!r}, not Bearer. " + AUTH_HINT
    return "This endpoint needs an API key. " + AUTH_HINT


def _on_body_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = (
        f"The request body is larger than {limit} bytes, the most this server reads "
        f"(DATA_UPLOAD_MAX_MEMORY_SIZE). A request is a small JSON object, e.g. {BODY_EXAMPLE}."
    )
    return api.create_response(request, error_body("payload_too_large", message), status=413)


def _on_too_many_fields(request: HttpRequest, exc: TooManyFieldsSent) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    message = f"The request has more than {limit} query parameters or form fields (DATA_UPLOAD_MAX_NUMBER_FIELDS)."
    return api.create_response(request, error_body("bad_request", message), status=400)


def _on_404(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, error_body("not_found", "Not found."), status=404)


def _on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    if (unavailable := errors.database_unavailable(exc)) is not None:
        # An outage, not a bug: a client should wait and ask again, and the log needs no traceback per request.
        logger.warning("API %s %s: %s", request.method, request.path, unavailable.message)
        return _on_domain_error(request, unavailable)
    error_id = uuid.uuid4().hex[:12]
    logger.exception("Unhandled API error %s on %s %s", error_id, request.method, request.path)
    return api.create_response(
        request,
        error_body("internal_error", "Internal error; it has been logged.", {"error_id": error_id}),
        status=500,
    )


api.add_exception_handler(errors.FerrodexError, _on_domain_error)
api.add_exception_handler(ValidationError, _on_validation_error)
api.add_exception_handler(HttpError, _on_http_error)
api.add_exception_handler(Http404, _on_404)
api.add_exception_handler(RequestDataTooBig, _on_body_too_big)
api.add_exception_handler(TooManyFieldsSent, _on_too_many_fields)
api.add_exception_handler(Exception, _on_unexpected)


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

__all__ = ["ErrorOut", "api", "status_for"]
