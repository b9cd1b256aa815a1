"""Parse stage, rustdoc JSON (crates.pipeline.parse_json).

Fixtures in tests/fixtures/rustdoc (see its README):
* ferro_fixture.json.zst / .json.gz: real rustdoc 1.95 output (format 57) for tests/fixtures/crates/ferro_fixture;
* itoa-1.0.1.json.zst: a real docs.rs-style artifact of a published crate.

Older format shapes are derived from the real fixture in this file by documented, synthetic transformations
(string ids, pre-54 string attributes); no test needs the network or /work/shared.
"""

from __future__ import annotations

import copy
import gzip
import json
import logging
import random
import re
from pathlib import Path

import pytest
import zstandard

from crates.errors import CorruptArtifact, UnsupportedFormat
from crates.models import Document
from crates.pipeline.parse_json import SUPPORTED_FORMAT_VERSIONS, parse_rustdoc_json
from crates.pipeline.types import ParsedCrate, ParsedItem

RUSTDOC = Path(__file__).parent / "fixtures" / "rustdoc"
CRATE = "ferro_fixture"


def _zstd(path: Path) -> bytes:
    return zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=64 << 20)


@pytest.fixture(scope="module")
def fixture_bytes() -> bytes:
    return _zstd(RUSTDOC / "ferro_fixture.json.zst")


@pytest.fixture
def fixture_doc(fixture_bytes: bytes) -> dict:
    return json.loads(fixture_bytes)


@pytest.fixture(scope="module")
def parsed(fixture_bytes: bytes) -> ParsedCrate:
    return parse_rustdoc_json(fixture_bytes)


@pytest.fixture(scope="module")
def by_path(parsed: ParsedCrate) -> dict[str, ParsedItem]:
    return {item.path: item for item in parsed.items}


def _item(by_path: dict[str, ParsedItem], path: str) -> ParsedItem:
    assert path in by_path, f"{path} not parsed; have {sorted(by_path)}"
    return by_path[path]


def _find_id(doc: dict, name: str, kind: str) -> str:
    matches = [key for key, item in doc["index"].items() if item.get("name") == name and kind in item["inner"]]
    assert len(matches) == 1, (name, kind, matches)
    return matches[0]


def _comparable(parsed: ParsedCrate) -> list[tuple]:
    """Everything but the rustdoc id, which legitimately changes with the id shape."""
    return [
        (
            i.path,
            i.name,
            i.kind,
            i.parent_path,
            i.signature,
            i.docs,
            i.url,
            i.deprecated,
            i.deprecation_note,
            {k: v for k, v in i.metadata.items() if k != "rustdoc_id"},
        )
        for i in parsed.items
    ]


# ---------------------------------------------------------------- crate-level facts


def test_crate_facts_come_from_the_json(parsed: ParsedCrate) -> None:
    assert parsed.crate_name == CRATE
    assert parsed.version == "0.3.1"  # crate_version from the JSON when no version is given
    assert parsed.source == "rustdoc-json"
    assert parsed.format_version == 57
    assert parsed.generator == "rustdoc-json v57"
    assert parsed.target == "x86_64-unknown-linux-gnu"


def test_explicit_version_wins(fixture_bytes: bytes) -> None:
    assert parse_rustdoc_json(fixture_bytes, version="9.9.9").version == "9.9.9"


def test_documents_are_unique_well_formed_and_local(parsed: ParsedCrate) -> None:
    kinds = set(Document.Kind.values)
    keys = [(item.path, item.kind) for item in parsed.items]
    assert len(keys) == len(set(keys))
    for item in parsed.items:
        assert item.kind in kinds
        assert item.path.startswith(f"{CRATE}::") or item.path == CRATE
        assert item.name == item.path.rsplit("::", 1)[-1]
        assert item.url.startswith(f"{CRATE}/")
        if item.path != CRATE:
            assert item.path.startswith(item.parent_path + "::")
    # Nothing from std leaks in, and the private modules never appear in a path.
    assert not [i.path for i in parsed.items if "::internal" in i.path or "::mutex" in i.path]


def test_root_module(by_path: dict[str, ParsedItem]) -> None:
    root = _item(by_path, CRATE)
    assert (root.kind, root.parent_path, root.url) == ("module", "", "ferro_fixture/index.html")
    assert root.docs.startswith("# ferro_fixture")
    shapes = _item(by_path, "ferro_fixture::shapes")
    assert (shapes.kind, shapes.parent_path, shapes.url) == ("module", CRATE, "ferro_fixture/shapes/index.html")


# ---------------------------------------------------------------- public paths


def test_item_from_private_module_appears_at_its_reexport_path(by_path: dict[str, ParsedItem]) -> None:
    counter = _item(by_path, "ferro_fixture::Counter")
    assert counter.kind == "struct"
    assert counter.parent_path == CRATE
    assert counter.url == "ferro_fixture/struct.Counter.html"
    assert counter.metadata["span"] == "src/internal.rs:11"
    assert "ferro_fixture::internal::Counter" not in by_path


def test_renamed_reexport_uses_the_public_name(by_path: dict[str, ParsedItem]) -> None:
    function = _item(by_path, "ferro_fixture::parse_log_level")
    assert function.kind == "function"
    assert function.url == "ferro_fixture/fn.parse_log_level.html"
    assert function.signature == "pub fn parse_log_level(text: &str) -> Result<u8>"
    assert not [path for path in by_path if path.endswith("parse_level")]


