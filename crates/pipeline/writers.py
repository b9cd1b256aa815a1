"""Writers of the store phase: chunk items, give them the vectors at hand, store them in committed batches.

The stored documents are the resume checkpoint (a batch commits whole). ``write_batches`` stores on the calling
thread for a one-batch crate and on writer threads otherwise, so chunking overlaps the database's work.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import connection

from crates.errors import Cancelled
from crates.pipeline import store
from crates.pipeline.chunk import chunk_item
from crates.pipeline.embed import cached_vectors, embed_uncached, store_in_cache
from crates.pipeline.types import ParsedItem, Progress

logger = logging.getLogger(__name__)

# Chunks per group: one cache look-up (and, embedding inline, one model call) per group.
EMBED_GROUP_CHUNKS = 256


def _groups(
    pending: list[ParsedItem], batch: int, embedder, count: Callable[[str], int]
) -> Iterator[list[list[tuple[ParsedItem, list]]]]:
    """Yield groups of batches, chunked, with enough chunks for full model batches."""
    group: list[list[tuple[ParsedItem, list]]] = []
    chunk_total = 0
    for index in range(0, len(pending), batch):
        current = []
        for item in pending[index:index + batch]:
            chunks = chunk_item(item, max_tokens=embedder.max_tokens, count_tokens=count)
            current.append((item, chunks))
            chunk_total += len(chunks)
        group.append(current)
        if chunk_total >= EMBED_GROUP_CHUNKS:
            yield group
            group, chunk_total = [], 0
    if group:
        yield group


def write_batches(
    *, release, pending, batch, embedder, package: str, local: bool, progress: Progress, result, total: int,
    count: Callable[[str], int], save_checkpoint: Callable[[], None], replace: bool = True, embed: bool = True,
    percent_from: float = 20, percent_to: float = 98,
) -> None:
    """Chunk and store ``pending``, each chunk with its vector from the cache or, with ``embed``, the model;
    without ``embed`` the rest is stored without one (the embedding pass fills them in).

    ``count`` is the run's one memoising token counter.
    """
    # A crate that is one batch has nothing to overlap with its storing: no threads, no extra connections.
    writer_class = _InlineWriter if len(pending) <= batch else _BatchWriter
    writer = writer_class(release=release, package=package, local=local, result=result,
                          progress=progress, total=total, threads=settings.INGEST_WRITERS,
                          save_checkpoint=save_checkpoint, percent_from=percent_from, percent_to=percent_to,
                          replace=replace)
    writer.start()
    try:
        for group in _groups(pending, batch, embedder, count):
            progress.check_cancelled()
            writer.raise_if_failed()
            texts = {c.content_hash: c.text for current in group for _item, chunks in current for c in chunks}
            if embed:
                vectors, fresh = embed_uncached(embedder=embedder, texts=texts)
            else:
                vectors, fresh = cached_vectors(embedder=embedder, texts=texts)[0], []
            result.embedded_new += len(fresh)
            # The group's new vectors go to the embedding cache on a writer (before its first batch),
            # not on this thread, which chunks and embeds the next group meanwhile.
            cache = (embedder.model_name, {h: vectors[h] for h in fresh}) if fresh else None
            for current in group:
                writer.put([
                    store.StoredItem(item=i, chunks=cs, vectors=[vectors.get(c.content_hash) for c in cs])
                    for i, cs in current
                ], cache=cache)
                cache = None
        writer.finish()
    finally:
        writer.stop()


class _Writer:
    """Stores batches and reports progress; subclasses decide on which thread (``put``).

    The lifecycle hooks do nothing here: a writer without threads has nothing to start, drain or stop.
    """

    def start(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def raise_if_failed(self) -> None:
        pass

    def __init__(
        self, *, release, package, local, result, progress, total, threads: int, save_checkpoint,
        percent_from: float = 20, percent_to: float = 98, replace: bool = True,
    ) -> None:
        self.release, self.package, self.local, self.replace = release, package, local, replace
        self.percent_from, self.percent_to = percent_from, percent_to
        self.save_checkpoint = save_checkpoint
        self.result, self.progress, self.total = result, progress, total
        self.lock = threading.Lock()

    def _store(self, batch, cache: tuple[str, dict] | None = None) -> None:
        # The checkpoint write is last in the batch's transaction: a stale attempt is refused there and its
        # batch rolls back. New cache rows share that commit (no wait for the WAL flush: both are replayable).
        docs, chunks = store.store_batch(
            release=self.release, package=self.package, local=self.local, batch=batch,
            before_commit=self.save_checkpoint, replace=self.replace,
            before_write=None if cache is None else lambda: store_in_cache(model=cache[0], vectors=cache[1]),
        )
        with self.lock:
            r = self.result
            r.items_processed += len(batch)
            r.documents += docs
            r.chunks += chunks
            r.embeddings += sum(1 for s in batch for v in s.vectors if v is not None)
            processed = min(self.total, r.items_skipped_by_checkpoint + r.items_processed)
            counters = dict(items_processed=processed, documents=r.documents, chunks=r.chunks,
                            embeddings=r.embeddings)
        span = self.percent_to - self.percent_from
        self.progress.update(percent=self.percent_from + span * processed / max(1, self.total),
                             message=f"stored {processed}/{self.total} items", **counters)


class _InlineWriter(_Writer):
    """Stores each batch at once on the calling thread and its connection."""

    def put(self, batch, cache: tuple[str, dict] | None = None) -> None:
        self._store(batch, cache)


class _BatchWriter(_Writer):
    """Stores batches on threads (and database connections) of their own.

    The model never waits for the database, and with several writers the
    HNSW index inserts, which dominate the database's share, use every core.
    """

    def __init__(self, *, threads: int, **kwargs) -> None:
        super().__init__(threads=threads, **kwargs)
        self.queue: queue.Queue = queue.Queue(maxsize=4 * max(1, threads))
        self.error: BaseException | None = None
        self.threads = [
            threading.Thread(target=self._run, name=f"ferrodex-store-{n}", daemon=True) for n in range(max(1, threads))
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def put(self, batch, cache: tuple[str, dict] | None = None) -> None:
        while True:
            self.raise_if_failed()
            try:
                self.queue.put((batch, cache), timeout=0.2)
                return
            except queue.Full:
                self.progress.check_cancelled()

    def finish(self) -> None:
        # Nothing more to chunk or embed: this thread stores queued batches too (on its own
        # connection) instead of only waiting for the writers, which shortens the tail.
        while True:
            self.raise_if_failed()
            try:
                queued = self.queue.get_nowait()
            except queue.Empty:
                break
            self._store(*queued)
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        self.raise_if_failed()

    def stop(self) -> None:
        if not any(t.is_alive() for t in self.threads):
            return
        self.error = self.error or Cancelled("stopped")
        while True:  # drop queued batches: the release is being discarded or resumed later
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join(timeout=60)

    def raise_if_failed(self) -> None:
        if self.error is not None and not isinstance(self.error, Cancelled):
            raise self.error

    def _run(self) -> None:
        try:
            while (queued := self.queue.get()) is not None:
                if self.error is not None:
                    return
                self._store(*queued)
        except BaseException as exc:  # handed to the main thread
            self.error = self.error or exc
        finally:
            connection.close()  # this thread's own connection
