"""An ingest job run in the foreground of a command (``manage.py ingest_crate``).

The same job as one queued from the API, MCP or the admin (``requested_by: cli``): a job row with its
events and checkpoint, deduplicated with a queued or running ingest of the same crate, claimed with the
same slot and lock, run by the runner with the same progress writes and outcome, and listed in the admin.
Only the process differs: the command's own, which also shows the progress on its terminal. If a worker
already runs that ingest, the command follows it to its end instead of starting a second one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from crates.errors import JobStateError
from crates.pipeline.types import Progress
from jobs import queue, services
from jobs.concurrency import LockConnection
from jobs.models import LOCAL_SOURCES, CrateJob
from jobs.runner import current_worker_id, execute_job

logger = logging.getLogger(__name__)

FOLLOW_POLL_SECONDS = 0.5


@dataclass(slots=True)
class ForegroundRun:
    job: CrateJob  # as it finished (reloaded)
    followed: bool  # another process ran it; this one watched


def ingest_in_foreground(
    *, name: str, version: str | None, force: bool, display: Progress,
    json_file: Path | None = None, doc_dir: Path | None = None,
) -> ForegroundRun:
    """Queue the ingest and run it here, or follow the identical ingest already running elsewhere.

    Raises the service's errors (InvalidCrateName, ...) before anything is written. On KeyboardInterrupt
    the job this process runs is cancelled (a followed one goes on) and the interrupt is re-raised.
    """
    worker_id = f"cli:{current_worker_id()}"
    with LockConnection() as locks:
        _wait_for_slot(locks=locks, display=display)
        with transaction.atomic():
            # Queued and claimed in one transaction: no worker sees it queued and takes it first.
            enqueued = services.enqueue_ingest(name=name, version=version, force=force, requested_by="cli",
                                               json_file=json_file, doc_dir=doc_dir)
            job = enqueued.job
            if enqueued.deduplicated and (json_file or doc_dir) and not _same_source(job, json_file, doc_dir):
                raise JobStateError(
                    f"An ingest of {job.crate_name} {job.requested_version} from another source is already "
                    f"{job.status} (job {job.pk}); wait for it to finish or cancel it, then run this again.",
                    job_id=str(job.pk), status=job.status,
                )
            claimed = queue.claim_job(job_id=job.pk, locks=locks, worker_id=worker_id)
        if claimed is None:
            locks.release_slot()
            return ForegroundRun(job=_follow(job=job, display=display), followed=True)
        logger.info("job %s runs in the foreground of %s", claimed.pk, worker_id)
        try:
            execute_job(job=claimed, locks=locks, display=display, retry_transient=False)
        except KeyboardInterrupt:
            queue.finish_cancelled(job=claimed)
            raise
    claimed.refresh_from_db()
    return ForegroundRun(job=claimed, followed=False)


def _wait_for_slot(*, locks: LockConnection, display: Progress) -> None:
    """A concurrency slot (MAX_CONCURRENT_JOBS), as a worker takes one; waits while the workers use them all."""
    told = False
    while locks.try_acquire_slot() is None:
        if not told:
            display.stage("queued", f"waiting for a free job slot (MAX_CONCURRENT_JOBS={settings.MAX_CONCURRENT_JOBS})",
                          0)
            told = True
        time.sleep(settings.JOB_WAIT_SLOT_SECONDS)


def _same_source(job: CrateJob, json_file: Path | None, doc_dir: Path | None) -> bool:
    wanted = {"json_file": json_file, "doc_dir": doc_dir}
    return all(job.options.get(key) == (str(Path(wanted[key]).resolve()) if wanted[key] else None)
               for key in LOCAL_SOURCES)


def _follow(*, job: CrateJob, display: Progress) -> CrateJob:
    """Show a job another process runs until it finishes."""
    display.stage("follow", f"the same ingest is already {job.status} as job {job.pk}; following it", 0)
    stage = None
    while True:
        job.refresh_from_db()
        if job.stage and job.stage != stage:
            stage = job.stage
            display.stage(job.stage, job.stage_message, job.progress)
        display.update(percent=job.progress, message=job.stage_message,
                       **{name: getattr(job, name) for name in CrateJob.COUNTERS})
        if job.is_finished:
            return job
        time.sleep(FOLLOW_POLL_SECONDS)
