"""Parse stage, rustdoc JSON: one ParsedItem per public item of the crate, at its public path.

rustdoc's ``paths`` map gives where an item is *defined*, which is often a private module. What users type
is the path they can reach from the crate root, so the module tree is walked from ``root`` following public
``use`` re-exports (renamed and glob). An item reachable at several paths gets one canonical path:

* the defining path when its whole module chain is public (what ``paths`` says);
* otherwise the shortest re-export path (ties broken lexicographically).

The other public paths are kept in ``metadata["aliases"]``. Only items of the documented crate (crate_id 0)
become documents; ``#[doc(hidden)]`` and stripped items are skipped. Re-exports of other crates' items that are not
``#[doc(no_inline)]`` (``tokio::main``, a plain ``pub use rand_core::RngCore``), which docs.rs gives a page, get a
short document that names where the item comes from, since the JSON holds no docs for it.

Every format version from 45 on is read, with no upper bound: newer ones tolerantly. Unknown fields are ignored;
an item of unknown kind, an attribute, type or generic form of unknown shape is skipped and counted in
``ParsedCrate.report`` (never raised); a file whose structure cannot be read at all raises CorruptArtifact, and
``validate.validation_problems`` says whether what came out can be trusted (else the caller uses the HTML
bundle). Ids are opaque: integers in newer files, strings such as ``"0:123:456"`` in
older ones; both are normalised to ``str``. Shapes that differ between versions (structured ``attrs`` since
54, optional generic args since 51, renamed fields) are read defensively; unknown item kinds are skipped.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator

from crates.errors import CorruptArtifact, FerrodexError
from crates.pipeline import rustdoc_render as render
from crates.pipeline.parse_json.build import DocumentBuilder
from crates.pipeline.parse_json.cfg import apply_cfg
from crates.pipeline.parse_json.common import USE_TAGS, inner, is_local, is_public
from crates.pipeline.parse_json.foreign import foreign_inlined_items, note_foreign_reexports
from crates.pipeline.parse_json.links import LinkTargets
from crates.pipeline.parse_json.load import SUPPORTED_FORMAT_VERSIONS, check_format_version, load
from crates.pipeline.parse_json.paths import PublicPaths
from crates.pipeline.parse_json.types import annotate_types
from crates.pipeline.parse_json.validate import MIN_UNDERSTOOD_SHARE, validation_problems
from crates.pipeline.types import ParsedCrate, ParseReport

__all__ = ["MIN_UNDERSTOOD_SHARE", "SUPPORTED_FORMAT_VERSIONS", "parse_rustdoc_json", "validation_problems"]

logger = logging.getLogger(__name__)


def parse_rustdoc_json(data: bytes | dict, *, version: str = "", docs_root: str = "") -> ParsedCrate:
    """Parse decompressed rustdoc JSON (bytes, str or an already-loaded dict) into documents.

    ``docs_root`` prefixes the URLs intra-doc links to this crate's items get (``https://docs.rs/tokio/1.0.0/``);
    empty, they are relative to the docs root like ``ParsedItem.url`` (a local ``--json-file`` ingest).
    Raises UnsupportedFormat for a format version older than 45 and CorruptArtifact for anything that is not
    rustdoc JSON or whose structure cannot be read; nothing else escapes.
    """
    started = time.perf_counter()
    # The decoded document is a tree of a few hundred thousand containers and holds no cycles: left on, the
    # cyclic collector walks all of it several times while it is built (a third of the parse).
    with _gc_paused():
        try:
            return _parse(data, version=version, docs_root=docs_root, started=started)
        except FerrodexError:
            raise
        except (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError) as exc:
            # A restructured format: say so with the version, so the caller falls back to the HTML bundle.
            logger.warning("rustdoc JSON structure not understood", exc_info=True)
            raise CorruptArtifact(
                f"The rustdoc JSON's structure could not be read ({type(exc).__name__}: {str(exc)[:200]}); "
                "its format has probably changed."
            ) from exc


def _declared_public(index: dict, root_id: str) -> int:
    return sum(
        1
        for item_id, item in index.items()
        if isinstance(item, dict) and item_id != root_id and is_public(item) and is_local(item) and item.get("name")
    )


def _root_offers_own_items(index: dict, root: dict) -> bool:
    """Whether the root module lists a visible item of this crate, itself or re-exported. thiserror's lists only
    `pub use thiserror_impl::*`: its public traits in private modules are meant to have no path at all. An
    unreadable listing counts as offering items, so a restructured file still fails validation."""
    kind, value = inner(root)
    children = value.get("items") if kind == "module" and isinstance(value, dict) else None
    if not isinstance(children, list):
        return True
    for child_id in children:
        child = index.get(str(child_id))
        if not isinstance(child, dict):
            return True
        if not is_public(child) or render.is_doc_hidden(child):
            continue
        child_kind, use = inner(child)
        if child_kind not in USE_TAGS:
            return True
        if not isinstance(use, dict) or "id" not in use:
            return True
        target = index.get(str(use["id"])) if use["id"] is not None else None
        if isinstance(target, dict) and is_local(target):
            return True
    return False


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(data: bytes | dict, *, version: str, docs_root: str, started: float) -> ParsedCrate:
    doc = load(data)
    format_version = check_format_version(doc)
    index = doc.get("index")
    if not isinstance(index, dict) or doc.get("root") is None:
        raise CorruptArtifact(
            "The rustdoc JSON has no 'index' or 'root': the file is incomplete or not rustdoc output."
        )
    root_id = str(doc["root"])
    root = index.get(root_id)
    if not isinstance(root, dict) or render.tag(root.get("inner"))[0] != "module" or not root.get("name"):
        raise CorruptArtifact(f"The rustdoc JSON root item {root_id!r} is missing or is not a module.")
    paths = doc.get("paths") if isinstance(doc.get("paths"), dict) else {}
    crate_name = root["name"]

    report = ParseReport(declared_public=_declared_public(index, root_id) if _root_offers_own_items(index, root) else 0)
    with render.collecting(report.skipped):
        walker = PublicPaths(index, root_id, crate_name, report)
        locations = walker.walk()
        builder = DocumentBuilder(index, paths, crate_name, report)
        items = builder.build(locations)
        items.extend(foreign_inlined_items(walker.foreign_inlined, locations=locations, paths=paths, taken=items))
        note_foreign_reexports(walker.foreign_listed, locations=locations, paths=paths, items=items)
        external = doc.get("external_crates") if isinstance(doc.get("external_crates"), dict) else {}
        LinkTargets(index=index, paths=paths, external_crates=external, items=items, docs_root=docs_root).apply()
        apply_cfg(items, index=index, paths=paths, foreign=walker.foreign_inlined, locations=locations)  # -> "cfg"
        annotate_types(index, paths, items)
    foreign_globs = []
    for module_id, source in walker.foreign_globs:
        module_paths = sorted(locations.get(module_id, {}), key=lambda p: (len(p), p))
        if module_paths:
            foreign_globs.append(("::".join(module_paths[0]), source))

    target = doc.get("target")
    parsed = ParsedCrate(
        crate_name=crate_name,
        version=version or str(doc.get("crate_version") or ""),
        source="rustdoc-json",
        items=items,
        format_version=format_version,
        generator=f"rustdoc-json v{format_version}",
        target=str(target.get("triple") or "") if isinstance(target, dict) else "",
        report=report,
        foreign_globs=foreign_globs,
    )
    logger.info(
        "parsed rustdoc JSON",
        extra={
            "crate": crate_name,
            "format_version": format_version,
            "documents": len(items),
            "skipped": sum(report.skipped.values()),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return parsed
