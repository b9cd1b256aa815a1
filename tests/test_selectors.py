"""get_item (exact, alias, suffix, suggestions, children), list_crates and get_crate."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crates.errors import CrateNotFound, InvalidInput, ItemNotFound, VersionNotFound
from crates.models import Crate
from crates.selectors import get_crate, get_item, list_crates
from jobs.models import CrateJob
from tests.search_corpus import HASHBROWN, SERDE_JSON, TOKIO, item, store_release

RWLOCK_NEW = item("tokio::sync::RwLock::new", "method", "pub fn new(value: T) -> RwLock<T>", "Creates a new RwLock.")


@pytest.fixture(scope="module", autouse=True)
def corpus(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        Crate.objects.all().delete()
        CrateJob.objects.all().delete()
        store_release(crate="tokio", version="1.24.2", items=[*TOKIO, RWLOCK_NEW])
        store_release(crate="tokio", version="1.0.0", items=TOKIO[:3])
        store_release(crate="tokio", version="1.25.0", items=TOKIO[:2], state="building")
        store_release(crate="serde_json", version="1.0.87", items=SERDE_JSON)
        store_release(crate="hashbrown", version="0.13.2", items=HASHBROWN)
        store_release(crate="gone", version="1.0.0", items=HASHBROWN[:1], deleted=True)
        for n in range(12):
            Crate.objects.create(name=f"filler-{n:02d}", description="padding for pagination")
        CrateJob.objects.create(crate_name="tokio", normalized_name="tokio", status="failed")
        newest = CrateJob.objects.create(crate_name="tokio", normalized_name="tokio", status="complete")
        CrateJob.objects.filter(pk=newest.pk).update(created_at=timezone.now() + timezone.timedelta(seconds=5))
        yield
        Crate.objects.all().delete()
        CrateJob.objects.all().delete()


pytestmark = pytest.mark.django_db


# --- get_item ---------------------------------------------------------------------------------


def test_get_item_by_exact_path_lists_its_methods():
    detail = get_item(crate="tokio", path="tokio::sync::Mutex")
    assert (detail.crate, detail.version, detail.kind) == ("tokio", "1.24.2", "struct")
    assert detail.signature == "pub struct Mutex<T: ?Sized>"
    assert "asynchronous `Mutex`-like type" in detail.docs
    assert detail.url == "https://docs.rs/tokio/1.24.2/tokio/sync/Mutex.html"
    children = {c["path"]: c for c in detail.children}
    assert set(children) == {"tokio::sync::Mutex::lock", "tokio::sync::Mutex::try_lock", "tokio::sync::Mutex::new"}
    assert children["tokio::sync::Mutex::lock"]["kind"] == "method"
    assert children["tokio::sync::Mutex::lock"]["summary"].startswith("Locks this mutex")
    assert detail.metadata == {"aliases": ["tokio::Mutex"]}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Mutex::lock", "tokio::sync::Mutex::lock"),  # unique suffix on a segment boundary
        ("sync::Mutex", "tokio::sync::Mutex"),  # written without the crate
        ("try_lock", "tokio::sync::Mutex::try_lock"),
        ("tokio::Mutex", "tokio::sync::Mutex"),  # an alias (re-export)
        ("TOKIO::SYNC::MUTEX", "tokio::sync::Mutex"),  # case-insensitive
        ("tokio::sync::Mutex::lock()", "tokio::sync::Mutex::lock"),
        ("Mutex lock", "tokio::sync::Mutex::lock"),
        ("tokio::task::spawn", "tokio::spawn"),  # alias of a function
        ("tokio::sync::Mutex<T>", "tokio::sync::Mutex"),  # generic arguments, as written in code
        ("Mutex<Vec<u8>>::lock", "tokio::sync::Mutex::lock"),
        ("tokio::sync::Mutex::<T>::try_lock()", "tokio::sync::Mutex::try_lock"),  # turbofish
        # as agents copy them from docs: a code span, a crate-relative intra-doc path (with its disambiguator),
        # the item's kind before it, a method call
        ("`tokio::sync::Mutex`", "tokio::sync::Mutex"),
        ("crate::sync::Mutex", "tokio::sync::Mutex"),
        ("struct@crate::sync::Mutex", "tokio::sync::Mutex"),
        ("struct tokio::sync::Mutex", "tokio::sync::Mutex"),
        ("pub fn tokio::sync::Mutex::lock", "tokio::sync::Mutex::lock"),
        ("Mutex.lock()", "tokio::sync::Mutex::lock"),
        ("macro_rules! select", "tokio::select"),
    ],
)
def test_get_item_resolves_suffixes_aliases_and_case(path, expected):
    assert get_item(crate="tokio", path=path).path == expected


def test_get_item_through_a_re_exported_parent():
    detail = get_item(crate="serde_json", path="serde_json::Map::with_capacity")
    assert detail.path == "serde_json::map::Map::with_capacity"
    assert get_item(crate="serde_json", path="serde_json::Map").path == "serde_json::map::Map"


def test_get_item_suffix_must_be_on_a_segment_boundary():
    with pytest.raises(ItemNotFound):
        get_item(crate="tokio", path="utex::lock")


def test_ambiguous_suffix_lists_the_candidates():
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="tokio", path="new")
    assert set(info.value.context["suggestions"]) == {"tokio::sync::Mutex::new", "tokio::sync::RwLock::new"}
    assert "tokio::sync::RwLock::new" in str(info.value)


def test_a_suffix_typed_with_its_case_picks_the_one_item_with_that_case():
    # tokio 1.24.2 has both: `Mutex` was reported ambiguous with the guards' `mutex()` methods.
    store_release(crate="lockbox", version="1.0.0", items=[
        item("lockbox::sync::Mutex", "struct", "pub struct Mutex<T>", "A mutex."),
        item("lockbox::sync::MutexGuard::mutex", "method", "pub fn mutex(&self) -> &Mutex<T>", "Its mutex."),
        item("lockbox::sync::OwnedMutexGuard::mutex", "method", "pub fn mutex(&self) -> &Mutex<T>", "Its mutex."),
    ])  # fmt: skip
    assert get_item(crate="lockbox", path="Mutex").path == "lockbox::sync::Mutex"
    assert get_item(crate="lockbox", path="sync::Mutex").path == "lockbox::sync::Mutex"
    with pytest.raises(ItemNotFound) as info:  # two items have exactly this case: still the user's choice
        get_item(crate="lockbox", path="mutex")
    assert info.value.context["ambiguous"] is True


def test_an_alias_spelled_as_typed_wins_over_a_path_equal_but_for_case():
    # serde_json: `serde_json::Value` (the enum's re-export) answered the module `serde_json::value`.
    store_release(crate="jsonish", version="1.0.0", items=[
        item("jsonish::value", "module", "", "The Value enum."),
        item("jsonish::value::Value", "enum", "pub enum Value { Null }", "Any JSON value.",
             metadata={"aliases": ["jsonish::Value"]}),
    ])  # fmt: skip
    assert get_item(crate="jsonish", path="jsonish::Value").path == "jsonish::value::Value"
    assert get_item(crate="jsonish", path="jsonish::value").path == "jsonish::value"
    assert get_item(crate="jsonish", path="JSONISH::VALUE::VALUE").path == "jsonish::value::Value"


@pytest.fixture()
def regexish():
    # The shapes of regex and clap that made get_item answer with another item (issue 18).
    store_release(crate="regex", version="1.0.0", items=[
        item("regex::Regex", "struct", "pub struct Regex", "A compiled regular expression."),
        item("regex::Regex::captures", "method", "pub fn captures<'h>(&self, haystack: &'h str) -> Option<Captures>",
             "Returns the capture groups of the leftmost-first match."),
        item("regex::Captures", "struct", "pub struct Captures<'h>", "The capture groups of one match."),
        item("regex::Regex::is_match", "method", "pub fn is_match(&self, haystack: &str) -> bool", "Matches?"),
        item("regex::bytes::Regex::is_match", "method", "pub fn is_match(&self, haystack: &[u8]) -> bool", "Same."),
    ])  # fmt: skip
    store_release(crate="clap", version="4.0.0", items=[
        item("clap::Parser", "trait", "pub trait Parser", "Parse command-line arguments into Self."),
        item("clap::parser", "module", "", "Command line argument parser."),
        item("clap::builder::TypedValueParser::Parser", "assoc_type", "type Parser", "An associated parser."),
        item("clap::error::Error", "struct", "pub struct Error", "Command line argument parser error.",
             metadata={"aliases": ["clap::Error"]}),
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("crate", "path", "expected", "matched"),
    [
        ("regex", "regex::Regex::captures", "regex::Regex::captures", "exact"),
        ("regex", "Regex::captures", "regex::Regex::captures", "exact"),  # from the crate root, as typed
        ("regex", "regex::Captures", "regex::Captures", "exact"),
        ("regex", "Captures", "regex::Captures", "exact"),
        ("regex", "captures", "regex::Regex::captures", "suffix"),  # regex::Captures only ignoring case
        ("clap", "Parser", "clap::Parser", "exact"),  # not "matches 3 items"
        ("clap", "clap::Parser", "clap::Parser", "exact"),
        ("clap", "clap::parser", "clap::parser", "exact"),
        ("clap", "clap::Error", "clap::error::Error", "alias"),
        ("clap", "error::Error", "clap::error::Error", "exact"),
        ("clap", "CLAP::ERROR::ERROR", "clap::error::Error", "case_insensitive"),  # the only one, ignoring case
        ("clap", "clap::error", "clap::error::Error", "case_insensitive"),  # its alias clap::Error, the only one
    ],
)
def test_get_item_says_how_it_matched_and_never_substitutes(regexish, crate, path, expected, matched):
    detail = get_item(crate=crate, path=path)
    assert (detail.path, detail.matched) == (expected, matched)
    assert detail.requested


def test_a_case_insensitive_match_never_wins_over_another_candidate(regexish):
    # `Regex::captures` meets regex::Captures ignoring case; typed `regex::captures` meets both ignoring case.
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="regex", path="regex::captures")
    assert info.value.context["ambiguous"] is True
    assert set(info.value.context["suggestions"]) == {"regex::Captures", "regex::Regex::captures"}
    assert "ignoring case" in str(info.value)
    with pytest.raises(ItemNotFound) as info:  # two exact-case suffixes: the user's choice
        get_item(crate="regex", path="is_match")
    assert info.value.context["suggestions"] == ["regex::Regex::is_match", "regex::bytes::Regex::is_match"]
    assert get_item(crate="regex", path="Regex::is_match").path == "regex::Regex::is_match"  # from the root
    assert get_item(crate="regex", path="bytes::Regex::is_match").path == "regex::bytes::Regex::is_match"
    with pytest.raises(ItemNotFound) as info:  # clap::Parser and clap::parser ignoring case, and the assoc type
        get_item(crate="clap", path="PARSER")
    assert len(info.value.context["suggestions"]) == 3


def test_alias_and_suffix_matches_are_named_in_the_existing_corpus():
    assert get_item(crate="tokio", path="tokio::Mutex").matched == "alias"
    assert get_item(crate="tokio", path="tokio::sync::Mutex").matched == "exact"
    assert get_item(crate="tokio", path="Mutex::lock").matched == "suffix"
    assert get_item(crate="tokio", path="TOKIO::SYNC::MUTEX").matched == "case_insensitive"
    assert get_item(crate="serde_json", path="serde_json::Map::with_capacity").matched == "alias"


def test_a_path_may_start_with_the_crate_name_spelled_with_a_dash():
    store_release(crate="qa-tiny", version="0.3.1", items=[
        item("qa_tiny::Widget", "struct", "pub struct Widget", "A widget."),
    ])  # fmt: skip
    assert get_item(crate="qa-tiny", path="qa-tiny::Widget").path == "qa_tiny::Widget"


def test_not_found_suggests_close_paths():
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="tokio", path="tokio::sync::Mutx")
    assert info.value.context["suggestions"][0] == "tokio::sync::Mutex"
    assert "Did you mean" in str(info.value) and "tokio::sync::Mutex" in str(info.value)
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="serde_json", path="serde_json::from_string")
    assert "serde_json::from_str" in info.value.context["suggestions"]


def test_get_item_versions():
    assert get_item(crate="tokio", path="tokio::sync::Mutex", version="1.0.0").version == "1.0.0"
    with pytest.raises(VersionNotFound):
        get_item(crate="tokio", path="tokio::sync::Mutex", version="1.25.0")  # still building
    with pytest.raises(ItemNotFound):
        get_item(crate="tokio", path="tokio::sync::Mutex::try_lock", version="1.0.0")


def test_get_item_with_another_indexed_crates_path_names_that_crate():
    """Agents often pass the crate they are working in with a path of a dependency (serde_json + serde::…)."""
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="tokio", path="serde_json::from_str")
    message = str(info.value)
    assert "'serde_json', another indexed crate" in message and "crate 'serde_json'" in message
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="tokio", path="tokio::sync::Nope")
    assert "another indexed crate" not in str(info.value)
    assert "search_docs" not in str(info.value) or "search_rust_docs" in str(info.value)


@pytest.mark.parametrize("path", ["", "   ", "\x00", "'; DROP TABLE crates_document; --", "😀::%_", "a" * 5000])
def test_get_item_hostile_paths_raise_item_not_found(path):
    with pytest.raises(ItemNotFound):
        get_item(crate="tokio", path=path)


def test_get_item_unknown_or_deleted_crate():
    with pytest.raises(CrateNotFound) as info:
        get_item(crate="nope", path="x")
    # The message reaches MCP agents and API clients: it names how each of them adds a crate.
    assert "add_rust_crate" in str(info.value) and "POST /api/v1/crates" in str(info.value)
    with pytest.raises(CrateNotFound) as info:
        get_item(crate="gone", path="hashbrown::HashMap")
    # Soft-deleted: its docs are still stored, so restore it rather than ingest it again.
    assert "soft-deleted" in str(info.value) and "/api/v1/crates/gone/restore" in str(info.value)
    assert "not indexed" not in str(info.value) and info.value.context["deleted"] is True


# --- list_crates / get_crate ------------------------------------------------------------------


def test_list_crates_counts_come_from_the_newest_active_release():
    page = list_crates(search="tokio")
    assert page.total == 1
    tokio = page.items[0]
    assert tokio["name"] == "tokio"
    assert tokio["latest_version"] == "1.24.2"
    assert tokio["versions"] == ["1.24.2", "1.0.0"]  # every searchable version, newest first (not 1.25.0: building)
    assert tokio["documents"] == len(TOKIO) + 1
    assert tokio["chunks"] >= tokio["documents"]
    assert tokio["embeddings"] == tokio["chunks"]
    assert tokio["docs_source"] == "rustdoc-json"
    assert tokio["deleted"] is False
    assert tokio["latest_job_status"] == "complete"
    assert tokio["last_updated"] is not None


def test_list_crates_pagination_and_deleted():
    first = list_crates(page=1, page_size=5)
    assert (first.total, first.pages, len(first.items)) == (15, 3, 5)  # 3 crates + 12 fillers, "gone" hidden
    names = [c["name"] for p in range(1, 4) for c in list_crates(page=p, page_size=5).items]
    assert len(names) == len(set(names)) == 15
    assert "gone" not in names
    assert names == sorted(names, key=str.lower)
    with_deleted = list_crates(include_deleted=True, page_size=100)
    gone = next(c for c in with_deleted.items if c["name"] == "gone")
    assert gone["deleted"] is True
    assert list_crates(page=99).items == []
    filler = list_crates(search="filler")
    assert filler.total == 12 and filler.items[0]["latest_version"] is None and filler.items[0]["documents"] == 0


def test_list_crates_search_matches_either_spelling_and_description():
    assert [c["name"] for c in list_crates(search="serde-json").items] == ["serde_json"]
    assert list_crates(search="padding").total == 12
    assert list_crates(search="'; DROP TABLE x; --\x00").total == 0


def test_list_crates_query_count_does_not_grow_with_the_page():
    with CaptureQueriesContext(connection) as small:
        list_crates(page_size=2)
    with CaptureQueriesContext(connection) as large:
        list_crates(page_size=50)
    assert len(small.captured_queries) == len(large.captured_queries) <= 4


def test_list_crates_rejects_bad_paging():
    with pytest.raises(InvalidInput):
        list_crates(page=0)
    with pytest.raises(InvalidInput):
        list_crates(page_size=-1)
    assert list_crates(page_size=10_000).page_size == 100


def test_get_crate_lists_releases_newest_first_and_the_latest_job():
    detail = get_crate(name="TOKIO")
    assert detail["name"] == "tokio" and detail["latest_version"] == "1.24.2"
    assert [(r["version"], r["state"]) for r in detail["releases"]] == [
        ("1.25.0", "building"),
        ("1.24.2", "active"),
        ("1.0.0", "active"),
    ]
    assert detail["latest_job"]["status"] == "complete"
    assert str(detail["latest_job_id"]) == str(detail["latest_job"]["id"])


def test_get_crate_deleted_and_missing():
    assert get_crate(name="gone")["deleted"] is True
    with pytest.raises(CrateNotFound):
        get_crate(name="gone", include_deleted=False)
    with pytest.raises(CrateNotFound):
        get_crate(name="never-heard-of-it")


def test_a_path_re_exported_from_another_crate_without_a_page_says_where_its_docs_are():
    # `#[doc(no_inline)] pub use bytes::Bytes;` is a re-export line on docs.rs, not a page: get_item answered
    # 'No item' and suggested unrelated paths that merely look alike.
    store_release(
        crate="reexporter",
        version="0.1.0",
        items=[
            item("reexporter", "module", "", "Root.", metadata={"reexports": {"Bytes": "bytes::Bytes"}}),
            item("reexporter::io", "module", "", "I/O.", metadata={"reexports": {"Error": "std::io::Error"}}),
            item("reexporter::Bytesize", "struct", "pub struct Bytesize;", "Size."),
        ],
    )
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="reexporter", path="reexporter::Bytes")
    message = str(info.value)
    assert "re-export of bytes::Bytes" in message and "crate 'bytes'" in message, message
    assert "Did you mean" not in message
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="reexporter", path="Bytes")  # crate-relative, as agents write it
    assert "re-export of bytes::Bytes" in str(info.value)
    # tokio::io::Error is `pub use std::io::Error;`: the standard library is not a crate one adds.
    with pytest.raises(ItemNotFound) as info:
        get_item(crate="reexporter", path="reexporter::io::Error")
    assert "https://doc.rust-lang.org/std/" in str(info.value) and "add" not in str(info.value)
