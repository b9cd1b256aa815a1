"""The jobs side of the operator portal: a live job list and detail page, with cancel/retry/re-ingest.

The admin only calls jobs.services / jobs.selectors; every write is also written to the admin log.
"""

from __future__ import annotations

import logging
import re
import uuid

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from crates.admin_common import PortalAdminMixin, ReadOnlyAdminMixin, job_admin_url
from crates.errors import FerrodexError, JobStateError
from crates.models import Crate
from crates.names import normalize_crate_name
from crates.templatetags.portal import (
    format_age,
    format_duration,
    job_duration_seconds,
    progress_bar_html,
    status_badge_html,
)
from jobs import selectors as job_selectors
from jobs import services as job_services
from jobs.models import CrateJob, JobEvent, WorkerHeartbeat
from jobs.services import EnqueueResult

logger = logging.getLogger(__name__)

REQUESTED_BY_ADMIN = CrateJob.RequestedBy.ADMIN
MAX_LIVE_IDS = 200
_ID_PREFIX_RE = re.compile(r"^[0-9a-fA-F-]{4,36}$")


def reingest_job(*, job: CrateJob, requested_by: str) -> EnqueueResult:
    """Run a finished ingest again with ``force`` so unchanged docs are re-processed."""
    return job_services.enqueue_ingest(
        name=job.crate_name, version=job.requested_version or None, force=True, requested_by=requested_by
    )


