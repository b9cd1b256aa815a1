"""rustdoc JSON attributes as source text, whatever their shape: strings (up to format 53), tagged values
(54 on) and a typed ``doc`` attribute (as rust-lang/rust#153512 proposes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crates.pipeline.rustdoc_shapes import as_object as _d
from crates.pipeline.rustdoc_shapes import note_unknown, tag, total

# Attributes rustdoc shows in front of a declaration (it hides the others).
_SHOWN_ATTRS = ("#[repr(", "#[non_exhaustive]")

# Attribute kinds of the structured shape (format 54 on) read below; any other is shown as `#[kind]` and counted.
_KNOWN_ATTRS = frozenset({
    "other", "repr", "must_use", "export_name", "link_section", "target_feature", "doc", "deprecated",
    "non_exhaustive", "macro_export", "automatically_derived", "no_mangle",
})  # fmt: skip


@total(list)
def attribute_strings(item: Mapping[str, Any]) -> list[str]:
    """Attributes as source text, whatever their shape: strings (up to format 53), tagged values (54 on:
    ``{"other": "#[...]"}``, ``"non_exhaustive"``, ``{"repr": {...}}``) and a typed ``doc`` attribute
    (``{"doc": {"alias": ["x"], "hidden": true}}``, as rust-lang/rust#153512 proposes)."""
    out = []
    attrs = item.get("attrs")
    for attr in attrs if isinstance(attrs, list) else []:
        if isinstance(attr, str):
            out.append(attr if attr.startswith("#") else f"#[{attr}]")
            continue
        kind, value = tag(attr)
        if kind == "other":
            out.append(str(value))
        elif kind == "repr":
            out.append(_repr(_d(value)))
        elif kind == "must_use":
            reason = _d(value).get("reason")
            out.append(f'#[must_use = "{reason}"]' if reason else "#[must_use]")
        elif kind in ("export_name", "link_section"):
            out.append(f'#[{kind} = "{value}"]')
        elif kind == "target_feature":
            enabled = ", ".join(f'enable = "{f}"' for f in _d(value).get("enable", []))
            out.append(f"#[target_feature({enabled})]")
        elif kind == "doc":
            out.extend(_doc_attribute(value))
        elif kind == "deprecated":
            out.append(_deprecated_attribute(_d(value)))
        elif kind and isinstance(kind, str):
            if kind not in _KNOWN_ATTRS:
                note_unknown("attribute shape", kind)
            out.append(f"#[{kind}]")
        else:
            note_unknown("attribute shape", type(attr).__name__)
    return out


def _doc_attribute(value: Any) -> list[str]:
    """A typed ``doc`` attribute as the ``#[doc(...)]`` lines it stands for: ``{"alias": ["a", "b"], "hidden":
    true}``, ``"hidden"``, ``[{"alias": "a"}, "inline"]`` (a list of either)."""
    if isinstance(value, list):
        return [line for part in value for line in _doc_attribute(part)]
    if isinstance(value, str):
        return [f"#[doc({value})]"]
    out = []
    for key, entry in _d(value).items():
        if entry is None or entry is False or entry == [] or entry == {}:
            continue
        if key in ("alias", "aliases"):
            names = entry if isinstance(entry, list) else [entry]
            out.extend(f'#[doc(alias = "{name}")]' for name in names if isinstance(name, str))
        elif entry is True:
            out.append(f"#[doc({key})]")
        elif isinstance(entry, (str, int, float)):
            out.append(f'#[doc({key} = "{entry}")]')
        else:
            out.append(f"#[doc({key}(..))]")
    return out


def _deprecated_attribute(value: Mapping[str, Any]) -> str:
    parts = [f'{key} = "{value[key]}"' for key in ("since", "note") if value.get(key)]
    return f"#[deprecated({', '.join(parts)})]" if parts else "#[deprecated]"


def _repr(value: Mapping[str, Any]) -> str:
    parts = []
    kind = value.get("kind")
    if kind and kind != "rust":
        parts.append({"c": "C"}.get(kind, kind))
    if value.get("int"):
        parts.append(value["int"])
    if value.get("align") is not None:
        parts.append(f"align({value['align']})")
    if value.get("packed") is not None:
        parts.append(f"packed({value['packed']})")
    return f"#[repr({', '.join(parts) or 'Rust'})]"


def is_doc_hidden(item: Mapping[str, Any]) -> bool:
    for attr in attribute_strings(item):
        compact = attr.replace(" ", "")
        if compact.startswith("#[doc(") and "hidden" in compact:
            return True
    return False


def shown_attributes(item: Mapping[str, Any]) -> str:
    shown = [a for a in attribute_strings(item) if a.startswith(_SHOWN_ATTRS)]
    return "".join(f"{a} " for a in shown)
