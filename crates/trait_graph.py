"""Reads on the trait graph: who implements a trait, what a type implements (crates_traitimpl rows).

Rows come from the ingest (crates.pipeline.parse_json.types, crates.pipeline.html_types): every trait impl of
a type documented in the release, and every impl of a trait documented there, for any type (foreign ones by
name). A trait or type is named by path (``serde::de::Deserialize``) or by name (``Display``, ``bool``).
"""

from __future__ import annotations

from typing import Any

from crates.errors import InvalidInput, ItemNotFound
from crates.models import Document, TraitImpl
from crates.names import optional_version, validate_crate_name
from crates.search.scope import ReleaseInfo, release_for

MAX_IMPLEMENTATIONS = 500
_TYPE_KINDS = ("struct", "enum", "union", "type_alias", "primitive")
_COMPILER_MARKERS = frozenset({"StructuralPartialEq", "StructuralEq"})


def _row(impl: TraitImpl) -> dict[str, Any]:
    return {
        "trait": impl.trait_name, "trait_path": impl.trait_path, "type": impl.type_name, "type_path": impl.type_path,
        "declaration": impl.declaration, "bounds": impl.bounds, "blanket": impl.blanket, "negative": impl.negative,
    }  # fmt: skip


def _rows(queryset) -> list[dict[str, Any]]:
    rows = [
        _row(impl) for impl in queryset.order_by("blanket", "trait_name", "type_name", "id")[:MAX_IMPLEMENTATIONS]
        if impl.trait_name not in _COMPILER_MARKERS
    ]
    # Blanket impls last; named types (with a path) before references, tuples and slices of type parameters.
    return sorted(rows, key=lambda r: (r["blanket"], r["trait"].lower(), "::" not in r["type_path"],
                                       r["type"].lstrip("&'([ ").lower()))


def implementors(*, release_id: int, trait_path: str, trait_name: str) -> list[dict[str, Any]]:
    """Impls of one trait: the trait's own path when documented in the release, else its name."""
    rows = TraitImpl.objects.filter(release_id=release_id, trait_key=trait_name.lower())
    exact = rows.filter(trait_path=trait_path)
    return _rows(exact if trait_path and exact.exists() else rows)


def implemented(*, release_id: int, type_path: str, type_name: str) -> list[dict[str, Any]]:
    """Traits one type implements, with the impl's generics and bounds."""
    rows = TraitImpl.objects.filter(release_id=release_id, type_key=type_name.lower())
    exact = rows.filter(type_path=type_path)
    return _rows(exact if type_path and exact.exists() else rows)


def for_document(*, release_id: int, doc: Document) -> dict[str, list[dict[str, Any]]]:
    """What get_item adds: ``implementors`` of a trait, ``implements`` of a type; {} for other kinds."""
    if doc.kind in ("trait", "trait_alias"):
        return {"implementors": implementors(release_id=release_id, trait_path=doc.path, trait_name=doc.name)}
    if doc.kind in _TYPE_KINDS:
        return {"implements": implemented(release_id=release_id, type_path=doc.path, type_name=doc.name)}
    return {}


def _named(release: ReleaseInfo, text: str | None, kinds: tuple[str, ...]) -> tuple[str, str] | None:
    """(path, name) of what ``text`` names: a document of one of ``kinds`` when there is one, else a bare name."""
    if text is None:
        return None
    cleaned = text.strip().strip("`").split("<", 1)[0].strip()
    if not cleaned or not all(part.isidentifier() for part in cleaned.split("::")):
        raise InvalidInput(f"{text[:100]!r} is not a Rust path or name, e.g. 'Serialize' or 'serde::ser::Serialize'.")
    name = cleaned.rsplit("::", 1)[-1]
    docs = Document.objects.filter(release_id=release.id, kind__in=kinds)
    doc = docs.filter(path=cleaned).first() if "::" in cleaned else None
    if doc is None:
        candidates = list(docs.filter(name=name).order_by("path")[:2])
        doc = candidates[0] if len(candidates) == 1 else None
    return (doc.path, doc.name) if doc is not None else ("" if "::" not in cleaned else cleaned, name)


def list_implementations(
    *, crate: str, trait: str | None = None, type: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """Impls in a crate's release of ``trait`` (implementors), of ``type`` (its traits), or of both (the one impl).

    Raises InvalidInput without either, CrateNotFound / VersionNotFound, ItemNotFound when nothing matches.
    """
    if not (trait and trait.strip()) and not (type and type.strip()):
        raise InvalidInput("Name a trait, a type or both, e.g. trait='Serialize' or type='Value'.", field="trait")
    release = release_for(crate=validate_crate_name(crate, field="crate"), version=optional_version(version))
    found = _implementations(release, trait=trait, type=type)
    if not found["implementations"]:
        asked = " for ".join(x for x in (trait and f"trait {trait!r}", type and f"type {type!r}") if x)
        raise ItemNotFound(
            f"No implementations of {asked} in {release.crate_name} {release.version}. Only impls written in this "
            "crate are known: a trait of another crate is listed for this crate's types, and this crate's traits "
            "for any type.",
            crate=release.crate_name, version=release.version, suggestions=[],
        )  # fmt: skip
    return found


def _implementations(release: ReleaseInfo, *, trait: str | None, type: str | None) -> dict[str, Any]:
    wanted_trait = _named(release, trait, ("trait", "trait_alias")) if trait and trait.strip() else None
    wanted_type = _named(release, type, _TYPE_KINDS) if type and type.strip() else None
    rows = TraitImpl.objects.filter(release_id=release.id)
    if wanted_trait is not None:
        rows = rows.filter(trait_key=wanted_trait[1].lower())
        if wanted_trait[0] and rows.filter(trait_path=wanted_trait[0]).exists():
            rows = rows.filter(trait_path=wanted_trait[0])
    if wanted_type is not None:
        rows = rows.filter(type_key=wanted_type[1].lower())
        if wanted_type[0] and rows.filter(type_path=wanted_type[0]).exists():
            rows = rows.filter(type_path=wanted_type[0])
    found = _rows(rows)
    return {
        "crate": release.crate_name,
        "version": release.version,
        "trait": (wanted_trait[0] or wanted_trait[1]) if wanted_trait else None,
        "type": (wanted_type[0] or wanted_type[1]) if wanted_type else None,
        "count": len(found),
        "implementations": found,
    }


def item_implementations(*, crate: str, path: str, version: str | None = None) -> dict[str, Any]:
    """GET /items/{crate}/{path}/implementations: a trait's implementors or the traits a type implements."""
    from crates.selectors import get_item

    item = get_item(crate=crate, path=path, version=version)
    release = release_for(crate=crate, version=item.version)
    if item.kind in ("trait", "trait_alias"):
        return _implementations(release, trait=item.path, type=None) | {"item": item.path}
    if item.kind in _TYPE_KINDS:
        return _implementations(release, trait=None, type=item.path) | {"item": item.path}
    raise InvalidInput(
        f"{item.path} is a {item.kind}: implementations are listed for traits and types (struct, enum, union).",
        field="path",
    )
