"""Render rustdoc JSON types and items as one-line Rust declarations.

The output follows what rustdoc prints in an item's ``.item-decl`` / ``.code-header``, with whitespace collapsed
to single spaces (``pub struct Counter { pub total: u64, /* private fields */ }``), so the JSON and HTML parsers
can produce the same signature for the same item. Paths are shown by their last segment, as rustdoc shows them.

Every function is total: an unknown or malformed node renders as ``_`` (types) or is left out, never raises,
because the JSON format changes between rustdoc versions and a signature is not worth failing an ingest for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crates.pipeline.rustdoc_attrs import attribute_strings, is_doc_hidden, shown_attributes
from crates.pipeline.rustdoc_shapes import as_object, collecting, note_unknown, tag, total

__all__ = ["attribute_strings", "collecting", "is_doc_hidden", "note_unknown", "shown_attributes", "tag"]

Node = Any
ItemLookup = Callable[[Any], "Mapping[str, Any] | None"]

_ABI_NAMES = {
    "C": "C",
    "Cdecl": "cdecl",
    "Stdcall": "stdcall",
    "Fastcall": "fastcall",
    "Aapcs": "aapcs",
    "Win64": "win64",
    "SysV64": "sysv64",
    "System": "system",
}


# ---------------------------------------------------------------- types


def render_path(path: Node) -> str:
    """``std::result::Result<T, E>`` -> ``Result<T, E>`` (rustdoc shows the last segment)."""
    if not isinstance(path, dict):
        return "_"
    full = path.get("path") or path.get("name") or ""
    name = full.rsplit("::", 1)[-1]
    return name + render_generic_args(path.get("args"))


def render_type(node: Node) -> str:
    kind, value = tag(node)
    if kind == "primitive" and value == "never":  # rustdoc JSON's name for `!`
        return "!"
    if kind in ("generic", "primitive"):
        return str(value)
    if kind == "resolved_path":
        return render_path(value)
    if kind in ("borrowed_ref", "raw_pointer", "array", "dyn_trait", "pat"):
        value = as_object(value)
    if kind == "borrowed_ref":
        lifetime = value.get("lifetime")
        mutable = value.get("is_mutable", value.get("mutable", False))
        return "&" + (f"{lifetime} " if lifetime else "") + ("mut " if mutable else "") + _pointee(value.get("type"))
    if kind == "raw_pointer":
        mutable = value.get("is_mutable", value.get("mutable", False))
        return ("*mut " if mutable else "*const ") + _pointee(value.get("type"))
    if kind == "slice":
        return f"[{render_type(value)}]"
    if kind == "array":
        return f"[{render_type(value.get('type'))}; {value.get('len', '_')}]"
    if kind == "tuple":
        parts = [render_type(t) for t in value or []]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
    if kind == "dyn_trait":
        bounds = [_poly_trait(p) for p in value.get("traits", [])]
        if value.get("lifetime"):
            bounds.append(value["lifetime"])
        return "dyn " + " + ".join(bounds)
    if kind == "impl_trait":
        return "impl " + render_bounds(value or [])
    if kind == "function_pointer":
        return _function_pointer(value)
    if kind == "qualified_path":
        return _qualified_path(value)
    if kind == "infer":
        return "_"
    if kind == "pat":
        return render_type(value.get("type"))
    note_unknown("type shape", kind)
    return "_"


def _pointee(node: Node) -> str:
    # `&dyn A + B` does not parse; rustdoc writes `&(dyn A + B)`.
    kind, value = tag(node)
    text = render_type(node)
    if kind == "dyn_trait" and len(value.get("traits", [])) + bool(value.get("lifetime")) > 1:
        return f"({text})"
    if kind == "impl_trait" and len(value or []) > 1:
        return f"({text})"
    return text


def _poly_trait(poly: Node) -> str:
    return _hrtb(poly.get("generic_params")) + render_path(poly.get("trait"))


def _qualified_path(value: Mapping[str, Any]) -> str:
    name = value.get("name", "_") + render_generic_args(value.get("args"))
    self_type = render_type(value.get("self_type"))
    trait = value.get("trait")
    # An empty trait path means the source used the `T::Name` shorthand.
    if not trait or not (trait.get("path") or trait.get("name")):
        return f"{self_type}::{name}"
    return f"<{self_type} as {render_path(trait)}>::{name}"


def _function_pointer(value: Mapping[str, Any]) -> str:
    sig = value.get("sig") or value.get("decl") or {}
    params = []
    for pair in sig.get("inputs", []):
        if not isinstance(pair, list) or len(pair) != 2:
            continue
        name, ty = pair
        rendered = render_type(ty)
        params.append(f"{name}: {rendered}" if name and name != "_" else rendered)
    if sig.get("is_c_variadic") or sig.get("c_variadic"):
        params.append("...")
    return (
        _hrtb(value.get("generic_params"))
        + _qualifiers(value.get("header"), with_const=False)
        + f"fn({', '.join(params)})"
        + _output(sig.get("output"))
    )


def render_generic_args(args: Node) -> str:
    kind, value = tag(args)
    if kind == "angle_bracketed":
        parts = [_generic_arg(a) for a in value.get("args", [])]
        parts += [_constraint(c) for c in value.get("constraints", value.get("bindings", []))]
        return f"<{', '.join(parts)}>" if parts else ""
    if kind == "parenthesized":
        inputs = ", ".join(render_type(t) for t in value.get("inputs", []))
        return f"({inputs})" + _output(value.get("output"))
    if kind == "return_type_notation":
        return "(..)"
    if args is not None:
        note_unknown("generic arguments shape", kind)
    return ""


def _generic_arg(arg: Node) -> str:
    kind, value = tag(arg)
    if kind == "lifetime":
        return str(value)
    if kind == "type":
        return render_type(value)
    if kind == "const":
        return str(value.get("expr", "_")) if isinstance(value, dict) else str(value)
    if kind != "infer":
        note_unknown("generic argument shape", kind)
    return "_"


def _constraint(constraint: Mapping[str, Any]) -> str:
    head = constraint.get("name", "_") + render_generic_args(constraint.get("args"))
    kind, value = tag(constraint.get("binding"))
    if kind == "equality":
        return f"{head} = {_term(value)}"
    if kind == "constraint":
        return f"{head}: {render_bounds(value or [])}"
    return head


def _term(term: Node) -> str:
    kind, value = tag(term)
    if kind == "type":
        return render_type(value)
    if kind == "constant":
        return str(value.get("expr", "_")) if isinstance(value, dict) else str(value)
    return "_"


def render_bounds(bounds: list) -> str:
    return " + ".join(_bound(b) for b in bounds)


def _bound(bound: Node) -> str:
    kind, value = tag(bound)
    if kind == "trait_bound":
        modifier = {"maybe": "?", "maybe_const": "~const "}.get(value.get("modifier"), "")
        return _hrtb(value.get("generic_params")) + modifier + render_path(value.get("trait"))
    if kind == "outlives":
        return str(value)
    if kind == "use":
        args = []
        for arg in value or []:
            arg_kind, arg_value = tag(arg)
            args.append(str(arg_value) if arg_kind in ("lifetime", "param") else str(arg_kind))
        return f"use<{', '.join(args)}>"
    note_unknown("bound shape", kind)
    return "_"


def _hrtb(params: list | None) -> str:
    rendered = [p for p in (_param(p) for p in params or []) if p]
    return f"for<{', '.join(rendered)}> " if rendered else ""


# ---------------------------------------------------------------- generics


def _param(param: Mapping[str, Any]) -> str:
    name = param.get("name", "_")
    kind, value = tag(param.get("kind"))
    value = value or {}
    if kind == "lifetime":
        outlives = value.get("outlives") or []
        return f"{name}: {' + '.join(outlives)}" if outlives else name
    if kind == "type":
        if value.get("is_synthetic") or value.get("synthetic"):
            return ""  # `impl Trait` in argument position: shown in the argument instead
        text = name
        if value.get("bounds"):
            text += ": " + render_bounds(value["bounds"])
        if value.get("default") is not None:
            text += " = " + render_type(value["default"])
        return text
    if kind == "const":
        text = f"const {name}: {render_type(value.get('type'))}"
        if value.get("default") is not None:
            text += f" = {value['default']}"
        return text
    note_unknown("generic parameter form", kind)
    return name


def render_generic_params(generics: Mapping[str, Any] | None) -> str:
    params = [p for p in (_param(p) for p in (generics or {}).get("params", [])) if p]
    return f"<{', '.join(params)}>" if params else ""


def render_where(generics: Mapping[str, Any] | None) -> str:
    clauses = []
    for predicate in (generics or {}).get("where_predicates", []):
        kind, value = tag(predicate)
        if kind == "bound_predicate":
            if value.get("bounds"):
                clauses.append(
                    _hrtb(value.get("generic_params"))
                    + f"{render_type(value.get('type'))}: {render_bounds(value['bounds'])}"
                )
        elif kind in ("lifetime_predicate", "region_predicate"):
            outlives = value.get("outlives", value.get("bounds", []))
            outlives = [o if isinstance(o, str) else _bound(o) for o in outlives]
            if outlives:
                clauses.append(f"{value.get('lifetime', '_')}: {' + '.join(outlives)}")
        elif kind == "eq_predicate":
            clauses.append(f"{render_type(value.get('lhs'))} == {_term(value.get('rhs'))}")
        else:
            note_unknown("where-clause form", kind)
    return " where " + ", ".join(clauses) if clauses else ""


# ---------------------------------------------------------------- functions


def _abi(abi: Node) -> str:
    kind, value = tag(abi)
    if kind in ("", "Rust"):
        return ""
    if kind == "Other":
        return f'extern "{str(value).strip(chr(34))}" '
    name = _ABI_NAMES.get(kind, kind)
    if isinstance(value, dict) and value.get("unwind"):
        name += "-unwind"
    return f'extern "{name}" '


def _qualifiers(header: Node, *, with_const: bool = True) -> str:
    if isinstance(header, list):  # very old format: a list of qualifier names
        flags = set(header)
        return "".join(f"{q} " for q in ("const", "async", "unsafe") if q in flags)
    header = header or {}
    text = ""
    if with_const and header.get("is_const", header.get("const")):
        text += "const "
    if header.get("is_async", header.get("async")):
        text += "async "
    if header.get("is_unsafe", header.get("unsafe")):
        text += "unsafe "
    return text + _abi(header.get("abi"))


def _output(output: Node) -> str:
    if output is None:
        return ""
    kind, value = tag(output)
    if kind == "tuple" and not value:
        return ""
    return " -> " + render_type(output)


def _self_param(ty: Node) -> str:
    kind, value = tag(ty)
    if kind == "generic" and value == "Self":
        return "self"
    if kind == "borrowed_ref" and tag(value.get("type")) == ("generic", "Self"):
        lifetime = value.get("lifetime")
        mutable = value.get("is_mutable", value.get("mutable", False))
        return "&" + (f"{lifetime} " if lifetime else "") + ("mut " if mutable else "") + "self"
    return "self: " + render_type(ty)


@total("")
def render_function(name: str, function: Mapping[str, Any], *, prefix: str = "", body: str = "") -> str:
    """``pub const fn new(value: T) -> Self``; ``body`` is appended (`` { ... }`` for provided trait methods)."""
    sig = function.get("sig") or function.get("decl") or {}
    generics = function.get("generics")
    params = []
    for pair in sig.get("inputs", []):
        if not isinstance(pair, list) or len(pair) != 2:
            continue
        param_name, ty = pair
        params.append(_self_param(ty) if param_name == "self" else f"{param_name}: {render_type(ty)}")
    if sig.get("is_c_variadic") or sig.get("c_variadic"):
        params.append("...")
    return (
        f"{prefix}{_qualifiers(function.get('header'))}fn {name}{render_generic_params(generics)}"
        f"({', '.join(params)}){_output(sig.get('output'))}{render_where(generics)}{body}"
    )


# ---------------------------------------------------------------- attributes
# ---------------------------------------------------------------- items


def visibility_prefix(item: Mapping[str, Any]) -> str:
    return "pub " if item.get("visibility") == "public" else ""


@total("")
def render_field(item: Mapping[str, Any], *, in_variant: bool = False) -> str:
    ty = render_type(item.get("inner", {}).get("struct_field"))
    prefix = "" if in_variant else visibility_prefix(item)
    return f"{prefix}{item.get('name', '_')}: {ty}"


def _tuple_fields(ids: list, lookup: ItemLookup, *, in_variant: bool) -> str:
    if ids and not in_variant and all(field_id is None or lookup(field_id) is None for field_id in ids):
        return "(/* private fields */)"
    parts = []
    for field_id in ids:
        field = lookup(field_id) if field_id is not None else None
        if field is None:  # private or hidden: rustdoc keeps the position as `_`
            parts.append("_")
            continue
        prefix = "" if in_variant else visibility_prefix(field)
        parts.append(prefix + render_type(field.get("inner", {}).get("struct_field")))
    return f"({', '.join(parts)})"


def _plain_fields(ids: list, stripped: bool, lookup: ItemLookup, *, in_variant: bool) -> str:
    parts = [render_field(f, in_variant=in_variant) for f in (lookup(i) for i in ids) if f is not None]
    if stripped:
        parts.append("/* private fields */")
    return "{ " + ", ".join(parts) + " }" if parts else "{}"


@total("")
def render_struct(item: Mapping[str, Any], lookup: ItemLookup) -> str:
    struct = item["inner"]["struct"]
    generics = struct.get("generics")
    head = (
        f"{shown_attributes(item)}{visibility_prefix(item)}struct {item.get('name')}{render_generic_params(generics)}"
    )
    where = render_where(generics)
    kind, value = tag(struct.get("kind"))
    if kind == "unit":
        return f"{head}{where};"
    if kind == "tuple":
        return f"{head}{_tuple_fields(value or [], lookup, in_variant=False)}{where};"
    value = value or {}
    fields = value.get("fields", [])
    stripped = value.get("has_stripped_fields", value.get("fields_stripped", False))
    return f"{head}{where} {_plain_fields(fields, stripped, lookup, in_variant=False)}"


@total("")
def render_union(item: Mapping[str, Any], lookup: ItemLookup) -> str:
    union = item["inner"]["union"]
    generics = union.get("generics")
    stripped = union.get("has_stripped_fields", union.get("fields_stripped", False))
    return (
        f"{shown_attributes(item)}{visibility_prefix(item)}union {item.get('name')}{render_generic_params(generics)}"
        f"{render_where(generics)} {_plain_fields(union.get('fields', []), stripped, lookup, in_variant=False)}"
    )


@total("")
def render_variant(item: Mapping[str, Any], lookup: ItemLookup) -> str:
    variant = item.get("inner", {}).get("variant") or {}
    kind, value = tag(variant.get("kind"))
    text = shown_attributes(item) + item.get("name", "_")
    if kind == "tuple":
        text += _tuple_fields(value or [], lookup, in_variant=True)
    elif kind == "struct":
        value = value or {}
        stripped = value.get("has_stripped_fields", value.get("fields_stripped", False))
        text += " " + _plain_fields(value.get("fields", []), stripped, lookup, in_variant=True)
    discriminant = variant.get("discriminant")
    if isinstance(discriminant, dict) and discriminant.get("expr"):
        text += f" = {discriminant['expr']}"
    return text


@total("")
def render_enum(item: Mapping[str, Any], lookup: ItemLookup) -> str:
    enum = item["inner"]["enum"]
    generics = enum.get("generics")
    variants = [render_variant(v, lookup) for v in (lookup(i) for i in enum.get("variants", [])) if v is not None]
    if enum.get("has_stripped_variants", enum.get("variants_stripped", False)):
        variants.append("/* some variants omitted */")  # rustdoc's `//` line would comment out the `}`
    body = "{ " + ", ".join(variants) + " }" if variants else "{}"
    return (
        f"{shown_attributes(item)}{visibility_prefix(item)}enum {item.get('name')}{render_generic_params(generics)}"
        f"{render_where(generics)} {body}"
    )


@total("")
def render_assoc_type(item: Mapping[str, Any], *, prefix: str = "") -> str:
    value = item["inner"]["assoc_type"]
    text = f"{prefix}type {item.get('name')}{render_generic_params(value.get('generics'))}"
    if value.get("bounds"):
        text += ": " + render_bounds(value["bounds"])
    text += render_where(value.get("generics"))
    default = value.get("type", value.get("default"))
    if default is not None:
        text += " = " + render_type(default)
    return text


@total("")
def render_assoc_const(item: Mapping[str, Any], *, prefix: str = "") -> str:
    value = item["inner"]["assoc_const"]
    text = f"{prefix}const {item.get('name')}: {render_type(value.get('type'))}"
    default = value.get("value", value.get("default"))
    # rustdoc prints `_` for values it does not evaluate, and leaves them out of the page.
    if default is not None and default != "_":
        text += f" = {default}"
    return text


@total("")
def render_trait(item: Mapping[str, Any], lookup: ItemLookup) -> str:
    trait = item["inner"]["trait"]
    generics = trait.get("generics")
    qualifiers = ("unsafe " if trait.get("is_unsafe") else "") + ("auto " if trait.get("is_auto") else "")
    head = f"{visibility_prefix(item)}{qualifiers}trait {item.get('name')}{render_generic_params(generics)}"
    if trait.get("bounds"):
        head += ": " + render_bounds(trait["bounds"])
    head += render_where(generics)
    types, consts, required, provided = [], [], [], []
    for member in (lookup(i) for i in trait.get("items", [])):
        if member is None or is_doc_hidden(member):
            continue
        kind, value = tag(member.get("inner"))
        if kind == "assoc_type":
            types.append(render_assoc_type(member) + ";")
        elif kind == "assoc_const":
            consts.append(render_assoc_const(member) + ";")
        elif kind == "function":
            if value.get("has_body"):
                provided.append(render_function(member.get("name", "_"), value, body=" { ... }"))
            else:
                required.append(render_function(member.get("name", "_"), value) + ";")
    members = types + consts + required + provided
    return f"{head} {{ {' '.join(members)} }}" if members else f"{head} {{ }}"


@total("")
def render_trait_alias(item: Mapping[str, Any]) -> str:
    alias = item["inner"]["trait_alias"]
    generics = alias.get("generics")
    return (
        f"{visibility_prefix(item)}trait {item.get('name')}{render_generic_params(generics)} = "
        f"{render_bounds(alias.get('params', []))}{render_where(generics)};"
    )


@total("")
def render_constant(item: Mapping[str, Any]) -> str:
    value = item["inner"]["constant"]
    # Format 30 moved the expression into a nested `const`; older files have it inline.
    const = value.get("const") if isinstance(value.get("const"), dict) else value
    ty = value.get("type", value.get("type_"))
    return f"{visibility_prefix(item)}const {item.get('name')}: {render_type(ty)} = {const.get('expr', '_')};"


@total("")
def render_static(item: Mapping[str, Any]) -> str:
    value = item["inner"]["static"]
    unsafe = "unsafe " if value.get("is_unsafe") else ""
    mutable = "mut " if value.get("is_mutable", value.get("mutable")) else ""
    return f"{visibility_prefix(item)}{unsafe}static {mutable}{item.get('name')}: {render_type(value.get('type'))}"


@total("")
def render_type_alias(item: Mapping[str, Any], inner_key: str) -> str:
    value = item["inner"][inner_key]
    generics = value.get("generics")
    return (
        f"{visibility_prefix(item)}type {item.get('name')}{render_generic_params(generics)}{render_where(generics)}"
        f" = {render_type(value.get('type'))};"
    )


@total("")
def render_proc_macro(item: Mapping[str, Any]) -> str:
    value = item["inner"]["proc_macro"]
    name = item.get("name", "_")
    kind = value.get("kind")
    if kind == "derive":
        helpers = value.get("helpers") or []
        text = f"#[derive({name})]"
        if helpers:
            text += " { /* Attributes available to this derive: " + " ".join(f"#[{h}]" for h in helpers) + " */ }"
        return text
    if kind == "attr":
        return f"#[{name}]"
    return f"{name}!() {{ /* proc-macro */ }}"
