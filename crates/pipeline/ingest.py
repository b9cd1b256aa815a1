"""The ingest pipeline: resolve -> fetch -> parse -> chunk -> embed -> store.

Plain functions with a progress/cancel callback, shared by the job runner and
``manage.py ingest_crate``. Embedding (the slow part) runs in this thread
while a writer thread stores the previous group, so the pipeline hides behind
the model.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction

from crates.errors import Cancelled, FerrodexError, InvalidInput, NoDocumentation
from crates.models import Crate, CrateRelease, Document
from crates.names import is_prerelease, normalize_crate_name, validate_crate_name, validate_version
from crates.pipeline import store
from crates.pipeline.chunk import chunk_item, token_counter
from crates.pipeline.embed import (
    cached_vectors,
    check_embedder_dimension,
    checked_vectors,
    embed_uncached,
    get_embedder,
    store_in_cache,
)
from crates.pipeline.fetch import decode_json_body, fetch_docs, load_cached_artifact, save_artifact
from crates.pipeline.http import HttpClient
from crates.pipeline.parse_html import parse_html_pages, read_doc_dir
from crates.pipeline.parse_json import parse_rustdoc_json
from crates.pipeline.resolve import VERSIONS_IN_MESSAGES, describe_release, resolve_release
from crates.pipeline.source import note_local_json, parse_artifact
from crates.pipeline.types import Artifact, ParsedCrate, ParsedItem, Progress, ResolvedRelease

logger = logging.getLogger(__name__)

# Items per committed batch. A batch commits whole and the stored documents are
# the checkpoint, so a crash never stores an item twice whatever the size; what
# it loses is the chunking of uncommitted batches (their embeddings are cached).
# Fewer, larger transactions keep the database's share off the model's cores, and a crate of at
# most MIN_BATCH items is one batch, stored on the calling thread (see _InlineWriter).
MIN_BATCH, MAX_BATCH, BATCHES_PER_CRATE = 32, 64, 20
# Chunks embedded per model call group: keeps the model busy with full batches.
EMBED_GROUP_CHUNKS = 256


@dataclass(slots=True)
class IngestResult:
    crate_name: str
    version: str
    release_id: int | None
    documents: int = 0
    chunks: int = 0
    embeddings: int = 0
    embedded_new: int = 0
    http_requests: int = 0
    items_processed: int = 0
    items_skipped_by_checkpoint: int = 0
    up_to_date: bool = False
    # An up-to-date ingest of a soft-deleted crate restores it, as making a release does.
    restored: bool = False
    # Where the documents came from ("rustdoc JSON v63", "HTML bundle") and what was skipped or fell back.
    docs_source: str = ""
    provenance: list[str] = field(default_factory=list)


def batch_size_for(total_items: int) -> int:
    return max(MIN_BATCH, min(MAX_BATCH, total_items // BATCHES_PER_CRATE or 1))


def run_ingest(
    *,
    name: str,
    version: str = "latest",
    force: bool = False,
    progress: Progress,
    checkpoint: dict | None = None,
    save_checkpoint: Callable[[dict], None] | None = None,
    job_id: UUID | None = None,
    json_file: Path | None = None,
    doc_dir: Path | None = None,
    allow_yanked: bool = False,
) -> IngestResult:
    embedder = get_embedder()
    check_embedder_dimension(embedder=embedder)
    checkpoint = dict(checkpoint or {})
    save = save_checkpoint or (lambda _cp: None)

    if json_file is not None or doc_dir is not None:
        source = _local_source(name=name, version=version, json_file=json_file, doc_dir=doc_dir, progress=progress)
    else:
        source = _remote_source(name=name, version=version, force=force, progress=progress, checkpoint=checkpoint,
                                allow_yanked=allow_yanked)
    if source.up_to_date:
        restored = source.active_release_id is not None and store.reveal_crate(release_id=source.active_release_id)
        note = " (restored: it was soft-deleted)" if restored else ""
        progress.stage("done", f"{source.resolved.name} {source.resolved.version} is already up to date{note}", 100)
        return IngestResult(
            crate_name=source.resolved.name, version=source.resolved.version, release_id=source.active_release_id,
            http_requests=source.http_requests, up_to_date=True, restored=restored,
        )
    return _build_release(
        source=source, embedder=embedder, progress=progress, checkpoint=checkpoint, save=save, job_id=job_id
    )


@dataclass(slots=True)
class _Source:
    resolved: ResolvedRelease
    parsed: ParsedCrate | None
    artifact: Artifact | None
    local: bool
    http_requests: int = 0
    up_to_date: bool = False
    active_release_id: int | None = None
    # Downloaded just now and not kept yet: _build_release keeps it while the model starts.
    unsaved_artifact: bool = False
    # The crates.io description, asked for beside the pipeline once a release is to be made.
    description: _Description | None = None


def _local_source(
    *, name: str, version: str, json_file: Path | None, doc_dir: Path | None, progress: Progress
) -> _Source:
    progress.stage("parse", "parsing local documentation", 15)
    requested = None if version in ("", "latest") else validate_version(version)
    if json_file is not None:
        if Path(json_file).is_dir():
            raise InvalidInput(
                f"{json_file} is a directory; give the rustdoc JSON file (target/doc/<crate>.json), "
                "or use --doc-dir for a `cargo doc` tree."
            )
        raw = Path(json_file).read_bytes()
        parsed = parse_rustdoc_json(
            decode_json_body(raw, max_bytes=settings.MAX_DECOMPRESSED_BYTES, url=str(json_file)),
            version=requested or "",
        )
        note_local_json(parsed)
    else:
        pages = read_doc_dir(Path(doc_dir), crate_name=name.replace("-", "_") if name else None)
        parsed = parse_html_pages(pages, version=requested or "")
    crate_name = validate_crate_name(name or parsed.crate_name)
    _refuse_another_library(crate_name=crate_name, parsed=parsed)
    final_version = requested or parsed.version or "0.0.0"
    parsed.version = final_version
    resolved = ResolvedRelease(name=crate_name, version=final_version)
    return _Source(resolved=resolved, parsed=parsed, artifact=None, local=True)


def _refuse_another_library(*, crate_name: str, parsed: ParsedCrate) -> None:
    """A local file given the name of a crate stored with another library would swap that crate's docs
    for another crate's (`ingest_crate serde --json-file qa_tiny.json --version 1.0.152` replaced serde).

    A crate new to Ferrodex may name its library differently (package `rust-crypto`, library `crypto`).
    """
    stored_path = (
        Document.objects.filter(
            release__crate__normalized_name=normalize_crate_name(crate_name),
            release__state=CrateRelease.State.ACTIVE,
        )
        .values_list("path", flat=True)
        .first()
    )
    if stored_path is None or not parsed.crate_name:
        return
    stored_library = stored_path.split("::", 1)[0]
    if stored_library.lower() != parsed.crate_name.replace("-", "_").lower():
        raise InvalidInput(
            f"These docs are of the library {parsed.crate_name!r}, but {crate_name!r} is stored with the library "
            f"{stored_library!r}: check the crate name (ingesting them would replace {crate_name}'s docs)."
        )


def _remote_source(
    *, name: str, version: str, force: bool, progress: Progress, checkpoint: dict, allow_yanked: bool = False
) -> _Source:
    name = validate_crate_name(name)
    version = validate_version(version)
    progress = _WaitAwareProgress(progress)
    client = HttpClient(on_request=lambda: progress.update(http_requests=client.request_count),
                        check_cancelled=progress.check_cancelled, on_wait=progress.waiting)
    if checkpoint.get("version"):
        version = checkpoint["version"]  # a resumed job finishes the version it started
    progress.stage("resolve", f"resolving {name} {version}", 0)
    resolved = resolve_release(name=name, version=version, client=client, metadata=False, allow_yanked=allow_yanked)
    progress.check_cancelled()

    active = _active_release(name=resolved.name, version=resolved.version)
    # Nothing to compare with (a new version, or force): a release will be made, so its description is asked
    # for now, beside the download; otherwise only once the download shows the docs changed.
    refresh = active is not None and not force
    description = None if refresh else _description(resolved)
    artifact, unsaved = None, False
    if checkpoint.get("release_id"):
        artifact = load_cached_artifact(name=resolved.name, version=resolved.version)
    if artifact is None:
        progress.stage("fetch", f"downloading docs of {resolved.name} {resolved.version} from docs.rs", 5)
        try:
            artifact = fetch_docs(name=resolved.name, version=resolved.version, client=client,
                                  etag=active.etag if refresh else "", progress=progress)
        except NoDocumentation as exc:
            raise _with_other_versions(exc, resolved=resolved) from exc
        if refresh and (artifact.not_modified or artifact.sha256 == active.artifact_sha256):
            if resolved.features:  # releases stored before features were kept get them on their next refresh
                CrateRelease.objects.filter(pk=active.pk).exclude(features=resolved.features).update(
                    features=resolved.features
                )
            return _Source(resolved=resolved, parsed=None, artifact=None, local=False,
                           http_requests=client.request_count, up_to_date=True, active_release_id=active.pk)
        unsaved = True
    if description is None:
        description = _description(resolved)
    progress.update(http_requests=client.request_count)
    progress.check_cancelled()
    parsed = parse_artifact(artifact=artifact, package=resolved.name, version=resolved.version, client=client,
                            progress=progress)
    return _Source(resolved=resolved, parsed=parsed, artifact=artifact, local=False,
                   http_requests=client.request_count, unsaved_artifact=unsaved, description=description)


class _WaitAwareProgress:
    """The caller's Progress, plus ``waiting``: while the HTTP client waits to retry, the stage message says
    so with a countdown (HttpClient refreshes it once a second; the job runner writes it with its throttled
    progress flush), and the message the stage had comes back when the wait is over."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._message = ""

    def stage(self, name: str, message: str, percent: float) -> None:
        self._message = message
        self._progress.stage(name, message, percent)

    def update(self, *, percent: float | None = None, message: str | None = None, **counters: int) -> None:
        if message is not None:
            self._message = message
        self._progress.update(percent=percent, message=message, **counters)

    def check_cancelled(self) -> None:
        self._progress.check_cancelled()

    def waiting(self, notice: str | None) -> None:
        shown = self._message if notice is None else f"{notice}; {self._message}" if self._message else notice
        self._progress.update(message=shown)