def test_reexport_from_private_submodule(by_path: dict[str, ParsedItem]) -> None:
    mutex = _item(by_path, "ferro_fixture::sync::Mutex")
    assert mutex.url == "ferro_fixture/sync/struct.Mutex.html"
    assert mutex.signature == "pub struct Mutex<T: ?Sized> { /* private fields */ }"
    lock = _item(by_path, "ferro_fixture::sync::Mutex::lock")
    assert lock.signature == "pub fn lock(&self) -> MutexGuard<'_, T>"
    assert lock.parent_path == "ferro_fixture::sync::Mutex"
    assert lock.url == "ferro_fixture/sync/struct.Mutex.html#method.lock"
    assert _item(by_path, "ferro_fixture::sync::Mutex::new").signature == "pub const fn new(value: T) -> Self"


def test_glob_reexport_is_an_alias_of_the_defining_path(by_path: dict[str, ParsedItem]) -> None:
    circle = _item(by_path, "ferro_fixture::shapes::Circle")
    assert circle.url == "ferro_fixture/shapes/struct.Circle.html"
    assert circle.metadata["aliases"] == ["ferro_fixture::Circle"]
    assert "ferro_fixture::Circle" not in by_path
    assert _item(by_path, "ferro_fixture::shapes::total_area").metadata["aliases"] == ["ferro_fixture::total_area"]
    # An item reachable at one path only carries no aliases.
    assert "aliases" not in by_path["ferro_fixture::Counter"].metadata


def test_reexport_of_an_already_public_item_is_only_an_alias(fixture_doc: dict) -> None:
    """Synthetic: add `pub use sync::Mutex;` at the root, the shape of tokio's `pub use task::spawn;`.

    rustdoc does not give the item a page there (it links to sync::Mutex), so the longer path stays
    canonical even though the new one is shorter.
    """
    mutex_id = _find_id(fixture_doc, "Mutex", "struct")
    use_id = "990001"
    fixture_doc["index"][use_id] = {
        "id": int(use_id),
        "crate_id": 0,
        "name": None,
        "span": None,
        "visibility": "public",
        "docs": None,
        "links": {},
        "attrs": [],
        "deprecation": None,
        "inner": {"use": {"source": "sync::Mutex", "name": "Mutex", "id": int(mutex_id), "is_glob": False}},
    }
    fixture_doc["index"][str(fixture_doc["root"])]["inner"]["module"]["items"].append(int(use_id))
    items = {i.path: i for i in parse_rustdoc_json(fixture_doc).items}
    assert items["ferro_fixture::sync::Mutex"].metadata["aliases"] == ["ferro_fixture::Mutex"]
    assert "ferro_fixture::Mutex" not in items


def _inject_glob(doc: dict, *, into: str, source: str, target_id: object, use_id: int) -> None:
    doc["index"][str(use_id)] = {
        "id": use_id,
        "crate_id": 0,
        "name": None,
        "span": None,
        "visibility": "public",
        "docs": None,
        "links": {},
        "attrs": [],
        "deprecation": None,
        "inner": {"use": {"source": source, "name": source.rsplit("::", 1)[-1], "id": target_id, "is_glob": True}},
    }
    doc["index"][into]["inner"]["module"]["items"].append(use_id)


def test_glob_reexport_cycle_terminates(fixture_doc: dict, parsed: ParsedCrate) -> None:
    """Synthetic: `pub use crate::sync::*;` in `shapes` and `pub use crate::*;` in `sync` close a glob cycle
    (the root already glob-imports `shapes`). Names travel through two globs to reach `shapes`."""
    shapes_id = _find_id(fixture_doc, "shapes", "module")
    sync_id = _find_id(fixture_doc, "sync", "module")
    _inject_glob(fixture_doc, into=shapes_id, source="crate::sync", target_id=int(sync_id), use_id=990002)
    _inject_glob(fixture_doc, into=sync_id, source="crate", target_id=fixture_doc["root"], use_id=990004)
    cyclic = parse_rustdoc_json(fixture_doc)
    assert [i.path for i in cyclic.items] == [i.path for i in parsed.items]
    counter = next(i for i in cyclic.items if i.path == "ferro_fixture::Counter")
    assert {"ferro_fixture::sync::Counter", "ferro_fixture::shapes::Counter"} <= set(counter.metadata["aliases"])


def test_doc_hidden_items_are_skipped(fixture_doc: dict) -> None:
    """rustdoc already drops most hidden items; the parser also honours the attribute if one slips through."""
    counter_id = _find_id(fixture_doc, "Counter", "struct")
    fixture_doc["index"][counter_id]["attrs"].append({"other": "#[doc(hidden)]"})
    paths = {i.path for i in parse_rustdoc_json(fixture_doc).items}
    assert not [p for p in paths if "Counter" in p]
    assert "ferro_fixture::sync::Mutex" in paths


# ---------------------------------------------------------------- members


def test_inherent_methods_with_signatures(by_path: dict[str, ParsedItem]) -> None:
    method = _item(by_path, "ferro_fixture::Counter::with_capacity")
    assert method.kind == "method"
    assert method.parent_path == "ferro_fixture::Counter"
    assert method.signature == "pub fn with_capacity(capacity: usize) -> Self"
    assert method.url == "ferro_fixture/struct.Counter.html#method.with_capacity"
    assert "room for at least `capacity` names" in method.docs
    assert _item(by_path, "ferro_fixture::Counter::increment").signature == "pub fn increment(&mut self)"
    assert (
        _item(by_path, "ferro_fixture::Counter::count_name").signature
        == "pub fn count_name(&mut self, name: &str) -> u64"
    )
    assert _item(by_path, "ferro_fixture::shapes::Rect::square").signature == "pub fn square(side: T) -> Self"


def test_methods_of_trait_impls_are_not_documents(by_path: dict[str, ParsedItem]) -> None:
    for path in (
        "ferro_fixture::Counter::next",
        "ferro_fixture::Counter::clone",
        "ferro_fixture::shapes::Circle::area",
    ):
        assert path not in by_path


