"""Every public path of every local item: the module tree walked from the root through public re-exports."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from crates.pipeline import rustdoc_render as render
from crates.pipeline.parse_json.common import (
    MODULE_MEMBER_KINDS,
    USE_TAGS,
    Path,
    inner,
    is_local,
    is_public,
    listed,
    namespace,
    no_inline,
)
from crates.pipeline.types import ParseReport

logger = logging.getLogger(__name__)

# A re-export cycle (`pub use super::*`, `pub use crate as me`) would otherwise walk forever; real crates reach
# a module through a handful of paths at most.
MAX_VISITS_PER_MODULE = 8
MAX_PATH_DEPTH = 24

# How a public path reaches an item, best first. rustdoc gives an item its page at a DIRECT path (every module
# on the way public, no re-export) or where a re-export INLINES it (the source is not public otherwise, or
# `#[doc(inline)]`). A re-export of something already public elsewhere (`pub use task::spawn` at the root)
# is only a PASSTHROUGH: rustdoc lists it as a re-export line linking to the real page.
DIRECT, INLINED, PASSTHROUGH = 0, 1, 2

# (use item id, id of the module the `use` is written in)
UseStep = tuple[str, str]
# (name, item id, the `use` steps that brought the name into the module; empty for items defined there)
Entry = tuple[str, str, tuple[UseStep, ...]]


def path_key(found: tuple[Path, int]) -> tuple[int, int, str]:
    path, how = found
    return how, len(path), "::".join(path)


class PublicPaths:
    """Every public path of every local item, found by walking modules and re-exports from the root."""

    def __init__(
        self, index: Mapping[str, Any], root_id: str, crate_name: str, report: ParseReport | None = None
    ) -> None:
        self.index = index
        self.report = report or ParseReport()
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
        # `pub use other_crate::*`: (module id, source as written); the JSON does not say what it brings in
        self.foreign_globs: list[tuple[str, str]] = []

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
                if inner(self.index[target_id])[0] != "module":
                    continue
                if visits.get(target_id, 0) >= MAX_VISITS_PER_MODULE or len(path) > MAX_PATH_DEPTH:
                    logger.debug("not walking module again", extra={"module_path": "::".join(path)})
                    continue
                visits[target_id] = visits.get(target_id, 0) + 1
                queue.append((target_id, path, path_uses))
        self._reachable_modules = {item_id for item_id in found_uses if inner(self.index[item_id])[0] == "module"}
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
                if isinstance(item, dict) and is_local(item) and inner(item)[0] == "module"
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
        for child_id in listed(inner(module)[1], "items") if module else []:
            child = self.get(child_id)
            if child is None or not is_local(child) or render.is_doc_hidden(child):
                continue
            kind, value = inner(child)
            value = value if isinstance(value, dict) else {}
            if kind in USE_TAGS:
                self._add_reexport(module_id, str(child_id), child, value, names, globs)
            elif kind in MODULE_MEMBER_KINDS:
                if not is_public(child) or (kind == "module" and value.get("is_stripped")):
                    continue
                if child.get("name"):
                    names.append((child["name"], str(child_id), ()))
            elif kind not in ("impl", "extern_crate"):
                logger.debug("skipping unknown item kind", extra={"kind": kind, "rustdoc_id": str(child_id)})
                if is_public(child):
                    self.report.item_skipped(f"item of unknown kind `{kind}`")
        return names, globs

    def _add_reexport(self, module_id: str, use_id: str, use_item: dict, use: dict, names: list, globs: list) -> None:
        if not is_public(use_item) or use.get("name") == "_":  # `pub use Trait as _` brings in no name
            return
        if "id" not in use:  # `id: null` is a primitive; no key at all is a shape this parser does not know
            self.report.item_skipped("re-export of unknown shape")
            return
        target_id = use.get("id")
        target = self.get(target_id)
        # Re-exports of other crates' items (and of primitives, id None) are documented by those crates.
        if target is None or not is_local(target) or render.is_doc_hidden(target):
            glob = use.get("is_glob", use.get("glob", False))
            # rustdoc inlines the items such a glob brings in (docs.rs gives them pages), unless `no_inline`.
            if glob and (target is None or not is_local(target)) and not no_inline(use_item):
                self.foreign_globs.append((module_id, str(use.get("source") or use.get("name") or "")))
            if target is None and target_id is not None and use.get("name") and not glob:
                found = self.foreign_listed if no_inline(use_item) else self.foreign_inlined
                found.append((module_id, use["name"], str(target_id), use_item))
            return
        target_kind = inner(target)[0]
        step = (use_id, module_id)
        if use.get("is_glob", use.get("glob", False)):
            if target_kind == "module":  # a glob of an enum's variants adds nothing documented separately
                globs.append((str(target_id), step))
            return
        if target_kind in MODULE_MEMBER_KINDS and use.get("name"):
            names.append((use["name"], str(target_id), (step,)))

    def _namespace_of(self, item_id: str) -> str:
        return namespace(inner(self.index[item_id])[0])

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
        use = inner(use_item)[1] or {}
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
            if entry_name == name and inner(self.index[item_id])[0] == "module":
                return item_id
        return None

    def _parent_modules(self) -> dict[str, str]:
        if self._parents is None:
            self._parents = {}
            for item_id, item in self.index.items():
                kind, value = inner(item) if isinstance(item, dict) else ("", None)
                if kind == "module" and is_local(item):
                    for child_id in listed(value, "items"):
                        self._parents[str(child_id)] = str(item_id)
        return self._parents
