"""Store stage: building releases, batched idempotent writes, the atomic swap.

A release is written in state ``building`` and is invisible to search. Each
batch of documents (with their chunks and embeddings) commits in one
transaction together with the caller's checkpoint, so a resumed job knows
exactly which batches are in. ``activate_release`` swaps it in with one
transaction; until then the previous active release stays searchable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from crates import typesig
from crates.models import Chunk, Crate, CrateRelease, Document, TraitImpl, TypeSignature
from crates.names import normalize_crate_name, semver_key
from crates.pipeline import pgcopy
from crates.pipeline.types import ChunkData, ParsedCrate, ParsedItem, ResolvedRelease
from crates.textsearch import search_text_for

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StoredItem:
    item: ParsedItem
    chunks: list[ChunkData]
    vectors: list[Sequence[float] | None]


def docs_root(*, package: str, version: str) -> str:
    """Where docs.rs serves a release's pages; item URLs and links in docs are under it."""
    return f"{settings.DOCSRS_BASE_URL}/{package}/{version}/"


def docs_url(*, package: str, version: str, relative: str, local: bool) -> str:
    if local or not relative:
        return relative
    return docs_root(package=package, version=version) + relative


def create_building_release(
    *, resolved: ResolvedRelease, parsed: ParsedCrate, embedding_model: str, embedding_dimension: int,
    etag: str = "", artifact_sha256: str = "", job_id=None,
) -> CrateRelease:
    """Add or update the crate row and add a ``building`` release of it, in one statement.

    The crate takes the resolved spelling of its name; a non-empty description or repository replaces its
    own (the ingest sets them at activation). One round trip instead of three ORM queries (look up the
    crate, save it, create the release), on a small crate's fixed cost.
    """
    now = timezone.now()
    values = {
        "name": resolved.name, "normalized": normalize_crate_name(resolved.name),
        "description": (resolved.description or "")[:5000], "repository": (resolved.repository or "")[:500],
        "now": now, "version": resolved.version, "source": parsed.source, "format": parsed.format_version,
        "generator": parsed.generator[:200], "target": parsed.target[:100], "state": CrateRelease.State.BUILDING,
        "items": len(parsed.items), "model": embedding_model, "dimension": embedding_dimension,
        "etag": etag[:200], "sha": artifact_sha256, "job": job_id, "features": Jsonb(resolved.features or {}),
        "notes": json.dumps(parsed.provenance_notes()),
    }  # fmt: skip
    crates, releases = Crate._meta.db_table, CrateRelease._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH crate AS (
                    INSERT INTO "{crates}" AS c (name, normalized_name, description, repository, latest_version,
                        deleted_at, created_at, updated_at)
                    VALUES (%(name)s, %(normalized)s, %(description)s, %(repository)s, '', NULL, %(now)s, %(now)s)
                    ON CONFLICT (normalized_name) DO UPDATE SET name = EXCLUDED.name, updated_at = EXCLUDED.updated_at,
                        description = CASE WHEN EXCLUDED.description <> '' THEN EXCLUDED.description
                                           ELSE c.description END,
                        repository = CASE WHEN EXCLUDED.repository <> '' THEN EXCLUDED.repository
                                          ELSE c.repository END
                    RETURNING id)
                INSERT INTO "{releases}" (crate_id, version, docs_source, format_version, generator, target, state,
                    item_count, document_count, chunk_count, embedding_count, embedding_model, embedding_dimension,
                    etag, artifact_sha256, job_id, created_at, source_notes, features)
                SELECT crate.id, %(version)s, %(source)s, %(format)s, %(generator)s, %(target)s, %(state)s,
                    %(items)s, 0, 0, 0, %(model)s, %(dimension)s, %(etag)s, %(sha)s, %(job)s, %(now)s,
                    %(notes)s::jsonb, %(features)s
                FROM crate RETURNING id, crate_id""",
            values,
        )
        release_id, crate_id = cursor.fetchone()
    release = CrateRelease(
        id=release_id, crate_id=crate_id, version=values["version"], docs_source=values["source"],
        format_version=values["format"], generator=values["generator"], target=values["target"],
        state=values["state"], item_count=values["items"], embedding_model=embedding_model,
        embedding_dimension=embedding_dimension, etag=values["etag"], artifact_sha256=artifact_sha256,
        job_id=job_id, created_at=now, source_notes=parsed.provenance_notes(), features=resolved.features or {},
    )
    release._state.adding, release._state.db = False, connection.alias
    return release


def stored_keys(*, release: CrateRelease) -> set[tuple[str, str]]:
    """(path, kind) of every document already committed to ``release``."""
    return set(Document.objects.filter(release=release).values_list("path", "kind"))


def store_batch(
    *, release: CrateRelease, package: str, local: bool, batch: Sequence[StoredItem],
    before_commit: Callable[[], None] | None = None, replace: bool = True,
    before_write: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Write one batch of items in one transaction; return (documents, chunks).

    A batch commits whole, so its documents double as the resume checkpoint.
    Idempotent: rows of this release with the same (path, kind) are replaced,
    so re-running a batch cannot create duplicates. ``before_commit`` runs
    last inside the transaction: the job runner fences a stale attempt there.
    ``replace=False`` skips looking for such rows, for a release this very run created (no earlier
    attempt can have stored anything in it); a duplicate would still fail on the unique (release,
    path, kind) constraint rather than be stored twice. ``before_write`` runs first inside the transaction,
    after its ``synchronous_commit = off``.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            doc_ids = _prepare_batch(cursor=cursor, release=release, batch=batch, replace=replace)
            if before_write is not None:
                before_write()
            raw, vector_oid = pgcopy.binary_cursor(cursor.cursor)
            with raw:
                documents, chunks = _copy_batch(raw=raw, vector_oid=vector_oid, doc_ids=doc_ids, release=release,
                                                package=package, local=local, batch=batch)
        if before_commit is not None:
            before_commit()
    return documents, chunks


def _prepare_batch(*, cursor, release: CrateRelease, batch: Sequence[StoredItem], replace: bool = True) -> list[int]:
    """One round trip: drop rows an earlier attempt stored for this batch's items, and allocate document ids.

    Batches of a building release are replayable from the checkpoint, which commits in this same
    transaction: waiting for the WAL flush buys nothing (synchronous_commit off). The statements run in
    one simple-protocol message; each batch had paid a round trip apiece for them, on a thread that then
    waits for the GIL again after each one.
    """
    documents, chunks = Document._meta.db_table, Chunk._meta.db_table
    allocate = f"SELECT nextval(pg_get_serial_sequence('{documents}', 'id')) FROM generate_series(1, %(count)s)"
    if not replace:
        cursor.execute(f"SET LOCAL synchronous_commit = off; {allocate}", {"count": len(batch)})
        cursor.nextset()
        return [row[0] for row in cursor.fetchall()]
    cursor.execute(
        "SET LOCAL synchronous_commit = off; "
        f'WITH stale AS (SELECT id FROM "{documents}" WHERE release_id = %(release)s'
        " AND (path, kind) IN (SELECT * FROM unnest(%(paths)s::text[], %(kinds)s::text[]))),"
        f' gone AS (DELETE FROM "{chunks}" WHERE document_id IN (SELECT id FROM stale)),'
        f' {_TYPE_ROWS_GONE}'
        f' DELETE FROM "{documents}" WHERE id IN (SELECT id FROM stale); {allocate}',
        {
            "release": release.pk,
            "paths": [s.item.path[:1000] for s in batch],
            "kinds": [s.item.kind for s in batch],
            "count": len(batch),
        },
    )
    cursor.nextset()
    if cursor.rowcount:
        logger.info("replaced %d documents of release %s from an earlier attempt", cursor.rowcount, release.pk)
    cursor.nextset()
    return [row[0] for row in cursor.fetchall()]


_DOCUMENT_COLUMNS = (
    ("id", "int8"), ("release_id", "int8"), ("path", "text"), ("name", "text"), ("kind", "text"),
    ("parent_path", "text"), ("signature", "text"), ("docs", "text"), ("url", "text"), ("deprecated", "bool"),
    ("deprecation_note", "text"), ("content_hash", "text"), ("metadata", "jsonb"),
)
_CHUNK_COLUMNS = (
    ("document_id", "int8"), ("release_id", "int8"), ("ordinal", "int4"), ("text", "text"),
    ("search_text", "text"), ("token_count", "int4"), ("content_hash", "text"), ("staged_embedding", "vector"),
)


def _copy_batch(
    *, raw, vector_oid: int, doc_ids: list[int], release: CrateRelease, package: str, local: bool,
    batch: Sequence[StoredItem],
) -> tuple[int, int]:
    """COPY the batch's documents, then its chunks with their vectors staged (see Chunk.staged_embedding)."""
    pgcopy.copy_rows(
        raw, table=Document._meta.db_table, columns=[c for c, _t in _DOCUMENT_COLUMNS],
        types=[t for _c, t in _DOCUMENT_COLUMNS],
        rows=(_document_row(doc_id=doc_id, release=release, package=package, local=local, item=s.item)
              for doc_id, s in zip(doc_ids, batch, strict=True)),
    )
    chunk_rows = [
        (doc_id, release.pk, c.ordinal, c.text, search_text_for(c.text), c.token_count, c.content_hash,
         None if vec is None else pgcopy.EncodedVector(pgcopy.encode_vector(vec)))
        for doc_id, stored in zip(doc_ids, batch, strict=True)
        for c, vec in zip(stored.chunks, stored.vectors, strict=True)
    ]
    pgcopy.copy_rows(
        raw, table=Chunk._meta.db_table, columns=[c for c, _t in _CHUNK_COLUMNS],
        types=[vector_oid if t == "vector" else t for _c, t in _CHUNK_COLUMNS], rows=chunk_rows,
    )
    _copy_types(raw=raw, doc_ids=doc_ids, release=release, batch=batch)
    return len(doc_ids), len(chunk_rows)


