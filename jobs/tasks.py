"""django-q2 task entry points (dotted paths referenced by async_task and the schedules)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def run_job(job_id: str = "") -> str:
    """A wake-up token: run the oldest due queued job if a concurrency slot is free.

    ``job_id`` is only the job whose creation sent this token (for the logs);
    the token may run an older job, and exits quietly when there is nothing to do.
    """
    from jobs.runner import run_next_job

    outcome = run_next_job()
    logger.debug("wake-up token for %s: %s", job_id or "-", outcome)
    return outcome


def sweep() -> dict:
    from jobs.recovery import sweep as run_sweep

    return run_sweep()


def purge_old_jobs() -> int:
    from jobs.retention import purge_old_jobs as purge

    return purge()


def index_staged_chunks() -> int:
    """Move vectors staged by ingests into the HNSW index (queued after each ingest, and every minute)."""
    from crates.services import index_staged_chunks as index

    return index()
