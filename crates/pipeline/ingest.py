"""The ingest pipeline: resolve -> fetch -> parse -> store -> embed -> activate.

Plain functions with a progress/cancel callback, shared by the job runner and ``manage.py ingest_crate``.
This module selects the source (docs.rs or local files) and parses it; ``crates.pipeline.release`` builds
the release from it (store phase, embedding pass, activation).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from uuid import UUID

from django.conf import settings
from django.db import connection

from crates.errors import EmbeddingModelMismatch, InvalidInput, NoDocumentation
from crates.models import Crate, CrateRelease, Document
from crates.names import is_prerelease, normalize_crate_name, validate_crate_name, validate_version
from crates.pipeline import store
from crates.pipeline.embed import PROVIDERS, check_embedder_dimension, get_embedder, provider_model_name
from crates.pipeline.fetch import decode_json_body, fetch_docs, load_cached_artifact
from crates.pipeline.http import HttpClient
from crates.pipeline.parse_html import parse_html_pages, read_doc_dir
from crates.pipeline.parse_json import parse_rustdoc_json
from crates.pipeline.release import IngestResult, build_release
from crates.pipeline.resolve import VERSIONS_IN_MESSAGES, describe_release, resolve_release
from crates.pipeline.source import note_local_json, parse_artifact
from crates.pipeline.types import Artifact, ParsedCrate, Progress, ResolvedRelease

logger = logging.getLogger(__name__)

__all__ = ["IngestResult", "run_ingest"]


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
    checkpoint = dict(checkpoint or {})
    embedder = _embedder_for(checkpoint)
    check_embedder_dimension(embedder=embedder)
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
    return build_release(
        source=source, embedder=embedder, progress=progress, checkpoint=checkpoint, save=save, job_id=job_id
    )


def _embedder_for(checkpoint: dict):
    """The configured embedder, or for a resumed job the one that made its release's vectors so far.

    A worker configured with another provider of the same dimension finished a release with vectors of two
    models, silently (search compares them as one). A model no provider here makes is refused, and the
    half-built release dropped so that a retry starts afresh with this worker's model.
    """
    configured = get_embedder()
    release_id = checkpoint.get("release_id")
    recorded = (
        CrateRelease.objects.filter(pk=release_id, state=CrateRelease.State.BUILDING)
        .values_list("embedding_model", flat=True)
        .first()
        if release_id
        else None
    )
    if not recorded or recorded == configured.model_name:
        return configured
    for provider in PROVIDERS:
        if provider_model_name(provider) == recorded:
            logger.warning("resuming release %s with %s (provider %s), the model it was started with, not %s",
                           release_id, recorded, provider, configured.model_name)  # fmt: skip
            return get_embedder(provider=provider)
    store.discard_release(release_id=release_id)
    raise EmbeddingModelMismatch(
        f"This job's release was started with the embedding model {recorded!r}, which this worker cannot make "
        f"(it embeds with {configured.model_name!r}, EMBEDDING_PROVIDER={settings.EMBEDDING_PROVIDER}): resuming "
        "would mix two models' vectors in one release. The half-built release was dropped; retry the job to "
        f"build it with {configured.model_name!r} from the start, or run it on a worker configured for {recorded!r}.",
        recorded=recorded,
        configured=configured.model_name,
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
    # Downloaded just now and not kept yet: build_release keeps it with the new release.
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
    """What a refresh compares the download with; plain SQL, as this runs once per ingest on its fixed cost.
    A release still embedding is not: the ingest that resumes it must not find it "up to date"."""
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT r.id, r.etag, r.artifact_sha256 FROM "{CrateRelease._meta.db_table}" r'
            f' JOIN "{Crate._meta.db_table}" c ON c.id = r.crate_id'
            " WHERE c.normalized_name = %s AND r.version = %s AND r.state = %s AND NOT r.embedding_pending"
            " ORDER BY r.ingested_at DESC LIMIT 1",
            [normalize_crate_name(name), version, CrateRelease.State.ACTIVE],
        )
        row = cursor.fetchone()
    return None if row is None else _Active(*row)


def _description(resolved: ResolvedRelease) -> _Description | None:
    return _Description(resolved) if getattr(settings, "FETCH_CRATE_METADATA", True) else None


class _Description:
    """The crates.io description and repository of the crate being ingested, asked for on a thread of its own.

    Display metadata from another host than docs.rs, needed only when the release is activated: its
    latency hides behind the download, parsing, the model and storing. Inside a
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
