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

Format versions 45..58 are read. Ids are opaque: integers in newer files, strings such as ``"0:123:456"`` in
older ones; both are normalised to ``str``. Shapes that differ between versions (structured ``attrs`` since
54, optional generic args since 51, renamed fields) are read defensively; unknown item kinds are skipped.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator

from crates.errors import CorruptArtifact
from crates.pipeline import rustdoc_render as render
from crates.pipeline.parse_json.build import DocumentBuilder
from crates.pipeline.parse_json.foreign import foreign_inlined_items, note_foreign_reexports
from crates.pipeline.parse_json.links import LinkTargets
from crates.pipeline.parse_json.load import SUPPORTED_FORMAT_VERSIONS, check_format_version, load
from crates.pipeline.parse_json.paths import PublicPaths
from crates.pipeline.parse_json.types import annotate_types
from crates.pipeline.types import ParsedCrate

__all__ = ["SUPPORTED_FORMAT_VERSIONS", "parse_rustdoc_json"]

logger = logging.getLogger(__name__)


def parse_rustdoc_json(data: bytes | dict, *, version: str = "", docs_root: str = "") -> ParsedCrate:
    """Parse decompressed rustdoc JSON (bytes, str or an already-loaded dict) into documents.

    ``docs_root`` prefixes the URLs intra-doc links to this crate's items get (``https://docs.rs/tokio/1.0.0/``);
    empty, they are relative to the docs root like ``ParsedItem.url`` (a local ``--json-file`` ingest).
    Raises UnsupportedFormat for a format version outside ``SUPPORTED_FORMAT_VERSIONS`` and CorruptArtifact
    for anything that is not rustdoc JSON.
    """
    started = time.perf_counter()
    # The decoded document is a tree of a few hundred thousand containers and holds no cycles: left on, the
    # cyclic collector walks all of it several times while it is built (a third of the parse).
    with _gc_paused():
        return _parse(data, version=version, docs_root=docs_root, started=started)


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

    walker = PublicPaths(index, root_id, crate_name)
    locations = walker.walk()
    builder = DocumentBuilder(index, paths, crate_name)
    items = builder.build(locations)
    items.extend(foreign_inlined_items(walker.foreign_inlined, locations=locations, paths=paths, taken=items))
    note_foreign_reexports(walker.foreign_listed, locations=locations, paths=paths, items=items)
    external = doc.get("external_crates") if isinstance(doc.get("external_crates"), dict) else {}
    LinkTargets(index=index, paths=paths, external_crates=external, items=items, docs_root=docs_root).apply()
    annotate_types(index, paths, items)

    target = doc.get("target")
    parsed = ParsedCrate(
        crate_name=crate_name,
        version=version or str(doc.get("crate_version") or ""),
        source="rustdoc-json",
        items=items,
        format_version=format_version,
        generator=f"rustdoc-json v{format_version}",
        target=str(target.get("triple") or "") if isinstance(target, dict) else "",
    )
    logger.info(
        "parsed rustdoc JSON",
        extra={
            "crate": crate_name,
            "format_version": format_version,
            "documents": len(items),
            "skipped": builder.skipped,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return parsed
