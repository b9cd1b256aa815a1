"""Query embeddings, cached per process: agents repeat their queries."""

from __future__ import annotations

import logging
from collections import OrderedDict
from threading import Lock

from crates.errors import EmbeddingError

logger = logging.getLogger(__name__)

CACHE_SIZE = 1024
_cache: OrderedDict[tuple[str, str], tuple[float, ...]] = OrderedDict()
_lock = Lock()


def query_embedder():
    """The process-wide embedder; its model must be the one chunks were embedded with."""
    from crates.pipeline.embed import get_embedder

    return get_embedder()


def embed_query(text: str) -> tuple[str, list[float]] | None:
    """(model name, unit vector) for ``text``; None when no embedder can answer.

    A failing embedder (remote API down, model missing) must not take search
    down with it: the keyword and path signals still answer.
    """
    try:
        embedder = query_embedder()
    except (EmbeddingError, ImportError, OSError) as exc:
        logger.warning("query embedding unavailable, searching without vectors: %s", exc)
        return None
    key = (embedder.model_name, text)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return embedder.model_name, list(cached)
    try:
        vector = embedder.embed([text])[0]
    except Exception as exc:  # any provider failure degrades to keyword + path search
        logger.warning("query embedding failed, searching without vectors: %s", exc)
        return None
    with _lock:
        _cache[key] = cached = tuple(map(float, vector))
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return embedder.model_name, list(cached)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
