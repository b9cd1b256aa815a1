"""Pages for re-exports of other crates' items, which the JSON names but does not document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crates.pipeline.parse_json.common import FOREIGN_KINDS, Path, deprecation, inner
from crates.pipeline.types import ParsedItem


def foreign_inlined_items(
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
        kind, prefix = FOREIGN_KINDS.get(summary.get("kind"), (None, None))
        module_paths = sorted(locations.get(module_id, {}), key=lambda p: (len(p), p))
        if kind is None or not module_paths:
            continue
        module_path = module_paths[0]
        path = "::".join((*module_path, name))
        if (path, kind) in existing:
            continue
        existing.add((path, kind))
        origin = "::".join(summary.get("path") or ()) or str((inner(use_item)[1] or {}).get("source") or name)
        own_docs = (use_item.get("docs") or "").strip()
        home = origin.split("::")[0]
        deprecated, note = deprecation(use_item)
        out.append(ParsedItem(
            path=path, name=name, kind=kind, parent_path="::".join(module_path),
            signature=f"pub use {origin};" if origin.rsplit("::", 1)[-1] == name else f"pub use {origin} as {name};",
            docs=own_docs or f"Re-exported from `{origin}`; its documentation is in the `{home}` crate.",
            url="/".join(module_path) + f"/{prefix}.{name}.html",
            deprecated=deprecated, deprecation_note=note,
            metadata={"reexport_of": origin, "aliases": sorted("::".join((*p, name)) for p in module_paths[1:])},
        ))  # fmt: skip
    return out


def note_foreign_reexports(
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
        source = str((inner(use_item)[1] or {}).get("source") or "").lstrip(":")
        summary = paths.get(target_id) if isinstance(paths.get(target_id), dict) else {}
        if source.split("::", 1)[0] in ("crate", "self", "super", ""):
            source = "::".join(summary.get("path") or ())
        if source:
            module.metadata.setdefault("reexports", {})[name] = source
