"""Deletes finished jobs (and their events) older than JOB_RETENTION_DAYS."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.models import CrateJob, WorkerHeartbeat

logger = logging.getLogger(__name__)

BATCH = 2000
WORKER_ROWS_KEPT = timedelta(days=1)


def purge_old_jobs(*, days: int | None = None) -> int:
    """Delete finished jobs whose ``finished_at`` is older than ``days``; never queued or running ones.

    Returns the number of jobs deleted. Works in batches so a backlog of
    100k jobs does not hold one long transaction.
    """
    days = settings.JOB_RETENTION_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    old = CrateJob.objects.filter(status__in=CrateJob.FINISHED_STATUSES, finished_at__lt=cutoff)
    deleted = 0
    while ids := list(old.values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            # The status filter again: a row cannot be queued again, but be strict about what we delete.
            _count, per_model = CrateJob.objects.filter(pk__in=ids, status__in=CrateJob.FINISHED_STATUSES).delete()
        deleted += per_model.get(CrateJob._meta.label, 0)
    discard_abandoned_releases(cutoff=cutoff)
    WorkerHeartbeat.objects.filter(last_seen__lt=timezone.now() - WORKER_ROWS_KEPT).delete()
    logger.info("retention: deleted %d jobs finished before %s", deleted, cutoff.isoformat())
    return deleted


def discard_abandoned_releases(*, cutoff) -> int:
    """Delete building releases older than ``cutoff`` that no remaining job can resume.

    A job that gives up after transient failures keeps its building release (documents, chunks and
    vectors, invisible to search) so that an operator retry resumes it. Once retention has purged the job,
    nothing refers to the release any more and it would stay forever. Returns how many were deleted.
    """
    from crates.models import CrateRelease
    from crates.pipeline.store import discard_release

    resumable = {
        int(release_id)
        for release_id in CrateJob.objects.filter(checkpoint__has_key="release_id").values_list(
            "checkpoint__release_id", flat=True
        )
        if isinstance(release_id, int | str) and str(release_id).isdigit()
    }
    abandoned = [
        pk
        for pk in CrateRelease.objects.filter(state=CrateRelease.State.BUILDING, created_at__lt=cutoff)
        # The job building it may be running still (JOB_RETENTION_DAYS=0), its checkpoint not yet written.
        .exclude(job_id__in=CrateJob.objects.filter(status__in=CrateJob.ACTIVE_STATUSES).values("pk"))
        .values_list("pk", flat=True)
        if pk not in resumable
    ]
    for release_id in abandoned:
        discard_release(release_id=release_id)
    if abandoned:
        logger.info("retention: discarded %d abandoned building release(s)", len(abandoned))
    return len(abandoned)
