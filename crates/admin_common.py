"""Plumbing shared by the operator portal's ModelAdmins (crates/admin.py and jobs/admin.py).

The admins stay thin: a write is a service call wrapped in the same reporting everywhere — bulk
actions go on past a refused row and say which ones were refused; a button on a detail page
shows its outcome and redirects (POST/redirect/GET).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.urls import URLPattern, path, reverse

from crates.errors import FerrodexError

if TYPE_CHECKING:
    from jobs.models import CrateJob
    from jobs.services import EnqueueResult


def job_admin_url(job: CrateJob | uuid.UUID | str) -> str:
    return reverse("admin:jobs_cratejob_change", args=[getattr(job, "pk", job)])


class ReadOnlyAdminMixin:
    """Rows that only the pipeline or the workers write; the admin shows them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class PortalAdminMixin:
    """Pages, URLs and write reporting for a ModelAdmin of the portal."""

    def portal_path(self, route: str, view: Callable, suffix: str) -> URLPattern:
        """An extra admin URL named ``<app>_<model>_<suffix>``, behind the admin's login and permissions."""
        name = f"{self.opts.app_label}_{self.opts.model_name}_{suffix}"
        return path(route, self.admin_site.admin_view(view), name=name)

    def page_context(self, request: HttpRequest, *, title: str, **extra: Any) -> dict[str, Any]:
        """What every portal template needs (site header, navigation, breadcrumbs), plus the page's own data."""
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "has_view_permission": True,
            **extra,
        }

    def get_viewable_object_or_404(
        self,
        request: HttpRequest,
        object_id: str,
        *,
        missing: str,
        allowed: Callable[[HttpRequest, Any], bool] | None = None,
    ):
        """The object of a detail page; ``allowed(request, obj)`` guards a write on it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(missing)
        if allowed is not None and not allowed(request, obj):
            raise PermissionDenied
        return obj

    def apply_each(
        self,
        request: HttpRequest,
        rows: Iterable,
        write: Callable[[HttpRequest, Any], Any],
        *,
        label: Callable[[Any], str],
        done: str,
        not_done: str,
    ) -> None:
        """A bulk action: ``write`` each row; a refused row is reported and does not stop the others.

        ``done`` is formatted with ``n``, the number of rows written.
        """
        count, problems = 0, []
        for row in rows:
            try:
                write(request, row)
                count += 1
            except FerrodexError as exc:
                problems.append(f"{label(row)}: {exc}")
        if count:
            self.message_user(request, done.format(n=count), messages.SUCCESS)
        if problems:
            self.message_user(request, f"{not_done}: " + "; ".join(problems), messages.WARNING)

    def write_and_redirect(
        self, request: HttpRequest, write: Callable[[], Any], *, done: str, back: str
    ) -> HttpResponseRedirect:
        """A detail-page button: do the write, say how it went, and go ``back``."""
        try:
            write()
            self.message_user(request, done, messages.SUCCESS)
        except FerrodexError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(back)

    def enqueue_and_redirect(
        self,
        request: HttpRequest,
        enqueue: Callable[[], EnqueueResult],
        *,
        done: str,
        back: str,
        deduplicated: str = "",
    ) -> HttpResponseRedirect:
        """A detail-page button that starts a job: on success go to the job's page, on refusal ``back``.

        ``deduplicated``, when given, is said instead of ``done`` if the identical job was already under way.
        """
        try:
            result = enqueue()
        except FerrodexError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(back)
        if result.deduplicated and deduplicated:
            self.message_user(request, deduplicated, messages.INFO)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(job_admin_url(result.job))
