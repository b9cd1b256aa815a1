"""Type signatures and trait impls of HTML-only releases, read from the declarations the pages show.

The counterpart of crates.pipeline.parse_json.types for releases without rustdoc JSON: a function's or
method's declaration (``pub fn sleep(duration: Duration) -> Sleep``) is parsed as Rust text, ``Self`` and the
impl's type parameters come from the parent type's declaration; the trait graph has the trait names the type's
page lists, with the impl's generics and bounds as its headers show them.
"""

from __future__ import annotations

import logging

from crates.pipeline.parse_html.layouts import AUTO_TRAITS, impl_trait_name
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
            headers = [i["header"] for i in item.impls if "header" in i]
            item.impls = _records(item, headers, trait_paths) if headers else [
                _record(item, trait, f"impl {trait} for {item.name}", "", trait_paths)
                for trait in item.metadata.get("trait_impls") or []
            ]


def _records(item: ParsedItem, headers: list[str], trait_paths: dict[str, str]) -> list[dict]:
    """Impl records from the page's headers (``impl<T: Debug> Debug for Mutex<T> where T: ?Sized``)."""
    records = []
    for header in headers:
        trait = impl_trait_name(header)
        if not trait or trait in AUTO_TRAITS:
            continue
        declaration, _, bounds = header.partition(" where ")
        records.append(_record(item, trait, declaration.strip(), bounds.strip().rstrip(","), trait_paths))
    return records


def _record(item: ParsedItem, trait: str, declaration: str, bounds: str, trait_paths: dict[str, str]) -> dict:
    return {
        "trait": trait, "trait_path": trait_paths.get(trait, trait), "type": item.name, "type_path": item.path,
        "declaration": declaration, "bounds": bounds, "blanket": False, "negative": False,
    }  # fmt: skip
