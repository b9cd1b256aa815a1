"""A deterministic embedder with no model: signed feature hashing of identifier-split words.

For tests and for the pipeline benchmark (everything but the model). Texts sharing words get
similar vectors, so keyword-ish similarity search still behaves sensibly; it has no semantics.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from crates.pipeline.embedders.tokens import approx_token_count

MODEL_NAME = "ferrodex-hash-v1"
DEFAULT_DIMENSION = 384
DEFAULT_MAX_TOKENS = 254

_WORD_RE = re.compile(r"[A-Za-z0-9_]+")
# Identifier parts: "HashMap" -> hash, map; "read_to_end" -> read, to, end; "HTTPServer" -> http, server.
_PART_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_MAX_CACHED_WORDS = 500_000


class HashEmbedder:
    """Feature hashing into ``dimension`` buckets with a hash-derived sign, L2-normalised."""

    def __init__(
        self,
        *,
        dimension: int | None = None,
        max_tokens: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        batch_size: int = 256,
    ) -> None:
        self.dimension = dimension or _setting("EMBEDDING_DIMENSION", DEFAULT_DIMENSION)
        self.model_name = MODEL_NAME
        self.max_tokens = max_tokens or _setting("EMBEDDING_MAX_TOKENS", DEFAULT_MAX_TOKENS + 2) - 2
        self.batch_size = batch_size
        self._count = count_tokens or approx_token_count
        self.counts_additively = bool(getattr(self._count, "additive", False))
        self._features: dict[str, tuple[list[int], list[float]]] = {}

    def __repr__(self) -> str:
        return f"HashEmbedder(dim={self.dimension})"

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vector(text).tolist() for text in texts]

    def _vector(self, text: str) -> np.ndarray:
        indices: list[int] = []
        signs: list[float] = []
        cached = self._features.get  # hit for nearly every word: no method call per word
        for word in _WORD_RE.findall(text):
            word_indices, word_signs = cached(word) or self._word_features(word)
            indices.extend(word_indices)
            signs.extend(word_signs)
        if not indices:
            vector = np.zeros(self.dimension)
            vector[0] = 1.0  # still a unit vector, as the Embedder contract promises
            return vector
        vector = np.bincount(indices, weights=signs, minlength=self.dimension)
        norm = np.linalg.norm(vector)
        if norm == 0.0:
            vector[indices[0]] = 1.0
            return vector
        return vector / norm

    def _word_features(self, word: str) -> tuple[list[int], list[float]]:
        cached = self._features.get(word)
        if cached is not None:
            return cached
        tokens = [word.lower()]
        parts = [part.lower() for part in _PART_RE.findall(word)]
        if len(parts) > 1:
            tokens.extend(parts)
        indices, signs = [], []
        for token in tokens:
            digest = zlib.crc32(token.encode())
            indices.append(digest % self.dimension)
            signs.append(1.0 if (digest >> 31) & 1 else -1.0)
        if len(self._features) >= _MAX_CACHED_WORDS:
            self._features.clear()
        self._features[word] = (indices, signs)
        return indices, signs


def _setting(name: str, default: int) -> int:
    """A Django setting when settings are configured; usable without Django otherwise."""
    from django.conf import settings

    if settings.configured:
        return int(getattr(settings, name, default))
    return default
