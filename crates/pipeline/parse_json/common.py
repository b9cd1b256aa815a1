"""Shared vocabulary of the rustdoc JSON parser: item kinds, page names and small readers of raw items."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from crates.pipeline import rustdoc_render as render

LOCAL_CRATE_ID = 0
AUTO_TRAITS = frozenset({"Send", "Sync", "Unpin", "Freeze", "UnwindSafe", "RefUnwindSafe", "UnsafeUnpin"})


# inner tag -> Document.Kind for items that live in modules
MODULE_MEMBER_KINDS = {
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
PAGE_PREFIX = {
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
PROC_MACRO_PAGE = {"bang": "macro", "attr": "attr", "derive": "derive"}
USE_TAGS = ("use", "import")
VALUE_NAMESPACE = frozenset({"function", "constant", "static"})
MACRO_NAMESPACE = frozenset({"macro", "proc_macro"})

Path = tuple[str, ...]


def inner(item: Mapping[str, Any]) -> tuple[str, Any]:
    return render.tag(item.get("inner"))


def listed(value: Any, key: str) -> list:
    """``value[key]`` when ``value`` is an object and that is a list, else ``[]``: ids lists read defensively."""
    found = value.get(key) if isinstance(value, Mapping) else None
    return found if isinstance(found, list) else []


def is_public(item: Mapping[str, Any]) -> bool:
    return item.get("visibility") == "public"


def is_local(item: Mapping[str, Any]) -> bool:
    return item.get("crate_id", LOCAL_CRATE_ID) == LOCAL_CRATE_ID


def namespace(kind: str) -> str:
    if kind in MACRO_NAMESPACE:
        return "macro"
    return "value" if kind in VALUE_NAMESPACE else "type"


def page_url(path: Path, inner_kind: str, value: Any) -> str:
    if inner_kind == "module":
        return "/".join(path) + "/index.html"
    if inner_kind == "proc_macro":
        prefix = PROC_MACRO_PAGE.get((value or {}).get("kind"), "macro")
    else:
        prefix = PAGE_PREFIX[inner_kind]
    return "/".join(path[:-1]) + f"/{prefix}.{path[-1]}.html"


_DEPRECATED_ATTR = re.compile(r"#\[\s*deprecated\b")
_ATTR_FIELD = re.compile(r'\b(since|note)\s*=\s*"([^"]*)"')


def deprecation(item: Mapping[str, Any]) -> tuple[bool, str]:
    """(deprecated, note) from rustdoc's ``deprecation`` field, or a ``#[deprecated]`` attribute of any shape
    when a format carries it only there."""
    deprecation = item.get("deprecation")
    if not isinstance(deprecation, dict):
        for attr in render.attribute_strings(item):
            if _DEPRECATED_ATTR.match(attr):
                deprecation = dict(_ATTR_FIELD.findall(attr))
                break
        else:
            return False, ""
    since = str(deprecation.get("since") or "").strip()
    note = str(deprecation.get("note") or "").strip()
    if since and note:
        return True, f"since {since}: {note}"
    if since:
        return True, f"since {since}"
    return True, note


# `#[doc(alias = "x")]` (one per attribute since format 54) or `#[doc(alias("x", "y"))]` as written before.
_DOC_ALIAS = re.compile(r'doc\s*\(\s*alias\s*(?:=\s*"([^"]*)"|\(([^)]*)\))')
_QUOTED = re.compile(r'"([^"]*)"')


def doc_aliases(item: Mapping[str, Any]) -> list[str]:
    """The names `#[doc(alias)]` gives an item, which docs.rs's search finds it by (any attribute shape)."""
    aliases: list[str] = []
    for text in render.attribute_strings(item):
        if "alias" not in text:
            continue
        for single, listed in _DOC_ALIAS.findall(text):
            for alias in [single] if single else _QUOTED.findall(listed):
                if alias.strip() and alias.strip() not in aliases:
                    aliases.append(alias.strip())
    return aliases


def no_inline(use_item: Mapping[str, Any]) -> bool:
    return "doc(no_inline)" in " ".join(render.attribute_strings(use_item)).replace(" ", "")


# rustdoc `paths` kind of another crate's item -> (Document.Kind, page prefix)
FOREIGN_KINDS = {
    "proc_attribute": ("macro", "attr"),
    "proc_derive": ("macro", "derive"),
    **{kind: (MODULE_MEMBER_KINDS[kind], prefix) for kind, prefix in PAGE_PREFIX.items()},
}
