"""The django-q2 schedules Ferrodex needs, created idempotently."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

# Transaction-level advisory key so concurrent callers (several workers starting) cannot create twins ("FDXS").
_SCHEDULES_LOCK_KEY = 0x4644585300000001
RETENTION_SCHEDULE = "ferrodex: purge finished jobs"
SWEEPER_SCHEDULE = "ferrodex: recover stale jobs"
# Catches staged vectors whose after-ingest indexing task was lost (a killed worker).
INDEXER_SCHEDULE = "ferrodex: index staged embeddings"


def _next_retention_run() -> datetime:
    """03:17 UTC, off the hour that everybody else's cron jobs use."""
    now = timezone.now()
    run = datetime.combine(now.date(), time(3, 17), tzinfo=now.tzinfo)
    return run if run > now else run + timedelta(days=1)


def ensure_schedules(*, log_changes: bool = True) -> dict[str, str]:
    """Create or repair the retention (daily), sweeper and staged-embedding indexer (every minute) schedules.

    ``log_changes=False`` for a caller that reports the outcome itself (the ensure_schedules command).
    """
    from django_q.models import Schedule

    wanted = {
        RETENTION_SCHEDULE: {"func": "jobs.tasks.purge_old_jobs", "schedule_type": Schedule.DAILY, "minutes": None,
                             "next_run": _next_retention_run},
        SWEEPER_SCHEDULE: {"func": "jobs.tasks.sweep", "schedule_type": Schedule.MINUTES, "minutes": 1,
                           "next_run": timezone.now},
        INDEXER_SCHEDULE: {"func": "jobs.tasks.index_staged_chunks", "schedule_type": Schedule.MINUTES,
                           "minutes": 1, "next_run": timezone.now},
    }
    outcome = {}
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEDULES_LOCK_KEY,))
        for name, spec in wanted.items():
            existing = list(Schedule.objects.filter(name=name).order_by("id"))
            for twin in existing[1:]:
                twin.delete()
            fields = {"func": spec["func"], "schedule_type": spec["schedule_type"], "minutes": spec["minutes"],
                      "repeats": -1}
            if existing:
                schedule = existing[0]
                changed = [key for key, value in fields.items() if getattr(schedule, key) != value]
                for key in changed:
                    setattr(schedule, key, fields[key])
                if changed:
                    schedule.save()
                outcome[name] = "updated" if changed else "unchanged"
            else:
                Schedule.objects.create(name=name, next_run=spec["next_run"](), **fields)
                outcome[name] = "created"
    if log_changes and any(value != "unchanged" for value in outcome.values()):
        logger.info("django-q2 schedules: %s", outcome)
    return outcome
