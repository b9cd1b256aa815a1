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
import json
import logging
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from crates.errors import CorruptArtifact, UnsupportedFormat
from crates.pipeline import doclinks
from crates.pipeline import rustdoc_render as render
from crates.pipeline.types import ParsedCrate, ParsedItem

logger = logging.getLogger(__name__)

SUPPORTED_FORMAT_VERSIONS = range(45, 59)  # 45..58 inclusive
LOCAL_CRATE_ID = 0
AUTO_TRAITS = frozenset({"Send", "Sync", "Unpin", "Freeze", "UnwindSafe", "RefUnwindSafe", "UnsafeUnpin"})

# A re-export cycle (`pub use super::*`, `pub use crate as me`) would otherwise walk forever; real crates reach
# a module through a handful of paths at most.
_MAX_VISITS_PER_MODULE = 8
_MAX_PATH_DEPTH = 24

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"

# inner tag -> Document.Kind for items that live in modules
_MODULE_MEMBER_KINDS = {
    "module": "module",
    "struct": "struct",
    "enum": "enum",
    "union": "union",
    "trait": "trait",
    "trait_alias": "trait_alias",
    "function": "function",
    "macro": "macro",
    "proc_macro": "macro",
    "constant": "constant",
    "static": "static",
    "type_alias": "type_alias",
    "typedef": "type_alias",  # name before format 27, kept for hand-converted files
    "primitive": "primitive",
}
_PAGE_PREFIX = {
    "struct": "struct",
    "enum": "enum",
    "union": "union",
    "trait": "trait",
    "trait_alias": "traitalias",
    "function": "fn",
    "macro": "macro",
    "constant": "constant",
    "static": "static",
    "type_alias": "type",
    "typedef": "type",
    "primitive": "primitive",
}
_PROC_MACRO_PAGE = {"bang": "macro", "attr": "attr", "derive": "derive"}
_USE_TAGS = ("use", "import")
_VALUE_NAMESPACE = frozenset({"function", "constant", "static"})
_MACRO_NAMESPACE = frozenset({"macro", "proc_macro"})

Path = tuple[str, ...]


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
    doc = _load(data)
    format_version = _check_format_version(doc)
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

    walker = _PublicPaths(index, root_id, crate_name)
    locations = walker.walk()
    builder = _DocumentBuilder(index, paths, crate_name)
    items = builder.build(locations)
    items.extend(_foreign_inlined_items(walker.foreign_inlined, locations=locations, paths=paths, taken=items))
    _note_foreign_reexports(walker.foreign_listed, locations=locations, paths=paths, items=items)
    external = doc.get("external_crates") if isinstance(doc.get("external_crates"), dict) else {}
    _LinkTargets(index=index, paths=paths, external_crates=external, items=items, docs_root=docs_root).apply()

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


# ---------------------------------------------------------------- loading