def _with_other_versions(exc: NoDocumentation, *, resolved: ResolvedRelease) -> NoDocumentation:
    """Name the versions one could ask for instead: "latest" picks the newest release even when docs.rs failed
    to build it, and neither the user nor an agent can know which older one has docs."""
    others = [v for v in resolved.available_versions if v != resolved.version]
    # Stable releases first (newest first): a prerelease is rarely what was meant, and is often unbuilt too.
    others = sorted(others, key=is_prerelease)[:VERSIONS_IN_MESSAGES]
    if not others:
        return exc
    return NoDocumentation(
        f"{exc.message} Ask for another version instead, e.g. {', '.join(others)}.",
        **{**exc.context, "available": others},
    )


class _Active(NamedTuple):
    pk: int
    etag: str
    artifact_sha256: str


def _active_release(*, name: str, version: str) -> _Active | None:
    """What a refresh compares the download with; plain SQL, as this runs once per ingest on its fixed cost."""
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT r.id, r.etag, r.artifact_sha256 FROM "{CrateRelease._meta.db_table}" r'
            f' JOIN "{Crate._meta.db_table}" c ON c.id = r.crate_id'
            " WHERE c.normalized_name = %s AND r.version = %s AND r.state = %s ORDER BY r.ingested_at DESC LIMIT 1",
            [normalize_crate_name(name), version, CrateRelease.State.ACTIVE],
        )
        row = cursor.fetchone()
    return None if row is None else _Active(*row)


