"""Feature and platform gates from rustdoc JSON: each document's ``metadata["cfg"]``, inherited gates included.

An item's gate is its own ``cfg`` and ``doc(cfg)`` attributes, the gate of the ``impl`` block it is declared in,
the gate of the ``pub use`` that exports it (when it is reachable only through that re-export) and the gate of
its parent (a type in a gated module is gated). Attributes come as rustdoc writes them: ``#[attr = CfgTrace(..)]``
debug text in format 54 and later, ``#[cfg(feature = "x")]`` / ``#[doc(cfg(..))]`` strings before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from crates import cfgexpr
from crates.cfgexpr import Cfg
from crates.pipeline.types import ParsedItem

_SPAN = re.compile(r",?\s*[^\s,()\[\]{}]+:\d+:\d+:\s*\d+:\d+\s*\(#\d+\)")
_NAME_VALUE = re.compile(r'NameValue\s*\{\s*name:\s*"([^"]*)",\s*value:\s*(?:Some\("((?:[^"\\]|\\.)*)"\)|None)[^}]*\}')
_WORD = re.compile(r'Word\s*\{\s*name:\s*"([^"]*)"[^}]*\}')
_BOOL = re.compile(r"Bool\s*\(\s*(true|false)\s*\)")


def _trace_to_cfg_text(trace: str) -> str:
    """``CfgTrace([Any([NameValue { name: "feature", value: Some("x"), span: .. }], span)])`` -> Rust syntax."""
    text = _NAME_VALUE.sub(lambda m: m.group(1) if m.group(2) is None else f'{m.group(1)} = "{m.group(2)}"', trace)
    text = _WORD.sub(lambda m: m.group(1), text)
    text = _SPAN.sub("", text)
    text = _BOOL.sub(lambda m: m.group(1), text)
    text = re.sub(r"\b(Any|All)\s*\(\s*\[", lambda m: m.group(1).lower() + "(", text)
    text = re.sub(r"\bNot\s*\(", "not(", text)
    return text.replace("])", ")")


def _attr_text(attr: Any) -> str:
    if isinstance(attr, str):
        return attr
    if isinstance(attr, Mapping):
        for value in attr.values():  # {"other": "#[...]"} and whatever shape carries the text
            if isinstance(value, str):
                return value
    return ""


def _balanced(text: str, start: int) -> str | None:
    """The text inside the parentheses opening at ``start``."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : index]
    return None


def attr_cfg(attr: Any) -> Cfg | None:
    """The gate one attribute states, None when it states none."""
    text = _attr_text(attr).strip()
    if not text:
        return None
    if "CfgTrace(" in text:
        inner = _balanced(text, text.index("CfgTrace(") + len("CfgTrace"))
        if inner is None:
            return None
        inner = _trace_to_cfg_text(inner.strip())
        if inner.startswith("[") and inner.endswith("]"):
            inner = inner[1:-1]
        return cfgexpr.simplify(cfgexpr.parse(f"all({inner})"))
    for marker in ("doc(cfg(", "#[cfg("):
        at = text.find(marker)
        if at >= 0:
            inner = _balanced(text, at + len(marker) - 1)
            return cfgexpr.simplify(cfgexpr.parse(inner)) if inner else None
    return None


def own_cfg(raw: Mapping[str, Any] | None) -> Cfg | None:
    if not isinstance(raw, Mapping):
        return None
    attrs = raw.get("attrs")
    if not isinstance(attrs, list):
        return None
    return cfgexpr.combine(*(attr_cfg(a) for a in attrs))


def _inner(raw: Mapping[str, Any]) -> tuple[str, Any]:
    value = raw.get("inner")
    if isinstance(value, Mapping) and len(value) == 1:
        return next(iter(value.items()))
    return "", None


def apply_cfg(
    items: list[ParsedItem], *, index: Mapping[str, Any], paths: Mapping[str, Any],
    foreign: list[tuple[str, str, str, dict]] = (), locations: Mapping[str, Mapping[tuple, int]] | None = None,
) -> int:
    """Set ``metadata["cfg"]`` on every gated document; return how many are gated.

    ``foreign``/``locations``: the walker's re-exports of other crates' items (``tokio::main``), whose pages
    have no rustdoc id of their own: they take the gate of their ``pub use``.
    """
    by_foreign: dict[str, Cfg] = {}
    for module_id, name, _target, use_item in foreign:
        gate = own_cfg(use_item)
        for module_path in (locations or {}).get(module_id, {}):
            if gate is not None:
                by_foreign.setdefault("::".join((*module_path, name)), gate)
    by_impl: dict[str, Cfg] = {}
    by_use: dict[str, list[Cfg | None]] = {}
    for raw in index.values():
        if not isinstance(raw, Mapping) or raw.get("crate_id") not in (0, None):
            continue
        kind, value = _inner(raw)
        if kind == "impl" and isinstance(value, Mapping):
            gate = own_cfg(raw)
            if gate is not None:
                for member in value.get("items") or []:
                    by_impl[str(member)] = gate
        elif kind in ("use", "import") and isinstance(value, Mapping) and value.get("id") is not None:
            by_use.setdefault(str(value["id"]), []).append(own_cfg(raw))
    gates: dict[str, Cfg | None] = {}
    gated = 0
    for item in sorted(items, key=lambda i: i.path.count("::")):
        rid = str(item.metadata.get("rustdoc_id", ""))
        raw = index.get(rid) if rid else None
        through_use = None
        uses = by_use.get(rid)
        defined = (paths.get(rid) or {}).get("path") if rid else None
        if uses and all(u is not None for u in uses) and (not defined or "::".join(defined) != item.path):
            through_use = uses[0] if all(u == uses[0] for u in uses) else Cfg("any", tuple(uses))
        if raw is None and "reexport_of" in item.metadata:
            through_use = by_foreign.get(item.path)
        gate = cfgexpr.combine(gates.get(item.parent_path), own_cfg(raw), by_impl.get(rid), through_use)
        gates.setdefault(item.path, gate)
        if gate is not None:
            item.metadata["cfg"] = str(gate)
            gated += 1
    return gated
