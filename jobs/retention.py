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
    WorkerHeartbeat.objects.filter(last_seen__lt=timezone.now() - WORKER_ROWS_KEPT).delete()
    logger.info("retention: deleted %d jobs finished before %s", deleted, cutoff.isoformat())
    return deleted