def _unique_items(items: list[ParsedItem]) -> list[ParsedItem]:
    """(path, kind) is unique per release; keep the first of any duplicates."""
    seen: set[tuple[str, str]] = set()
    out: list[ParsedItem] = []
    for item in items:
        key = (item.path, item.kind)
        if key not in seen:
            seen.add(key)
            out.append(item)
    if len(out) != len(items):
        logger.info("dropped %d duplicate (path, kind) items", len(items) - len(out))
    return out


def _build_release(
    *, source: _Source, embedder, progress: Progress, checkpoint: dict, save: Callable[[dict], None], job_id
) -> IngestResult:
    items = _unique_items(source.parsed.items)
    resolved = source.resolved
    count = token_counter(embedder)
    # A fresh release stores nothing before the model is done with every item (see overlap_store).
    embed_first = not checkpoint.get("release_id") and not overlap_store(embedder)
    with transaction.atomic():
        # One commit for the download, the crate and the release, without waiting for the WAL flush: the
        # download is a cache and a building release invisible; the checkpoint's synchronous commit flushes both.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        if source.unsaved_artifact:
            save_artifact(name=resolved.name, version=resolved.version, artifact=source.artifact)
        release, resumed = _resume_or_create_release(source=source, embedder=embedder, checkpoint=checkpoint,
                                                     job_id=job_id)
    checkpoint.update(release_id=release.pk, version=resolved.version, items_total=len(items))
    if source.artifact is not None:
        checkpoint["artifact_sha256"] = source.artifact.sha256
    save(dict(checkpoint))
    progress.stage("embed", f"chunking and embedding {len(items)} items", 20)
    # items_found is known before the model pass, which is most of a big crate's run on a CPU model.
    progress.update(items_found=len(items), http_requests=source.http_requests)
    try:
        embedded = None
        if embed_first:
            embedded = _embed_only(pending=items, embedder=embedder, count=count, progress=progress)
        # The stored documents are the checkpoint: a batch commits whole, so an item
        # whose document exists is done, whichever writer stored it. A release made just now has none.
        done = store.stored_keys(release=release) if resumed else set()
        pending = [item for item in items if (item.path, item.kind) not in done]
        skipped = len(items) - len(pending)
        result = IngestResult(crate_name=resolved.name, version=resolved.version, release_id=release.pk,
                              http_requests=source.http_requests, items_skipped_by_checkpoint=skipped,
                              docs_source=source.parsed.source_label(), provenance=source.parsed.provenance_notes())
        progress.update(items_processed=skipped)
        _write_batches(release=release, pending=pending, batch=batch_size_for(len(items)), embedder=embedder,
                       source=source, progress=progress, result=result, total=len(items), count=count,
                       embedded=embedded, save_checkpoint=lambda: save(dict(checkpoint)), replace=resumed)
        progress.check_cancelled()
        progress.stage("activate", "swapping in the new release", 98)
        described = _described(source, result=result, progress=progress)
        store.activate_release(release=release, **described)
    except Exception as exc:
        _discard_after(exc, release_id=release.pk)
        raise
    result.documents, result.chunks = release.document_count, release.chunk_count
    result.embeddings = release.embedding_count
    progress.update(documents=result.documents, chunks=result.chunks, embeddings=result.embeddings)
    progress.stage("done", f"{resolved.name} {resolved.version}: {result.documents} documents", 100)
    return result


