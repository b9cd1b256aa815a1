"""The embedding pass: vectors for a release's stored chunks that have none yet.

It runs after the store phase, so a first ingest is already searchable by keyword and path while it runs.
Model calls are sized from the measured rate to take about ``TARGET_CALL_SECONDS`` each, so progress (and an
ETA from that rate) moves after every call. Each call runs on a thread of its own while this one watches for
a cancel: a cancelled job stops at once, and the abandoned call's result is dropped when it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from django.db import connection

from crates.models import Chunk
from crates.pipeline import store
from crates.pipeline.embed import cached_vectors, checked_vectors
from crates.pipeline.types import Progress

logger = logging.getLogger(__name__)

# Long enough that the model's per-call overhead stays small, short enough that a cancel (seen between two
# calls) and the progress bar (moved after each) stay prompt on a loaded machine.
TARGET_CALL_SECONDS = 0.3
# The first call's size, before any rate is measured: a few short texts, so that even a loaded machine
# measures its rate (and moves the progress bar) within a second or two.
FIRST_CALL_CHARS = 600
MAX_CALL_TEXTS = 256
# Chunk ids given their cached vectors per statement.
CACHED_FILL_ROWS = 1000
# Weight of the newest call in the measured rate (chars per second).
RATE_SMOOTHING = 0.3
# How often the pass checks for a cancel while a model call runs.
CANCEL_POLL_SECONDS = 0.05

# (chunks with a vector, chunks, seconds left or None) -> the stage message.
Note = Callable[[int, int, float | None], str]


@dataclass(slots=True)
class PassResult:
    sent: int = 0  # texts the model embedded
    filled: int = 0  # chunks given a vector


def missing(*, release_id: int) -> dict[str, tuple[str, list[int]]]:
    """The release's chunks without a vector: (text, chunk ids) by content hash."""
    pending: dict[str, tuple[str, list[int]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT id, content_hash, text FROM "{Chunk._meta.db_table}" WHERE release_id = %s'
            " AND embedding IS NULL AND staged_embedding IS NULL",
            [release_id],
        )
        for chunk_id, content_hash, text in cursor.fetchall():
            pending.setdefault(content_hash, (text, []))[1].append(chunk_id)
    return pending


def eta_text(seconds: float | None) -> str:
    if seconds is None or seconds <= 0:
        return ""
    if seconds < 60:
        return f" (about {max(1, round(seconds))} s left)"
    return f" (about {round(seconds / 60)} min left)"


def run_embed_pass(
    *, release_id: int, embedder, progress: Progress, embedded: int, chunks: int, note: Note,
    percent_from: float, percent_to: float,
) -> PassResult:
    """Embed every chunk of ``release_id`` that has no vector; ``embedded`` of ``chunks`` have one already."""
    result = PassResult()
    pending = missing(release_id=release_id)
    if not pending:
        return result
    found, misses = cached_vectors(embedder=embedder, texts={h: text for h, (text, _ids) in pending.items()})
    if found:  # vectors another release or an earlier attempt made
        ids = [(i, found[h]) for h in found for i in pending[h][1]]
        for start in range(0, len(ids), CACHED_FILL_ROWS):
            part = ids[start : start + CACHED_FILL_ROWS]
            store.fill_vectors(release_id=release_id, chunk_ids=[i for i, _v in part], vectors=[v for _i, v in part])
        embedded += len(ids)
        result.filled += len(ids)
    misses.sort(key=lambda h: len(pending[h][0]))
    progress.update(embeddings=embedded, message=note(embedded, chunks, None))
    model = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ferrodex-embed")
    try:
        _embed_misses(pending=pending, misses=misses, embedder=embedder, model=model, progress=progress,
                      result=result, release_id=release_id, embedded=embedded, chunks=chunks, note=note,
                      percent_from=percent_from, percent_to=percent_to)
    finally:
        model.shutdown(wait=False, cancel_futures=True)  # a cancelled pass does not wait for its last call
    logger.info("embedded %d texts for %d chunks of release %s", result.sent, result.filled, release_id)
    return result


def _watched(model: ThreadPoolExecutor, embedder, texts: Sequence[str], progress: Progress) -> list:
    """``embedder.embed(texts)`` on the model thread, checking for a cancel while it runs."""
    future = model.submit(embedder.embed, texts)
    while True:
        try:
            return future.result(timeout=CANCEL_POLL_SECONDS)
        except FutureTimeout:
            progress.check_cancelled()


def _embed_misses(
    *, pending, misses: list[str], embedder, model: ThreadPoolExecutor, progress: Progress, result: PassResult,
    release_id: int, embedded: int, chunks: int, note: Note, percent_from: float, percent_to: float,
) -> None:
    total_chars = sum(len(pending[h][0]) for h in misses) or 1
    done_chars, rate, index = 0, None, 0
    span = percent_to - percent_from
    while index < len(misses):
        progress.check_cancelled()
        budget = FIRST_CALL_CHARS if rate is None else rate * TARGET_CALL_SECONDS
        group, size = [], 0
        while index < len(misses) and len(group) < MAX_CALL_TEXTS and (not group or size < budget):
            group.append(misses[index])
            size += len(pending[misses[index]][0])
            index += 1
        was_loaded = getattr(embedder, "loaded", True)
        started = time.monotonic()
        vectors = checked_vectors(embedder=embedder, hashes=group,
                                  vectors=_watched(model, embedder, [pending[h][0] for h in group], progress))
        elapsed = max(time.monotonic() - started, 1e-3)
        if was_loaded:  # a call that loaded the model says nothing about its speed
            rate = size / elapsed if rate is None else (1 - RATE_SMOOTHING) * rate + RATE_SMOOTHING * size / elapsed
        ids = [(i, vectors[h]) for h in group for i in pending[h][1]]
        store.fill_vectors(release_id=release_id, chunk_ids=[i for i, _v in ids], vectors=[v for _i, v in ids],
                           cache=(embedder.model_name, vectors))
        result.sent += len(group)
        result.filled += len(ids)
        embedded += len(ids)
        done_chars += size
        left = (total_chars - done_chars) / rate if rate else None
        progress.update(percent=percent_from + span * done_chars / total_chars, embeddings=embedded,
                        message=note(embedded, chunks, left))