def store_types(*, release: CrateRelease, documents: Sequence[tuple[int, ParsedItem]]) -> None:
    """Type signatures and trait impls of documents stored before type search existed (their ids), in one
    transaction (crates.services.backfill_type_signatures)."""
    with transaction.atomic(), connection.cursor() as cursor:
        raw, _oid = pgcopy.binary_cursor(cursor.cursor)
        with raw:
            _copy_types(raw=raw, doc_ids=[doc_id for doc_id, _ in documents], release=release,
                        batch=[StoredItem(item, [], []) for _, item in documents])


# The type-search and trait-graph rows of a batch's stale documents go with them (see _prepare_batch).
_TYPE_ROWS_GONE = (
    f'gone_types AS (DELETE FROM "{TypeSignature._meta.db_table}" WHERE document_id IN (SELECT id FROM stale)),'
    f' gone_impls AS (DELETE FROM "{TraitImpl._meta.db_table}" WHERE document_id IN (SELECT id FROM stale))'
)


def _copy_types(*, raw, doc_ids: list[int], release: CrateRelease, batch: Sequence[StoredItem]) -> None:
    """COPY the batch's type signatures and trait impls (crates.typesig, crates.pipeline.parse_json.types)."""
    signatures = [
        (doc_id, release.pk, typesig.terms(s.item.type_sig), Jsonb(s.item.type_sig))
        for doc_id, s in zip(doc_ids, batch, strict=True) if s.item.type_sig
    ]
    if signatures:
        pgcopy.copy_rows(raw, table=TypeSignature._meta.db_table, columns=["document_id", "release_id", "terms",
                         "signature"], types=["int8", "int8", "text[]", "jsonb"], rows=signatures)
    impls = [
        (release.pk, doc_id, i["trait"][:300], i["trait"].lower()[:300], i["trait_path"][:1000], i["type"][:300],
         i["type"].lower()[:300], i["type_path"][:1000], i["declaration"], i["bounds"], i["blanket"], i["negative"])
        for doc_id, s in zip(doc_ids, batch, strict=True) for i in s.item.impls
    ]
    if impls:
        pgcopy.copy_rows(raw, table=TraitImpl._meta.db_table, columns=_IMPL_COLUMNS, types=_IMPL_TYPES, rows=impls)


