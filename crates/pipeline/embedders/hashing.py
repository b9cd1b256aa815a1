"""A deterministic embedder with no model: signed feature hashing of identifier-split words.

For tests and for the pipeline benchmark (everything but the model). Texts sharing words get
similar vectors, so keyword-ish similarity search still behaves sensibly; it has no semantics.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from itertools import chain

import numpy as np

from crates.pipeline.embedders.tokens import approx_token_count

MODEL_NAME = "ferrodex-hash-v1"
DEFAULT_DIMENSION = 384
DEFAULT_MAX_TOKENS = 254

_WORD_RE = re.compile(r"[A-Za-z0-9_]+")
# Identifier parts: "HashMap" -> hash, map; "read_to_end" -> read, to, end; "HTTPServer" -> http, server.
_PART_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_MAX_CACHED_WORDS = 500_000
# Texts turned into vectors per numpy pass: bounds the (texts x dimension) matrix.
_EMBED_SLICE = 512


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
        self._features: dict[str, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return f"HashEmbedder(dim={self.dimension})"

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), _EMBED_SLICE):
            out.extend(self._vectors(texts[start : start + _EMBED_SLICE]).tolist())
        return out

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, all texts in one numpy pass.

        Bucket sums are sums of +-1.0, i.e. small integers, which float64 adds exactly in any order,
        and so is their sum of squares: the rows are bit for bit what a per-text ``bincount`` and
        ``np.linalg.norm`` give, at a fraction of the Python per word.
        """
        dim = self.dimension
        codes: list[int] = []  # per feature: bucket * 2 + (1 if the sign is positive)
        lengths: list[int] = []
        features = self._features
        for text in texts:
            words = _WORD_RE.findall(text)
            before = len(codes)
            try:  # nearly every word is known: no Python per word
                codes.extend(chain.from_iterable(map(features.__getitem__, words)))
            except KeyError:
                del codes[before:]
                missing = set(words).difference(features)
                if len(features) + len(missing) > _MAX_CACHED_WORDS:
                    features.clear()
                    missing = set(words)
                for word in missing:
                    features[word] = self._word_features(word)
                codes.extend(chain.from_iterable(map(features.__getitem__, words)))
            lengths.append(len(codes) - before)
        coded = np.fromiter(codes, dtype=np.int64, count=len(codes))
        buckets = coded >> 1
        rows = np.repeat(np.arange(len(texts), dtype=np.int64) * dim, lengths)
        matrix = np.bincount(rows + buckets, weights=(coded & 1) * 2.0 - 1.0, minlength=len(texts) * dim)
        matrix = matrix.reshape(len(texts), dim)
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        firsts = np.cumsum(lengths) - lengths
        for row in np.flatnonzero(norms == 0.0):
            # No words at all: a unit vector on bucket 0; words that cancel out: on the first word's bucket.
            matrix[row, buckets[firsts[row]] if lengths[row] else 0] = 1.0
            norms[row] = 1.0
        return matrix / norms[:, None]

    def _word_features(self, word: str) -> tuple[int, ...]:
        tokens = [word.lower()]
        parts = [part.lower() for part in _PART_RE.findall(word)]
        if len(parts) > 1:
            tokens.extend(parts)
        codes = []
        for token in tokens:
            digest = zlib.crc32(token.encode())
            codes.append((digest % self.dimension) * 2 + ((digest >> 31) & 1))
        return tuple(codes)


def _setting(name: str, default: int) -> int:
    """A Django setting when settings are configured; usable without Django otherwise."""
    from django.conf import settings

    if settings.configured:
        return int(getattr(settings, name, default))
    return default