@admin.register(CrateJob)
class CrateJobAdmin(PortalAdminMixin, admin.ModelAdmin):
    list_display = [
        "short_id", "crate_column", "version_column", "operation", "status_column", "progress_column",
        "requested_by", "age_column", "duration_column",
    ]
    list_display_links = ["short_id"]
    list_filter = ["status", "operation", "requested_by", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["crate_name", "normalized_name"]
    search_help_text = "Crate name, or a job id (or the start of one)."
    actions = ["cancel_selected", "retry_selected", "reingest_selected"]
    list_per_page = 50

    # --- permissions -----------------------------------------------------------------------------
    # Jobs are made by enqueueing (the crate "add" form, retry, re-ingest), never typed in.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CrateJob | None = None) -> bool:
        # Deleting a job row would orphan a running worker; finished jobs expire by retention.
        return False

    def has_cancel_permission(self, request: HttpRequest, obj: CrateJob | None = None) -> bool:
        return request.user.has_perm("jobs.change_cratejob")

    def has_retry_permission(self, request: HttpRequest, obj: CrateJob | None = None) -> bool:
        return request.user.has_perm("jobs.add_cratejob")

    # A re-ingest, like a retry, adds a job.
    has_reingest_permission = has_retry_permission

    # --- list ------------------------------------------------------------------------------------
    @admin.display(description="Job", ordering="created_at")
    def short_id(self, job: CrateJob) -> str:
        return str(job.pk)[:8]

    @admin.display(description="Crate", ordering="normalized_name")
    def crate_column(self, job: CrateJob) -> str:
        return job.crate_name

    @admin.display(description="Version")
    def version_column(self, job: CrateJob) -> str:
        if job.resolved_version and job.resolved_version != job.requested_version:
            return format_html('{} <span class="fx-quiet">({})</span>', job.resolved_version, job.requested_version)
        return job.version_label

    @admin.display(description="Status", ordering="status")
    def status_column(self, job: CrateJob) -> str:
        return status_badge_html(job.status, job_id=job.pk, cancel_requested=job.cancel_requested_at is not None)

    @admin.display(description="Progress", ordering="progress")
    def progress_column(self, job: CrateJob) -> str:
        return progress_bar_html(job.progress, status=job.status, job_id=job.pk, message=job.stage_message)

    @admin.display(description="Age", ordering="created_at")
    def age_column(self, job: CrateJob) -> str:
        return format_html(
            '<time datetime="{}" data-job-id="{}" data-job-field="age">{}</time>',
            job.created_at.isoformat(), job.pk, format_age(job.created_at),
        )

    @admin.display(description="Duration")
    def duration_column(self, job: CrateJob) -> str:
        return format_html(
            '<span data-job-id="{}" data-job-field="duration">{}</span>',
            job.pk, format_duration(job_duration_seconds(job)),
        )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(crate_name__icontains=term) | Q(normalized_name__icontains=normalize_crate_name(term))
        if _ID_PREFIX_RE.match(term):
            by_id = CrateJob.objects.annotate(id_text=Cast("id", CharField())).filter(id_text__startswith=term.lower())
            condition |= Q(pk__in=by_id.values("pk"))
        return queryset.filter(condition), False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {
            "title": "Jobs",
            **(extra_context or {}),
            "live_url": reverse("admin:jobs_cratejob_live"),
            "rendered_at": timezone.now().isoformat(),
        }
        return super().changelist_view(request, extra_context=extra_context)

    # --- bulk actions ----------------------------------------------------------------------------
    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, self._cancel, done="Cancellation requested for {n} job(s).",
                   not_done="Not cancelled")

    @admin.action(description="Retry selected failed/cancelled jobs", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, self._retry, done="Retried {n} job(s).")

    @admin.action(description="Re-ingest selected finished jobs (force)", permissions=["reingest"])
    def reingest_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, self._reingest, done="Re-ingest queued for {n} job(s).")

    def _each(self, request: HttpRequest, jobs, write, *, done: str, not_done: str = "Skipped") -> None:
        self.apply_each(request, jobs, write, label=_job_label, done=done, not_done=not_done)

    # --- the writes (thin: services do the work, we log who asked) --------------------------------
    def _cancel(self, request: HttpRequest, job: CrateJob) -> CrateJob:
        job = job_services.cancel_job(job_id=job.pk)
        self.log_change(request, job, "Cancellation requested from the admin.")
        logger.info("admin %s cancelled job %s (%s)", request.user, job.pk, job.crate_name)
        return job

    def _retry(self, request: HttpRequest, job: CrateJob) -> EnqueueResult:
        result = job_services.retry_job(job_id=job.pk, requested_by=REQUESTED_BY_ADMIN)
        self._log_enqueued(request, result, f"Retry of job {job.pk}.")
        return result

    def _reingest(self, request: HttpRequest, job: CrateJob) -> EnqueueResult:
        if job.operation != CrateJob.Operation.INGEST or not job.is_finished:
            raise JobStateError(
                f"Only a finished ingest job can be re-ingested; job {job.pk} is a {job.operation} job, {job.status}."
            )
        result = reingest_job(job=job, requested_by=REQUESTED_BY_ADMIN)
        self._log_enqueued(request, result, f"Re-ingest (force) of job {job.pk}.")
        return result

    def _log_enqueued(self, request: HttpRequest, result: EnqueueResult, message: str) -> None:
        if result.deduplicated:
            self.log_change(request, result.job, f"{message} An identical job was already queued.")
        else:
            self.log_addition(request, result.job, message)
        logger.info("admin %s enqueued job %s (%s): %s", request.user, result.job.pk, result.job.crate_name, message)

    # --- detail page and JSON endpoints ----------------------------------------------------------
    def get_urls(self):
        return [
            self.portal_path("live/", self.live_list_view, "live"),
            self.portal_path("<path:object_id>/live/", self.live_detail_view, "live_detail"),
            self.portal_path("<path:object_id>/cancel/", self.cancel_view, "cancel"),
            self.portal_path("<path:object_id>/retry/", self.retry_view, "retry"),
            self.portal_path("<path:object_id>/reingest/", self.reingest_view, "reingest"),
            *super().get_urls(),
        ]

    def _get_job_or_404(self, request: HttpRequest, object_id: str, allowed=None) -> CrateJob:
        """The job of a detail page, read through the selector; ``allowed(request, job)`` guards a write on it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        job_id = unquote(object_id)
        if not _is_uuid(job_id):
            raise Http404("No such job.")
        try:
            job = job_selectors.get_job(job_id=job_id)
        except FerrodexError as exc:
            raise Http404(str(exc)) from exc
        if allowed is not None and not allowed(request, job):
            raise PermissionDenied
        return job

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        job = self._get_job_or_404(request, object_id)
        events = job_selectors.job_events(job_id=job.pk, limit=200)
        crate = Crate.objects.by_name(job.crate_name).first()
        context = self.page_context(
            request,
            title=f"{job.get_operation_display()} {job.crate_name} {job.version_label}",
            crumb=f"{job.crate_name} · {str(job.pk)[:8]}",
            job=job,
            events=events,
            crate=crate,
            duration_s=job_duration_seconds(job),
            last_attempt_s=job_duration_seconds(job, last_attempt=True),
            live_url=reverse("admin:jobs_cratejob_live_detail", args=[job.pk]),
            can_cancel=self.has_cancel_permission(request),
            can_retry=self.has_retry_permission(request),
            can_reingest=self.has_reingest_permission(request) and job.operation == CrateJob.Operation.INGEST,
        )
        return TemplateResponse(request, "portal/job_detail.html", context)

    @method_decorator(require_GET)
    def live_list_view(self, request: HttpRequest) -> JsonResponse:
        """The rows the list page shows, re-read: ``?id=<uuid>&id=...`` (plus ``since`` for new-job counts)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        ids = [i for i in request.GET.getlist("id")[:MAX_LIVE_IDS] if _is_uuid(i)]
        jobs = CrateJob.objects.filter(pk__in=ids) if ids else CrateJob.objects.none()
        payload: dict = {"jobs": [job_selectors.job_as_dict(job) for job in jobs], "server_time": _now_iso()}
        since = parse_datetime(request.GET.get("since", "") or "")
        if since is not None:
            payload["new_jobs"] = CrateJob.objects.filter(created_at__gt=since).count()
        return JsonResponse(payload)

    @method_decorator(require_GET)
    def live_detail_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        job = self._get_job_or_404(request, object_id)
        return JsonResponse({"job": job_selectors.job_as_dict(job, events=True), "server_time": _now_iso()})

    @method_decorator(require_POST)
    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self._get_job_or_404(request, object_id, allowed=self.has_cancel_permission)
        return self.write_and_redirect(
            request, lambda: self._cancel(request, job),
            done="Cancellation requested; the worker stops at the next batch.", back=job_admin_url(job),
        )

    @method_decorator(require_POST)
    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self._get_job_or_404(request, object_id, allowed=self.has_retry_permission)
        return self._enqueue_and_redirect(request, job, self._retry, done="Retry queued.")

    @method_decorator(require_POST)
    def reingest_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self._get_job_or_404(request, object_id, allowed=self.has_reingest_permission)
        return self._enqueue_and_redirect(request, job, self._reingest, done="Re-ingest queued.")

    def _enqueue_and_redirect(self, request: HttpRequest, job: CrateJob, enqueue, *, done: str) -> HttpResponse:
        return self.enqueue_and_redirect(
            request, lambda: enqueue(request, job), done=done, back=job_admin_url(job),
            deduplicated="An identical job is already queued; this is it.",
        )


@admin.register(JobEvent)
class JobEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "job_link", "event_type", "message"]
    list_filter = ["event_type", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["job__crate_name", "message"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]

    @admin.display(description="Job")
    def job_link(self, event: JobEvent) -> str:
        return format_html('<a href="{}">{}</a>', job_admin_url(event.job), event.job)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _now_iso() -> str:
    return timezone.now().isoformat()


def _job_label(job: CrateJob) -> str:
    return f"{job.crate_name} ({str(job.pk)[:8]})"


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "hostname", "pid", "started_at", "last_seen", "current_job_link"]
    ordering = ["-last_seen"]

    @admin.display(description="Current job")
    def current_job_link(self, worker: WorkerHeartbeat) -> str:
        if not worker.current_job_id:
            return "—"
        return format_html('<a href="{}">{}</a>', job_admin_url(worker.current_job_id), str(worker.current_job_id)[:8])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