_IMPL_COLUMNS = ["release_id", "document_id", "trait_name", "trait_key", "trait_path", "type_name", "type_key",
                 "type_path", "declaration", "bounds", "blanket", "negative"]
_IMPL_TYPES = ["int8", "int8", *["text"] * 8, "bool", "bool"]


def _document_row(*, doc_id: int, release: CrateRelease, package: str, local: bool, item: ParsedItem) -> tuple:
    """One crates_document row in _DOCUMENT_COLUMNS order, cut to the model's field lengths."""
    url = docs_url(package=package, version=release.version, relative=item.url, local=local)
    return (
        doc_id, release.pk, item.path[:1000], item.name[:300], item.kind, item.parent_path[:1000], item.signature,
        item.docs, url[:1500], item.deprecated, item.deprecation_note, item.content_hash(), Jsonb(item.metadata),
    )


def activate_release(
    *, release: CrateRelease, description: str = "", repository: str = "", pending: bool = False
) -> CrateRelease:
    """Make ``release`` the searchable one for its version, atomically; a non-empty ``description`` or
    ``repository`` (from crates.io) replaces the crate's. ``pending``: its vectors are still being made
    (a first ingest, searchable by keyword and path meanwhile; ``finish_embedding`` ends that).

    Two round trips in one transaction, since this is on every ingest's fixed cost: lock the crate, then
    supersede the previous active release, count and activate this one; update the crate.
    """
    releases, crates = CrateRelease._meta.db_table, Crate._meta.db_table
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        # The lock and the swap go in one round trip; they still run one after the other, the swap with a
        # snapshot taken once the lock is held.
        cursor.execute(
            f"""SELECT 1 FROM "{crates}" WHERE id = %(crate)s FOR UPDATE;
                WITH previous AS (
                    UPDATE "{releases}" SET state = %(superseded)s
                    WHERE crate_id = %(crate)s AND version = %(version)s AND state = %(active)s AND id <> %(release)s
                    RETURNING id),
                counts AS ({_COUNTS_SQL}),
                activated AS (
                    UPDATE "{releases}" SET state = %(active)s, ingested_at = %(now)s,
                        embedding_pending = %(pending)s, document_count = counts.documents, chunk_count = counts.chunks,
                        embedding_count = counts.embeddings
                    FROM counts WHERE id = %(release)s RETURNING id)
            SELECT ARRAY(SELECT id FROM previous), documents, chunks, embeddings,
                   ARRAY(SELECT version FROM "{releases}" WHERE crate_id = %(crate)s AND state = %(active)s
                         AND id NOT IN (SELECT id FROM previous) AND id <> %(release)s),
                   (SELECT count(*) FROM activated)
            FROM counts""",
            {"release": release.pk, "crate": release.crate_id, "version": release.version, "now": now,
             "pending": pending, "active": CrateRelease.State.ACTIVE, "superseded": CrateRelease.State.SUPERSEDED},
        )
        cursor.nextset()
        previous, documents, chunks, embeddings, other_active, activated = cursor.fetchone()
        if not activated:
            raise CrateRelease.DoesNotExist(f"release {release.pk} is gone")
        # The snapshot predates this statement's own updates: the active versions are the others plus this one.
        latest = max([*other_active, release.version], key=semver_key)
        _update_crate(cursor, crate_id=release.crate_id, latest=latest, now=now, description=description,
                      repository=repository)
    release.state, release.ingested_at, release.embedding_pending = CrateRelease.State.ACTIVE, now, pending
    release.document_count, release.chunk_count, release.embedding_count = documents, chunks, embeddings
    # Old rows are invisible from here on; removing them is housekeeping.
    for old in previous:
        discard_release(release_id=old)
    return release


