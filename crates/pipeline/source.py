"""Which documentation a release is built from: the rustdoc JSON when it reads well, else the HTML bundle.

The JSON is parsed tolerantly (any format from 45 on), then checked (``validation_problems``). When it cannot
be read or fails the check, the same job downloads the HTML bundle (``/download``, one request) and parses that
instead. Items a crate re-exports by glob from another crate (``pub use thiserror_impl::*``) are not in the
JSON at all; the HTML bundle has their pages, so they are taken from it. Either way the budget stays at one
extra request, and ``ParsedCrate.report.notes`` says what happened (shown as the release's provenance).
"""

from __future__ import annotations

import logging

from django.conf import settings

from crates.errors import ArtifactError, CorruptArtifact
from crates.pipeline import store
from crates.pipeline.archive import read_zip_pages
from crates.pipeline.fetch import fetch_html_bundle
from crates.pipeline.http import HttpClient
from crates.pipeline.parse_html import parse_html_pages
from crates.pipeline.parse_json import parse_rustdoc_json, validation_problems
from crates.pipeline.types import Artifact, ParsedCrate, ParsedItem, Progress

logger = logging.getLogger(__name__)


def parse_artifact(
    *, artifact: Artifact, package: str, version: str, client: HttpClient, progress: Progress
) -> ParsedCrate:
    """Documents of ``package`` ``version`` from what fetch downloaded, with the HTML bundle as fallback."""
    progress.stage("parse", "parsing documentation", 15)
    # Links in docs point where the item URLs stored for this release do (store.docs_url).
    root = store.docs_root(package=package, version=version)
    if artifact.kind != "json":
        return _parse_pages(artifact, version=version, root=root)
    try:
        parsed = parse_rustdoc_json(artifact.body, version=version, docs_root=root)
    except ArtifactError as exc:
        return _fallback(reason=f"rustdoc JSON unreadable ({exc.message})", error=exc, package=package,
                         version=version, root=root, client=client, progress=progress)
    problems = validation_problems(parsed)
    if problems:
        reason = f"{parsed.source_label()} failed validation ({'; '.join(problems)})"
        error = CorruptArtifact(f"The {reason}.", url=artifact.url)
        return _fallback(reason=reason, error=error, package=package, version=version, root=root, client=client,
                         progress=progress, rejected=parsed)
    if parsed.foreign_globs:
        _add_glob_reexports(parsed, package=package, version=version, root=root, client=client, progress=progress)
    return parsed


def _parse_pages(artifact: Artifact, *, version: str, root: str) -> ParsedCrate:
    pages = artifact.pages
    if artifact.kind == "zip" and not pages:
        pages = read_zip_pages(artifact.body, max_total_bytes=settings.MAX_DECOMPRESSED_BYTES)
    return parse_html_pages(pages, version=version, docs_root=root)


def _fallback(
    *, reason: str, error: ArtifactError, package: str, version: str, root: str, client: HttpClient,
    progress: Progress, rejected: ParsedCrate | None = None,
) -> ParsedCrate:
    logger.warning("%s %s: %s; falling back to the HTML bundle", package, version, reason)
    bundle = fetch_html_bundle(name=package, version=version, client=client, progress=progress)
    if bundle is None:
        raise CorruptArtifact(
            f"{error.message} docs.rs has no HTML bundle of {package} {version} to fall back to; "
            "an upgrade of Ferrodex may read this rustdoc JSON.",
            **error.context,
        ) from error
    parsed = _parse_pages(bundle, version=version, root=root)
    parsed.report.notes.append(f"fell back to the HTML bundle: {reason}")
    if rejected is not None:
        parsed.report.notes.extend(rejected.provenance_notes())
    return parsed


def _add_glob_reexports(
    parsed: ParsedCrate, *, package: str, version: str, root: str, client: HttpClient, progress: Progress
) -> None:
    """Pages of items re-exported by glob from other crates, from the HTML bundle, at their public paths."""
    sources = ", ".join(f"`{source}`" for _, source in parsed.foreign_globs)
    try:
        bundle = fetch_html_bundle(name=package, version=version, client=client, progress=progress)
        html = _parse_pages(bundle, version=version, root=root) if bundle is not None else None
    except ArtifactError as exc:
        logger.warning("%s %s: HTML bundle for glob re-exports unusable: %s", package, version, exc)
        parsed.report.notes.append(f"items re-exported by glob from {sources} missing: HTML bundle unusable")
        return
    if html is None:
        parsed.report.notes.append(f"items re-exported by glob from {sources} missing: no HTML bundle")
        return
    added = glob_items(parsed, html.items)
    parsed.items.extend(added)
    parsed.report.notes.append(
        f"{len(added)} item{'s' if len(added) != 1 else ''} re-exported by glob from {sources} "
        "taken from the HTML bundle"
    )


def note_local_json(parsed: ParsedCrate) -> None:
    """A local JSON file (``ingest_crate --json-file``) has no HTML bundle beside it: say what that leaves out."""
    if parsed.foreign_globs:
        sources = ", ".join(f"`{source}`" for _, source in parsed.foreign_globs)
        parsed.report.notes.append(
            f"items re-exported by glob from {sources} missing: a local JSON file has no HTML bundle "
            "(ingest the `cargo doc` output with --doc-dir for them)"
        )


def glob_items(parsed: ParsedCrate, html_items: list[ParsedItem]) -> list[ParsedItem]:
    """The HTML documents the JSON lacks that sit in a module with a foreign glob re-export (and their
    members), marked as coming from the HTML bundle."""
    have = {(item.path, item.kind) for item in parsed.items}
    parents = {module for module, _ in parsed.foreign_globs}
    added: list[ParsedItem] = []
    for item in sorted(html_items, key=lambda i: (i.path.count("::"), i.path)):
        if (item.path, item.kind) in have or item.parent_path not in parents:
            continue
        item.metadata = {**item.metadata, "source": "html"}
        added.append(item)
        parents.add(item.path)  # its members (methods, fields, variants) come along
    return added
