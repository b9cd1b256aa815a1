"""Format drift: each kind of change rustdoc JSON's history shows, applied to real rustdoc output.

The fixtures are real rustdoc 1.95.0 output (format 57) of the test crates and of itoa 1.0.1 as docs.rs serves
it. Each drift below is what some format bump did (per the rustdoc-types changelog): new fields on items,
signatures and the crate (most bumps); attributes as strings (up to 53), as tagged values (54 on) and as a typed
`doc` variant (rust-lang/rust#153512); string ids (before integers); `args: null` (51); a new item kind; a new
type variant; a new generic parameter form. The parser must keep (>= 95%) the same documents, count what it
skipped, and never raise anything but a domain error.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
import zstandard

from crates.errors import ArtifactError
from crates.pipeline import rustdoc_render as render
from crates.pipeline.parse_json import parse_rustdoc_json, validation_problems
from crates.pipeline.types import ParsedCrate
from tests.test_parse_json import _to_string_ids

RUSTDOC = Path(__file__).parent / "fixtures" / "rustdoc"
FIXTURES = ["ferro_fixture.json.zst", "itoa-1.0.1.json.zst", "many_items.json.zst", "render_cases.json.zst",
            "ferro_facade.json.zst"]  # fmt: skip
DRIFTED_FORMAT = 63
# Maps keyed by ids or link texts: adding a "field" there would add an entry, not a field.
_ID_MAPS = ("index", "paths", "links", "external_crates")


@cache
def _raw(name: str) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress((RUSTDOC / name).read_bytes())


@cache
def _documented_ids(name: str) -> dict[str, str]:
    """kind -> rustdoc id of the first document of that kind in the untouched fixture."""
    found: dict[str, str] = {}
    for item in parse_rustdoc_json(_raw(name)).items:
        found.setdefault(item.kind, item.metadata["rustdoc_id"])
    return found


def _doc(name: str) -> dict:
    doc = json.loads(_raw(name))
    # Give every fixture an alias and a non-exhaustive type in format 57's own shapes, so the attribute drifts
    # have something to change.
    ids = _documented_ids(name)
    typed = doc["index"][next(ids[kind] for kind in ("struct", "enum", "trait", "function", "macro") if kind in ids)]
    typed["attrs"] = [*typed["attrs"], {"other": '#[doc(alias = "ferrodex_alias")]'}, "non_exhaustive"]
    return doc


@cache
def _baseline(name: str) -> ParsedCrate:
    return parse_rustdoc_json(_doc(name))


def _keys(parsed: ParsedCrate) -> set[tuple[str, str]]:
    return {(item.path, item.kind) for item in parsed.items}


# ------------------------------------------------------------------ drifts (each mutates and returns the doc)


def new_fields(doc: dict) -> dict:
    """New fields on the crate, every item, every inner struct and signature (what most bumps did)."""
    doc["format_version"] = DRIFTED_FORMAT

    def walk(node: object, key: str = "") -> None:
        if isinstance(node, dict):
            for child_key, child in list(node.items()):
                walk(child, child_key)
            # Tagged enum wrappers ({"resolved_path": {...}}) have one key: a new field goes on structs only.
            if len(node) >= 2 and key not in _ID_MAPS:
                node["ferrodex_new_field"] = {"added_in": DRIFTED_FORMAT, "values": [1, "two", None]}
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(doc)
    doc["target_cfg"] = {"new": True}
    return doc


def attrs_as_strings(doc: dict) -> dict:
    """Attributes as source strings, as formats up to 53 had them."""
    doc["format_version"] = 53
    for item in doc["index"].values():
        item["attrs"] = render.attribute_strings(item)
    return doc


_DOC_ATTR = re.compile(r"^#\[doc\((.*)\)\]$")


def attrs_typed_doc(doc: dict) -> dict:
    """`#[doc(...)]` as a typed variant and deprecation only as an attribute (a possible future shape)."""
    doc["format_version"] = DRIFTED_FORMAT
    for item in doc["index"].values():
        out = []
        for attr in item.get("attrs") or []:
            text = attr.get("other", "") if isinstance(attr, dict) else ""
            match = _DOC_ATTR.match(text)
            if not match:
                out.append(attr)
                continue
            body = match.group(1).replace(" ", "")
            alias = re.match(r'alias="([^"]*)"', body)
            out.append({"doc": {"alias": [alias.group(1)]} if alias else {body: True}})
        if isinstance(item.get("deprecation"), dict):
            out.append({"deprecated": item.pop("deprecation")})
        item["attrs"] = out
    return doc


def string_ids(doc: dict) -> dict:
    return _to_string_ids(doc)


def null_args(doc: dict) -> dict:
    """`args: null` for paths without generic arguments (format 51 on), wherever they were empty."""
    empty = {"angle_bracketed": {"args": [], "constraints": []}}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("args") == empty:
                node["args"] = None
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(doc)
    return doc


def unknown_item_kind(doc: dict) -> dict:
    doc["format_version"] = DRIFTED_FORMAT
    root = doc["index"][str(doc["root"])]
    new_id = 990001
    doc["index"][str(new_id)] = {
        "id": new_id, "crate_id": 0, "name": "future_macro", "visibility": "public", "docs": "From the future.",
        "attrs": [], "deprecation": None, "links": {}, "span": None,
        "inner": {"attribute_macro_v2": {"helpers": [], "expansion": {"tokens": 3}}},
    }  # fmt: skip
    root["inner"]["module"]["items"].append(new_id)
    return doc


def _type_slot(doc: dict) -> tuple[object, object]:
    """(holder, key) of a type in a public function's signature: a parameter other than self, else the output."""
    outputs = []
    documented = {item.metadata["rustdoc_id"] for item in parse_rustdoc_json(copy.deepcopy(doc)).items}
    for item_id, item in doc["index"].items():
        sig = item["inner"].get("function", {}).get("sig") or {}
        if item_id not in documented:
            continue
        for pair in sig.get("inputs") or []:
            if pair[0] != "self":
                return pair, 1
        if sig.get("output") is not None:
            outputs.append((sig, "output"))
    assert outputs, "no public function with a type in its signature"
    return outputs[0]


