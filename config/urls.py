from pathlib import Path

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt

from config.api import api
from crates.fronts import error_body

FAVICON = Path(__file__).resolve().parent.parent / "static" / "portal" / "favicon.svg"


@csrf_exempt  # a write to an unknown URL is a 404 too, not Django's HTML page about CSRF cookies
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Unknown URLs under the API answer in the API's error shape, not with an HTML page."""
    message = f"No API endpoint at {request.path[:200]}"
    if request.path_info.endswith("/") and _is_endpoint(request.path_info.rstrip("/")):
        message += f"; use it without the trailing slash: {request.path.rstrip('/')[:200]}"
    return JsonResponse(error_body("not_found", f"{message}; see /api/v1/docs."), status=404)


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page says; the portal's icon, not a 404 in every log."""
    response = HttpResponse(FAVICON.read_bytes(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def _is_endpoint(path_info: str) -> bool:
    try:
        return resolve(path_info).func is not api_not_found
    except Resolver404:
        return False


urlpatterns = [
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<rest>(?s:.*))\Z", api_not_found),  # a newline in the URL too
]
