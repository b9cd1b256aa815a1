"""ParsedItems for public items and their children (fields, variants, methods, associated items)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from crates.pipeline import rustdoc_render as render
from crates.pipeline.parse_json.common import (
    AUTO_TRAITS,
    MODULE_MEMBER_KINDS,
    Path,
    deprecation,
    doc_aliases,
    inner,
    is_public,
    page_url,
)
from crates.pipeline.parse_json.paths import DIRECT, path_key
from crates.pipeline.types import ParsedItem, ParseReport

logger = logging.getLogger(__name__)


class DocumentBuilder:
    """Turns public items into ParsedItems, with their children (fields, variants, methods, assoc items)."""

    def __init__(
        self, index: Mapping[str, Any], paths: Mapping[str, Any], crate_name: str, report: ParseReport | None = None
    ) -> None:
        self.index = index
        self.paths = paths
        self.crate_name = crate_name
        self.report = report or ParseReport()
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
        placed.sort(key=lambda entry: ("::".join(entry[0]), inner(self.index[entry[1]])[0]))
        for canonical, item_id, aliases in placed:
            item = self.index[item_id]
            try:
                self._emit_top_level(item_id, item, canonical, aliases)
            except (KeyError, TypeError, AttributeError, ValueError, IndexError):
                # One malformed item must not sink a 4,000-item crate; it is simply not documented.
                self.report.item_skipped(f"malformed `{inner(item)[0] or 'unknown'}` item")
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
        return min(found.items(), key=path_key)[0]

    # ------------------------------------------------------------ emission

    def _add(self, item: ParsedItem) -> bool:
        key = (item.path, item.kind)
        if key in self._seen:
            # e.g. `fn new` in two inherent impls with different generic arguments; rustdoc suffixes the anchor.
            logger.debug("duplicate document skipped", extra={"path": item.path, "kind": item.kind})
            return False
        self._seen.add(key)
        self._out.append(item)
        self.report.item_understood()
        return True

    def _document(
        self, raw: Mapping[str, Any], *, path: str, kind: str, parent: str, signature: str, url: str, **meta: Any
    ) -> ParsedItem:
        deprecated, note = deprecation(raw)
        metadata: dict[str, Any] = {"rustdoc_id": str(raw.get("id"))}
        span = raw.get("span")
        if isinstance(span, dict) and span.get("filename"):
            begin = span.get("begin") or [0]
            metadata["span"] = f"{span['filename']}:{begin[0]}"
        aliases = doc_aliases(raw)
        if aliases:
            metadata["doc_aliases"] = aliases
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
        inner_kind, value = inner(item)
        kind = MODULE_MEMBER_KINDS.get(inner_kind)
        if kind is None:
            logger.debug("skipping unknown item kind", extra={"kind": inner_kind, "rustdoc_id": item_id})
            self.report.item_skipped(f"item of unknown kind `{inner_kind}`")
            return
        path = "::".join(canonical)
        parent = "::".join(canonical[:-1])
        name = canonical[-1]
        # A renamed re-export (`pub use x::parse_level as parse_log_level`) is shown under its public name.
        shown = item if item.get("name") == name else {**item, "name": name}
        url = page_url(canonical, inner_kind, value)
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
            if not is_public(field) or not field.get("name"):
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
            kind, value = render.tag((inner(variant)[1] or {}).get("kind"))
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
            kind, value = inner(member)
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
                self.report.item_skipped(f"trait item of unknown kind `{kind}`")

    def _emit_inherent_impls(self, impl_ids: list, parent: str, page: str) -> None:
        for _, impl_item in self._members(impl_ids):
            kind, impl = inner(impl_item)
            if kind != "impl" or impl.get("trait") is not None:
                continue
            for _, member in self._members(impl.get("items", [])):
                name = member.get("name")
                member_kind, value = inner(member)
                if not name or not is_public(member):
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
                else:
                    self.report.item_skipped(f"impl item of unknown kind `{member_kind}`")

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
            kind, impl = inner(impl_item)
            if kind != "impl" or not impl.get("trait"):
                continue
            if impl.get("blanket_impl") is not None or impl.get("is_synthetic") or impl.get("is_negative"):
                continue
            trait = impl["trait"]
            name = (trait.get("path") or trait.get("name") or "").rsplit("::", 1)[-1]
            if name and name not in AUTO_TRAITS:
                names.add(name)
        return sorted(names)