def _described(source: _Source, *, result: IngestResult, progress: Progress) -> dict[str, str]:
    """The description and repository to give the crate at activation (``{}``: keep what it has)."""
    if source.description is None:
        return {}
    metadata = source.description.metadata()
    source.http_requests += source.description.requests
    result.http_requests = source.http_requests
    progress.update(http_requests=source.http_requests)
    return {key: value for key, value in metadata.items() if value}


def _discard_after(exc: Exception, *, release_id: int) -> None:
    """Drop the building release after ``exc``, unless a retry of the job can resume it (a transient error)."""
    if not (isinstance(exc, FerrodexError) and exc.transient) or isinstance(exc, Cancelled):
        store.discard_release(release_id=release_id)


def _resume_or_create_release(
    *, source: _Source, embedder, checkpoint: dict, job_id
) -> tuple[CrateRelease, bool]:
    """(the release to build, whether it is one a previous attempt started); inside the caller's transaction."""
    release_id = checkpoint.get("release_id")
    if release_id and checkpoint.get("version") == source.resolved.version:
        release = CrateRelease.objects.filter(pk=release_id, state=CrateRelease.State.BUILDING).first()
        if release is not None:
            logger.info("resuming release %s of %s", release_id, source.resolved.name)
            return release, True
    artifact = source.artifact
    release = store.create_building_release(
        resolved=source.resolved, parsed=source.parsed, embedding_model=embedder.model_name,
        embedding_dimension=embedder.dimension,
        etag=artifact.etag if artifact else "", artifact_sha256=artifact.sha256 if artifact else "", job_id=job_id,
    )
    return release, False


def _description(resolved: ResolvedRelease) -> _Description | None:
    return _Description(resolved) if getattr(settings, "FETCH_CRATE_METADATA", True) else None


