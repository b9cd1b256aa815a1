"""Request guards shared by the portal's pages."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

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