def unknown_type_variant(doc: dict) -> dict:
    doc["format_version"] = DRIFTED_FORMAT
    holder, key = _type_slot(doc)
    holder[key] = {"pattern_v2": {"base": {"primitive": "u8"}, "pat": "0..=9"}}
    return doc


def unknown_generic_form(doc: dict) -> dict:
    doc["format_version"] = DRIFTED_FORMAT
    for item in doc["index"].values():
        inner = item.get("inner") if isinstance(item.get("inner"), dict) else {}
        for value in inner.values():
            if isinstance(value, dict) and isinstance(value.get("generics"), dict):
                value["generics"]["params"].append({"name": "E", "kind": {"effect": {"host": True}}})
    return doc


ADDITIVE: dict[str, Callable[[dict], dict]] = {
    "new_fields": new_fields,
    "attrs_as_strings": attrs_as_strings,
    "attrs_typed_doc": attrs_typed_doc,
    "string_ids": string_ids,
    "null_args": null_args,
    "unknown_item_kind": unknown_item_kind,
    "unknown_type_variant": unknown_type_variant,
    "unknown_generic_form": unknown_generic_form,
}


def index_as_list(doc: dict) -> dict:
    doc["format_version"] = DRIFTED_FORMAT
    doc["index"] = list(doc["index"].values())
    return doc


def inner_renamed(doc: dict) -> dict:
    """Every item's `inner` moved under another name: nothing can be read any more."""
    doc["format_version"] = DRIFTED_FORMAT
    for item in doc["index"].values():
        item["details"] = item.pop("inner")
    return doc


def inner_as_pairs(doc: dict) -> dict:
    """Tagged values as [tag, value] pairs: the root is found, nothing below it."""
    doc["format_version"] = DRIFTED_FORMAT
    for item in doc["index"].values():
        ((kind, value),) = item["inner"].items()
        item["inner"] = [kind, value] if kind != "module" else {"module": {"members": value.get("items", [])}}
    return doc