def test_trait_impls_listed_under_the_type(by_path: dict[str, ParsedItem]) -> None:
    assert by_path["ferro_fixture::Counter"].metadata["trait_impls"] == ["Clone", "Debug", "Default", "Iterator"]
    circle = by_path["ferro_fixture::shapes::Circle"].metadata["trait_impls"]
    assert "Shape" in circle and "Copy" in circle
    assert by_path["ferro_fixture::sync::Mutex"].metadata["trait_impls"] == ["Debug", "Default"]
    assert by_path["ferro_fixture::FixtureError"].metadata["trait_impls"] == [
        "Clone",
        "Debug",
        "Display",
        "Eq",
        "Error",
        "PartialEq",
        "StructuralPartialEq",
    ]
    every = {name for item in by_path.values() for name in item.metadata.get("trait_impls", [])}
    # Auto traits (synthetic impls) and blanket impls (From<T> for T, Any, Borrow...) are left out.
    assert not every & {"Send", "Sync", "Unpin", "Freeze", "UnwindSafe", "RefUnwindSafe", "From", "Into", "Any"}


def test_trait_and_its_items(by_path: dict[str, ParsedItem]) -> None:
    trait = _item(by_path, "ferro_fixture::shapes::Shape")
    assert trait.kind == "trait"
    assert trait.url == "ferro_fixture/shapes/trait.Shape.html"
    assert trait.signature == (
        "pub trait Shape { type Unit; const CORNERS: u32; fn area(&self) -> f64; fn name(&self) -> String { ... } }"
    )
    expected = {
        "area": ("method", "fn area(&self) -> f64", "#tymethod.area"),  # required
        "name": ("method", "fn name(&self) -> String", "#method.name"),  # provided
        "Unit": ("assoc_type", "type Unit", "#associatedtype.Unit"),
        "CORNERS": ("assoc_const", "const CORNERS: u32", "#associatedconstant.CORNERS"),
    }
    for name, (kind, signature, anchor) in expected.items():
        member = _item(by_path, f"ferro_fixture::shapes::Shape::{name}")
        assert (member.kind, member.signature, member.parent_path) == (kind, signature, "ferro_fixture::shapes::Shape")
        assert member.url == f"ferro_fixture/shapes/trait.Shape.html{anchor}"
        assert member.docs
    assert _item(by_path, "ferro_fixture::Bits").signature == "pub unsafe trait Bits: Copy { }"


def test_public_fields_only(by_path: dict[str, ParsedItem]) -> None:
    total = _item(by_path, "ferro_fixture::Counter::total")
    assert (total.kind, total.signature, total.docs) == ("field", "pub total: u64", "The current total.")
    assert total.url == "ferro_fixture/struct.Counter.html#structfield.total"
    assert "ferro_fixture::Counter::names" not in by_path  # private
    assert by_path["ferro_fixture::Counter"].signature == "pub struct Counter { pub total: u64, /* private fields */ }"
    assert _item(by_path, "ferro_fixture::shapes::Rect::width").signature == "pub width: T"


def test_enum_variants_and_variant_fields(by_path: dict[str, ParsedItem]) -> None:
    enum = _item(by_path, "ferro_fixture::FixtureError")
    assert enum.signature == "pub enum FixtureError { Empty, Invalid(String), OutOfRange { value: i64, max: i64 } }"
    for name, signature in (
        ("Empty", "Empty"),
        ("Invalid", "Invalid(String)"),
        ("OutOfRange", "OutOfRange { value: i64, max: i64 }"),
    ):
        variant = _item(by_path, f"ferro_fixture::FixtureError::{name}")
        assert (variant.kind, variant.signature) == ("variant", signature)
        assert variant.url == f"ferro_fixture/enum.FixtureError.html#variant.{name}"
        assert variant.parent_path == "ferro_fixture::FixtureError"
    field = _item(by_path, "ferro_fixture::FixtureError::OutOfRange::value")
    assert (field.kind, field.signature, field.docs) == ("field", "value: i64", "The value that was given.")
    assert field.parent_path == "ferro_fixture::FixtureError::OutOfRange"
    assert field.url == "ferro_fixture/enum.FixtureError.html#variant.OutOfRange.field.value"


def test_other_top_level_items(by_path: dict[str, ParsedItem]) -> None:
    expected = {
        "MAX_COUNT": ("constant", "pub const MAX_COUNT: u64 = u64::MAX;", "constant.MAX_COUNT.html"),
        "CREATED": ("static", "pub static CREATED: AtomicUsize", "static.CREATED.html"),
        "Result": ("type_alias", "pub type Result<T> = Result<T, FixtureError>;", "type.Result.html"),
        "IntOrFloat": (
            "union",
            "#[repr(C)] pub union IntOrFloat { pub int: u32, pub float: f32 }",
            "union.IntOrFloat.html",
        ),
        "block_on": ("function", "pub fn block_on<F: Future>(future: F) -> F::Output", "fn.block_on.html"),
    }
    for name, (kind, signature, page) in expected.items():
        item = _item(by_path, f"ferro_fixture::{name}")
        assert (item.kind, item.signature, item.url, item.parent_path) == (kind, signature, f"{CRATE}/{page}", CRATE)
    assert (
        _item(by_path, "ferro_fixture::IntOrFloat::float").url
        == "ferro_fixture/union.IntOrFloat.html#structfield.float"
    )
    assert "Panics if called from inside an async runtime." in by_path["ferro_fixture::block_on"].docs


