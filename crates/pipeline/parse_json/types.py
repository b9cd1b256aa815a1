"""Type signatures and trait impls from rustdoc JSON, for type search and the trait graph.

A post-pass over the built items: each function or method gets ``ParsedItem.type_sig`` (see crates.typesig)
from ``sig.inputs``/``sig.output`` and its generics, with ``Self`` resolved to the impl's type (to the trait,
as a bounded parameter, in a trait's own methods). Every trait impl of a documented type, or of a documented
trait for any type (foreign ones by name), becomes a record in ``ParsedItem.impls`` of the type's document
(else the trait's). Malformed shapes are skipped: a missing signature only costs that item its type search.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from crates.pipeline import rustdoc_render as render
from crates.pipeline.parse_json.common import AUTO_TRAITS, inner
from crates.pipeline.types import ParsedItem
from crates.typesig import Node

logger = logging.getLogger(__name__)

_TYPE_KINDS = frozenset({"struct", "enum", "union", "type_alias", "primitive"})


def _last(path: Mapping[str, Any] | None) -> str:
    if not isinstance(path, dict):
        return "_"
    full = path.get("path") or path.get("name") or ""
    return full.rsplit("::", 1)[-1] or "_"


class _Converter:
    def __init__(self, generics: dict[str, list[Node]], self_node: Node | None) -> None:
        self.generics = generics
        self.self_node = self_node

    def node(self, ty: Any, depth: int = 0) -> Node:
        if depth > 8:
            return ["#_", []]
        kind, value = render.tag(ty)
        if kind == "generic":
            name = str(value)
            if name == "Self" and self.self_node is not None:
                return self.self_node
            return ["#" + name, self.generics.get(name, [])]
        if kind == "primitive":
            return ["!" if value == "never" else str(value), []]
        if kind == "resolved_path":
            return [_last(value), self.args(value.get("args"), depth)]
        if kind == "borrowed_ref":
            mutable = value.get("is_mutable", value.get("mutable", False))
            return ["&mut" if mutable else "&", [self.node(value.get("type"), depth + 1)]]
        if kind == "raw_pointer":
            return ["*", [self.node(value.get("type"), depth + 1)]]
        if kind == "slice":
            return ["[]", [self.node(value, depth + 1)]]
        if kind == "array":
            return ["[]", [self.node(value.get("type"), depth + 1)]]
        if kind == "tuple":
            return ["()", [self.node(t, depth + 1) for t in value or []]]
        if kind == "impl_trait":
            return ["#impl", self.bounds(value or [], depth)]
        if kind == "dyn_trait":
            traits = [self.trait(p.get("trait"), depth) for p in value.get("traits", []) if isinstance(p, dict)]
            traits = [t for t in traits if t[0] not in AUTO_TRAITS]
            return traits[0] if traits else ["#dyn", []]
        if kind == "function_pointer":
            sig = value.get("sig") or value.get("decl") or {}
            inputs = [self.node(pair[1], depth + 1) for pair in sig.get("inputs", []) if isinstance(pair, list)]
            output = sig.get("output")
            return ["fn", [*inputs, self.node(output, depth + 1) if output else ["()", []]]]
        if kind == "qualified_path":
            return ["#::" + str(value.get("name") or "_"), []]  # an associated type: T::Output
        if kind == "pat":
            return self.node(value.get("type"), depth + 1)
        return ["#_", []]

    def args(self, args: Any, depth: int) -> list[Node]:
        kind, value = render.tag(args)
        if not isinstance(value, dict):
            return []
        if kind == "parenthesized":  # Fn(A) -> B
            out = [self.node(t, depth + 1) for t in value.get("inputs", [])]
            output = value.get("output")
            return [*out, self.node(output, depth + 1) if output else ["()", []]]
        out = []
        for arg in value.get("args", []):
            arg_kind, arg_value = render.tag(arg)
            if arg_kind == "type":
                out.append(self.node(arg_value, depth + 1))
        for constraint in value.get("constraints", value.get("bindings", [])) or []:
            binding = constraint.get("binding") if isinstance(constraint, dict) else None
            binding_kind, binding_value = render.tag(binding)
            if binding_kind == "equality":
                term_kind, term_value = render.tag(binding_value)
                out.append(self.node(term_value if term_kind == "type" else binding_value, depth + 1))
        return out

    def trait(self, path: Any, depth: int) -> Node:
        return [_last(path), self.args(path.get("args") if isinstance(path, dict) else None, depth + 1)]

    def bounds(self, bounds: list, depth: int = 0) -> list[Node]:
        out = []
        for bound in bounds:
            kind, value = render.tag(bound)
            if kind == "trait_bound" and value.get("modifier") != "maybe":
                out.append(self.trait(value.get("trait"), depth))
        return out


def generics_of(generics: Mapping[str, Any] | None, into: dict[str, list[Node]]) -> dict[str, list[Node]]:
    """Type parameter name -> bounds (declared and from where clauses)."""
    generics = generics or {}
    reader = _Converter(into, None)
    for param in generics.get("params", []):
        kind, value = render.tag(param.get("kind"))
        if kind == "type":
            into[param.get("name", "_")] = reader.bounds((value or {}).get("bounds", []))
    for predicate in generics.get("where_predicates", []):
        kind, value = render.tag(predicate)
        if kind != "bound_predicate":
            continue
        target_kind, target = render.tag(value.get("type"))
        if target_kind == "generic" and str(target) in into:
            into[str(target)] = into[str(target)] + reader.bounds(value.get("bounds", []))
    return into


class TypeAnnotator:
    """Fills ``type_sig`` and ``impls`` of the built items from the rustdoc index."""

    def __init__(self, index: Mapping[str, Any], paths: Mapping[str, Any]) -> None:
        self.index = index
        self.paths = paths
        self._owner: dict[str, tuple[str, dict]] = {}  # member id -> ("impl" | "trait", the container item)

    def annotate(self, items: list[ParsedItem]) -> None:
        for item in self.index.values():
            if not isinstance(item, dict):
                continue
            kind, value = inner(item)
            if kind == "impl" and isinstance(value, dict):
                for member in value.get("items", []):
                    self._owner[str(member)] = ("impl", value)
            elif kind == "trait" and isinstance(value, dict):
                for member in value.get("items", []):
                    self._owner[str(member)] = ("trait", item)
        by_id: dict[str, ParsedItem] = {}
        for parsed in items:
            rustdoc_id = parsed.metadata.get("rustdoc_id")
            if rustdoc_id is None:
                continue
            if parsed.kind in _TYPE_KINDS or parsed.kind in ("trait", "trait_alias"):
                by_id.setdefault(str(rustdoc_id), parsed)
            if parsed.kind in ("function", "method"):
                try:
                    parsed.type_sig = self.signature(str(rustdoc_id))
                except (KeyError, TypeError, AttributeError, ValueError, IndexError):
                    logger.debug("no type signature", extra={"path": parsed.path}, exc_info=True)
        self._impls(by_id)
        for parsed in by_id.values():  # the index's order is no order: a stable one for equal output
            parsed.impls.sort(key=lambda i: (i["trait_path"], i["type_path"], i["declaration"], i["bounds"]))

    def signature(self, item_id: str) -> dict | None:
        item = self.index.get(item_id)
        if not isinstance(item, dict):
            return None
        kind, function = inner(item)
        if kind != "function":
            return None
        generics: dict[str, list[Node]] = {}
        self_node: Node | None = None
        owner = self._owner.get(item_id)
        if owner is not None and owner[0] == "impl":
            impl = owner[1]
            generics_of(impl.get("generics"), generics)
            self_node = _Converter(generics, None).node(impl.get("for"))
        elif owner is not None and owner[0] == "trait":
            trait_item = owner[1]
            generics_of(inner(trait_item)[1].get("generics"), generics)
            self_node = ["#Self", [[trait_item.get("name") or "_", []]]]
        generics_of(function.get("generics"), generics)
        converter = _Converter(generics, self_node)
        sig = function.get("sig") or function.get("decl") or {}
        inputs = [converter.node(pair[1]) for pair in sig.get("inputs", []) if isinstance(pair, list)]
        output = sig.get("output")
        return {"i": inputs, "o": converter.node(output) if output else None}

    def _impls(self, by_id: dict[str, ParsedItem]) -> None:
        for item in self.index.values():
            if not isinstance(item, dict):
                continue
            kind, impl = inner(item)
            # Field names before format 40 or so: synthetic, negative (is_synthetic, is_negative since).
            if kind != "impl" or not isinstance(impl, dict) or not impl.get("trait") \
                    or impl.get("is_synthetic", impl.get("synthetic")):
                continue
            trait = impl["trait"]
            trait_name = _last(trait)
            if trait_name in AUTO_TRAITS:
                continue
            for_kind, for_value = render.tag(impl.get("for"))
            type_id = str(for_value.get("id")) if for_kind == "resolved_path" and isinstance(for_value, dict) else ""
            owner = by_id.get(type_id) or by_id.get(str(trait.get("id")))
            if owner is None:
                continue
            trait_doc = by_id.get(str(trait.get("id")))
            type_doc = by_id.get(type_id)
            generics = render.render_generic_params(impl.get("generics"))
            where = render.render_where(impl.get("generics")).strip()
            type_text = render.render_type(impl.get("for"))
            trait_text = render.render_path(trait)
            negative = bool(impl.get("is_negative", impl.get("negative")))
            owner.impls.append({
                "trait": trait_name,
                "trait_path": trait_doc.path if trait_doc else self._full_path(trait.get("id"), trait_name),
                "type": _last(for_value) if for_kind == "resolved_path" else type_text,
                "type_path": type_doc.path if type_doc else self._full_path(type_id, type_text),
                "declaration": f"impl{generics} {'!' if negative else ''}{trait_text} for {type_text}",
                "bounds": where.removeprefix("where ").strip(),
                "blanket": impl.get("blanket_impl") is not None,
                "negative": negative,
            })  # fmt: skip

    def _full_path(self, item_id: Any, fallback: str) -> str:
        summary = self.paths.get(str(item_id)) if item_id not in (None, "") else None
        if isinstance(summary, dict) and summary.get("path"):
            return "::".join(summary["path"])
        return fallback


def annotate_types(index: Mapping[str, Any], paths: Mapping[str, Any], items: list[ParsedItem]) -> None:
    TypeAnnotator(index, paths).annotate(items)