class _Description:
    """The crates.io description and repository of the crate being ingested, asked for on a thread of its own.

    Display metadata from another host than docs.rs, needed only when the release is activated: its
    latency (~0.1 s to crates.io) hides behind the download, parsing, the model and storing. Inside a
    caller's transaction it is asked for at once instead: a connection of its own would wait on the
    rate-limit row that transaction holds. ``metadata()`` never raises ({} on failure).
    """

    def __init__(self, resolved: ResolvedRelease) -> None:
        self._resolved = resolved
        self.requests = 0
        self._thread: threading.Thread | None = None
        if connection.in_atomic_block:
            self._ask()
        else:
            self._thread = threading.Thread(target=self._ask_on_thread, name="ferrodex-describe", daemon=True)
            self._thread.start()

    def _ask(self) -> None:
        with HttpClient() as client:
            describe_release(release=self._resolved, client=client)
        self.requests = client.request_count

    def _ask_on_thread(self) -> None:
        try:
            self._ask()
        except Exception:  # never the ingest's failure: the crate is stored without a description
            logger.exception("crates.io metadata for %s failed", self._resolved.name)
        finally:
            connection.close()  # this thread's own, opened by the shared rate limit

    def metadata(self) -> dict[str, str]:
        if self._thread is not None:
            self._thread.join()
        return {"description": self._resolved.description, "repository": self._resolved.repository}


def _groups(
    pending: list[ParsedItem], batch: int, embedder, count: Callable[[str], int], chunked: dict[int, list] | None = None
) -> Iterator[list[list[tuple[ParsedItem, list]]]]:
    """Yield groups of batches, chunked, with enough chunks for full model batches.

    ``chunked``: chunks the embed-first pass already made, by ``id(item)``.
    """
    group: list[list[tuple[ParsedItem, list]]] = []
    chunk_total = 0
    chunked = chunked or {}
    for index in range(0, len(pending), batch):
        current = []
        for item in pending[index:index + batch]:
            chunks = chunked.get(id(item))
            if chunks is None:
                chunks = chunk_item(item, max_tokens=embedder.max_tokens, count_tokens=count)
            current.append((item, chunks))
            chunk_total += len(chunks)
        group.append(current)
        if chunk_total >= EMBED_GROUP_CHUNKS:
            yield group
            group, chunk_total = [], 0
    if group:
        yield group


def _write_batches(
    *, release, pending, batch, embedder, source: _Source, progress: Progress, result: IngestResult, total: int,
    count: Callable[[str], int], save_checkpoint: Callable[[], None], replace: bool = True,
    embedded: _Embedded | None = None,
) -> None:
    """Chunk, embed and store ``pending``; ``embedded``: the embed-first pass, if the caller ran it.

    ``count`` is the run's one memoising token counter: the embed-first pass and the storing pass
    chunk the same items, so the second one finds every token count already made.
    """
    store_from = 20
    if embedded is None and not overlap_store(embedder):
        embedded = _embed_only(pending=pending, embedder=embedder, count=count, progress=progress)
    first_cache = None
    if embedded is not None:
        result.embedded_new += embedded.sent
        first_cache = (embedder.model_name, embedded.uncached) if embedded.uncached else None
        store_from = EMBED_FIRST_STORE_PERCENT
    # A crate that is one batch has nothing to overlap with its storing: no threads, no extra connections.
    writer_class = _InlineWriter if len(pending) <= batch else _BatchWriter
    writer = writer_class(release=release, package=source.resolved.name, local=source.local, result=result,
                          progress=progress, total=total, threads=settings.INGEST_WRITERS,
                          save_checkpoint=save_checkpoint, percent_from=store_from, replace=replace)
    writer.start()
    try:
        for group in _groups(pending, batch, embedder, count, chunked=embedded.chunks if embedded else None):
            progress.check_cancelled()
            writer.raise_if_failed()
            texts = {c.content_hash: c.text for current in group for _item, chunks in current for c in chunks}
            vectors, fresh = _vectors_for(texts=texts, embedded=embedded, embedder=embedder)
            result.embedded_new += len(fresh)
            # The group's new vectors go to the embedding cache on a writer (before its first batch),
            # not on this thread, which chunks and embeds the next group meanwhile.
            cache = (embedder.model_name, {h: vectors[h] for h in fresh}) if fresh else first_cache
            first_cache = None
            for current in group:
                writer.put([
                    store.StoredItem(item=i, chunks=cs, vectors=[vectors.get(c.content_hash) for c in cs])
                    for i, cs in current
                ], cache=cache)
                cache = None
        writer.finish()
    finally:
        writer.stop()


def _vectors_for(
    *, texts: dict[str, str], embedded: _Embedded | None, embedder
) -> tuple[dict[str, list[float]], list[str]]:
    """(vectors of ``texts``, hashes the model embedded just now and the cache does not hold yet):
    those the embed-first pass made, the rest from the cache or the model."""
    if embedded is not None and all(content_hash in embedded.vectors for content_hash in texts):
        return embedded.vectors, []
    return embed_uncached(embedder=embedder, texts=texts)