def test_macro(by_path: dict[str, ParsedItem]) -> None:
    macro = _item(by_path, "ferro_fixture::counter")
    assert (macro.kind, macro.url, macro.parent_path) == ("macro", "ferro_fixture/macro.counter.html", CRATE)
    assert macro.signature == "macro_rules! counter {\n    ($start:expr) => { ... };\n}"
    assert macro.docs.startswith("Creates a [`Counter`]")


def test_deprecation_with_note(by_path: dict[str, ParsedItem]) -> None:
    old = _item(by_path, "ferro_fixture::run_blocking")
    assert old.deprecated is True
    assert old.deprecation_note == "since 0.2.0: use `block_on` instead"
    reset = _item(by_path, "ferro_fixture::Counter::reset")
    assert (reset.deprecated, reset.deprecation_note) == (True, "since 0.3.0: create a new counter instead")
    assert by_path["ferro_fixture::block_on"].deprecated is False
    assert by_path["ferro_fixture::block_on"].deprecation_note == ""


# ---------------------------------------------------------------- inputs, formats and failures


def test_zstd_and_gzip_fixtures_parse_identically(parsed: ParsedCrate) -> None:
    from_gzip = parse_rustdoc_json(gzip.decompress((RUSTDOC / "ferro_fixture.json.gz").read_bytes()))
    assert from_gzip == parsed


def test_bytes_str_and_dict_inputs_agree(fixture_bytes: bytes, parsed: ParsedCrate) -> None:
    assert parse_rustdoc_json(fixture_bytes.decode()) == parsed
    assert parse_rustdoc_json(json.loads(fixture_bytes)) == parsed


def test_output_is_deterministic(fixture_bytes: bytes, fixture_doc: dict, parsed: ParsedCrate) -> None:
    assert parse_rustdoc_json(fixture_bytes) == parsed
    # The same crate with its index in another order gives the same list.
    entries = list(fixture_doc["index"].items())
    random.Random(7).shuffle(entries)
    fixture_doc["index"] = dict(entries)
    assert parse_rustdoc_json(fixture_doc) == parsed


def _to_string_ids(doc: dict) -> dict:
    """Synthetic: rewrite every item id to the old string shape "0:<n>:0" (rustdoc used such ids before it
    switched to integers). Only the id shape changes; the format version is left as generated."""

    def sid(value: object) -> object:
        return f"0:{value}:0" if isinstance(value, int) and not isinstance(value, bool) else value

    def walk(node: object, key: str = "") -> object:
        if isinstance(node, dict):
            return {k: (sid(v) if k in ("id", "parent") else walk(v, k)) for k, v in node.items()}
        if isinstance(node, list):
            if key in ("items", "impls", "implementations", "fields", "variants", "tuple"):
                return [sid(v) if not isinstance(v, (dict, list)) else walk(v) for v in node]
            return [walk(v) for v in node]
        return node

    out = {**doc}
    out["root"] = sid(doc["root"])
    out["index"] = {
        f"0:{key}:0": {**walk(item), "links": {t: sid(i) for t, i in item.get("links", {}).items()}}
        for key, item in doc["index"].items()
    }
    out["paths"] = {f"0:{key}:0": value for key, value in doc["paths"].items()}
    return out


def _to_format_45(doc: dict) -> dict:
    """Synthetic: the format 45 shape of the same crate. Per the rustdoc-types changelog, format 54 made
    `attrs` structured (45..53 carry source strings such as "#[repr(C)]"), 51 made the `args` of qualified
    paths and constraints optional (before: always present, possibly empty), and 57 added
    `external_crates[*].path`."""
    attr_text = {
        "non_exhaustive": "#[non_exhaustive]",
        "macro_export": "#[macro_export]",
        "automatically_derived": "#[automatically_derived]",
        "no_mangle": "#[no_mangle]",
    }

    def attr(value: object) -> str:
        if isinstance(value, str):
            return attr_text[value]
        ((kind, inner),) = value.items()
        if kind == "other":
            return inner
        if kind == "repr":
            return "#[repr(C)]" if inner["kind"] == "c" else f"#[repr({inner['kind']})]"
        if kind == "must_use":
            return "#[must_use]"
        raise AssertionError(f"attribute not expected in the fixture: {value}")

    empty_args = {"angle_bracketed": {"args": [], "constraints": []}}

    def walk(node: object) -> object:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if "self_type" in out and out.get("args") is None:
                out["args"] = empty_args
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out = walk(doc)
    out["format_version"] = 45
    for item in out["index"].values():
        item["attrs"] = [attr(a) for a in item["attrs"]]
    for crate in out["external_crates"].values():
        crate.pop("path", None)
    return out


def test_old_string_ids_are_read(fixture_doc: dict, parsed: ParsedCrate) -> None:
    converted = _to_string_ids(copy.deepcopy(fixture_doc))
    assert isinstance(converted["root"], str)
    old = parse_rustdoc_json(json.dumps(converted).encode())
    assert _comparable(old) == _comparable(parsed)
    counter = next(i for i in old.items if i.path == "ferro_fixture::Counter")
    assert counter.metadata["rustdoc_id"].startswith("0:")


def test_format_45_shape_is_read(fixture_doc: dict, parsed: ParsedCrate) -> None:
    old = parse_rustdoc_json(_to_format_45(fixture_doc))
    assert old.format_version == 45
    assert _comparable(old) == _comparable(parsed)
    union = next(i for i in old.items if i.path == "ferro_fixture::IntOrFloat")
    assert union.signature.startswith("#[repr(C)] pub union IntOrFloat")


def test_format_45_doc_hidden_string_attribute(fixture_doc: dict) -> None:
    old = _to_format_45(fixture_doc)
    old["index"][_find_id(old, "block_on", "function")]["attrs"].append("#[doc(hidden)]")
    assert "ferro_fixture::block_on" not in {i.path for i in parse_rustdoc_json(old).items}


