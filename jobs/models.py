"""Ingest and removal jobs, and their audit log."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

# requested_version of a removal that covers every version of the crate.
ALL_VERSIONS = "*"
# Options of an ingest from local files (``manage.py ingest_crate --json-file / --doc-dir``): the path.
LOCAL_SOURCES = ("json_file", "doc_dir")


class CrateJob(models.Model):
    class Operation(models.TextChoices):
        INGEST = "ingest", "Ingest"
        REMOVE = "remove", "Remove"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class RequestedBy(models.TextChoices):
        API = "api", "API"
        MCP = "mcp", "MCP"
        ADMIN = "admin", "Admin"
        CLI = "cli", "CLI"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    FINISHED_STATUSES = (Status.COMPLETE, Status.FAILED, Status.CANCELLED)
    # The progress counters, in the order every front shows them (job_as_dict "counters").
    COUNTERS = ("items_found", "items_processed", "documents", "chunks", "embeddings", "http_requests")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on the names: every enqueue writes every index of this table, lookups by
    # name use job_crate_status_idx / job_one_active_per_target, and the admin's search is icontains.
    crate_name = models.CharField(max_length=64)
    normalized_name = models.CharField(max_length=64)
    requested_version = models.CharField(max_length=128, default="latest")
    resolved_version = models.CharField(max_length=128, blank=True, default="")
    operation = models.CharField(max_length=16, choices=Operation.choices, default=Operation.INGEST)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Percent, to a tenth: a long embedding pass moves it every second or two, not by whole points.
    progress = models.FloatField(default=0)
    stage = models.CharField(max_length=32, blank=True, default="")
    stage_message = models.CharField(max_length=500, blank=True, default="")
    items_found = models.PositiveIntegerField(default=0)
    items_processed = models.PositiveIntegerField(default=0)
    documents = models.PositiveIntegerField(default=0)
    chunks = models.PositiveIntegerField(default=0)
    embeddings = models.PositiveIntegerField(default=0)
    http_requests = models.PositiveIntegerField(default=0)
    options = models.JSONField(default=dict, blank=True)
    requested_by = models.CharField(max_length=8, choices=RequestedBy.choices, default=RequestedBy.CLI)
    attempts = models.PositiveSmallIntegerField(default=0)
    checkpoint = models.JSONField(default=dict, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=200, blank=True, default="")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)  # of the current (last) attempt
    # Of the first attempt: a retried job's duration is the whole, back-offs between attempts included.
    first_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    error_type = models.CharField(max_length=100, blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    # A transient failure puts the job back in the queue, not to be claimed before this time.
    run_after = models.DateTimeField(null=True, blank=True)
    # IngestResult (or the removal summary) of a complete job.
    result = models.JSONField(default=dict, blank=True)
    # An operator retry is a new job that resumes from the checkpoint of this one.
    # Indexed only where set (job_retry_of_idx): the enqueue of a new job writes no entry.
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries", db_index=False
    )

    class Meta:
        db_table = "crate_jobs"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=100), name="crate_job_progress_0_100"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "complete", "failed", "cancelled"]),
                name="crate_job_status_valid",
            ),
            # Dedupe that holds under concurrent enqueues: one active job per operation and target.
            models.UniqueConstraint(
                fields=["operation", "normalized_name", "requested_version"],
                condition=Q(status__in=["queued", "running"]),
                name="job_one_active_per_target",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="job_status_created_idx"),
            models.Index(fields=["normalized_name", "status"], name="job_crate_status_idx"),
            models.Index(
                fields=["heartbeat_at"], name="job_running_heartbeat_idx", condition=Q(status="running")
            ),
            # Partial, like job_retry_of_idx: retention looks only at finished jobs and an enqueue adds no entry.
            models.Index(fields=["finished_at"], name="job_finished_idx", condition=Q(finished_at__isnull=False)),
            models.Index(fields=["retry_of"], name="job_retry_of_idx", condition=Q(retry_of__isnull=False)),
            # The claim query: oldest queued job first, without touching the finished ones.
            models.Index(fields=["created_at"], name="job_queued_created_idx", condition=Q(status="queued")),
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.crate_name} {self.version_label} [{self.status}]"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

    @property
    def retryable(self) -> bool:
        return retry_can_help(status=self.status, error_type=self.error_type)

    @property
    def options_label(self) -> str:
        """Options as pages show them: 'force', 'soft' (flags that are on), other values as name=value."""
        options = self.options if isinstance(self.options, dict) else {}
        return ", ".join(k if v is True else f"{k}={v}" for k, v in options.items() if v is not False and v is not None)

    @property
    def version_label(self) -> str:
        """The version as pages show it: the resolved one, else the requested one; a whole-crate removal
        (stored as ALL_VERSIONS, '*') reads 'all versions'."""
        version = self.resolved_version or self.requested_version
        return "all versions" if version == ALL_VERSIONS else version


class JobEvent(models.Model):
    class Type(models.TextChoices):
        CREATED = "created"
        STARTED = "started"
        PROGRESS = "progress"
        RETRIED = "retried"
        CANCEL_REQUESTED = "cancel_requested"
        CANCELLED = "cancelled"
        COMPLETED = "completed"
        FAILED = "failed"
        RECOVERED = "recovered"

    # jobevent_job_created_idx (job, created_at) serves the job's lookups and the cascade.
    job = models.ForeignKey(CrateJob, on_delete=models.CASCADE, related_name="events", db_index=False)
    event_type = models.CharField(max_length=20, choices=Type.choices)
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["job", "created_at"], name="jobevent_job_created_idx")]

    def __str__(self) -> str:
        return f"{self.event_type}: {self.message[:60]}"


class WorkerHeartbeat(models.Model):
    """One row per qcluster worker process, so every process and machine can see who is alive.

    django-q2's own Stat lives in the Django cache, which is per process by default.
    """

    worker_id = models.CharField(max_length=200, primary_key=True, help_text="hostname:pid")
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    current_job_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.worker_id


def _permanent_error_types() -> frozenset[str]:
    from crates import errors

    def family(cls: type) -> set[type]:
        return {cls}.union(*(family(sub) for sub in cls.__subclasses__()))

    return frozenset(cls.__name__ for cls in family(errors.InvalidInput) | family(errors.NotFound))


# Failures the same request meets again (a crate or version that does not exist, a name that is not valid):
# a retry cannot help, so none is offered; the fix is a new request.
PERMANENT_ERROR_TYPES = _permanent_error_types()


def retry_can_help(*, status: str, error_type: str | None) -> bool:
    """A cancelled job, or a failed one whose error may not happen again."""
    if status == CrateJob.Status.CANCELLED:
        return True
    return status == CrateJob.Status.FAILED and (error_type or "") not in PERMANENT_ERROR_TYPES
