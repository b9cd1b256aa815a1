"""Type signatures and trait impls of HTML-only releases, read from the declarations the pages show.

The counterpart of crates.pipeline.parse_json.types for releases without rustdoc JSON: a function's or
method's declaration (``pub fn sleep(duration: Duration) -> Sleep``) is parsed as Rust text, ``Self`` and the
impl's type parameters come from the parent type's declaration; the trait graph has the trait names the type's
page lists (``metadata["trait_impls"]``), without generics.
"""

from __future__ import annotations

import logging

from crates.pipeline.types import ParsedItem
from crates.typesig import Node, self_from_declaration, signature_from_declaration

logger = logging.getLogger(__name__)

_TYPE_KINDS = frozenset({"struct", "enum", "union", "type_alias", "primitive"})


def annotate_declaration_types(items: list[ParsedItem]) -> None:
    parents: dict[str, tuple[Node, dict]] = {}
    traits = {item.path: item for item in items if item.kind == "trait"}
    trait_paths = {item.name: item.path for item in traits.values()}
    for item in items:
        if item.kind in _TYPE_KINDS:
            parents[item.path] = self_from_declaration(item.signature, item.name)
    for item in items:
        if item.kind in ("function", "method") and item.signature:
            self_node, generics = None, None
            if item.kind == "method":
                if item.parent_path in traits:
                    self_node = ["#Self", [[traits[item.parent_path].name, []]]]
                elif item.parent_path in parents:
                    self_node, generics = parents[item.parent_path]
            item.type_sig = signature_from_declaration(item.signature, self_node=self_node, outer_generics=generics)
        if item.kind in _TYPE_KINDS:
            for trait in item.metadata.get("trait_impls") or []:
                item.impls.append({
                    "trait": trait, "trait_path": trait_paths.get(trait, trait),
                    "type": item.name, "type_path": item.path, "declaration": f"impl {trait} for {item.name}",
                    "bounds": "", "blanket": False, "negative": False,
                })  # fmt: skip
