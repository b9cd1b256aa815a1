"""The request path of jobs: enqueue, cancel, retry.

A request only touches the database: a job row, its event and a django-q2
wake-up task, in one transaction. The work happens in ``jobs.runner`` on a
qcluster worker (or in the foreground of ``manage.py ingest_crate``); the
queue's own transitions are in ``jobs.queue``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from crates.errors import CrateNotFound, InvalidCrateName, InvalidInput, JobNotFound, JobStateError, VersionNotFound
from crates.models import Crate, CrateRelease
from crates.names import (
    normalize_crate_name,
    semver_key,
    toolchain_crate_note,
    validate_crate_name,
    validate_version,
)
from jobs import fastpath
from jobs.models import ALL_VERSIONS, CrateJob, JobEvent
from jobs.queue import cancel_active_ingests, cancel_locked, record_event

logger = logging.getLogger(__name__)

Status = CrateJob.Status
Operation = CrateJob.Operation
EventType = JobEvent.Type

_DEDUPE_CONSTRAINT = "job_one_active_per_target"
_REQUESTED_BY = tuple(CrateJob.RequestedBy.values)


@dataclass(slots=True)
class EnqueueResult:
    job: CrateJob
    deduplicated: bool


# --- request path ---------------------------------------------------------------


def enqueue_ingest(
    *, name: str, version: str | None = None, force: bool = False, requested_by: str, allow_yanked: bool = False,
    json_file: Path | None = None, doc_dir: Path | None = None,
) -> EnqueueResult:
    """Queue an ingest of ``name`` at ``version`` ("latest" when empty); an active one for the same target is reused.

    ``allow_yanked``: the exact version may be yanked (a Cargo.lock's, which cargo keeps using). ``json_file`` /
    ``doc_dir``: ingest local docs instead of docs.rs (the command line; the job runs where the path can be read).
    """
    crate_name = validate_crate_name(name)
    requested_version = validate_version(version)
    if note := toolchain_crate_note(crate_name):  # the job would only fail with "no crate named 'std'"
        raise InvalidCrateName(note)
    local = {key: str(Path(path).resolve()) for key, path in (("json_file", json_file), ("doc_dir", doc_dir)) if path}
    source = f" from {next(iter(local.values()))}" if local else ""
    return _enqueue(
        operation=Operation.INGEST,
        crate_name=crate_name,
        requested_version=requested_version,
        options={"force": bool(force), **local, **({"allow_yanked": True} if allow_yanked else {})},
        requested_by=_requested_by(requested_by),
        message=f"Ingest of {crate_name} {requested_version}{source} requested" + (" (force)" if force else ""),
    )


def enqueue_removal(
    *, name: str, version: str | None = None, soft: bool = False, requested_by: str
) -> EnqueueResult:
    """Queue the removal of a crate (or one version); active ingests of the crate are cancelled first."""
    crate_name = validate_crate_name(name)
    requested_version = ALL_VERSIONS if version in (None, "") else validate_version(version)
    if requested_version == "latest":
        raise InvalidInput("Name the exact version to remove (e.g. '1.0.3'), or leave the version out to remove the "
                           "whole crate.", field="version")
    if soft and requested_version != ALL_VERSIONS:
        # A soft delete hides the whole crate; with a version it hid every version while the job named one.
        raise InvalidInput(
            f"A soft delete hides the whole crate, not one version: leave the version out to hide {crate_name}, "
            f"or remove {crate_name} {requested_version} for good with a hard delete (soft false).",
            field="version",
        )
    requested_by = _requested_by(requested_by)
    crate = Crate.objects.by_name(crate_name).only("name").first()
    if crate is None:
        raise CrateNotFound(f"No crate named {crate_name!r} has been added to Ferrodex.", name=crate_name)
    if requested_version != ALL_VERSIONS:
        # Checked before the crate's ingests are cancelled, so a mistyped version stops nothing.
        _require_stored_version(crate=crate, version=requested_version)
    cancelled = cancel_active_ingests(normalized_name=crate.normalized_name, reason=f"removal of {crate.name}")
    what = "every version" if requested_version == ALL_VERSIONS else requested_version
    return _enqueue(
        operation=Operation.REMOVE,
        crate_name=crate.name,
        requested_version=requested_version,
        options={"soft": bool(soft)},
        requested_by=requested_by,
        message=f"{'Soft' if soft else 'Hard'} removal of {crate.name} ({what}) requested",
        data={"cancelled_jobs": [str(pk) for pk in cancelled]},
    )


def _require_stored_version(*, crate: Crate, version: str) -> None:
    stored = sorted(set(CrateRelease.objects.filter(crate=crate).values_list("version", flat=True)),
                    key=semver_key, reverse=True)
    if version not in stored:
        listed = ", ".join(stored) if stored else "none"
        raise VersionNotFound(
            f"{crate.name} {version} is not stored in Ferrodex, so there is nothing to remove; stored versions: "
            f"{listed}. Leave the version out to remove the whole crate.",
            crate=crate.name, version=version, available=stored,
        )


def cancel_job(*, job_id: uuid.UUID | str) -> CrateJob:
    """Cancel a queued job at once, or ask a running one to stop at its next check."""
    pk = parse_job_id(job_id)
    with transaction.atomic():
        job = CrateJob.objects.select_for_update().filter(pk=pk).first()
        if job is None:
            raise JobNotFound(f"There is no job {pk}.", job_id=str(pk))
        if job.is_finished:
            raise JobStateError(
                f"Job {pk} has already finished ({job.status}); there is nothing to cancel.",
                job_id=str(pk), status=job.status,
            )
        cancel_locked(job=job, reason="cancelled by request")
    return job


def retry_job(*, job_id: uuid.UUID | str, requested_by: str) -> EnqueueResult:
    """Start a failed or cancelled job again, as a new job that resumes from its checkpoint."""
    pk = parse_job_id(job_id)
    job = CrateJob.objects.filter(pk=pk).first()
    if job is None:
        raise JobNotFound(f"There is no job {pk}.", job_id=str(pk))
    if job.status not in (Status.FAILED, Status.CANCELLED):
        raise JobStateError(
            f"Job {pk} is {job.status}; only failed or cancelled jobs can be retried.",
            job_id=str(pk), status=job.status,
        )
    if not job.retryable:
        raise JobStateError(
            f"Job {pk} failed with {job.error_type}: retrying cannot help ({job.error_message}) "
            "Correct the crate name or version and add the crate again.",
            job_id=str(pk), status=job.status, error_type=job.error_type,
        )
    result = _enqueue(
        operation=job.operation,
        crate_name=job.crate_name,
        requested_version=job.requested_version,
        options=dict(job.options),
        requested_by=_requested_by(requested_by),
        message=f"Retry of job {job.pk} ({job.status}: {job.error_message or job.stage_message})"[:500],
        checkpoint=job.checkpoint,
        retry_of=job,
    )
    if not result.deduplicated:
        record_event(job_id=job.pk, event_type=EventType.RETRIED, message=f"Retried as job {result.job.pk}",
                     data={"new_job_id": str(result.job.pk), "requested_by": result.job.requested_by})
    return result


def parse_job_id(job_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id).strip())
    except ValueError:
        raise JobNotFound(f"{str(job_id)[:80]!r} is not a job id (job ids are UUIDs).", job_id=str(job_id)) from None


# --- internals --------------------------------------------------------------------


def _requested_by(value: str) -> str:
    value = (value or "").strip().lower()
    if value not in _REQUESTED_BY:
        raise InvalidInput(f"requested_by must be one of {', '.join(_REQUESTED_BY)}; got {value!r}.")
    return value


def _active_job(*, operation: str, normalized_name: str, requested_version: str) -> CrateJob | None:
    return CrateJob.objects.filter(
        operation=operation, normalized_name=normalized_name, requested_version=requested_version,
        status__in=CrateJob.ACTIVE_STATUSES,
    ).first()


def _enqueue(
    *, operation: str, crate_name: str, requested_version: str, options: dict, requested_by: str, message: str,
    data: dict | None = None, checkpoint: dict | None = None, retry_of: CrateJob | None = None,
) -> EnqueueResult:
    normalized = normalize_crate_name(crate_name)
    target = {"operation": operation, "normalized_name": normalized, "requested_version": requested_version}
    for _ in range(3):
        now = timezone.now()
        job = {"id": uuid.uuid4(), "crate_name": crate_name, "options": options, "requested_by": requested_by,
               "checkpoint": checkpoint or {}, "retry_of_id": retry_of.pk if retry_of else None,
               "created_at": now, **target}
        event = {"job_id": job["id"], "event_type": EventType.CREATED, "message": message[:2000],
                 "data": {"requested_by": requested_by, **(data or {})}, "created_at": now}
        try:
            job = fastpath.insert_queued_job(job=job, event=event)
        except IntegrityError as exc:
            # No look-up first: the partial unique index decides, also between concurrent enqueues.
            if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", "") != _DEDUPE_CONSTRAINT:
                raise
            existing = _active_job(**target)
            deduplicated = _deduplicated(job=existing, options=options) if existing is not None else None
            if deduplicated is not None:
                return deduplicated
            continue  # the active job finished in between: try again
        if retry_of is not None:
            job.retry_of = retry_of
        logger.info("job %s queued: %s %s %s by %s", job.pk, operation, crate_name, requested_version, requested_by)
        return EnqueueResult(job=job, deduplicated=False)
    raise JobStateError(f"Could not queue {operation} of {crate_name}: jobs for it keep starting and finishing; "
                        "try again.")


def _deduplicated(*, job: CrateJob, options: dict) -> EnqueueResult | None:
    """Return the active job; a stronger request (force, hard removal) upgrades it while still queued.

    None: the job finished meanwhile, the caller queues a new one.
    """
    upgraded = dict(job.options)
    if options.get("force"):
        upgraded["force"] = True
    if "soft" in options and not options["soft"]:
        upgraded["soft"] = False
    if upgraded == job.options:
        return EnqueueResult(job=job, deduplicated=True)
    if CrateJob.objects.filter(pk=job.pk, status=Status.QUEUED).update(options=upgraded):
        job.options = upgraded
        return EnqueueResult(job=job, deduplicated=True)
    if not CrateJob.objects.filter(pk=job.pk, status=Status.RUNNING).exists():
        return None
    # A running job keeps the options it started with: answering with it would silently drop the force
    # (the job then ends "already up to date") or turn a hard removal into the running soft delete.
    wanted = "a forced re-ingest" if options.get("force") else "a hard removal"
    raise JobStateError(
        f"{wanted.capitalize()} of {job.crate_name} cannot join job {job.pk}: it is already running without it. "
        f"Wait until that job has finished (check its status), then send this request again.",
        job_id=str(job.pk), status=Status.RUNNING, wanted=wanted,
    )
