"""A test embedder whose model calls wait until the test lets them through, importable by a qcluster worker
(``EMBEDDING_PROVIDER=tests.gated_embedder.GatedEmbedder``).

It is the hash embedder, flagged as a model on this machine's CPU (so the ingest stores first and embeds after).
With ``FERRODEX_TEST_GATE`` set, that file holds how many model calls this process may make so far; a call
beyond that waits until the file allows it. Without it, calls go through (a test process searching).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from crates.pipeline.embedders.hashing import HashEmbedder
from crates.pipeline.embedders.local import bundled_model_dir
from crates.pipeline.embedders.tokens import wordpiece_counter


class GatedEmbedder(HashEmbedder):
    uses_local_cpu = True

    def __init__(self) -> None:
        super().__init__(count_tokens=wordpiece_counter(bundled_model_dir() / "tokenizer.json"))
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        gate = os.environ.get("FERRODEX_TEST_GATE")
        while gate and self.calls >= _allowed(Path(gate)):
            time.sleep(0.02)
        self.calls += 1
        return super().embed(texts)


def _allowed(gate: Path) -> int:
    try:
        return int(gate.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
