"""Writes on crates that are not part of the ingest pipeline: removal and restore."""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.utils import timezone

from crates.errors import CrateNotFound, VersionNotFound
from crates.models import Chunk, Crate, CrateRelease, Document, FetchedArtifact
from crates.names import semver_key, validate_crate_name, validate_version

logger = logging.getLogger(__name__)


def _get_crate(*, name: str, for_update: bool = False) -> Crate:
    name = validate_crate_name(name)
    qs = Crate.objects.by_name(name)
    if for_update:
        qs = qs.select_for_update()
    crate = qs.first()
    if crate is None:
        raise CrateNotFound(f"No crate named {name!r} has been added to Ferrodex.", name=name)
    return crate


def _counts(releases) -> dict:
    release_ids = list(releases.values_list("pk", flat=True))
    return {
        "releases": len(release_ids),
        "documents": Document.objects.filter(release_id__in=release_ids).count(),
        "chunks": Chunk.objects.filter(release_id__in=release_ids).count(),
    }


def removal_preview(*, name: str, version: str | None = None) -> dict:
    """What a hard delete would remove, for confirmation pages."""
    crate = _get_crate(name=name)
    releases = crate.releases.all()
    if version:
        releases = releases.filter(version=validate_version(version))
    return {"crate": crate.name, "version": version or None, **_counts(releases)}


def remove_crate(*, name: str, version: str | None = None, soft: bool = False) -> dict:
    """Hard delete (cascade, one transaction) or soft delete (hidden from list and search).

    With ``version``, a hard delete removes only that version's releases; a
    soft delete always hides the whole crate.
    """
    with transaction.atomic():
        crate = _get_crate(name=name, for_update=True)
        if soft:
            crate.deleted_at = crate.deleted_at or timezone.now()
            crate.save(update_fields=["deleted_at", "updated_at"])
            logger.info("soft-deleted crate %s", crate.name)
            return {"crate": crate.name, "soft": True, "version": None, "releases": 0, "documents": 0, "chunks": 0}
        if version:
            version = validate_version(version)
            releases = crate.releases.filter(version=version)
            if not releases.exists():
                raise VersionNotFound(f"{crate.name} {version} is not stored in Ferrodex.", name=crate.name)
            counts = _counts(releases)
            releases.delete()
            _delete_downloads(crate=crate, version=version)
            if not crate.releases.exists():
                # Its last version (nothing building either): an empty crate would stay listed with no version,
                # and searching it would say "an ingest may still be running".
                crate.delete()
                logger.info("removed crate %s version=%s, its last: %s", name, version, counts)
                return {"crate": crate.name, "soft": False, "version": version, "crate_removed": True, **counts}
            remaining = CrateRelease.objects.filter(crate=crate, state=CrateRelease.State.ACTIVE)
            crate.latest_version = max(
                remaining.values_list("version", flat=True), key=semver_key, default=""
            )
            crate.save(update_fields=["latest_version", "updated_at"])
        else:
            counts = _counts(crate.releases.all())
            crate.delete()
            _delete_downloads(crate=crate)
    logger.info("removed crate %s version=%s: %s", name, version, counts)
    return {"crate": crate.name, "soft": False, "version": version, **counts}


def _delete_downloads(*, crate: Crate, version: str | None = None) -> None:
    """The cached downloads (FetchedArtifact, keyed by name, not by foreign key) go with what they were for."""
    downloads = FetchedArtifact.objects.filter(crate_name=crate.normalized_name)
    if version:
        downloads = downloads.filter(version=version)
    downloads.delete()


def restore_crate(*, name: str) -> Crate:
    """Undo a soft delete."""
    with transaction.atomic():
        crate = _get_crate(name=name, for_update=True)
        if crate.deleted_at is not None:
            crate.deleted_at = None
            crate.save(update_fields=["deleted_at", "updated_at"])
            logger.info("restored crate %s", crate.name)
    return crate