def _load(data: bytes | bytearray | memoryview | str | dict) -> dict:
    if isinstance(data, dict):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if raw.startswith(_ZSTD_MAGIC) or raw.startswith(_GZIP_MAGIC):
            raise CorruptArtifact("The rustdoc JSON is still compressed (zstd/gzip); decompress it before parsing.")
    elif isinstance(data, str):
        raw = data
    else:
        raise CorruptArtifact(f"Expected rustdoc JSON as bytes or a dict, got {type(data).__name__}.")
    try:
        doc = _decode(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptArtifact(
            f"The rustdoc JSON could not be read ({exc}); the download is probably truncated or corrupt."
        ) from exc
    if not isinstance(doc, dict):
        raise CorruptArtifact("The rustdoc JSON is not an object; this is not rustdoc output.")
    return doc


def _decode(raw: bytes | str) -> Any:
    """orjson, 3-4x faster than the stdlib on multi-megabyte rustdoc output; anything it refuses (NaN, integers
    beyond 64 bits, nesting deeper than 1024) goes to the stdlib, so what loads and which errors are raised
    stay exactly the stdlib's."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _check_format_version(doc: Mapping[str, Any]) -> int:
    version = doc.get("format_version")
    if version is None:
        raise CorruptArtifact("The JSON has no 'format_version': it is not rustdoc JSON output.")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CorruptArtifact(f"The rustdoc JSON 'format_version' is not a number: {version!r}.")
    low, high = SUPPORTED_FORMAT_VERSIONS[0], SUPPORTED_FORMAT_VERSIONS[-1]
    if version not in SUPPORTED_FORMAT_VERSIONS:
        advice = (
            "It is newer than this Ferrodex understands; upgrade Ferrodex or ingest the HTML docs instead."
            if version > high
            else "It is older than Ferrodex reads; rebuild the docs with a newer rustdoc or ingest the HTML docs."
        )
        raise UnsupportedFormat(
            f"rustdoc JSON format version {version} is not supported (supported: {low} to {high}). {advice}",
            format_version=version,
            supported=[low, high],
        )
    return version


# ---------------------------------------------------------------- helpers on raw items


def _inner(item: Mapping[str, Any]) -> tuple[str, Any]:
    return render.tag(item.get("inner"))


def _is_public(item: Mapping[str, Any]) -> bool:
    return item.get("visibility") == "public"


def _is_local(item: Mapping[str, Any]) -> bool:
    return item.get("crate_id", LOCAL_CRATE_ID) == LOCAL_CRATE_ID


def _namespace(kind: str) -> str:
    if kind in _MACRO_NAMESPACE:
        return "macro"
    return "value" if kind in _VALUE_NAMESPACE else "type"


# How a public path reaches an item, best first. rustdoc gives an item its page at a DIRECT path (every module
# on the way public, no re-export) or where a re-export INLINES it (the source is not public otherwise, or
# `#[doc(inline)]`). A re-export of something already public elsewhere (`pub use task::spawn` at the root)
# is only a PASSTHROUGH: rustdoc lists it as a re-export line linking to the real page.
DIRECT, INLINED, PASSTHROUGH = 0, 1, 2

# (use item id, id of the module the `use` is written in)
UseStep = tuple[str, str]
# (name, item id, the `use` steps that brought the name into the module; empty for items defined there)
Entry = tuple[str, str, tuple[UseStep, ...]]


def _path_key(found: tuple[Path, int]) -> tuple[int, int, str]:
    path, how = found
    return how, len(path), "::".join(path)


class _PublicPaths:
    """Every public path of every local item, found by walking modules and re-exports from the root."""

    def __init__(self, index: Mapping[str, Any], root_id: str, crate_name: str) -> None:
        self.index = index
        self.root_id = root_id
        self.crate_name = crate_name
        self._listings: dict[str, list[Entry]] | None = None
        self._parents: dict[str, str] | None = None
        self._use_class: dict[str, int] = {}
        self._reachable_modules: set[str] = set()
        # `pub use other_crate::item` (not `#[doc(no_inline)]`) per module: (module id, name, target id, use item)
        self.foreign_inlined: list[tuple[str, str, str, dict]] = []
        # `#[doc(no_inline)] pub use other_crate::item`: only a line in the module's Re-exports, no page
        self.foreign_listed: list[tuple[str, str, str, dict]] = []

    def get(self, item_id: Any) -> dict | None:
        if item_id is None:
            return None
        item = self.index.get(str(item_id))
        return item if isinstance(item, dict) else None

    def walk(self) -> dict[str, dict[Path, int]]:
        """item id -> {public path: DIRECT, INLINED or PASSTHROUGH}."""
        root_path: Path = (self.crate_name,)
        found_uses: dict[str, dict[Path, frozenset[UseStep]]] = {self.root_id: {root_path: frozenset()}}
        visits = {self.root_id: 1}
        queue: deque[tuple[str, Path, frozenset[UseStep]]] = deque([(self.root_id, root_path, frozenset())])
        while queue:
            module_id, module_path, uses_so_far = queue.popleft()
            for name, target_id, uses in self.listing(module_id):
                path = (*module_path, name)
                path_uses = uses_so_far.union(uses)
                seen = found_uses.setdefault(target_id, {})
                if path in seen:
                    if len(path_uses) < len(seen[path]):
                        seen[path] = path_uses
                    continue
                seen[path] = path_uses
                if _inner(self.index[target_id])[0] != "module":
                    continue
                if visits.get(target_id, 0) >= _MAX_VISITS_PER_MODULE or len(path) > _MAX_PATH_DEPTH:
                    logger.debug("not walking module again", extra={"module_path": "::".join(path)})
                    continue
                visits[target_id] = visits.get(target_id, 0) + 1
                queue.append((target_id, path, path_uses))
        self._reachable_modules = {item_id for item_id in found_uses if _inner(self.index[item_id])[0] == "module"}
        return {
            item_id: {
                path: max((self._classify(step) for step in uses), default=DIRECT) for path, uses in paths.items()
            }
            for item_id, paths in found_uses.items()
        }

    # ------------------------------------------------------------ module listings

    def listing(self, module_id: str) -> list[Entry]:
        """Names a module makes public. Explicit names (defined or re-exported) shadow glob-imported ones."""
        if self._listings is None:
            self._listings = self._build_listings()
        return self._listings.get(module_id, [])

    def _build_listings(self) -> dict[str, list[Entry]]:
        modules = sorted(
            (
                item_id
                for item_id, item in self.index.items()
                if isinstance(item, dict) and _is_local(item) and _inner(item)[0] == "module"
            ),
            key=lambda item_id: (len(item_id), item_id),
        )
        listings: dict[str, list[Entry]] = {}
        globs: dict[str, list[tuple[str, UseStep]]] = {}
        taken: dict[str, set[tuple[str, str]]] = {}
        for module_id in modules:
            listings[module_id], globs[module_id] = self._own_names(module_id)
            taken[module_id] = {(name, self._namespace_of(target)) for name, target, _ in listings[module_id]}
        # Globs can import globs, in cycles too (`pub use super::*`): add names until nothing changes. Each
        # module's set of names only grows and is finite, so this ends.
        changed = True
        while changed:
            changed = False
            for module_id in modules:
                for source_id, step in globs[module_id]:
                    for name, target, uses in list(listings.get(source_id, ())):
                        key = (name, self._namespace_of(target))
                        if key not in taken[module_id]:
                            taken[module_id].add(key)
                            listings[module_id].append((name, target, (step, *uses)))
                            changed = True
        return listings

    def _own_names(self, module_id: str) -> tuple[list[Entry], list[tuple[str, UseStep]]]:
        """Names a module defines or re-exports by name, and the modules it glob-imports."""
        module = self.get(module_id)
        names: list[Entry] = []
        globs: list[tuple[str, UseStep]] = []
        for child_id in (_inner(module)[1] or {}).get("items", []) if module else []:
            child = self.get(child_id)
            if child is None or not _is_local(child) or render.is_doc_hidden(child):
                continue
            kind, value = _inner(child)
            if kind in _USE_TAGS:
                self._add_reexport(module_id, str(child_id), child, value or {}, names, globs)
            elif kind in _MODULE_MEMBER_KINDS:
                if not _is_public(child) or (kind == "module" and (value or {}).get("is_stripped")):
                    continue
                if child.get("name"):
                    names.append((child["name"], str(child_id), ()))
            elif kind not in ("impl", "extern_crate"):
                logger.debug("skipping unknown item kind", extra={"kind": kind, "rustdoc_id": str(child_id)})
        return names, globs

    def _add_reexport(self, module_id: str, use_id: str, use_item: dict, use: dict, names: list, globs: list) -> None:
        if not _is_public(use_item) or use.get("name") == "_":  # `pub use Trait as _` brings in no name
            return
        target_id = use.get("id")
        target = self.get(target_id)
        # Re-exports of other crates' items (and of primitives, id None) are documented by those crates.
        if target is None or not _is_local(target) or render.is_doc_hidden(target):
            glob = use.get("is_glob", use.get("glob", False))
            if target is None and target_id is not None and use.get("name") and not glob:
                found = self.foreign_listed if _no_inline(use_item) else self.foreign_inlined
                found.append((module_id, use["name"], str(target_id), use_item))
            return
        target_kind = _inner(target)[0]
        step = (use_id, module_id)
        if use.get("is_glob", use.get("glob", False)):
            if target_kind == "module":  # a glob of an enum's variants adds nothing documented separately
                globs.append((str(target_id), step))
            return
        if target_kind in _MODULE_MEMBER_KINDS and use.get("name"):
            names.append((use["name"], str(target_id), (step,)))

    def _namespace_of(self, item_id: str) -> str:
        return _namespace(_inner(self.index[item_id])[0])

    # ------------------------------------------------------------ re-export classification

    def _classify(self, step: UseStep) -> int:
        use_id, module_id = step
        cached = self._use_class.get(use_id)
        if cached is None:
            cached = self._use_class[use_id] = self._compute_class(use_id, module_id)
        return cached

    def _compute_class(self, use_id: str, module_id: str) -> int:
        use_item = self.index[use_id]
        attrs = " ".join(render.attribute_strings(use_item)).replace(" ", "")
        if "doc(inline)" in attrs:
            return INLINED
        if "doc(no_inline)" in attrs:
            return PASSTHROUGH
        use = _inner(use_item)[1] or {}
        segments = [s for s in str(use.get("source") or "").split("::") if s]
        target_id = str(use.get("id"))
        if use.get("is_glob", use.get("glob", False)):
            source_module = self._resolve_module(module_id, segments)
            return PASSTHROUGH if source_module in self._reachable_modules else INLINED
        if len(segments) < 2:
            return INLINED
        source_module = self._resolve_module(module_id, segments[:-1])
        if source_module is None or source_module not in self._reachable_modules:
            return INLINED
        visible_there = any(
            name == segments[-1] and item_id == target_id and all(step[0] != use_id for step in uses)
            for name, item_id, uses in self.listing(source_module)
        )
        return PASSTHROUGH if visible_there else INLINED

    def _resolve_module(self, module_id: str, segments: list[str]) -> str | None:
        """The public module a `use` source path names, or None (private, external or not found)."""
        current: str | None = module_id
        for position, segment in enumerate(segments):
            if current is None:
                return None
            if segment == "crate":
                current = self.root_id
            elif segment == "self":
                continue
            elif segment == "super":
                current = self._parent_modules().get(current)
            else:
                found = self._child_module(current, segment)
                if found is None and position == 0:
                    found = self._child_module(self.root_id, segment)  # 2015-edition paths are crate-relative
                current = found
        return current

    def _child_module(self, module_id: str, name: str) -> str | None:
        for entry_name, item_id, _ in self.listing(module_id):
            if entry_name == name and _inner(self.index[item_id])[0] == "module":
                return item_id
        return None

    def _parent_modules(self) -> dict[str, str]:
        if self._parents is None:
            self._parents = {}
            for item_id, item in self.index.items():
                kind, value = _inner(item) if isinstance(item, dict) else ("", None)
                if kind == "module" and _is_local(item):
                    for child_id in (value or {}).get("items", []):
                        self._parents[str(child_id)] = str(item_id)
        return self._parents


class _DocumentBuilder:
    """Turns public items into ParsedItems, with their children (fields, variants, methods, assoc items)."""

    def __init__(self, index: Mapping[str, Any], paths: Mapping[str, Any], crate_name: str) -> None:
        self.index = index
        self.paths = paths
        self.crate_name = crate_name
        self.skipped = 0
        self._seen: set[tuple[str, str]] = set()
        self._out: list[ParsedItem] = []

    def get(self, item_id: Any) -> dict | None:
        if item_id is None:
            return None
        item = self.index.get(str(item_id))
        return item if isinstance(item, dict) else None

    def build(self, locations: Mapping[str, Mapping[Path, int]]) -> list[ParsedItem]:
        placed = []
        for item_id, found in locations.items():
            canonical = self._canonical(item_id, found)
            aliases = sorted("::".join(p) for p in found if p != canonical)
            placed.append((canonical, item_id, aliases))
        placed.sort(key=lambda entry: ("::".join(entry[0]), _inner(self.index[entry[1]])[0]))
        for canonical, item_id, aliases in placed:
            item = self.index[item_id]
            try:
                self._emit_top_level(item_id, item, canonical, aliases)
            except (KeyError, TypeError, AttributeError, ValueError, IndexError):
                # One malformed item must not sink a 4,000-item crate; it is simply not documented.
                self.skipped += 1
                logger.warning(
                    "skipping malformed rustdoc item",
                    extra={"crate": self.crate_name, "rustdoc_id": item_id, "path": "::".join(canonical)},
                    exc_info=True,
                )
        return self._out

    def _canonical(self, item_id: str, found: Mapping[Path, int]) -> Path:
        defined = (self.paths.get(item_id) or {}).get("path")
        if defined and found.get(tuple(defined)) == DIRECT:
            return tuple(defined)
        return min(found.items(), key=_path_key)[0]

    # ------------------------------------------------------------ emission

    def _add(self, item: ParsedItem) -> bool:
        key = (item.path, item.kind)
        if key in self._seen:
            # e.g. `fn new` in two inherent impls with different generic arguments; rustdoc suffixes the anchor.
            logger.debug("duplicate document skipped", extra={"path": item.path, "kind": item.kind})
            return False
        self._seen.add(key)
        self._out.append(item)
        return True

    def _document(
        self, raw: Mapping[str, Any], *, path: str, kind: str, parent: str, signature: str, url: str, **meta: Any
    ) -> ParsedItem:
        deprecated, note = _deprecation(raw)
        metadata: dict[str, Any] = {"rustdoc_id": str(raw.get("id"))}
        span = raw.get("span")
        if isinstance(span, dict) and span.get("filename"):
            begin = span.get("begin") or [0]
            metadata["span"] = f"{span['filename']}:{begin[0]}"
        doc_aliases = _doc_aliases(raw)
        if doc_aliases:
            metadata["doc_aliases"] = doc_aliases
        metadata.update({key: value for key, value in meta.items() if value is not None})
        return ParsedItem(
            path=path,
            name=path.rsplit("::", 1)[-1],
            kind=kind,
            parent_path=parent,
            signature=signature,
            docs=raw.get("docs") or "",
            url=url,
            deprecated=deprecated,
            deprecation_note=note,
            metadata=metadata,
        )

    def _emit_top_level(self, item_id: str, item: dict, canonical: Path, aliases: list[str]) -> None:
        inner_kind, value = _inner(item)
        kind = _MODULE_MEMBER_KINDS.get(inner_kind)
        if kind is None:
            logger.debug("skipping unknown item kind", extra={"kind": inner_kind, "rustdoc_id": item_id})
            return
        path = "::".join(canonical)
        parent = "::".join(canonical[:-1])
        name = canonical[-1]
        # A renamed re-export (`pub use x::parse_level as parse_log_level`) is shown under its public name.
        shown = item if item.get("name") == name else {**item, "name": name}
        url = _page_url(canonical, inner_kind, value)
        meta: dict[str, Any] = {"aliases": aliases or None}
        if inner_kind in ("struct", "enum", "union"):
            meta["trait_impls"] = self._trait_impls(value.get("impls", []))
        document = self._document(
            item, path=path, kind=kind, parent=parent, signature=self._signature(shown, inner_kind), url=url, **meta
        )
        if not self._add(document):
            return
        if inner_kind == "struct":
            self._emit_struct_fields(value, path, url)
        elif inner_kind == "union":
            self._emit_fields(value.get("fields", []), path, url)
        elif inner_kind == "enum":
            self._emit_variants(value, path, url)
        elif inner_kind == "trait":
            self._emit_trait_items(value, path, url)
        if inner_kind in ("struct", "enum", "union"):
            self._emit_inherent_impls(value.get("impls", []), path, url)

    def _signature(self, item: dict, inner_kind: str) -> str:
        lookup = self.get
        if inner_kind == "function":
            return render.render_function(
                item["name"], item["inner"]["function"], prefix=render.visibility_prefix(item)
            )
        if inner_kind == "struct":
            return render.render_struct(item, lookup)
        if inner_kind == "enum":
            return render.render_enum(item, lookup)
        if inner_kind == "union":
            return render.render_union(item, lookup)
        if inner_kind == "trait":
            return render.render_trait(item, lookup)
        if inner_kind == "trait_alias":
            return render.render_trait_alias(item)
        if inner_kind == "constant":
            return render.render_constant(item)
        if inner_kind == "static":
            return render.render_static(item)
        if inner_kind in ("type_alias", "typedef"):
            return render.render_type_alias(item, inner_kind)
        if inner_kind == "macro":
            macro = item["inner"]["macro"]
            if not isinstance(macro, str):
                return ""
            # A macro 2.0 (`pub macro twice`) comes without its visibility; macro_rules! has none to show.
            return f"pub {macro}" if macro.startswith("macro ") and item.get("visibility") == "public" else macro
        if inner_kind == "proc_macro":
            return render.render_proc_macro(item)
        return ""  # modules and primitives have no declaration

    def _members(self, ids: list) -> Iterator[tuple[str, dict]]:
        for member_id in ids:
            member = self.get(member_id)
            if member is not None and not render.is_doc_hidden(member):
                yield str(member_id), member

    def _emit_struct_fields(self, struct: Mapping[str, Any], path: str, url: str) -> None:
        kind, value = render.tag(struct.get("kind"))
        if kind == "tuple":
            self._emit_fields([i for i in value or [] if i is not None], path, url)
        elif kind == "plain":
            self._emit_fields((value or {}).get("fields", []), path, url)

    def _emit_fields(self, ids: list, parent: str, page: str) -> None:
        for _, field in self._members(ids):
            if not _is_public(field) or not field.get("name"):
                continue
            name = field["name"]
            self._add(
                self._document(
                    field,
                    path=f"{parent}::{name}",
                    kind="field",
                    parent=parent,
                    signature=render.render_field(field),
                    url=f"{page}#structfield.{name}",
                )
            )

    def _emit_variants(self, enum: Mapping[str, Any], parent: str, page: str) -> None:
        for _, variant in self._members(enum.get("variants", [])):
            name = variant.get("name")
            if not name:
                continue
            variant_path = f"{parent}::{name}"
            document = self._document(
                variant,
                path=variant_path,
                kind="variant",
                parent=parent,
                signature=render.render_variant(variant, self.get),
                url=f"{page}#variant.{name}",
            )
            if not self._add(document):
                continue
            kind, value = render.tag((_inner(variant)[1] or {}).get("kind"))
            if kind != "struct":
                continue  # tuple variant fields are positional and documented with the variant
            for _, field in self._members((value or {}).get("fields", [])):
                field_name = field.get("name")
                if field_name:
                    self._add(
                        self._document(
                            field,
                            path=f"{variant_path}::{field_name}",
                            kind="field",
                            parent=variant_path,
                            signature=render.render_field(field, in_variant=True),
                            url=f"{page}#variant.{name}.field.{field_name}",
                        )
                    )

    def _emit_trait_items(self, trait: Mapping[str, Any], parent: str, page: str) -> None:
        for _, member in self._members(trait.get("items", [])):
            name = member.get("name")
            kind, value = _inner(member)
            if not name:
                continue
            if kind == "function":
                anchor = "method" if value.get("has_body") else "tymethod"
                self._add_assoc(member, parent, page, "method", f"{anchor}.{name}", render.render_function(name, value))
            elif kind == "assoc_type":
                self._add_assoc(
                    member, parent, page, "assoc_type", f"associatedtype.{name}", render.render_assoc_type(member)
                )
            elif kind == "assoc_const":
                signature = render.render_assoc_const(member)
                self._add_assoc(member, parent, page, "assoc_const", f"associatedconstant.{name}", signature)
            else:
                logger.debug("skipping unknown trait item kind", extra={"kind": kind, "path": f"{parent}::{name}"})

    def _emit_inherent_impls(self, impl_ids: list, parent: str, page: str) -> None:
        for _, impl_item in self._members(impl_ids):
            kind, impl = _inner(impl_item)
            if kind != "impl" or impl.get("trait") is not None:
                continue
            for _, member in self._members(impl.get("items", [])):
                name = member.get("name")
                member_kind, value = _inner(member)
                if not name or not _is_public(member):
                    continue
                prefix = render.visibility_prefix(member)
                if member_kind == "function":
                    signature = render.render_function(name, value, prefix=prefix)
                    self._add_assoc(member, parent, page, "method", f"method.{name}", signature)
                elif member_kind == "assoc_const":
                    signature = render.render_assoc_const(member, prefix=prefix)
                    self._add_assoc(member, parent, page, "assoc_const", f"associatedconstant.{name}", signature)
                elif member_kind == "assoc_type":
                    signature = render.render_assoc_type(member, prefix=prefix)
                    self._add_assoc(member, parent, page, "assoc_type", f"associatedtype.{name}", signature)

    def _add_assoc(self, member: dict, parent: str, page: str, kind: str, anchor: str, signature: str) -> None:
        self._add(
            self._document(
                member,
                path=f"{parent}::{member['name']}",
                kind=kind,
                parent=parent,
                signature=signature,
                url=f"{page}#{anchor}",
            )
        )

    def _trait_impls(self, impl_ids: list) -> list[str]:
        names = set()
        for _, impl_item in self._members(impl_ids):
            kind, impl = _inner(impl_item)
            if kind != "impl" or not impl.get("trait"):
                continue
            if impl.get("blanket_impl") is not None or impl.get("is_synthetic") or impl.get("is_negative"):
                continue
            trait = impl["trait"]
            name = (trait.get("path") or trait.get("name") or "").rsplit("::", 1)[-1]
            if name and name not in AUTO_TRAITS:
                names.add(name)
        return sorted(names)


# `#[doc(alias = "x")]` (one per attribute since format 54) or `#[doc(alias("x", "y"))]` as written before.
_DOC_ALIAS = re.compile(r'doc\s*\(\s*alias\s*(?:=\s*"([^"]*)"|\(([^)]*)\))')
_QUOTED = re.compile(r'"([^"]*)"')


def _doc_aliases(item: Mapping[str, Any]) -> list[str]:
    """The names `#[doc(alias)]` gives an item, which docs.rs's search finds it by."""
    aliases: list[str] = []
    for attr in item.get("attrs") or []:
        text = attr if isinstance(attr, str) else str(attr.get("other", "")) if isinstance(attr, dict) else ""
        if "alias" not in text:
            continue
        for single, listed in _DOC_ALIAS.findall(text):
            for alias in [single] if single else _QUOTED.findall(listed):
                if alias.strip() and alias.strip() not in aliases:
                    aliases.append(alias.strip())
    return aliases


def _no_inline(use_item: Mapping[str, Any]) -> bool:
    return "doc(no_inline)" in " ".join(render.attribute_strings(use_item)).replace(" ", "")


# rustdoc `paths` kind of another crate's item -> (Document.Kind, page prefix)
_FOREIGN_KINDS = {
    "proc_attribute": ("macro", "attr"),
    "proc_derive": ("macro", "derive"),
    **{kind: (_MODULE_MEMBER_KINDS[kind], prefix) for kind, prefix in _PAGE_PREFIX.items()},
}


def _foreign_inlined_items(
    found: list[tuple[str, str, str, dict]],
    *,
    locations: Mapping[str, Mapping[Path, int]],
    paths: Mapping[str, Any],
    taken: list[ParsedItem],
) -> list[ParsedItem]:
    """A page for each `pub use other_crate::item` that is not `#[doc(no_inline)]`, as docs.rs has: rustdoc's
    HTML inlines those (`tokio::main` is `tokio_macros::main`, `rand::RngCore` is `rand_core::RngCore`). The
    JSON holds only where the item comes from, not its docs, so without this the item could not be found at
    all by its public path; the page names the crate that documents it. A glob of another crate's module
    (`pub use other::module::*`) cannot be listed: the JSON does not say what the module holds."""
    existing = {(item.path, item.kind) for item in taken}
    out: list[ParsedItem] = []
    for module_id, name, target_id, use_item in found:
        summary = paths.get(target_id) if isinstance(paths.get(target_id), dict) else {}
        kind, prefix = _FOREIGN_KINDS.get(summary.get("kind"), (None, None))
        module_paths = sorted(locations.get(module_id, {}), key=lambda p: (len(p), p))
        if kind is None or not module_paths:
            continue
        module_path = module_paths[0]
        path = "::".join((*module_path, name))
        if (path, kind) in existing:
            continue
        existing.add((path, kind))
        origin = "::".join(summary.get("path") or ()) or str((_inner(use_item)[1] or {}).get("source") or name)
        own_docs = (use_item.get("docs") or "").strip()
        home = origin.split("::")[0]
        deprecated, note = _deprecation(use_item)
        out.append(ParsedItem(
            path=path, name=name, kind=kind, parent_path="::".join(module_path),
            signature=f"pub use {origin};" if origin.rsplit("::", 1)[-1] == name else f"pub use {origin} as {name};",
            docs=own_docs or f"Re-exported from `{origin}`; its documentation is in the `{home}` crate.",
            url="/".join(module_path) + f"/{prefix}.{name}.html",
            deprecated=deprecated, deprecation_note=note,
            metadata={"reexport_of": origin, "aliases": sorted("::".join((*p, name)) for p in module_paths[1:])},
        ))  # fmt: skip
    return out


def _note_foreign_reexports(
    found: list[tuple[str, str, str, dict]],
    *,
    locations: Mapping[str, Mapping[Path, int]],
    paths: Mapping[str, Any],
    items: list[ParsedItem],
) -> None:
    """A module's ``#[doc(no_inline)] pub use other_crate::item`` lines, as ``metadata["reexports"]``
    (name -> origin): no page, but get_item can say where the item's docs are."""
    modules = {item.path: item for item in items if item.kind == "module"}
    for module_id, name, target_id, use_item in found:
        module_paths = sorted(locations.get(module_id, {}), key=lambda p: (len(p), p))
        module = modules.get("::".join(module_paths[0])) if module_paths else None
        if module is None:
            continue
        # The path as written (`std::io::Error`) is public; rustdoc's `paths` has where it is defined
        # (`std::io::error::Error`, a private module).
        source = str((_inner(use_item)[1] or {}).get("source") or "").lstrip(":")
        summary = paths.get(target_id) if isinstance(paths.get(target_id), dict) else {}
        if source.split("::", 1)[0] in ("crate", "self", "super", ""):
            source = "::".join(summary.get("path") or ())
        if source:
            module.metadata.setdefault("reexports", {})[name] = source


def _page_url(path: Path, inner_kind: str, value: Any) -> str:
    if inner_kind == "module":
        return "/".join(path) + "/index.html"
    if inner_kind == "proc_macro":
        prefix = _PROC_MACRO_PAGE.get((value or {}).get("kind"), "macro")
    else:
        prefix = _PAGE_PREFIX[inner_kind]
    return "/".join(path[:-1]) + f"/{prefix}.{path[-1]}.html"


def _deprecation(item: Mapping[str, Any]) -> tuple[bool, str]:
    deprecation = item.get("deprecation")
    if not isinstance(deprecation, dict):
        return False, ""
    since = (deprecation.get("since") or "").strip()
    note = (deprecation.get("note") or "").strip()
    if since and note:
        return True, f"since {since}: {note}"
    if since:
        return True, f"since {since}"
    return True, note


# ---------------------------------------------------------------- intra-doc links


class _LinkTargets:
    """URLs for the items an item's ``links`` map names, and the docs rewritten with them (crates.pipeline.doclinks).

    A local item links to the page (and anchor) of the document made for it; another crate's item to its page
    under that crate's ``html_root_url``, named as rustdoc names pages. Another crate's method or variant is
    not in ``paths``: its owner is found there by the link's own path (``Option::take`` -> ``core::option::
    Option``), as rustdoc's HTML does.
    """

    def __init__(
        self,
        *,
        index: Mapping[str, Any],
        paths: Mapping[str, Any],
        external_crates: Mapping[str, Any],
        items: list[ParsedItem],
        docs_root: str,
    ) -> None:
        self.index = index
        self.paths = paths
        self.external_crates = external_crates
        self.items = items
        self.docs_root = docs_root
        self.local: dict[str, str] = {}
        for item in items:
            rustdoc_id = item.metadata.get("rustdoc_id")
            if rustdoc_id is not None and item.url:
                self.local.setdefault(str(rustdoc_id), item.url)
        self._by_name: dict[str, list[tuple[str, Mapping[str, Any]]]] | None = None
        self.resolved = self.unresolved = 0

    def apply(self) -> None:
        for item in self.items:
            if "[" not in item.docs:
                continue
            raw = self.index.get(str(item.metadata.get("rustdoc_id")))
            links = raw.get("links") if isinstance(raw, dict) else None
            links = links if isinstance(links, dict) else {}
            item.chunk_docs = item.docs
            item.docs = doclinks.resolve_links(
                item.docs, resolve=lambda key, links=links: self.url(key, links), page_url=self.docs_root + item.url
            )
        if self.resolved or self.unresolved:
            logger.debug("intra-doc links", extra={"resolved": self.resolved, "unresolved": self.unresolved})

    def url(self, key: str, links: Mapping[str, Any]) -> str | None:
        target = links.get(key)
        if target is None:
            return None
        url = self._url_of(str(target), key)
        if url is None:
            self.unresolved += 1
            return None
        self.resolved += 1
        fragment = key.partition("#")[2]
        if fragment and "#" not in url:
            url = f"{url}#{fragment}"
        return url

    def _url_of(self, target: str, key: str) -> str | None:
        relative = self.local.get(target)
        if relative is not None:
            return self.docs_root + relative
        summary = self.paths.get(target)
        if isinstance(summary, dict):
            if summary.get("crate_id", LOCAL_CRATE_ID) == LOCAL_CRATE_ID:
                return None  # a local item without a page of its own (private, hidden)
            return self._external_page(summary)
        if target in self.index and _is_local(self.index[target]):
            return None
        return self._external_member(key)

    def _external_page(self, summary: Mapping[str, Any]) -> str | None:
        root = self._html_root(summary.get("crate_id"))
        path = [str(segment) for segment in summary.get("path") or ()]
        kind = summary.get("kind")
        if root is None or not path:
            return None
        if kind == "module":
            return root + "/".join(path) + "/index.html"
        if kind == "variant" and len(path) >= 3:
            return root + "/".join(path[:-2]) + f"/enum.{path[-2]}.html#variant.{path[-1]}"
        if kind == "keyword":
            return root + "/".join(path[:-1]) + f"/keyword.{path[-1]}.html"
        prefix = _FOREIGN_KINDS.get(kind, (None, None))[1]
        if prefix is None or len(path) < 2:
            return None
        return root + "/".join(path[:-1]) + f"/{prefix}.{path[-1]}.html"

    def _html_root(self, crate_id: Any) -> str | None:
        crate = self.external_crates.get(str(crate_id))
        root = crate.get("html_root_url") if isinstance(crate, dict) else None
        if not root:
            return None  # rustdoc makes no link to a crate whose docs it cannot locate either
        return root if root.endswith("/") else root + "/"

    def _external_member(self, key: str) -> str | None:
        """A method, associated item or variant of another crate's type, by the link's path."""
        written = key.strip().strip("`").partition("#")[0]
        written = written.split("@", 1)[-1].removesuffix("()").removesuffix("!")
        segments = [s for s in written.split("::") if s]
        if len(segments) < 2:
            return None
        owner = self._unique_owner(segments[:-1])
        if owner is None:
            return None
        page = self._external_page(owner)
        if page is None:
            return None
        name = segments[-1]
        if owner.get("kind") == "enum" and name[:1].isupper():
            anchor = f"variant.{name}"
        elif name.isupper():
            anchor = f"associatedconstant.{name}"
        elif owner.get("kind") == "trait":
            anchor = f"tymethod.{name}"
        else:
            anchor = f"method.{name}"
        return f"{page}#{anchor}"

    def _unique_owner(self, segments: list[str]) -> Mapping[str, Any] | None:
        if self._by_name is None:
            self._by_name = {}
            for summary in self.paths.values():
                if (
                    isinstance(summary, dict)
                    and summary.get("crate_id", LOCAL_CRATE_ID) != LOCAL_CRATE_ID
                    and summary.get("kind") in _OWNER_KINDS
                    and summary.get("path")
                ):
                    self._by_name.setdefault(str(summary["path"][-1]), []).append(summary)
        candidates = [
            summary
            for summary in self._by_name.get(segments[-1], ())
            if _written_path_matches(segments, [str(s) for s in summary["path"]])
        ]
        pages = {self._external_page(summary) for summary in candidates}
        return candidates[0] if len(pages) == 1 and None not in pages else None


_OWNER_KINDS = frozenset({"struct", "enum", "union", "trait", "primitive", "type_alias"})
# The standard library's crates re-export one another: `std::boxed::Box` is defined as `alloc::boxed::Box`.
_STD_CRATES = frozenset({"std", "core", "alloc"})


def _written_path_matches(written: list[str], defined: list[str]) -> bool:
    """Whether a path as written in docs (``std::io::BufRead``, ``Option``) can name the item ``paths`` defines
    at ``defined`` (``std::io::BufRead``, ``core::option::Option``): the same last name and the written
    segments in order (modules may be skipped by re-exports)."""
    if written[-1] != defined[-1]:
        return False
    rest = iter(defined[:-1])
    for position, segment in enumerate(written[:-1]):
        if position == 0 and segment in _STD_CRATES and defined[0] in _STD_CRATES:
            next(rest, None)
            continue
        if segment in ("crate", "self", "super", "Self"):
            return False
        if not any(segment == candidate for candidate in rest):
            return False
    return True
