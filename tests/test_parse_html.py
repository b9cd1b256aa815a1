"""Parse stage, rustdoc HTML (crates.pipeline.parse_html).

Fixtures in tests/fixtures/html (see its README): real rustdoc output only.
* ferro_fixture/ and ferro_fixture-0.3.1.zip: rustdoc 1.95 pages of tests/fixtures/crates/ferro_fixture
  (current layout), with its redirect stubs, a source page and settings/help pages;
* semver-1.0.14/, log-0.4.17/: pages of docs.rs builds by rustdoc 1.63 (the older layout).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from crates.errors import CorruptArtifact, InvalidInput
from crates.models import Document
from crates.pipeline.parse_html import is_redirect, parse_html_pages, read_doc_dir
from crates.pipeline.parse_html.layouts import impl_trait_name
from crates.pipeline.types import ParsedCrate, ParsedItem

HTML = Path(__file__).parent / "fixtures" / "html"
FIXTURE_DIR = HTML / "ferro_fixture"
FIXTURE_ZIP = HTML / "ferro_fixture-0.3.1.zip"


def _by_key(parsed: ParsedCrate) -> dict[tuple[str, str], ParsedItem]:
    return {(item.path, item.kind): item for item in parsed.items}


def _item(items: dict[tuple[str, str], ParsedItem], path: str, kind: str) -> ParsedItem:
    assert (path, kind) in items, f"{kind} {path} not parsed; have {sorted(items)}"
    return items[(path, kind)]


@pytest.fixture(scope="module")
def fixture_pages() -> dict[str, bytes]:
    return read_doc_dir(FIXTURE_DIR)


@pytest.fixture(scope="module")
def parsed(fixture_pages: dict[str, bytes]) -> ParsedCrate:
    return parse_html_pages(fixture_pages, version="0.3.1")


@pytest.fixture(scope="module")
def items(parsed: ParsedCrate) -> dict[tuple[str, str], ParsedItem]:
    return _by_key(parsed)


@pytest.fixture(scope="module")
def semver() -> dict[tuple[str, str], ParsedItem]:
    return _by_key(parse_html_pages(read_doc_dir(HTML / "semver-1.0.14")))


# --- current layout (rustdoc 1.95) ---------------------------------------------------------------------------


def test_crate_metadata_comes_from_the_pages(fixture_pages: dict[str, bytes]) -> None:
    parsed = parse_html_pages(fixture_pages)  # no version given: the sidebar has it
    assert (parsed.crate_name, parsed.version, parsed.source) == ("ferro_fixture", "0.3.1", "html")
    assert parsed.generator == "rustdoc 1.95.0"
    assert parse_html_pages(fixture_pages, version="9.9.9").version == "9.9.9"


def test_every_item_has_a_known_kind_and_a_unique_path(parsed: ParsedCrate) -> None:
    kinds = set(Document.Kind.values)
    assert all(item.kind in kinds for item in parsed.items)
    keys = [(item.path, item.kind) for item in parsed.items]
    assert len(keys) == len(set(keys))
    assert all(item.path == f"{item.parent_path}::{item.name}" for item in parsed.items if item.parent_path)


def test_items_defined_in_private_modules_are_at_their_public_path(items) -> None:
    counter = _item(items, "ferro_fixture::Counter", "struct")
    assert counter.parent_path == "ferro_fixture"
    assert counter.url == "ferro_fixture/struct.Counter.html"
    assert counter.signature == "pub struct Counter { pub total: u64, /* private fields */ }"
    assert counter.docs.startswith("A counter that counts events by name.\n\nCounters start at zero.")

    renamed = _item(items, "ferro_fixture::parse_log_level", "function")
    assert renamed.signature == "pub fn parse_log_level(text: &str) -> Result<u8>"
    assert renamed.url == "ferro_fixture/fn.parse_log_level.html"

    mutex = _item(items, "ferro_fixture::sync::Mutex", "struct")
    assert mutex.parent_path == "ferro_fixture::sync"
    assert mutex.signature == "pub struct Mutex<T: ?Sized> { /* private fields */ }"
    # rustdoc's redirect stubs at the private locations are not documents
    assert not [path for path, _ in items if "internal" in path or "::mutex" in path or path.endswith("parse_level")]


def test_modules(items) -> None:
    root = _item(items, "ferro_fixture", "module")
    assert (root.parent_path, root.url, root.signature) == ("", "ferro_fixture/index.html", "")
    sync = _item(items, "ferro_fixture::sync", "module")
    assert (sync.parent_path, sync.url, sync.docs) == (
        "ferro_fixture",
        "ferro_fixture/sync/index.html",
        "Synchronisation primitives.",
    )


def test_methods_have_signatures_docs_and_anchors(items) -> None:
    method = _item(items, "ferro_fixture::Counter::with_capacity", "method")
    assert method.parent_path == "ferro_fixture::Counter"
    assert method.signature == "pub fn with_capacity(capacity: usize) -> Self"
    assert method.docs == "Creates an empty counter with room for at least `capacity` names\nwithout reallocating."
    assert method.url == "ferro_fixture/struct.Counter.html#method.with_capacity"
    lock = _item(items, "ferro_fixture::sync::Mutex::lock", "method")
    assert lock.signature == "pub fn lock(&self) -> MutexGuard<'_, T>"
    assert lock.docs.endswith("Returns a guard that releases the lock when dropped.")
    assert _item(items, "ferro_fixture::sync::Mutex::new", "method").signature == "pub const fn new(value: T) -> Self"


def test_fields_and_variants(items) -> None:
    total = _item(items, "ferro_fixture::Counter::total", "field")
    assert (total.signature, total.docs) == ("pub total: u64", "The current total.")
    assert total.url == "ferro_fixture/struct.Counter.html#structfield.total"
    assert _item(items, "ferro_fixture::IntOrFloat::float", "field").signature == "pub float: f32"
    assert _item(items, "ferro_fixture::IntOrFloat", "union").signature == (
        "#[repr(C)] pub union IntOrFloat { pub int: u32, pub float: f32 }"
    )

    enum = _item(items, "ferro_fixture::FixtureError", "enum")
    assert enum.signature == "pub enum FixtureError { Empty, Invalid(String), OutOfRange { value: i64, max: i64 } }"
    invalid = _item(items, "ferro_fixture::FixtureError::Invalid", "variant")
    assert (invalid.signature, invalid.url) == (
        "Invalid(String)",
        "ferro_fixture/enum.FixtureError.html#variant.Invalid",
    )
    assert invalid.docs == "The input could not be parsed; holds the offending text."
    out_of_range = _item(items, "ferro_fixture::FixtureError::OutOfRange", "variant")
    assert out_of_range.signature == "OutOfRange { value: i64, max: i64 }"
    value = _item(items, "ferro_fixture::FixtureError::OutOfRange::value", "field")
    assert value.parent_path == "ferro_fixture::FixtureError::OutOfRange"
    assert (value.signature, value.docs) == ("value: i64", "The value that was given.")
    assert value.url == "ferro_fixture/enum.FixtureError.html#variant.OutOfRange.field.value"


def test_trait_items(items) -> None:
    shape = _item(items, "ferro_fixture::shapes::Shape", "trait")
    assert shape.signature == (
        "pub trait Shape { type Unit; const CORNERS: u32; fn area(&self) -> f64; fn name(&self) -> String { ... } }"
    )
    page = "ferro_fixture/shapes/trait.Shape.html"
    expected = {
        ("ferro_fixture::shapes::Shape::area", "method"): ("fn area(&self) -> f64", f"{page}#tymethod.area"),
        ("ferro_fixture::shapes::Shape::name", "method"): ("fn name(&self) -> String", f"{page}#method.name"),
        ("ferro_fixture::shapes::Shape::Unit", "assoc_type"): ("type Unit", f"{page}#associatedtype.Unit"),
        ("ferro_fixture::shapes::Shape::CORNERS", "assoc_const"): (
            "const CORNERS: u32",
            f"{page}#associatedconstant.CORNERS",
        ),
    }
    for (path, kind), (signature, url) in expected.items():
        item = _item(items, path, kind)
        assert (item.signature, item.url, item.parent_path) == (signature, url, "ferro_fixture::shapes::Shape")
    assert _item(items, "ferro_fixture::shapes::Shape::area", "method").docs == "Returns the area of the shape."
    # the implementors' CORNERS/Unit on the trait page are impls, not trait items
    members = sorted(path for path, _ in items if path.startswith("ferro_fixture::shapes::Shape::"))
    assert len(members) == 4


def test_trait_impls_exclude_auto_and_blanket_impls(items) -> None:
    counter = _item(items, "ferro_fixture::Counter", "struct")
    assert counter.metadata["trait_impls"] == ["Clone", "Debug", "Default", "Iterator"]
    assert _item(items, "ferro_fixture::shapes::Rect", "struct").metadata["trait_impls"] == [
        "Clone", "Copy", "Debug", "PartialEq", "Shape", "StructuralPartialEq",
    ]  # fmt: skip
    assert _item(items, "ferro_fixture::IntOrFloat", "union").metadata["trait_impls"] == []
    # methods of trait impls are not documents of their own
    for name in ("next", "clone", "fmt", "default", "type_id", "into"):
        assert not any(path.endswith(f"::{name}") for path, _ in items), name


def test_deprecated_items(items) -> None:
    old = _item(items, "ferro_fixture::run_blocking", "function")
    assert (old.deprecated, old.deprecation_note) == (True, "since 0.2.0: use `block_on` instead")
    # The deprecation notice is not part of the docs; the intra-doc link stays a link, relative to the docs
    # root like the item URLs of a local `cargo doc` tree.
    assert old.docs == "Old name of [`block_on`](ferro_fixture/fn.block_on.html)."
    reset = _item(items, "ferro_fixture::Counter::reset", "method")
    assert (reset.deprecated, reset.deprecation_note) == (True, "since 0.3.0: create a new counter instead")
    assert not _item(items, "ferro_fixture::block_on", "function").deprecated
    assert not _item(items, "ferro_fixture::Counter::get", "method").deprecated


def test_docs_keep_code_blocks_headings_and_inline_code(items) -> None:
    root = _item(items, "ferro_fixture", "module")
    assert root.docs.startswith("# ferro_fixture\n\nA small crate written for Ferrodex\u2019s tests.")
    assert root.docs.endswith(
        "```rust\nuse ferro_fixture::Counter;\nlet mut c = Counter::with_capacity(4);\nc.increment();\n"
        "assert_eq!(c.get(), 1);\n```"
    )
    assert "§" not in root.docs
    macro = _item(items, "ferro_fixture::counter", "macro")
    assert macro.signature == "macro_rules! counter {\n    ($start:expr) => { ... };\n}"
    assert "```rust\nlet c = ferro_fixture::counter!(3);\nassert_eq!(c.get(), 3);\n```" in macro.docs
    parse = _item(items, "ferro_fixture::parse_log_level", "function")
    assert parse.docs == (
        'Parses a log level such as `"warn"` into a number from 0 to 4.\n\n# Errors\n\n'
        "Returns [`crate::FixtureError::Invalid`](ferro_fixture/enum.FixtureError.html#variant.Invalid) when the "
        "text is not a level."
    )
    counter = _item(items, "ferro_fixture::Counter", "struct")
    assert "\n\n## Capacity\n\n" in counter.docs  # `## Capacity` in the source, an <h3> on the page


def test_glob_reexports_become_aliases(items) -> None:
    circle = _item(items, "ferro_fixture::shapes::Circle", "struct")
    assert circle.metadata["aliases"] == ["ferro_fixture::Circle"]
    assert _item(items, "ferro_fixture::shapes::total_area", "function").metadata["aliases"] == [
        "ferro_fixture::total_area"
    ]
    assert "aliases" not in _item(items, "ferro_fixture::Counter", "struct").metadata


def test_source_settings_and_redirect_pages_are_skipped(fixture_pages: dict[str, bytes]) -> None:
    stubs = {
        "ferro_fixture/internal/struct.Counter.html",
        "ferro_fixture/sync/mutex/struct.Mutex.html",
        "ferro_fixture/macro.counter!.html",
    }
    assert all(is_redirect(fixture_pages[path]) for path in stubs)
    assert not is_redirect(fixture_pages["ferro_fixture/struct.Counter.html"])

    others = {
        path: (FIXTURE_DIR / path).read_bytes()
        for path in ("src/ferro_fixture/lib.rs.html", "settings.html", "help.html", "ferro_fixture/all.html")
    }
    root = {"ferro_fixture/index.html": fixture_pages["ferro_fixture/index.html"]}
    only_skipped = parse_html_pages({**root, **others, **{path: fixture_pages[path] for path in stubs}})
    assert [(item.path, item.kind) for item in only_skipped.items] == [("ferro_fixture", "module")]


def test_the_docsrs_zip_gives_the_same_documents(parsed: ParsedCrate) -> None:
    with zipfile.ZipFile(FIXTURE_ZIP) as archive:
        pages = {name: archive.read(name) for name in archive.namelist() if name.endswith(".html")}
    assert "src/ferro_fixture/lib.rs.html" in pages and "settings.html" in pages
    from_zip = parse_html_pages(pages, version="0.3.1")
    assert from_zip.crate_name == "ferro_fixture"
    assert [(i.path, i.kind, i.signature, i.docs, i.url) for i in from_zip.items] == [
        (i.path, i.kind, i.signature, i.docs, i.url) for i in parsed.items
    ]


# --- read_doc_dir -----------------------------------------------------------------------------------------------


def test_read_doc_dir_reads_only_the_crate_pages(fixture_pages: dict[str, bytes]) -> None:
    assert "ferro_fixture/index.html" in fixture_pages
    assert "ferro_fixture/sync/struct.Mutex.html" in fixture_pages
    assert all(path.startswith("ferro_fixture/") and path.endswith(".html") for path in fixture_pages)
    assert fixture_pages["ferro_fixture/index.html"] == (FIXTURE_DIR / "ferro_fixture" / "index.html").read_bytes()
    # the crate's own directory, and the package name spelled with a dash, lead to the same pages
    assert read_doc_dir(FIXTURE_DIR / "ferro_fixture") == fixture_pages
    assert read_doc_dir(FIXTURE_DIR, crate_name="ferro-fixture") == fixture_pages


def test_read_doc_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a directory"):
        read_doc_dir(tmp_path / "missing")
    with pytest.raises(InvalidInput, match="cargo doc"):
        read_doc_dir(tmp_path)
    for crate in ("alpha", "beta"):
        (tmp_path / crate).mkdir()
        (tmp_path / crate / "index.html").write_bytes(
            (FIXTURE_DIR / "ferro_fixture" / "index.html").read_bytes().replace(b"ferro_fixture", crate.encode())
        )
    with pytest.raises(InvalidInput, match="alpha, beta"):
        read_doc_dir(tmp_path)
    assert list(read_doc_dir(tmp_path, crate_name="beta")) == ["beta/index.html"]
    with pytest.raises(CorruptArtifact, match="gamma"):
        read_doc_dir(tmp_path, crate_name="gamma")


def test_pages_without_a_crate_root_are_refused(fixture_pages: dict[str, bytes]) -> None:
    pages = {path: data for path, data in fixture_pages.items() if path != "ferro_fixture/index.html"}
    with pytest.raises(CorruptArtifact, match="crate root"):
        parse_html_pages(pages)
    with pytest.raises(CorruptArtifact, match="ferro_fixture"):
        parse_html_pages({"README.html": b"<html></html>"}, crate_name="ferro_fixture")


# --- older layout (rustdoc 1.63, docs.rs builds of semver 1.0.14 and log 0.4.17) --------------------------------


def test_old_layout_crate_metadata() -> None:
    parsed = parse_html_pages(read_doc_dir(HTML / "semver-1.0.14"))
    assert (parsed.crate_name, parsed.version, parsed.generator) == ("semver", "1.0.14", "rustdoc 1.63.0")
    assert parse_html_pages(read_doc_dir(HTML / "log-0.4.17")).generator == "rustdoc 1.63.0"


def test_old_layout_struct_with_fields_methods_and_trait_impls(semver) -> None:
    version = _item(semver, "semver::Version", "struct")
    assert version.url == "semver/struct.Version.html"
    assert version.signature == (
        "pub struct Version { pub major: u64, pub minor: u64, pub patch: u64, pub pre: Prerelease, "
        "pub build: BuildMetadata }"
    )
    assert version.docs.startswith("**SemVer version** as defined by https://semver.org.\n\n# Syntax\n\n- The major")
    traits = version.metadata["trait_impls"]
    assert {"Clone", "Debug", "Display", "FromStr", "Ord", "PartialOrd", "Hash"} <= set(traits)
    assert not {"Send", "Sync", "Unpin", "Any", "From", "Into", "ToString"} & set(traits)

    major = _item(semver, "semver::Version::major", "field")
    assert (major.signature, major.url) == ("pub major: u64", "semver/struct.Version.html#structfield.major")
    parse = _item(semver, "semver::Version::parse", "method")
    assert parse.signature == "pub fn parse(text: &str) -> Result<Self, Error>"
    assert parse.docs.startswith("Create `Version` by parsing from string representation.\n\n# Errors\n\n")
    new = _item(semver, "semver::Version::new", "method")
    assert new.signature == "pub const fn new(major: u64, minor: u64, patch: u64) -> Self"
    assert "```rust\nVersion {\n    major,\n" in new.docs
    # trait-impl methods (cmp, fmt, from_str, ...) are not documents
    assert sorted(path for path, kind in semver if path.startswith("semver::Version::") and kind == "method") == [
        "semver::Version::new",
        "semver::Version::parse",
    ]


def test_old_layout_enum_assoc_const_and_redirects(semver) -> None:
    op = _item(semver, "semver::Op", "enum")
    assert op.signature.startswith("#[non_exhaustive] pub enum Op { Exact, Greater, GreaterEq,")
    variants = sorted(path for path, kind in semver if kind == "variant")
    assert len(variants) == 8 and "semver::Op::Caret" in variants
    assert _item(semver, "semver::Op::Tilde", "variant").url == "semver/enum.Op.html#variant.Tilde"
    star = _item(semver, "semver::VersionReq::STAR", "assoc_const")
    assert star.signature == "pub const STAR: Self = VersionReq { comparators: Vec::new() }"
    assert star.docs.startswith("A `VersionReq` with no constraint on the version numbers it matches.")
    # semver/parse/struct.Error.html is a redirect stub
    assert not [path for path, _ in semver if path.startswith("semver::parse")]


def test_old_layout_trait_macro_and_function() -> None:
    log = _by_key(parse_html_pages(read_doc_dir(HTML / "log-0.4.17")))
    trait = _item(log, "log::Log", "trait")
    assert trait.signature == (
        "pub trait Log: Sync + Send { fn enabled(&self, metadata: &Metadata<'_>) -> bool; "
        "fn log(&self, record: &Record<'_>); fn flush(&self); }"
    )
    enabled = _item(log, "log::Log::enabled", "method")
    assert enabled.url == "log/trait.Log.html#tymethod.enabled"
    assert enabled.signature == "fn enabled(&self, metadata: &Metadata<'_>) -> bool"
    assert enabled.docs.startswith("Determines if a log message with the specified metadata would be\nlogged.")
    assert "# For implementors" in enabled.docs  # an <h5> in member docs is the author's `#`
    racy = _item(log, "log::set_logger_racy", "function")
    assert racy.signature == "pub unsafe fn set_logger_racy(logger: &'static dyn Log) -> Result<(), SetLoggerError>"
    assert "# Safety" in racy.docs
    info = _item(log, "log::info", "macro")
    assert info.signature.startswith("macro_rules! info {\n")
    assert "ⓘ" not in info.docs and "```rust\nuse log::info;" in info.docs
    assert len([key for key in log if key[0] == "log::info"]) == 1  # macro.info!.html is a redirect


# --- helpers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "trait"),
    [
        ("impl Clone for Counter", "Clone"),
        ("impl<T: Into<f64> + Copy> Shape for Rect<T>", "Shape"),
        ("impl<'a, T> From<&'a [T]> for Vec<T> where T: Clone", "From"),
        ("unsafe impl<T: ?Sized + Send> Sync for Mutex<T>", "Sync"),
        ("impl<F> core::future::Future for Fut<F> where F: Fn() -> u8", "Future"),
        ("impl !Send for Guard", ""),
        ("impl Counter", ""),
        ("impl<T> Mutex<T>", ""),
    ],
)
def test_impl_trait_name(header: str, trait: str) -> None:
    assert impl_trait_name(header) == trait


def test_links_in_docs_are_absolute_under_the_docs_root() -> None:
    root = "https://docs.rs/log/0.4.17/"
    items = _by_key(parse_html_pages(read_doc_dir(HTML / "log-0.4.17"), docs_root=root))
    enabled = _item(items, "log::Log::enabled", "method")
    assert "# For implementors" in enabled.docs  # a heading's link to itself is not a link
    links = [
        (item.path, url) for item in items.values() for url in re.findall(r"\]\((\S+?)\)", item.docs)
    ]
    assert len(links) > 20
    # Relative hrefs are resolved against the page on docs.rs; other sites keep their absolute URLs.
    assert all(url.startswith(("https://", "http://")) for _path, url in links), links
    assert any(url.startswith(root + "log/") for _path, url in links)
    assert not any("/src/" in url or url.endswith("#") for _path, url in links)  # no source links or "§" anchors


def test_a_notable_trait_tooltip_leaves_no_space_before_the_semicolon(fixture_pages: dict[str, bytes]) -> None:
    # rustdoc puts an "ⓘ" tooltip after a return type with notable traits (`-> Vec<u8> ⓘ;` in a trait's
    # declaration); dropping the tooltip left `-> Vec<u8> ;` where the rustdoc JSON gives `-> Vec<u8>;`.
    pages = dict(fixture_pages)
    key = next(k for k in pages if k.endswith("shapes/trait.Shape.html"))
    tooltip = b' <a href="#" class="tooltip" data-notable-ty="f64">\xe2\x93\x98</a>'
    needle = b'std/primitive.f64.html">f64</a>;'
    assert needle in pages[key]
    pages[key] = pages[key].replace(needle, needle[:-1] + tooltip + b";", 1)
    shape = _item(_by_key(parse_html_pages(pages, version="0.3.1")), "ferro_fixture::shapes::Shape", "trait")
    assert "fn area(&self) -> f64; fn name" in shape.signature, shape.signature


def test_pages_built_with_document_private_items_are_refused_saying_how_to_rebuild(tmp_path: Path) -> None:
    # `cargo doc --document-private-items` documents private modules instead of inlining their re-exported
    # items, so the public path of such an item (`crate::PrivStruct` for `mod private; pub use private::*`) has
    # no page: the crate was stored with its private items and without those public paths.
    import shutil

    shutil.copytree(FIXTURE_DIR / "ferro_fixture", tmp_path / "ferro_fixture")
    index = tmp_path / "ferro_fixture" / "index.html"
    page = index.read_bytes()
    marked = page.replace(b"</dt>", '<span title="Restricted Visibility">&nbsp;🔒</span> </dt>'.encode(), 1)
    assert marked != page
    index.write_bytes(marked)
    with pytest.raises(InvalidInput, match="--document-private-items") as caught:
        read_doc_dir(tmp_path)
    assert "--json-file" in caught.value.message


@pytest.mark.parametrize(
    "href", ["../other_dep/struct.Gadget.html", "https://docs.rs/other_dep/0.1.0/other_dep/struct.Gadget.html"]
)
def test_a_listed_re_export_of_another_crates_item_is_noted_on_its_module(
    fixture_pages: dict[str, bytes], href: str
) -> None:
    # `#[doc(no_inline)] pub use other_dep::Gadget;` is a line under Re-exports, linking to the other crate's
    # docs (relatively in a local `cargo doc` tree, absolutely on docs.rs). No page, but the module notes it, so
    # get_item can say where its docs are instead of 'No item'.
    pages = dict(fixture_pages)
    key = "ferro_fixture/index.html"
    listed = b'<dl class="item-table reexports">'
    assert listed in pages[key]
    line = (
        f'<dt id="reexport.Gadget"><code>pub use other_dep::<a class="struct" href="{href}" '
        f'title="struct other_dep::Gadget">Gadget</a>;</code></dt>'
    ).encode()
    pages[key] = pages[key].replace(listed, listed + line, 1)
    root = _item(_by_key(parse_html_pages(pages, version="0.3.1")), "ferro_fixture", "module")
    assert root.metadata["reexports"] == {"Gadget": "other_dep::Gadget"}