# Chunks moved from staged_embedding into the HNSW-indexed embedding per transaction: small enough
# that a batch holds its row locks briefly and a kill loses little, large enough to amortise commits.
INDEX_STAGED_BATCH = 500


def index_staged_chunks(*, batch_size: int = INDEX_STAGED_BATCH, max_batches: int | None = None) -> int:
    """Move staged vectors into ``Chunk.embedding`` (and so into the HNSW index); return how many moved.

    The ingest stores vectors in ``staged_embedding`` (no index to maintain, searched by an exact scan);
    this is the deferred HNSW insert. Each batch is one transaction that sets ``embedding`` and clears
    ``staged_embedding`` on the same rows, so a chunk is never in neither or both; a killed run loses
    at most its open batch, and running it again (or two at once: SKIP LOCKED) just continues.
    """
    moved = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE crates_chunk c SET embedding = c.staged_embedding, staged_embedding = NULL"
                " WHERE c.id IN (SELECT id FROM crates_chunk WHERE staged_embedding IS NOT NULL"
                " LIMIT %s FOR UPDATE SKIP LOCKED)",
                [batch_size],
            )
            count = cursor.rowcount
        moved += count
        batches += 1
        if count < batch_size:
            break
    if moved:
        logger.info("indexed %d staged chunk embeddings in %d batches", moved, batches)
    flush_text_index_pending_lists()
    return moved


def flush_text_index_pending_lists() -> int:
    """Merge the pending lists of the documents' and chunks' GIN indexes (path tails, full text) into the
    indexes; return the pages merged.

    New rows go to a GIN index's unsorted pending list (fast inserts), and every search that uses the
    index reads all of it: after an ingest, up to 4 MB a search until autovacuum merges it, which on a
    big table can take hours, and slows every path lookup meanwhile.
    Runs after the staged vectors move, which rewrites the chunk rows and so their GIN entries too.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(gin_clean_pending_list(i.indexrelid)), 0) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
            " WHERE a.amname = 'gin' AND i.indrelid IN (%s::regclass, %s::regclass)",
            [Document._meta.db_table, Chunk._meta.db_table],
        )
        merged = int(cursor.fetchone()[0])
    if merged:
        logger.info("merged %d pending pages into the text search indexes", merged)
    return merged


def backfill_type_signatures(*, crate: str | None = None) -> dict[str, int]:
    """Type search and trait-graph rows for releases stored before they existed, from the stored declarations
    (as for an HTML-only release); a release that has any such rows is left alone. Re-ingesting a crate
    (force) gives the fuller rustdoc JSON view. Returns counts of releases, signatures and impls written."""
    from crates.models import TraitImpl, TypeSignature
    from crates.pipeline.html_types import annotate_declaration_types
    from crates.pipeline.store import store_types
    from crates.pipeline.types import ParsedItem

    releases = CrateRelease.objects.exclude(state=CrateRelease.State.BUILDING).select_related("crate")
    if crate:
        releases = releases.filter(crate__in=Crate.objects.by_name(crate))
    counts = {"releases": 0, "signatures": 0, "impls": 0}
    for release in releases.order_by("pk"):
        if TypeSignature.objects.filter(release=release).exists() or TraitImpl.objects.filter(release=release).exists():
            continue
        rows = list(Document.objects.filter(release=release).values_list(
            "id", "path", "name", "kind", "parent_path", "signature", "metadata"))
        items = [(row[0], ParsedItem(path=row[1], name=row[2], kind=row[3], parent_path=row[4], signature=row[5],
                                     metadata=row[6] if isinstance(row[6], dict) else {})) for row in rows]
        annotate_declaration_types([item for _, item in items])
        typed = [(doc_id, item) for doc_id, item in items if item.type_sig or item.impls]
        if typed:
            store_types(release=release, documents=typed)
        counts["releases"] += 1
        counts["signatures"] += sum(1 for _, item in typed if item.type_sig)
        counts["impls"] += sum(len(item.impls) for _, item in typed)
        logger.info("backfilled type signatures", extra={"release": release.pk, "crate": release.crate.name})
    return counts
