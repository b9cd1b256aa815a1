"""Fake ingest pipelines for the job tests, importable by dotted path from qcluster subprocesses.

``slow_ingest`` follows the contract of ``crates.pipeline.ingest.run_ingest``:
it writes real Documents into a ``building`` release in batches, each batch in
one transaction together with its checkpoint, calls ``check_cancelled`` per
batch, resumes from the checkpoint, activates the release at the end and
discards it on cancel or a permanent failure (keeps it on a transient one).

Per-job behaviour comes from the crate name, so one worker serves every test:
``<behaviour>-n<items>-b<batch>-d<ms per batch>-<tag>``, e.g. ``job-n2000-b10-d5-kill``.
Behaviours: ``job`` (normal), ``flaky`` (transient error half-way through the
first attempt), ``missing`` (CrateNotFound), ``boom`` (an unexpected ValueError).

With ``FERRODEX_TEST_LEDGER`` set, every item processed is appended to that file
(unbuffered, so it survives kill -9): the tests count items done twice.
"""

from __future__ import annotations

import hashlib
import os
import re
import time

from django.db import transaction

from crates.errors import Cancelled, CrateNotFound, FerrodexError, UpstreamUnavailable
from crates.models import Crate, CrateRelease, Document
from crates.names import normalize_crate_name
from crates.pipeline.ingest import IngestResult

DEFAULT_ITEMS, DEFAULT_BATCH, DEFAULT_DELAY_MS = 40, 10, 20


def plan(name: str) -> dict:
    """Items, batch size, delay and behaviour encoded in a crate name."""
    parts = name.split("-")
    spec = {"behaviour": parts[0], "items": DEFAULT_ITEMS, "batch": DEFAULT_BATCH, "delay": DEFAULT_DELAY_MS / 1000}
    for part in parts[1:]:
        match = re.fullmatch(r"([nbd])(\d+)", part)
        if match:
            key = {"n": "items", "b": "batch", "d": "delay"}[match.group(1)]
            value = int(match.group(2))
            spec[key] = value / 1000 if key == "delay" else value
    return spec


def item_path(crate: str, index: int) -> str:
    return f"{normalize_crate_name(crate)}::item_{index:05d}"


def item_hash(crate: str, index: int) -> str:
    return hashlib.sha256(item_path(crate, index).encode()).hexdigest()


def _ledger(crate: str, indexes: range) -> None:
    path = os.environ.get("FERRODEX_TEST_LEDGER")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, "".join(f"{crate} {i} {os.getpid()}\n" for i in indexes).encode())
    finally:
        os.close(fd)


def _attempt(job_id) -> int:
    from jobs.models import CrateJob

    if job_id is None:
        return 1
    return CrateJob.objects.filter(pk=job_id).values_list("attempts", flat=True).first() or 1


def slow_ingest(*, name, version="latest", force=False, progress, checkpoint=None, save_checkpoint=None,
                job_id=None, **_ignored) -> IngestResult:
    spec = plan(name)
    checkpoint = dict(checkpoint or {})
    progress.stage("resolve", f"resolving {name} {version}", 0)
    if spec["behaviour"] == "missing":
        raise CrateNotFound(f"crates.io has no crate named {name!r}; check the spelling.", name=name)
    if spec["behaviour"] == "boom":
        raise ValueError("the fake pipeline exploded")
    version = "1.0.0" if version in ("", "latest") else version
    progress.stage("fetch", f"downloading {name} {version}", 5)
    progress.update(http_requests=2)
    progress.stage("parse", "parsing", 15)
    total = spec["items"]

    crate = Crate.objects.filter(normalized_name=normalize_crate_name(name)).first() or Crate.objects.create(name=name)
    release = None
    if checkpoint.get("release_id"):
        release = CrateRelease.objects.filter(pk=checkpoint["release_id"], state="building").first()
    start = checkpoint.get("next", 0) if release is not None else 0
    if release is None:
        release = CrateRelease.objects.create(crate=crate, version=version, docs_source="rustdoc-json",
                                              item_count=total, job_id=job_id)
        with transaction.atomic():
            if save_checkpoint:
                save_checkpoint({"release_id": release.pk, "next": 0})
    progress.stage("store", f"storing {total} items", 20)
    progress.update(items_found=total, items_processed=start, documents=start)
    result = IngestResult(crate_name=crate.name, version=version, release_id=release.pk, http_requests=2,
                              items_skipped_by_checkpoint=start)
    try:
        for first in range(start, total, spec["batch"]):
            progress.check_cancelled()
            if spec["behaviour"] == "flaky" and _attempt(job_id) == 1 and first >= total // 2:
                raise UpstreamUnavailable("docs.rs answered 503 after 5 tries; it may be down. Try again later.")
            time.sleep(spec["delay"])  # stands in for the embedding model
            indexes = range(first, min(total, first + spec["batch"]))
            _ledger(crate.normalized_name, indexes)
            with transaction.atomic():
                Document.objects.bulk_create([
                    Document(release=release, path=item_path(name, i), name=f"item_{i:05d}", kind="function",
                             content_hash=item_hash(name, i)) for i in indexes
                ])
                if save_checkpoint:
                    save_checkpoint({"release_id": release.pk, "next": indexes.stop})
            result.items_processed += len(indexes)
            progress.update(percent=20 + 78 * indexes.stop / total, items_processed=indexes.stop,
                            documents=indexes.stop, message=f"stored {indexes.stop}/{total} items")
        progress.check_cancelled()
        progress.stage("activate", "swapping in the new release", 98)
        with transaction.atomic():
            CrateRelease.objects.filter(crate=crate, version=version, state="active").update(state="superseded")
            release.state = "active"
            release.document_count = Document.objects.filter(release=release).count()
            release.save(update_fields=["state", "document_count"])
            crate.latest_version = version
            crate.save(update_fields=["latest_version"])
    except Exception as exc:
        if isinstance(exc, Cancelled) or not (isinstance(exc, FerrodexError) and exc.transient):
            release.delete()
        raise
    result.documents = release.document_count
    progress.stage("done", f"{name} {version}: {result.documents} documents", 100)
    return result


def must_not_run(**kwargs):
    """Set as the ingest function of the test process: the request path must never call the pipeline."""
    raise AssertionError(f"the pipeline ran in the web/test process: {kwargs.get('name')}")
