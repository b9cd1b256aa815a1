"""Template helpers for the operator portal (badges, progress bars, durations, rendered docs)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from crates import rendering

register = template.Library()

_STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "complete": "Complete",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


def status_badge_html(status: str, *, job_id: object = "", cancel_requested: bool = False) -> SafeString:
    label = _STATUS_LABELS.get(status, status or "—")
    if cancel_requested and status in ("queued", "running"):
        label = f"{label} (cancelling)"
    attrs = format_html(' data-job-id="{}" data-job-field="status"', job_id) if job_id else ""
    return format_html('<span class="fx-badge fx-status-{}"{}>{}</span>', status or "none", attrs, label)


def progress_bar_html(progress: float, *, status: str, job_id: object = "", message: str = "") -> SafeString:
    progress = f"{max(0.0, min(100.0, round(float(progress or 0), 1))):g}"
    attrs = format_html(' data-job-id="{}" data-job-field="progress"', job_id) if job_id else ""
    return format_html(
        '<div class="fx-progress fx-status-{status}"{attrs} role="progressbar" aria-valuemin="0" aria-valuemax="100"'
        ' aria-valuenow="{p}" title="{p}%"><div class="fx-progress-bar" style="width: {p}%"></div>'
        '<span class="fx-progress-label">{p}%</span></div>'
        '<div class="fx-stage"{stage_attrs}>{message}</div>',
        status=status,
        attrs=attrs,
        p=progress,
        stage_attrs=format_html(' data-job-id="{}" data-job-field="stage_message"', job_id) if job_id else "",
        message=message,
    )


def format_duration(seconds: float | None) -> str:
    """`3.2 s`, `4m 05s`, `2h 03m`, `3d 4h`: short enough for a table cell."""
    if seconds is None:
        return "—"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def format_age(when: datetime | None, *, now: datetime | None = None) -> str:
    if when is None:
        return "—"
    delta = (now or timezone.now()) - when
    if delta < timedelta(seconds=5):
        return "just now"
    return f"{format_duration(delta.total_seconds())} ago"


def job_duration_seconds(job, *, now: datetime | None = None, last_attempt: bool = False) -> float | None:
    """Seconds since the job first started (all attempts), or since its last attempt started."""
    started = job.started_at if last_attempt else (getattr(job, "first_started_at", None) or job.started_at)
    if started is None:
        return None
    end = job.finished_at or now or timezone.now()
    return (end - started).total_seconds()


@register.filter
def status_badge(status: str) -> SafeString:
    return status_badge_html(status)


@register.simple_tag
def job_status_badge(job) -> SafeString:
    return status_badge_html(job.status, job_id=job.pk, cancel_requested=job.cancel_requested_at is not None)


@register.simple_tag
def job_progress(job) -> SafeString:
    return progress_bar_html(job.progress, status=job.status, job_id=job.pk, message=job.stage_message)


@register.filter
def as_json(value: object) -> str:
    """A JSON value as JSON (``false``, ``null``), indented; not Python's repr."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def duration(seconds: float | None) -> str:
    return format_duration(seconds)


@register.filter
def age(when: datetime | None) -> str:
    return format_age(when)


@register.filter
def markdown_docs(text: str, base_url: str = "") -> SafeString:
    return rendering.render_docs(text or "", base_url=base_url or "")


@register.filter
def rust_signature(code: str) -> SafeString:
    return rendering.highlight_rust(code or "")


@register.filter
def intcomma_plain(value: int | None) -> str:
    """Thousands separated with a thin space; no i18n app needed."""
    if value is None:
        return "—"
    return f"{int(value):,}".replace(",", "\u202f")


@register.inclusion_tag("portal/_dashboard.html")
def portal_dashboard() -> dict:
    from crates.portal_selectors import dashboard_data

    return {"d": dashboard_data()}
