"""How the JSON API answers errors: every error leaves as ``{"error": {"code", "message", "details"}}``.

Domain errors from ``crates.errors`` keep their code and message (the status follows their type), request
validation becomes 422 with one entry per field, and anything unexpected is logged and answered with an
opaque 500 carrying an error id. ``config.api`` installs these on the API it mounts.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from crates import errors
from crates.fronts import AUTH_HINT, error_body

logger = logging.getLogger(__name__)


# The one endpoint with a body is POST /crates; its smallest valid body, quoted in the body errors.
BODY_EXAMPLE = '{"name": "serde_json"}'


class _BodyNotJson(ValueError):
    """The body could not be read as JSON (ninja answers any parser error with a bare 400)."""


class JsonBodyParser(Parser):
    def parse_body(self, request: HttpRequest):
        try:
            return super().parse_body(request)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise _BodyNotJson(str(exc)) from exc


def install_error_handlers(api: NinjaAPI) -> None:
    """Answer every error of ``api`` in the one error shape."""
    api.add_exception_handler(errors.FerrodexError, functools.partial(_on_domain_error, api))
    api.add_exception_handler(ValidationError, functools.partial(_on_validation_error, api))
    api.add_exception_handler(HttpError, functools.partial(_on_http_error, api))
    api.add_exception_handler(Http404, functools.partial(_on_404, api))
    api.add_exception_handler(RequestDataTooBig, functools.partial(_on_body_too_big, api))
    api.add_exception_handler(TooManyFieldsSent, functools.partial(_on_too_many_fields, api))
    api.add_exception_handler(Exception, functools.partial(_on_unexpected, api))


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


def _on_domain_error(api: NinjaAPI, request: HttpRequest, exc: errors.FerrodexError) -> HttpResponse:
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


def _on_validation_error(api: NinjaAPI, request: HttpRequest, exc: ValidationError) -> HttpResponse:
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


def _on_http_error(api: NinjaAPI, request: HttpRequest, exc: HttpError) -> HttpResponse:
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


def _on_body_too_big(api: NinjaAPI, request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    message = (
        f"The request body is larger than {limit} bytes, the most this server reads "
        f"(DATA_UPLOAD_MAX_MEMORY_SIZE). A request is a small JSON object, e.g. {BODY_EXAMPLE}."
    )
    return api.create_response(request, error_body("payload_too_large", message), status=413)


def _on_too_many_fields(api: NinjaAPI, request: HttpRequest, exc: TooManyFieldsSent) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    message = f"The request has more than {limit} query parameters or form fields (DATA_UPLOAD_MAX_NUMBER_FIELDS)."
    return api.create_response(request, error_body("bad_request", message), status=400)


def _on_404(api: NinjaAPI, request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, error_body("not_found", "Not found."), status=404)


def _on_unexpected(api: NinjaAPI, request: HttpRequest, exc: Exception) -> HttpResponse:
    if (unavailable := errors.database_unavailable(exc)) is not None:
        # An outage, not a bug: a client should wait and ask again, and the log needs no traceback per request.
        logger.warning("API %s %s: %s", request.method, request.path, unavailable.message)
        return _on_domain_error(api, request, unavailable)
    error_id = uuid.uuid4().hex[:12]
    logger.exception("Unhandled API error %s on %s %s", error_id, request.method, request.path)
    return api.create_response(
        request,
        error_body("internal_error", "Internal error; it has been logged.", {"error_id": error_id}),
        status=500,
    )
