"""Reads behind the operator portal's pages: what a hard delete removes, search hits' documents, and the
dashboard's numbers and charts (chart geometry included: it is only about presenting them).

The admin classes in crates/admin.py and jobs/admin.py stay thin: they check permissions, call the
services/selectors and render.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from crates.errors import ItemNotFound
from crates.models import Chunk, Crate, CrateRelease, Document
from crates.names import normalize_crate_name
from crates.selectors import get_item
from jobs import selectors as job_selectors
from jobs.models import CrateJob

CHART_DAYS = 14


@dataclass(frozen=True)
class DeletionSummary:
    crate: Crate
    releases: int
    documents: int
    chunks: int
    embeddings: int
    versions: list[str] = field(default_factory=list)
    active_jobs: int = 0


def deletion_summary(*, crate: Crate) -> DeletionSummary:
    """What a hard delete removes, counted from the rows themselves rather than the cached counters."""
    releases = CrateRelease.objects.filter(crate=crate)
    chunk_counts = Chunk.objects.filter(release__crate=crate).aggregate(
        chunks=Count("id"),
        embeddings=Count("id", filter=Q(embedding__isnull=False) | Q(staged_embedding__isnull=False)),
    )
    return DeletionSummary(
        crate=crate,
        releases=releases.count(),
        documents=Document.objects.filter(release__crate=crate).count(),
        chunks=chunk_counts["chunks"],
        embeddings=chunk_counts["embeddings"],
        versions=sorted({r.version for r in releases.only("version")}),
        active_jobs=CrateJob.objects.filter(
            normalized_name=crate.normalized_name, status__in=CrateJob.ACTIVE_STATUSES
        ).count(),
    )


_PATH_QUERY = re.compile(r"^[A-Za-z_][\w]*(?:::[A-Za-z_][\w]*)*(?:::)?$")


def item_for_query(*, query: str, crate: str | None, version: str | None) -> dict | None:
    """A path typed on the search page with a crate chosen, looked up as get_item does (the API's and MCP's
    rule: an exact path, or the only candidate, saying how it matched; never another item in its place).

    {"detail", "doc_id"} when found, {"candidates"} when the path is ambiguous, None otherwise.
    """
    text = query.strip().strip("`")
    if not crate or not _PATH_QUERY.match(text):
        return None
    try:
        detail = get_item(crate=crate, path=text, version=version or None)
    except ItemNotFound as exc:
        return {"candidates": exc.context.get("suggestions", [])} if exc.context.get("ambiguous") else None
    doc_id = (
        Document.objects.filter(
            release__crate__normalized_name=normalize_crate_name(detail.crate), release__version=detail.version,
            release__state=CrateRelease.State.ACTIVE, path=detail.path, kind=detail.kind,
        ).values_list("id", flat=True).first()
    )  # fmt: skip
    return {"detail": detail, "doc_id": doc_id}


def document_ids_for_hits(hits) -> dict[tuple[str, str, str, str], int]:
    """(crate, version, path, kind) -> Document id, so search results can open the admin detail page."""
    if not hits:
        return {}
    condition = Q()
    for hit in hits:
        condition |= Q(
            release__crate__normalized_name=normalize_crate_name(hit.crate),
            release__version=hit.version,
            path=hit.path,
            kind=hit.kind,
        )
    rows = Document.objects.filter(condition, release__state=CrateRelease.State.ACTIVE).values_list(
        "id", "release__crate__normalized_name", "release__version", "path", "kind"
    )
    return {(crate, version, path, kind): pk for pk, crate, version, path, kind in rows}



# --- dashboard -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str]]  # x, text (days along the bottom)
    max_value: float
    max_label: str
    plot_top: int
    plot_bottom: int
    legend: list[tuple[str, str]]  # css class, label
    total_label: str
    empty: bool


def dashboard_data(*, now: datetime | None = None, days: int = CHART_DAYS) -> dict:
    now = now or timezone.now()
    totals = CrateRelease.objects.filter(state=CrateRelease.State.ACTIVE, crate__deleted_at__isnull=True).aggregate(
        documents=Sum("document_count"), chunks=Sum("chunk_count"), embeddings=Sum("embedding_count")
    )
    return {
        "crates": Crate.objects.alive().count(),
        "crates_deleted": Crate.objects.filter(deleted_at__isnull=False).count(),
        "documents": totals["documents"] or 0,
        "chunks": totals["chunks"] or 0,
        "embeddings": totals["embeddings"] or 0,
        "health": job_selectors.health_summary(),
        "recent_failures": list(
            CrateJob.objects.filter(status=CrateJob.Status.FAILED).order_by("-finished_at", "-created_at")[:6]
        ),
        "jobs_chart": jobs_per_day_chart(now=now, days=days),
        "throughput_chart": throughput_chart(now=now, days=days),
        "now": now,
    }


def _day_range(*, now: datetime, days: int) -> list[date]:
    today = timezone.localdate(now)
    return [today - timedelta(days=days - 1 - i) for i in range(days)]


_STATUS_ORDER = ["complete", "failed", "cancelled", "running", "queued"]


def jobs_per_day_chart(*, now: datetime, days: int) -> Chart:
    day_list = _day_range(now=now, days=days)
    start = timezone.make_aware(datetime.combine(day_list[0], datetime.min.time()))
    rows = (
        CrateJob.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(n=Count("id"))
    )
    counts: dict[date, dict[str, int]] = {d: {} for d in day_list}
    for row in rows:
        if row["day"] in counts:
            counts[row["day"]][row["status"]] = row["n"]
    stacks = [[(s, counts[d].get(s, 0)) for s in _STATUS_ORDER] for d in day_list]
    total = sum(n for stack in stacks for _, n in stack)
    return _stacked_bar_chart(
        day_list, stacks, unit="jobs",
        legend=[(f"fx-chart-{s}", s.capitalize()) for s in _STATUS_ORDER],
        total_label=f"{total} job{'s' if total != 1 else ''} in {days} days",
    )


def throughput_chart(*, now: datetime, days: int) -> Chart:
    """Documents stored per minute of ingest run time, per day (completed ingest jobs)."""
    day_list = _day_range(now=now, days=days)
    start = timezone.make_aware(datetime.combine(day_list[0], datetime.min.time()))
    rows = (
        CrateJob.objects.filter(
            status=CrateJob.Status.COMPLETE, operation=CrateJob.Operation.INGEST,
            finished_at__gte=start, started_at__isnull=False,
        )
        .annotate(
            day=TruncDate("finished_at"),
            run=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()),
        )
        .values("day")
        .annotate(docs=Sum("documents"), run=Sum("run"), jobs=Count("id"))
    )
    rate: dict[date, float] = {}
    docs_total = 0
    for row in rows:
        seconds = row["run"].total_seconds() if row["run"] else 0.0
        docs_total += row["docs"] or 0
        if row["day"] in day_list:
            rate[row["day"]] = (row["docs"] or 0) / (seconds / 60) if seconds > 0 else 0.0
    stacks = [[("throughput", rate.get(d, 0.0))] for d in day_list]
    return _stacked_bar_chart(
        day_list, stacks, unit="docs/min",
        legend=[("fx-chart-throughput", "Documents per minute of run time")],
        total_label=f"{docs_total:,} documents ingested in {days} days",
    )


def _stacked_bar_chart(day_list, stacks, *, unit: str, legend, total_label: str) -> Chart:
    width, height = 560, 170
    left, right, top, bottom = 44, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((sum(n for _, n in stack) for stack in stacks), default=0)
    scale_max = _nice_ceiling(peak)
    slot = plot_w / len(day_list)
    bar_w = max(4.0, slot * 0.66)
    bars: list[Bar] = []
    for i, (day, stack) in enumerate(zip(day_list, stacks, strict=True)):
        x = left + i * slot + (slot - bar_w) / 2
        y_base = float(top + plot_h)
        for status, n in stack:
            if n <= 0:
                continue
            h = plot_h * n / scale_max
            y_base -= h
            value = f"{n:.0f}" if unit == "jobs" else f"{n:.1f}"
            bars.append(Bar(round(x, 1), round(y_base, 1), round(bar_w, 1), round(h, 1), f"fx-chart-{status}",
                            f"{day:%a %d %b}: {value} {unit if unit != 'jobs' else status}"))
    step = max(1, math.ceil(len(day_list) / 7))
    labels = [
        (round(left + i * slot + slot / 2, 1), f"{d:%d %b}")
        for i, d in enumerate(day_list) if (len(day_list) - 1 - i) % step == 0
    ]
    max_label = f"{scale_max:.0f}" if scale_max >= 10 or unit == "jobs" else f"{scale_max:.1f}"
    return Chart(width, height, bars, labels, scale_max, max_label, top, top + plot_h, legend, total_label,
                 empty=peak <= 0)


def _nice_ceiling(value: float) -> float:
    """1, 2, 5 x 10^n at or above ``value``, so the axis label is a round number."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for m in (1, 2, 5, 10):
        candidate = m * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))
