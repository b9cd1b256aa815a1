from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path

from config.api import api
from config.api_common import error_body


def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Unknown URLs under the API answer in the API's error shape, not with an HTML page."""
    return JsonResponse(
        error_body("not_found", f"No API endpoint at {request.path[:200]}; see /api/v1/docs."), status=404
    )


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<rest>.*)$", api_not_found),
]