UNREADABLE = {"index_as_list": index_as_list, "inner_renamed": inner_renamed, "inner_as_pairs": inner_as_pairs}


def _parse_or_problems(doc: dict) -> list[str]:
    try:
        parsed = parse_rustdoc_json(json.dumps(doc).encode())
    except ArtifactError as exc:
        return [exc.message]
    return validation_problems(parsed)


# ------------------------------------------------------------------ the suite


@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("drift", list(ADDITIVE))
def test_additive_drift_keeps_the_documents(fixture: str, drift: str) -> None:
    baseline = _baseline(fixture)
    drifted = parse_rustdoc_json(json.dumps(ADDITIVE[drift](_doc(fixture))).encode())
    before, after = _keys(baseline), _keys(drifted)
    assert len(before & after) >= 0.95 * len(before), sorted(before - after)[:10]
    assert not after - before
    assert validation_problems(drifted) == []
    if drift in ("unknown_type_variant", "unknown_generic_form"):
        return  # the signatures that use the new shape show `_` or leave it out, by design
    same_signature = sum(
        1 for old, new in zip(sorted(baseline.items, key=lambda i: (i.path, i.kind)),
                              sorted(drifted.items, key=lambda i: (i.path, i.kind)), strict=True)
        if old.signature == new.signature
    )  # fmt: skip
    assert same_signature >= 0.95 * len(before)


@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("drift", ["attrs_as_strings", "attrs_typed_doc", "new_fields", "string_ids"])
def test_aliases_deprecation_and_non_exhaustive_whatever_the_attribute_shape(fixture: str, drift: str) -> None:
    baseline = {(i.path, i.kind): i for i in _baseline(fixture).items}
    drifted = {(i.path, i.kind): i for i in parse_rustdoc_json(ADDITIVE[drift](_doc(fixture))).items}
    aliased = [key for key, item in baseline.items() if item.metadata.get("doc_aliases")]
    assert aliased, "the fixture was given an alias"
    for key, item in baseline.items():
        other = drifted[key]
        assert other.metadata.get("doc_aliases") == item.metadata.get("doc_aliases"), key
        assert (other.deprecated, other.deprecation_note) == (item.deprecated, item.deprecation_note), key
        assert ("#[non_exhaustive]" in other.signature) == ("#[non_exhaustive]" in item.signature), key


def test_deprecated_item_keeps_its_note_when_deprecation_is_only_an_attribute() -> None:
    drifted = parse_rustdoc_json(attrs_typed_doc(_doc("ferro_fixture.json.zst")))
    old = next(i for i in drifted.items if i.path == "ferro_fixture::run_blocking")
    assert old.deprecated and old.deprecation_note == "since 0.2.0: use `block_on` instead"


@pytest.mark.parametrize(
    ("drift", "skipped"),
    [
        ("unknown_item_kind", "item of unknown kind `attribute_macro_v2`"),
        ("unknown_type_variant", "type shape `pattern_v2`"),
        ("unknown_generic_form", "generic parameter form `effect`"),
    ],
)
def test_what_is_not_understood_is_counted_and_reported(drift: str, skipped: str) -> None:
    parsed = parse_rustdoc_json(ADDITIVE[drift](_doc("ferro_fixture.json.zst")))
    assert parsed.report.skipped.get(skipped, 0) >= 1
    assert parsed.source_label() == f"rustdoc JSON v{DRIFTED_FORMAT}"
    name = skipped.split("`")[1]
    assert any(line.startswith(f"rustdoc JSON v{DRIFTED_FORMAT}: ") and f"`{name}` skipped" in line
               for line in parsed.provenance_notes())  # fmt: skip


def test_one_unknown_item_is_reported_in_words() -> None:
    parsed = parse_rustdoc_json(unknown_item_kind(_doc("ferro_fixture.json.zst")))
    assert parsed.provenance_notes() == [
        "rustdoc JSON v63: 1 item of unknown kind `attribute_macro_v2` skipped"
    ]


@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("drift", list(UNREADABLE))
def test_a_restructured_file_is_refused_or_fails_validation(fixture: str, drift: str) -> None:
    assert _parse_or_problems(UNREADABLE[drift](_doc(fixture)))