# With the model first, embedding is 20-85% of the progress bar and storing 85-98%.
EMBED_FIRST_STORE_PERCENT = 85


def overlap_store(embedder) -> bool:
    """Whether batches are stored while the model embeds (settings.INGEST_OVERLAP_STORE)."""
    mode = getattr(settings, "INGEST_OVERLAP_STORE", "auto")
    if mode in ("on", "true", "1", "yes"):
        return True
    if mode in ("off", "false", "0", "no"):
        return False
    return not getattr(embedder, "uses_local_cpu", False)


# Items chunked at a time by the embed-first pass; bounds the chunk texts held in memory.
EMBED_WINDOW_ITEMS = 4096


@dataclass(slots=True)
class _Embedded:
    """What the embed-first pass made: every vector by content hash, how many texts went to the
    model, and the last group's new vectors, which the first stored batch puts in the cache."""

    vectors: dict[str, list[float]]
    sent: int
    uncached: dict[str, list[float]]
    # Each item's chunks by id(item) when the crate was one window: the storing pass need not chunk again.
    chunks: dict[int, list] | None = None


def _embed_only(*, pending, embedder, count: Callable[[str], int], progress: Progress) -> _Embedded:
    """Embed every chunk of ``pending``, shortest texts first, into memory and the cache.

    Length-sorted groups waste no padding in the model's batches; order does not matter here
    because nothing is stored yet. The storing pass takes the vectors from memory instead of
    reading them back from the cache (~1.5 KB each, held only as long as the ingest).

    Each group's vectors are committed to the cache before the next group goes to the model, so a
    resumed job re-embeds at most one group. Nothing runs beside the model: on 2 cores its two threads
    use both, and database work on a side thread (tried: the release, the download and the cache
    writes during the model's calls) slowed the model by more than it hid (itoa: 212-243 ms best
    of 12 overlapped, 197-217 ms in sequence).
    """
    vectors: dict[str, list[float]] = {}
    sent, held = 0, {}
    total = len(pending)
    chunks: dict[int, list] | None = {} if total <= EMBED_WINDOW_ITEMS else None
    for start in range(0, total, EMBED_WINDOW_ITEMS):
        window = pending[start : start + EMBED_WINDOW_ITEMS]
        ordered = _window_texts(window, embedder=embedder, count=count, chunks=chunks)
        for index in range(0, len(ordered), EMBED_GROUP_CHUNKS):
            progress.check_cancelled()
            group = dict(ordered[index : index + EMBED_GROUP_CHUNKS])
            found, misses = cached_vectors(embedder=embedder, texts=group)
            if held:
                store_in_cache(model=embedder.model_name, vectors=held)
            fresh = embedder.embed([group[h] for h in misses]) if misses else []
            held = checked_vectors(embedder=embedder, hashes=misses, vectors=fresh)
            vectors.update(found)
            vectors.update(held)
            sent += len(misses)
            embedded = start + len(window) * min(1.0, (index + EMBED_GROUP_CHUNKS) / max(1, len(ordered)))
            progress.update(percent=20 + (EMBED_FIRST_STORE_PERCENT - 20) * embedded / max(1, total),
                            message=f"embedded {int(embedded)}/{total} items")
    return _Embedded(vectors=vectors, sent=sent, uncached=held, chunks=chunks)


def _window_texts(
    window, *, embedder, count: Callable[[str], int], chunks: dict[int, list] | None = None
) -> list[tuple[str, str]]:
    """The distinct chunk texts of ``window`` by content hash, shortest first; each item's chunks go to
    ``chunks`` (by ``id(item)``) when given."""
    texts: dict[str, str] = {}
    for item in window:
        made = chunk_item(item, max_tokens=embedder.max_tokens, count_tokens=count)
        if chunks is not None:
            chunks[id(item)] = made
        for c in made:
            texts.setdefault(c.content_hash, c.text)
    return sorted(texts.items(), key=lambda pair: len(pair[1]))


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
        percent_from: int = 20, replace: bool = True,
    ) -> None:
        self.release, self.package, self.local, self.replace = release, package, local, replace
        self.percent_from = percent_from
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
        span = 98 - self.percent_from
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
