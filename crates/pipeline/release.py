"""Release building: store phase, embedding pass, activation.

The store phase writes every document and chunk with the vectors at hand (the embedding cache; with a model
that shares no cores, the model too: ``overlap_store``). The embedding pass then fills in the rest. A first
ingest of a version (none of it active) is activated between the two, marked ``embedding_pending``: it is
searchable by keyword and path, and answers ``get_item``, while the model runs. A re-ingest keeps the active
release searchable until the new one is complete, then swaps it in atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction

from crates.errors import Cancelled, FerrodexError
from crates.models import CrateRelease
from crates.pipeline import store
from crates.pipeline.chunk import token_counter
from crates.pipeline.embed_pass import eta_text, run_embed_pass
from crates.pipeline.fetch import save_artifact
from crates.pipeline.types import ParsedItem, Progress
from crates.pipeline.warmup import wait_until_loaded
from crates.pipeline.writers import write_batches

if TYPE_CHECKING:
    from crates.pipeline.ingest import _Source

logger = logging.getLogger(__name__)

# Items per committed batch. A batch commits whole and the stored documents are the checkpoint, so a crash
# never stores an item twice whatever the size; fewer, larger transactions keep the database's share low, and
# a crate of at most MIN_BATCH items is one batch, stored on the calling thread.
MIN_BATCH, MAX_BATCH, BATCHES_PER_CRATE = 32, 64, 20
# Progress bar: the store phase ends here when an embedding pass follows (it is most of the run).
STORE_DONE_PERCENT = 30
ACTIVATE_PERCENT = 98


@dataclass(slots=True)
class IngestResult:
    crate_name: str
    version: str
    release_id: int | None
    documents: int = 0
    chunks: int = 0
    embeddings: int = 0
    embedded_new: int = 0
    http_requests: int = 0
    items_processed: int = 0
    items_skipped_by_checkpoint: int = 0
    up_to_date: bool = False
    # An up-to-date ingest of a soft-deleted crate restores it, as making a release does.
    restored: bool = False
    # When a first ingest became searchable by keyword and path (before its vectors were all in).
    searchable_at: str | None = None
    # Where the documents came from ("rustdoc JSON v63", "HTML bundle") and what was skipped or fell back.
    docs_source: str = ""
    provenance: list[str] = field(default_factory=list)


def batch_size_for(total_items: int) -> int:
    return max(MIN_BATCH, min(MAX_BATCH, total_items // BATCHES_PER_CRATE or 1))


def overlap_store(embedder) -> bool:
    """Whether the store phase runs the model too (settings.INGEST_OVERLAP_STORE); else an embedding pass
    after it does. A model on this machine's CPU would take the cores the storing needs, and a first ingest
    is searchable sooner without waiting for it."""
    mode = getattr(settings, "INGEST_OVERLAP_STORE", "auto")
    if mode in ("on", "true", "1", "yes"):
        return True
    if mode in ("off", "false", "0", "no"):
        return False
    return not getattr(embedder, "uses_local_cpu", False)


def unique_items(items: list[ParsedItem]) -> list[ParsedItem]:
    """(path, kind) is unique per release; keep the first of any duplicates."""
    seen: set[tuple[str, str]] = set()
    out: list[ParsedItem] = []
    for item in items:
        key = (item.path, item.kind)
        if key not in seen:
            seen.add(key)
            out.append(item)
    if len(out) != len(items):
        logger.info("dropped %d duplicate (path, kind) items", len(items) - len(out))
    return out


def build_release(
    *, source: _Source, embedder, progress: Progress, checkpoint: dict, save: Callable[[dict], None], job_id
) -> IngestResult:
    items = unique_items(source.parsed.items)
    resolved = source.resolved
    with transaction.atomic():
        # One commit for the download, the crate and the release, without waiting for the WAL flush: the
        # download is a cache and a building release invisible; the checkpoint's synchronous commit flushes both.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        if source.unsaved_artifact:
            save_artifact(name=resolved.name, version=resolved.version, artifact=source.artifact)
        release, resumed = resume_or_create_release(source=source, embedder=embedder, checkpoint=checkpoint,
                                                    job_id=job_id)
    checkpoint.update(release_id=release.pk, version=resolved.version, items_total=len(items))
    if source.artifact is not None:
        checkpoint["artifact_sha256"] = source.artifact.sha256
    save(dict(checkpoint))
    inline = overlap_store(embedder)
    progress.stage("store", f"storing {len(items)} items", 20)
    progress.update(items_found=len(items), http_requests=source.http_requests)
    embedding = False
    try:
        # The stored documents are the checkpoint: a batch commits whole, so an item whose document exists
        # is done, whichever writer stored it. A release made just now has none.
        done = store.stored_keys(release=release) if resumed else set()
        pending = [item for item in items if (item.path, item.kind) not in done]
        result = IngestResult(crate_name=resolved.name, version=resolved.version, release_id=release.pk,
                              http_requests=source.http_requests, items_skipped_by_checkpoint=len(items) - len(pending),
                              docs_source=source.parsed.source_label(), provenance=source.parsed.provenance_notes())
        progress.update(items_processed=result.items_skipped_by_checkpoint)
        if pending:
            write_batches(release=release, pending=pending, batch=batch_size_for(len(items)), embedder=embedder,
                          package=resolved.name, local=source.local, progress=progress, result=result,
                          total=len(items), count=token_counter(embedder),
                          save_checkpoint=lambda: save(dict(checkpoint)), replace=resumed, embed=inline,
                          percent_from=20, percent_to=ACTIVATE_PERCENT if inline else STORE_DONE_PERCENT)
        progress.check_cancelled()
        embedding = True
        _embed(release=release, embedder=embedder, progress=progress, result=result)
        progress.check_cancelled()
        described = _described(source, result=result, progress=progress)
        if release.state == CrateRelease.State.ACTIVE:
            progress.stage("activate", "recording the finished release", ACTIVATE_PERCENT)
            store.finish_embedding(release=release, **described)
        else:
            progress.stage("activate", "swapping in the new release", ACTIVATE_PERCENT)
            store.activate_release(release=release, **described)
    except Exception as exc:
        _after_failure(exc, release_id=release.pk, embedding=embedding)
        raise
    result.documents, result.chunks = release.document_count, release.chunk_count
    result.embeddings = release.embedding_count
    progress.update(documents=result.documents, chunks=result.chunks, embeddings=result.embeddings,
                    items_processed=len(items))
    progress.stage("done", f"{resolved.name} {resolved.version}: {result.documents} documents", 100)
    return result


def _embed(*, release: CrateRelease, embedder, progress: Progress, result: IngestResult) -> None:
    """The embedding pass; a first ingest of its version is made searchable before it starts."""
    documents, chunks, embedded = store.release_counts(release_id=release.pk)
    progress.update(documents=documents, chunks=chunks, embeddings=embedded)
    if embedded >= chunks:
        return
    if release.state != CrateRelease.State.ACTIVE and not _version_active(release):
        store.activate_release(release=release, pending=True)
        logger.info("release %s of %s is searchable by keyword and path; embedding %d chunks", release.pk,
                    result.crate_name, chunks - embedded)
    note = _note(release.ingested_at if release.state == CrateRelease.State.ACTIVE else None)
    if release.ingested_at is not None and release.state == CrateRelease.State.ACTIVE:
        result.searchable_at = release.ingested_at.isoformat()
    progress.stage("embed", note(embedded, chunks, None), STORE_DONE_PERCENT)
    wait_until_loaded(embedder, check_cancelled=progress.check_cancelled)
    made = run_embed_pass(release_id=release.pk, embedder=embedder, progress=progress, embedded=embedded,
                          chunks=chunks, note=note, percent_from=STORE_DONE_PERCENT, percent_to=ACTIVATE_PERCENT)
    result.embedded_new += made.sent


def _note(searchable_since: datetime | None) -> Callable[[int, int, float | None], str]:
    prefix = f"searchable by keyword and path since {searchable_since:%H:%M:%S} UTC; " if searchable_since else ""

    def note(embedded: int, chunks: int, seconds_left: float | None) -> str:
        return f"{prefix}embedding {embedded} of {chunks} chunks{eta_text(seconds_left)}"

    return note


def _version_active(release: CrateRelease) -> bool:
    return CrateRelease.objects.filter(
        crate_id=release.crate_id, version=release.version, state=CrateRelease.State.ACTIVE
    ).exclude(pk=release.pk).exists()


def _described(source: _Source, *, result: IngestResult, progress: Progress) -> dict[str, str]:
    """The description and repository to give the crate at activation (``{}``: keep what it has)."""
    if source.description is None:
        return {}
    metadata = source.description.metadata()
    source.http_requests += source.description.requests
    result.http_requests = source.http_requests
    progress.update(http_requests=source.http_requests)
    return {key: value for key, value in metadata.items() if value}


def _after_failure(exc: Exception, *, release_id: int, embedding: bool) -> None:
    """After ``exc``: in the embedding pass, take the release out of search but keep its documents and chunks
    for a retry; before it, drop the building release unless a retry can resume it (a transient error)."""
    if embedding:
        store.withdraw_release(release_id=release_id)
    elif not (isinstance(exc, FerrodexError) and exc.transient) or isinstance(exc, Cancelled):
        store.discard_release(release_id=release_id)


def resume_or_create_release(*, source: _Source, embedder, checkpoint: dict, job_id) -> tuple[CrateRelease, bool]:
    """(the release to build, whether it is one a previous attempt started); inside the caller's transaction.

    An attempt that stopped in the embedding pass left its release building (withdrawn) or, if its worker
    died, active and pending: both resume."""
    release_id = checkpoint.get("release_id")
    if release_id and checkpoint.get("version") == source.resolved.version:
        release = (
            CrateRelease.objects.filter(pk=release_id, state=CrateRelease.State.BUILDING).first()
            or CrateRelease.objects.filter(pk=release_id, state=CrateRelease.State.ACTIVE,
                                           embedding_pending=True).first()
        )
        if release is not None:
            logger.info("resuming release %s of %s", release_id, source.resolved.name)
            return release, True
    artifact = source.artifact
    release = store.create_building_release(
        resolved=source.resolved, parsed=source.parsed, embedding_model=embedder.model_name,
        embedding_dimension=embedder.dimension,
        etag=artifact.etag if artifact else "", artifact_sha256=artifact.sha256 if artifact else "", job_id=job_id,
    )
    return release, False
