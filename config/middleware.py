"""Request guards shared by the portal's pages."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from crates.fronts import error_body

logger = logging.getLogger(__name__)


class RefuseNulInPortalParameters:
    """A NUL byte in a portal page's query string or form is a 400 that says so.

    PostgreSQL refuses NUL in text, so a filter or search value carrying one (``?status__exact=%00``)
    failed in the database and the page answered 500. The JSON API validates its own parameters and
    answers 422 naming the field; this guard covers the admin pages, Django's own filters included.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith("/admin/") and _has_nul(request):
            logger.info("refused a portal request with a NUL byte in its parameters: %s", request.path[:200])
            return HttpResponseBadRequest(
                "Bad request: a parameter contains a NUL byte (%00), which no crate, version or search can hold.",
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _has_nul(request: HttpRequest) -> bool:
    params = [request.GET]
    if request.method == "POST" and request.content_type in _FORM_TYPES:
        params.append(request.POST)
    return any("\x00" in key or any("\x00" in v for v in values) for query in params for key, values in query.lists())


class ApiMethodNotAllowedAsJson:
    """A method an API endpoint does not take is a 405 in the API's error shape, naming the methods it takes.

    django-ninja answers it with a bare text/plain 'Method not allowed' (its ``Allow`` header is kept).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code != 405
            or not request.path_info.startswith("/api/")
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        allowed = ", ".join(sorted(m.strip() for m in response.get("Allow", "").split(",") if m.strip()))
        message = f"{request.method} is not allowed on {request.path[:200]}"
        message += f"; it takes {allowed}." if allowed else "."
        answer = JsonResponse(error_body("method_not_allowed", message), status=405)
        if allowed:
            answer["Allow"] = allowed
        return answer