def _update_crate(cursor, *, crate_id: int, latest: str | None, now, description: str, repository: str) -> None:
    """Un-hide the crate; set its latest version (None: keep it) and a non-empty description or repository."""
    crates = Crate._meta.db_table
    cursor.execute(
        f'UPDATE "{crates}" SET deleted_at = NULL, latest_version = coalesce(%s, latest_version), updated_at = %s,'
        " description = CASE WHEN %s <> '' THEN %s ELSE description END,"
        " repository = CASE WHEN %s <> '' THEN %s ELSE repository END WHERE id = %s",
        [latest, now, description[:5000], description[:5000], repository[:500], repository[:500], crate_id],
    )


def release_counts(*, release_id: int) -> tuple[int, int, int]:
    """(documents, chunks, chunks with a vector) stored for ``release_id``."""
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS_SQL, {"release": release_id})
        return cursor.fetchone()


def fill_vectors(*, release_id: int, chunk_ids: Sequence[int], vectors: Sequence[Sequence[float]],
                 cache: tuple[str, dict] | None = None) -> None:
    """Give chunks of ``release_id`` their (staged) vectors and count them on the release, in one transaction
    with the new embedding-cache rows; replayable from what the chunks hold, so no wait for the WAL flush."""
    from crates.pipeline.embed import store_in_cache

    if not chunk_ids:
        return
    with pgcopy.replayable_write() as cursor:
        if cache is not None:
            store_in_cache(model=cache[0], vectors=cache[1])
        raw, _oid = pgcopy.binary_cursor(cursor.cursor)
        with raw:
            raw.execute(
                f'UPDATE "{Chunk._meta.db_table}" c SET staged_embedding = t.e'
                " FROM unnest(%s::bigint[], %b::vector[]) AS t(id, e)"
                " WHERE c.id = t.id AND c.embedding IS NULL AND c.staged_embedding IS NULL",
                (list(chunk_ids), [pgcopy.EncodedVector(pgcopy.encode_vector(v)) for v in vectors]),
            )
            filled = raw.rowcount
        cursor.execute(
            f'UPDATE "{CrateRelease._meta.db_table}" SET embedding_count = embedding_count + %s'
            " WHERE id = %s AND state = %s",
            [filled, release_id, CrateRelease.State.ACTIVE],
        )