def test_unknown_item_and_type_kinds_are_skipped(
    fixture_doc: dict, parsed: ParsedCrate, caplog: pytest.LogCaptureFixture
) -> None:
    """Synthetic: a future rustdoc may add item kinds and type kinds; they must not break a parse."""
    caplog.set_level(logging.DEBUG, logger="crates.pipeline.parse_json")
    fixture_doc["index"]["990003"] = {
        "id": 990003,
        "crate_id": 0,
        "name": "future_thing",
        "span": None,
        "visibility": "public",
        "docs": "From the future.",
        "links": {},
        "attrs": [],
        "deprecation": None,
        "inner": {"hologram": {"dimensions": 4}},
    }
    fixture_doc["index"][str(fixture_doc["root"])]["inner"]["module"]["items"].append(990003)
    function = fixture_doc["index"][_find_id(fixture_doc, "block_on", "function")]["inner"]["function"]
    function["sig"]["inputs"][0][1] = {"quantum_type": {"spin": "up"}}
    result = parse_rustdoc_json(fixture_doc)
    assert "ferro_fixture::future_thing" not in {i.path for i in result.items}
    block_on = next(i for i in result.items if i.path == "ferro_fixture::block_on")
    assert block_on.signature == "pub fn block_on<F: Future>(future: _) -> F::Output"
    assert len(result.items) == len(parsed.items)
    skipped = [r for r in caplog.records if r.getMessage() == "skipping unknown item kind"]
    assert [(r.kind, r.rustdoc_id) for r in skipped] == [("hologram", "990003")]


@pytest.mark.parametrize("version", [44, 1])
def test_format_versions_older_than_45_are_refused(fixture_doc: dict, version: int) -> None:
    fixture_doc["format_version"] = version
    with pytest.raises(UnsupportedFormat) as excinfo:
        parse_rustdoc_json(json.dumps(fixture_doc).encode())
    message = str(excinfo.value)
    assert f"format version {version} is too old" in message
    assert "45 and newer" in message
    assert excinfo.value.context["format_version"] == version


@pytest.mark.parametrize("version", [58, 59, 63, 100])
def test_newer_format_versions_are_read(fixture_doc: dict, parsed, version: int) -> None:
    fixture_doc["format_version"] = version
    result = parse_rustdoc_json(json.dumps(fixture_doc).encode())
    assert result.format_version == version
    assert [(i.path, i.kind) for i in result.items] == [(i.path, i.kind) for i in parsed.items]


def test_tested_range() -> None:
    assert list(SUPPORTED_FORMAT_VERSIONS) == list(range(45, 58))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "could not be read"),
        (b'{"root": 1, "index": {', "could not be read"),
        (b"\xff\xfe not json", "could not be read"),
        (b"[1, 2, 3]", "not an object"),
        (b'{"index": {}, "root": 0}', "no 'format_version'"),
        (b'{"format_version": "57"}', "not a number"),
        (b'{"format_version": 57, "paths": {}}', "no 'index' or 'root'"),
        (b'{"format_version": 57, "root": 5, "index": {}}', "root item '5' is missing"),
        (zstandard.ZstdCompressor().compress(b"{}"), "still compressed"),
        (gzip.compress(b"{}"), "still compressed"),
    ],
)
def test_corrupt_input_is_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(CorruptArtifact) as excinfo:
        parse_rustdoc_json(data)
    assert fragment in str(excinfo.value)