def test_many_unknown_items_fail_validation() -> None:
    doc = _doc("ferro_fixture.json.zst")
    for item in doc["index"].values():
        if item.get("crate_id") == 0 and "struct" in (item.get("inner") or {}):
            item["inner"] = {"struct_v2": item["inner"]["struct"]}
    parsed = parse_rustdoc_json(doc)
    problems = validation_problems(parsed)
    assert problems and "public items were understood" in problems[0]


@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("seed", range(8))
def test_nothing_but_a_domain_error_escapes_the_parser(fixture: str, seed: int) -> None:
    """Random damage anywhere in the tree: the parser returns documents or raises an ArtifactError."""
    doc = _doc(fixture)
    rng = random.Random(seed)
    containers: list[tuple[object, object]] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                containers.append((node, key))
                collect(child)
        elif isinstance(node, list):
            for position, child in enumerate(node):
                containers.append((node, position))
                collect(child)

    collect(doc["index"])
    for holder, key in rng.sample(containers, min(len(containers), 40)):
        holder[key] = rng.choice([None, 7, "x", [], {}, [1, 2], {"unknown": {"deep": []}}, True])
    with contextlib.suppress(ArtifactError):
        parse_rustdoc_json(copy.deepcopy(doc))


def test_a_newer_format_warns_once_per_process(caplog, monkeypatch) -> None:
    monkeypatch.setattr(sys.modules["crates.pipeline.parse_json.load"], "_warned_newer", False)
    with caplog.at_level("WARNING", logger="crates.pipeline.parse_json.load"):
        for version in (63, 64, 63):
            doc = _doc("ferro_fixture.json.zst")
            doc["format_version"] = version
            parse_rustdoc_json(doc)
    warnings = [r for r in caplog.records if "newer than any Ferrodex was tested on" in r.getMessage()]
    assert [r.format_version for r in warnings] == [63]


def test_a_foreign_glob_is_noted_for_the_html_bundle_unless_no_inline() -> None:
    assert _baseline("ferro_facade.json.zst").foreign_globs == [("ferro_facade", "ferro_facade_derive")]
    doc = _doc("ferro_facade.json.zst")
    use = next(item for item in doc["index"].values() if "use" in item["inner"])
    use["attrs"].append({"other": "#[doc(no_inline)]"})
    assert parse_rustdoc_json(doc).foreign_globs == []


def use_target_renamed(doc: dict) -> dict:
    """A `use` item's target moved under another key: the items the crate re-exports can no longer be found."""
    doc["format_version"] = DRIFTED_FORMAT
    for item in doc["index"].values():
        use = (item.get("inner") or {}).get("use")
        if use is not None:
            use["target"] = use.pop("id")
    return doc


def test_reexports_of_an_unknown_shape_are_counted_and_fail_validation() -> None:
    """Most of a facade crate's API is re-exported: losing every `pub use` silently would keep a crate that
    lost its items (tokio 1.24.2 kept 164 of 941 documents and passed validation)."""
    doc = _doc("ferro_fixture.json.zst")
    reexports = sum(1 for item in doc["index"].values()
                    if "use" in (item.get("inner") or {}) and item.get("visibility") == "public")  # fmt: skip
    assert reexports >= 2, "the fixture re-exports items"
    parsed = parse_rustdoc_json(use_target_renamed(doc))
    assert parsed.report.skipped.get("re-export of unknown shape", 0) == reexports
    assert validation_problems(parsed)


def test_a_facade_whose_own_items_are_all_hidden_passes_validation() -> None:
    """thiserror 1.0.38 as docs.rs serves it: its only public items of its own sit behind `#[doc(hidden)] pub mod
    __private`; the JSON is read as it is (the derive comes from the HTML bundle), not thrown away as failed."""
    parsed = parse_rustdoc_json(_raw("thiserror-1.0.38.json.zst"))
    assert [item.path for item in parsed.items] == ["thiserror"]
    assert parsed.foreign_globs == [("thiserror", "thiserror_impl")]
    assert validation_problems(parsed) == []