def finish_embedding(*, release: CrateRelease, description: str = "", repository: str = "") -> CrateRelease:
    """End the pending state of a release activated before its vectors (``activate_release(pending=True)``)."""
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{CrateRelease._meta.db_table}" r SET embedding_pending = false, ingested_at = %(now)s,'
            " document_count = counts.documents, chunk_count = counts.chunks, embedding_count = counts.embeddings"
            f" FROM ({_COUNTS_SQL}) counts WHERE r.id = %(release)s AND r.state = %(active)s"
            " RETURNING counts.documents, counts.chunks, counts.embeddings",
            {"release": release.pk, "now": now, "active": CrateRelease.State.ACTIVE},
        )
        row = cursor.fetchone()
        if row is None:
            raise CrateRelease.DoesNotExist(f"release {release.pk} is no longer active")
        if description or repository:
            _update_crate(cursor, crate_id=release.crate_id, latest=None, now=now, description=description,
                          repository=repository)
    release.document_count, release.chunk_count, release.embedding_count = row
    release.embedding_pending, release.ingested_at = False, now
    return release


def withdraw_release(*, release_id: int) -> bool:
    """Take a release activated before its vectors out of search again (its ingest stopped while embedding),
    keeping its rows for a retry; the crate's latest version falls back to its other active releases."""
    releases = CrateRelease._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{releases}" SET state = %s, ingested_at = NULL'
            " WHERE id = %s AND state = %s AND embedding_pending RETURNING crate_id",
            [CrateRelease.State.BUILDING, release_id, CrateRelease.State.ACTIVE],
        )
        row = cursor.fetchone()
        if row is None:
            return False
        cursor.execute(f'SELECT version FROM "{releases}" WHERE crate_id = %s AND state = %s',
                       [row[0], CrateRelease.State.ACTIVE])
        latest = max((v for (v,) in cursor.fetchall()), key=semver_key, default="")
        cursor.execute(f'UPDATE "{Crate._meta.db_table}" SET latest_version = %s, updated_at = %s WHERE id = %s',
                       [latest, timezone.now(), row[0]])
    logger.info("withdrew release %s from search until its vectors are made", release_id)
    return True


# A staged vector counts: the chunk is searchable by it (see Chunk.staged_embedding).
_COUNTS_SQL = (
    f'SELECT (SELECT count(*) FROM "{Document._meta.db_table}" WHERE release_id = %(release)s) AS documents,'
    " count(*) AS chunks,"
    " count(*) FILTER (WHERE embedding IS NOT NULL OR staged_embedding IS NOT NULL) AS embeddings"
    f' FROM "{Chunk._meta.db_table}" WHERE release_id = %(release)s'
)


def reveal_crate(*, release_id: int) -> bool:
    """Undo a soft delete of the crate of ``release_id``; True if it was hidden.

    An ingest that finds its release current makes no new one, so ``activate_release`` (which un-hides the
    crate) never runs: without this, adding a soft-deleted crate "completed" and left it hidden from search.
    """
    return bool(
        Crate.objects.filter(releases__id=release_id, deleted_at__isnull=False).update(
            deleted_at=None, updated_at=timezone.now()
        )
    )


def discard_release(*, release_id: int) -> None:
    """Delete a building or superseded release and everything under it."""
    deleted = (
        CrateRelease.objects.filter(pk=release_id)
        .exclude(state=CrateRelease.State.ACTIVE)
        .delete()
    )
    if deleted[0]:
        logger.info("discarded release %s", release_id)
