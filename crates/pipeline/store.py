"""Store stage: building releases, batched idempotent writes, the atomic swap.

A release is written in state ``building`` and is invisible to search. Each
batch of documents (with their chunks and embeddings) commits in one
transaction together with the caller's checkpoint, so a resumed job knows
exactly which batches are in. ``activate_release`` swaps it in with one
transaction; until then the previous active release stays searchable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from crates.models import Chunk, Crate, CrateRelease, Document
from crates.pipeline.types import ChunkData, ParsedCrate, ParsedItem, ResolvedRelease
from crates.textsearch import search_text_for

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StoredItem:
    item: ParsedItem
    chunks: list[ChunkData]
    vectors: list[Sequence[float] | None]


def docs_url(*, package: str, version: str, relative: str, local: bool) -> str:
    if local or not relative:
        return relative
    return f"{settings.DOCSRS_BASE_URL}/{package}/{version}/{relative}"


def upsert_crate(*, resolved: ResolvedRelease) -> Crate:
    crate = Crate.objects.by_name(resolved.name).first()
    if crate is None:
        crate = Crate(name=resolved.name)
    else:
        crate.name = resolved.name
    if resolved.description:
        crate.description = resolved.description[:5000]
    if resolved.repository:
        crate.repository = resolved.repository[:500]
    crate.save()
    return crate


def create_building_release(
    *, crate: Crate, parsed: ParsedCrate, version: str, embedding_model: str, embedding_dimension: int,
    etag: str = "", artifact_sha256: str = "", job_id=None,
) -> CrateRelease:
    return CrateRelease.objects.create(
        crate=crate,
        version=version,
        docs_source=parsed.source,
        format_version=parsed.format_version,
        generator=parsed.generator[:200],
        target=parsed.target[:100],
        state=CrateRelease.State.BUILDING,
        item_count=len(parsed.items),
        embedding_model=embedding_model,
        embedding_dimension=embedding_dimension,
        etag=etag[:200],
        artifact_sha256=artifact_sha256,
        job_id=job_id,
    )


def stored_keys(*, release: CrateRelease) -> set[tuple[str, str]]:
    """(path, kind) of every document already committed to ``release``."""
    return set(Document.objects.filter(release=release).values_list("path", "kind"))


def store_batch(
    *, release: CrateRelease, package: str, local: bool, batch: Sequence[StoredItem],
    before_commit: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Write one batch of items in one transaction; return (documents, chunks).

    A batch commits whole, so its documents double as the resume checkpoint.
    Idempotent: rows of this release with the same (path, kind) are replaced,
    so re-running a batch cannot create duplicates. ``before_commit`` runs
    last inside the transaction: the job runner fences a stale attempt there.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Batches of a building release are replayable from the checkpoint, which
            # commits in this same transaction: waiting for the WAL flush buys nothing.
            cursor.execute("SET LOCAL synchronous_commit = off")
        _delete_existing(release=release, batch=batch)
        documents = Document.objects.bulk_create(
            [_document(release=release, package=package, local=local, item=s.item) for s in batch]
        )
        chunks = [
            Chunk(
                document=doc,
                release=release,
                ordinal=c.ordinal,
                text=c.text,
                search_text=search_text_for(c.text),
                token_count=c.token_count,
                content_hash=c.content_hash,
                embedding=vec,
            )
            for doc, stored in zip(documents, batch, strict=True)
            for c, vec in zip(stored.chunks, stored.vectors, strict=True)
        ]
        Chunk.objects.bulk_create(chunks, batch_size=500)
        if before_commit is not None:
            before_commit()
    return len(documents), len(chunks)


def _delete_existing(*, release: CrateRelease, batch: Sequence[StoredItem]) -> None:
    paths = {s.item.path for s in batch}
    stale = Document.objects.filter(release=release, path__in=paths)
    keys = {(s.item.path, s.item.kind) for s in batch}
    ids = [pk for pk, path, kind in stale.values_list("pk", "path", "kind") if (path, kind) in keys]
    if ids:
        logger.info("replacing %d documents of release %s from an earlier attempt", len(ids), release.pk)
        Document.objects.filter(pk__in=ids).delete()


def _document(*, release: CrateRelease, package: str, local: bool, item: ParsedItem) -> Document:
    return Document(
        release=release,
        path=item.path[:1000],
        name=item.name[:300],
        kind=item.kind,
        parent_path=item.parent_path[:1000],
        signature=item.signature,
        docs=item.docs,
        url=docs_url(package=package, version=release.version, relative=item.url, local=local)[:1500],
        deprecated=item.deprecated,
        deprecation_note=item.deprecation_note,
        content_hash=item.content_hash(),
        metadata=item.metadata,
    )


def activate_release(*, release: CrateRelease) -> CrateRelease:
    """Make ``release`` the searchable one for its version, atomically."""
    with transaction.atomic():
        crate = Crate.objects.select_for_update().get(pk=release.crate_id)
        previous = list(
            CrateRelease.objects.select_for_update()
            .filter(crate=crate, version=release.version, state=CrateRelease.State.ACTIVE)
            .exclude(pk=release.pk)
        )
        CrateRelease.objects.filter(pk__in=[p.pk for p in previous]).update(state=CrateRelease.State.SUPERSEDED)
        _refresh_counts(release=release)
        release.state = CrateRelease.State.ACTIVE
        release.ingested_at = timezone.now()
        release.save()
        crate.deleted_at = None
        crate.latest_version = _newest_active_version(crate=crate)
        crate.save()
    # Old rows are invisible from here on; removing them is housekeeping.
    for old in previous:
        discard_release(release_id=old.pk)
    return release


def _refresh_counts(*, release: CrateRelease) -> None:
    chunks = Chunk.objects.filter(release=release)
    release.document_count = Document.objects.filter(release=release).count()
    release.chunk_count = chunks.count()
    release.embedding_count = chunks.exclude(embedding=None).count()


def _newest_active_version(*, crate: Crate) -> str:
    from crates.names import semver_key

    versions = CrateRelease.objects.filter(crate=crate, state=CrateRelease.State.ACTIVE).values_list(
        "version", flat=True
    )
    return max(versions, key=semver_key, default="")


def discard_release(*, release_id: int) -> None:
    """Delete a building or superseded release and everything under it."""
    deleted = (
        CrateRelease.objects.filter(pk=release_id)
        .exclude(state=CrateRelease.State.ACTIVE)
        .delete()
    )
    if deleted[0]:
        logger.info("discarded release %s", release_id)