def test_truncated_fixture_is_refused(fixture_bytes: bytes) -> None:
    with pytest.raises(CorruptArtifact):
        parse_rustdoc_json(fixture_bytes[: len(fixture_bytes) // 2])


# ---------------------------------------------------------------- a real published crate


def test_real_itoa_artifact() -> None:
    itoa = parse_rustdoc_json(_zstd(RUSTDOC / "itoa-1.0.1.json.zst"))
    assert (itoa.crate_name, itoa.version, itoa.format_version) == ("itoa", "1.0.1", 57)
    items = {i.path: i for i in itoa.items}
    assert set(items) == {"itoa", "itoa::Buffer", "itoa::Buffer::new", "itoa::Buffer::format", "itoa::Integer"}
    buffer = items["itoa::Buffer"]
    assert (buffer.kind, buffer.url) == ("struct", "itoa/struct.Buffer.html")
    assert buffer.signature == "pub struct Buffer { /* private fields */ }"
    assert buffer.metadata["trait_impls"] == ["Clone", "Default"]
    fmt = items["itoa::Buffer::format"]
    assert fmt.kind == "method"
    assert fmt.signature == "pub fn format<I: Integer>(&mut self, i: I) -> &str"
    assert fmt.url == "itoa/struct.Buffer.html#method.format"
    integer = items["itoa::Integer"]
    assert (integer.kind, integer.url) == ("trait", "itoa/trait.Integer.html")
    assert integer.signature == "pub trait Integer: Sealed { }"
    assert integer.docs.startswith("An integer that can be written")


# ---------------------------------------------------------------- signature rendering of unusual types

# Expected values are rustdoc 1.95's own `.item-decl` / `.code-header` text for the same crate with
# whitespace collapsed (checked against `cargo doc` output of tests/fixtures/rustdoc/render_cases); the only
# deliberate difference is a space after each attribute, where rustdoc's HTML uses a line break.
RENDER_CASES = {
    "render_cases::Wrapper": "pub struct Wrapper<'a, T, const N: usize = 4> where T: Debug + ?Sized + 'a "
    "{ pub inner: &'a T, pub arr: [u8; N] }",
    "render_cases::Wrapper::LEN": "pub const LEN: usize = N",
    "render_cases::Wrapper::len": "pub fn len(&self) -> usize",
    "render_cases::Wrapper::boxed": "pub fn boxed(self: Box<Self>) -> &'a T",
    "render_cases::Wrapper::inner": "pub inner: &'a T",
    "render_cases::Tuple": "pub struct Tuple(pub u32, _);",
    "render_cases::Tuple::0": "pub 0: u32",
    "render_cases::Unit": "pub struct Unit;",
    "render_cases::fn_ptr": "pub fn fn_ptr(f: fn(u32) -> u32, g: for<'a> fn(&'a str) -> &'a str)",
    "render_cases::dyns": "pub fn dyns(a: &dyn Debug, b: Box<dyn Fn(i32) -> i32 + Send + 'static>, "
    "c: &(dyn Any + Send))",
    "render_cases::impls": "pub fn impls(it: impl Iterator<Item = u8> + Clone) -> impl Fn() -> u8",
    "render_cases::qualified": "pub fn qualified<I: IntoIterator>(i: I) -> <I as IntoIterator>::IntoIter "
    "where I::Item: Copy",
    "render_cases::ffi": 'pub unsafe extern "C" fn ffi(p: *const u8, q: *mut i32) -> i32',
    "render_cases::later": "pub async fn later(x: u8) -> Option<(u8, u16)>",
    "render_cases::consty": "pub const fn consty() -> [u8; 3]",
    "render_cases::tuple_single": "pub fn tuple_single(t: (u8,))",
    "render_cases::hrtb": "pub fn hrtb<F>(f: F) where F: for<'a> Fn(&'a [u8]) -> &'a u8",
    "render_cases::slices": "pub fn slices(a: &mut [u8], b: &'static str) -> Result<(), Box<dyn Error>>",
    "render_cases::WithGats": "pub trait WithGats { type Item<'a> where Self: 'a; "
    "fn get<'a>(&'a self) -> Self::Item<'a>; }",
    "render_cases::WithGats::Item": "type Item<'a> where Self: 'a",
    "render_cases::WithGats::get": "fn get<'a>(&'a self) -> Self::Item<'a>",
    "render_cases::Bounded": "pub trait Bounded: Clone + Send + 'static { const ID: u32 = 7; }",
    "render_cases::Bounded::ID": "const ID: u32 = 7",
    "render_cases::Level": "#[non_exhaustive] #[repr(u8)] pub enum Level { Low = 1, High = 2 }",
    "render_cases::Level::Low": "Low = 1",
    "render_cases::Callback": "pub type Callback = Box<dyn FnMut(&str) -> bool>;",
}


def test_signatures_of_unusual_types() -> None:
    items = {i.path: i for i in parse_rustdoc_json(_zstd(RUSTDOC / "render_cases.json.zst")).items}
    rendered = {path: items[path].signature if path in items else None for path in RENDER_CASES}
    assert rendered == RENDER_CASES
    assert items["render_cases::Tuple::0"].url == "render_cases/struct.Tuple.html#structfield.0"
    assert items["render_cases::Wrapper::LEN"].kind == "assoc_const"
    assert items["render_cases::Wrapper::LEN"].url == "render_cases/struct.Wrapper.html#associatedconstant.LEN"


def test_json_the_fast_decoder_refuses_still_parses_like_the_stdlib(fixture_doc: dict, parsed: ParsedCrate) -> None:
    # orjson refuses integers beyond 64 bits; such a file must load exactly as the stdlib reads it.
    doc = copy.deepcopy(fixture_doc)
    doc["extra_unused_field"] = 1 << 70
    again = parse_rustdoc_json(json.dumps(doc).encode())
    assert _comparable(again) == _comparable(parsed)


def test_parsing_leaves_the_garbage_collector_as_it_found_it(fixture_bytes: bytes) -> None:
    import gc

    assert gc.isenabled()
    parse_rustdoc_json(fixture_bytes)
    assert gc.isenabled()
    with pytest.raises(CorruptArtifact):
        parse_rustdoc_json(b"{not json")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_rustdoc_json(fixture_bytes)
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()


def test_an_inlined_re_export_of_another_crates_item_gets_its_page(fixture_doc: dict) -> None:
    # tokio's `#[doc(inline)] pub use tokio_macros::main;`: docs.rs has tokio/attr.main.html, but the JSON holds
    # only the item's origin, and `tokio::main` could not be found at all. rustdoc's HTML inlines every public
    # re-export of another crate's item unless it says `#[doc(no_inline)]` (`pub use rand_core::RngCore` is
    # rand/trait.RngCore.html), so a plain `pub use` gets its page too; only the JSON never inlines.
    doc = copy.deepcopy(fixture_doc)
    root = doc["index"][str(doc["root"])]
    doc["paths"]["90001"] = {"crate_id": 7, "path": ["ferro_macros", "main"], "kind": "proc_attribute"}
    doc["paths"]["90003"] = {"crate_id": 7, "path": ["ferro_macros", "helper"], "kind": "function"}
    doc["paths"]["90005"] = {"crate_id": 7, "path": ["ferro_macros", "Gadget"], "kind": "struct"}
    for use_id, target, name, attrs in [
        (90002, 90001, "main", [{"other": "#[doc(inline)]"}]),
        (90004, 90003, "helper", []),
        (90006, 90005, "Gadget", [{"other": "#[doc(no_inline)]"}]),  # a re-export line on docs.rs, no page
    ]:
        doc["index"][str(use_id)] = {
            "id": use_id, "crate_id": 0, "name": None, "span": None, "visibility": "public", "docs": None,
            "links": {}, "attrs": attrs, "deprecation": None,
            "inner": {"use": {"source": f"ferro_macros::{name}", "name": name, "id": target, "is_glob": False}},
        }  # fmt: skip
        root["inner"]["module"]["items"].append(use_id)
    by_path = {item.path: item for item in parse_rustdoc_json(doc).items}
    main = by_path[f"{CRATE}::main"]
    assert (main.kind, main.parent_path, main.url) == ("macro", CRATE, f"{CRATE}/attr.main.html")
    assert main.signature == "pub use ferro_macros::main;"
    assert "`ferro_macros` crate" in main.docs and main.metadata["reexport_of"] == "ferro_macros::main"
    # The no_inline one has no page, but its module says what it is, so get_item can point to its crate.
    assert by_path[CRATE].metadata["reexports"] == {"Gadget": "ferro_macros::Gadget"}
    helper = by_path[f"{CRATE}::helper"]
    assert (helper.kind, helper.url) == ("function", f"{CRATE}/fn.helper.html")
    assert helper.signature == "pub use ferro_macros::helper;"
    assert f"{CRATE}::Gadget" not in by_path


# ---------------------------------------------------------------- intra-doc links

DOCS_ROOT = "https://docs.rs/ferro_fixture/0.3.1/"


def test_intra_doc_links_become_links_to_the_items_pages(fixture_bytes: bytes) -> None:
    items = {item.path: item for item in parse_rustdoc_json(fixture_bytes, docs_root=DOCS_ROOT).items}
    counter = items["ferro_fixture::Counter"].docs
    # A method, written `[`Counter::increment`]` in the source, links to its anchor on the type's page.
    assert f"[`Counter::increment`]({DOCS_ROOT}ferro_fixture/struct.Counter.html#method.increment)" in counter
    # An item defined in a private module links to its public page, where its own document points.
    assert items["ferro_fixture::MAX_COUNT"].docs == (
        f"The largest value a [`Counter`]({DOCS_ROOT}ferro_fixture/struct.Counter.html) can hold before it wraps."
    )
    assert f"[`crate::FixtureError::Invalid`]({DOCS_ROOT}ferro_fixture/enum.FixtureError.html#variant.Invalid)" in (
        items["ferro_fixture::parse_log_level"].docs
    )
    # Every link target is the URL stored for an item of the crate.
    urls = {DOCS_ROOT + item.url for item in items.values()}
    for item in items.values():
        for target in re.findall(r"\]\((\S+?)\)", item.docs):
            assert target in urls, (item.path, target)


def test_chunks_keep_the_intra_doc_links_as_the_author_wrote_them(fixture_bytes: bytes) -> None:
    """Documents get URLs; chunks (embedded, keyword-indexed) keep rustdoc's link syntax, which names paths:
    reducing it to the link text measured worse on bench/queries (fused Recall@5 0.908 -> 0.895)."""
    from crates.pipeline.chunk import chunk_item

    items = {item.path: item for item in parse_rustdoc_json(fixture_bytes, docs_root=DOCS_ROOT).items}
    item = items["ferro_fixture::MAX_COUNT"]
    assert item.chunk_docs == "The largest value a [`Counter`] can hold before it wraps."
    (chunk,) = chunk_item(item, max_tokens=254, count_tokens=lambda text: len(text.split()))
    assert "a [`Counter`] can hold" in chunk.text and "https://" not in chunk.text
    assert DOCS_ROOT in item.docs


def test_intra_doc_links_of_a_local_file_are_relative_like_its_item_urls(by_path: dict[str, ParsedItem]) -> None:
    assert by_path["ferro_fixture::run_blocking"].docs == "Old name of [`block_on`](ferro_fixture/fn.block_on.html)."
    assert by_path["ferro_fixture::block_on"].url == "ferro_fixture/fn.block_on.html"


def _docs_of(doc: dict, path: str) -> str:
    return {item.path: item for item in parse_rustdoc_json(doc, docs_root=DOCS_ROOT).items}[path].docs


def _set_docs(doc: dict, item_id: str, docs: str, links: dict) -> None:
    doc["index"][item_id]["docs"] = docs
    doc["index"][item_id]["links"] = links


def test_links_to_other_crates_use_their_html_root_url(fixture_doc: dict) -> None:
    block_on = _find_id(fixture_doc, "block_on", "function")
    from_id = next(key for key, value in fixture_doc["paths"].items() if value["path"] == ["core", "convert", "From"])
    fixture_doc["paths"]["900001"] = {"crate_id": 2, "path": ["core", "option", "Option"], "kind": "enum"}
    ready = ["core", "task", "poll", "Poll", "Ready"]
    fixture_doc["paths"]["900002"] = {"crate_id": 2, "path": ready, "kind": "variant"}
    fixture_doc["paths"]["900003"] = {"crate_id": 2, "path": ["core", "option"], "kind": "module"}
    _set_docs(
        fixture_doc, block_on,
        "See [`From`], [`Option::take`], [ready](core::task::Poll::Ready \"title\"), the [module][m], "
        "[`Missing`] and [`Nowhere`](crate::nowhere).\n\n[m]: core::option",
        {"`From`": int(from_id), "`Option::take`": 900099, "core::task::Poll::Ready": 900002, "core::option": 900003,
         "`Missing`": 900098},
    )  # fmt: skip
    docs = _docs_of(fixture_doc, "ferro_fixture::block_on")
    core = "https://doc.rust-lang.org/1.95.0/core/"
    assert docs == (
        f"See [`From`]({core}convert/trait.From.html), "
        # a method of another crate's type is not in `paths`: found through its owner, as rustdoc's page links it
        f"[`Option::take`]({core}option/enum.Option.html#method.take), "
        f"[ready]({core}task/poll/enum.Poll.html#variant.Ready), the [module]({core}option/index.html), "
        # what rustdoc could not resolve keeps its text, without the brackets
        "`Missing` and `Nowhere`."
    )


def test_a_crate_without_html_root_url_is_not_linked(fixture_doc: dict) -> None:
    block_on = _find_id(fixture_doc, "block_on", "function")
    fixture_doc["external_crates"]["77"] = {"name": "mio", "html_root_url": None, "path": ""}
    fixture_doc["paths"]["900001"] = {"crate_id": 77, "path": ["mio", "Token"], "kind": "struct"}
    _set_docs(fixture_doc, block_on, "A [`mio::Token`].", {"`mio::Token`": 900001})
    docs = _docs_of(fixture_doc, "ferro_fixture::block_on")
    assert docs == "A `mio::Token`."


def test_macros_2_0_and_non_exhaustive_variants_read_as_rustdoc_shows_them(fixture_doc: dict) -> None:
    # rustdoc's JSON gives a `pub macro` as 'macro twice(...) {...}' without its visibility, and a variant's
    # `#[non_exhaustive]` only in its attrs; the HTML pages show 'pub macro twice' and the attribute.
    doc = copy.deepcopy(fixture_doc)
    root = doc["index"][str(doc["root"])]
    doc["index"]["90010"] = {
        "id": 90010, "crate_id": 0, "name": "twice", "span": None, "visibility": "public", "docs": "Twice.",
        "links": {}, "attrs": [], "deprecation": None, "inner": {"macro": "macro twice($e:expr) {\n    ...\n}"},
    }  # fmt: skip
    root["inner"]["module"]["items"].append(90010)
    enum = next(v for v in doc["index"].values() if v.get("name") == "FixtureError" and "enum" in v["inner"])
    variant = doc["index"][str(enum["inner"]["enum"]["variants"][-1])]
    variant["attrs"] = [*variant.get("attrs", []), "non_exhaustive"]
    by_path = {item.path: item for item in parse_rustdoc_json(doc).items}
    assert by_path[f"{CRATE}::twice"].signature == "pub macro twice($e:expr) {\n    ...\n}"
    name = variant["name"]
    assert by_path[f"{CRATE}::FixtureError::{name}"].signature.startswith(f"#[non_exhaustive] {name} ")
    assert f"#[non_exhaustive] {name} " in by_path[f"{CRATE}::FixtureError"].signature


def test_doc_aliases_are_kept_and_searchable(fixture_doc: dict) -> None:
    # `#[doc(alias = "...")]` names an item the way users search for it (docs.rs's search finds `memcpy` for
    # `copy_from_slice`); the aliases were dropped, so a search by one found nothing.
    from crates.pipeline.chunk import chunk_item
    from crates.pipeline.embedders.hashing import HashEmbedder

    doc = copy.deepcopy(fixture_doc)
    raw = next(v for v in doc["index"].values() if v.get("name") == "block_on" and "function" in v["inner"])
    raw["attrs"] = [
        *raw.get("attrs", []),
        {"other": '#[doc(alias = "run_until_done")]'},
        '#[doc(alias("wait_for", "await_sync"))]',  # older formats keep the attribute as written
    ]
    item = next(i for i in parse_rustdoc_json(doc).items if i.path == f"{CRATE}::block_on")
    assert item.metadata["doc_aliases"] == ["run_until_done", "wait_for", "await_sync"]
    embedder = HashEmbedder()
    text = chunk_item(item, max_tokens=embedder.max_tokens, count_tokens=embedder.count_tokens)[0].text
    assert "Aliases: run_until_done, wait_for, await_sync" in text
    plain = next(i for i in parse_rustdoc_json(fixture_doc).items if i.path == f"{CRATE}::block_on")
    assert "doc_aliases" not in plain.metadata


def test_underscore_imports_name_nothing(fixture_doc: dict) -> None:
    # `pub use std::io::Write as _;` (a prelude's way to bring a trait's methods into scope) adds no name: rustdoc
    # gives it no page. It became a page 'crate::_' (another crate's item) or an alias 'crate::_' (a local one).
    doc = copy.deepcopy(fixture_doc)
    root = doc["index"][str(doc["root"])]
    doc["paths"]["90021"] = {"crate_id": 7, "path": ["ferro_dep", "DepTrait"], "kind": "trait"}
    local_trait = next(k for k, v in doc["index"].items() if v.get("crate_id") == 0 and "trait" in v["inner"])
    for use_id, target, source in [(90022, 90021, "ferro_dep::DepTrait"), (90023, int(local_trait), "crate::X")]:
        doc["index"][str(use_id)] = {
            "id": use_id, "crate_id": 0, "name": None, "span": None, "visibility": "public", "docs": None,
            "links": {}, "attrs": [], "deprecation": None,
            "inner": {"use": {"source": source, "name": "_", "id": target, "is_glob": False}},
        }  # fmt: skip
        root["inner"]["module"]["items"].append(use_id)
    items = parse_rustdoc_json(doc).items
    assert [i.path for i in items if i.path.endswith("::_")] == []
    assert [i.path for i in items if any(a.endswith("::_") for a in i.metadata.get("aliases", []))] == []


def test_the_never_type_reads_as_rust_writes_it(fixture_doc: dict) -> None:
    # rustdoc JSON names `!` as the primitive 'never': `pub fn exit(code: i32) -> !` read '-> never'.
    doc = copy.deepcopy(fixture_doc)
    raw = next(v for v in doc["index"].values() if v.get("name") == "block_on" and "function" in v["inner"])
    raw["inner"]["function"]["sig"]["output"] = {"primitive": "never"}
    item = next(i for i in parse_rustdoc_json(doc).items if i.path == f"{CRATE}::block_on")
    assert item.signature.endswith(") -> !"), item.signature
