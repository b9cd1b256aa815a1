"""Issue 18's ranking rules on a small real corpus (real chunker, MiniLM, PostgreSQL): parallel twins fold
into one hit, the query's operation outranks its inverse, letter-digit names meet their spellings."""

from __future__ import annotations

import pytest

from crates.models import Crate
from crates.search.query import name_words, verb_intent
from crates.search.twins import group_twins, sibling_paths
from crates.selectors import search_docs
from crates.textsearch import tsquery_all_for
from tests.search_corpus import item, store_release

GET_OR_INIT = (
    "Gets the contents of the cell, initializing it with `f` if the cell was empty.\n\n"
    "Many threads may call `get_or_init` concurrently with different initializing functions, "
    "but it is guaranteed that only one function will be executed."
)
CELLS = [
    item("cells::sync::OnceCell", "struct", "pub struct OnceCell<T>", "A thread-safe cell written to only once."),
    item("cells::unsync::OnceCell", "struct", "pub struct OnceCell<T>", "A cell written once; it is not Sync."),
    item("cells::sync::OnceCell::get_or_init", "method", "pub fn get_or_init<F>(&self, f: F) -> &T", GET_OR_INIT),
    item("cells::unsync::OnceCell::get_or_init", "method", "pub fn get_or_init<F>(&self, f: F) -> &T",
         GET_OR_INIT.replace("Many threads may", "Only one thread may")),
    item("cells::sync::OnceCell::set", "method", "pub fn set(&self, value: T) -> Result<(), T>",
         "Sets the contents of this cell to `value`. Returns `Ok(())` if the cell was empty."),
    item("cells::sync::Lazy::force", "method", "pub fn force(this: &Lazy<T, F>) -> &T",
         "Forces the evaluation of this lazy value and returns a reference to the result."),
]  # fmt: skip
JSONISH = [
    item("jsonish::from_str", "function", "pub fn from_str<T>(s: &str) -> Result<T>",
         "Deserialize an instance of type `T` from a string of JSON text."),
    item("jsonish::to_string", "function", "pub fn to_string<T: ?Sized + Serialize>(value: &T) -> Result<String>",
         "Serialize the given data structure as a String of JSON text."),
    item("jsonish::Map::insert", "method", "pub fn insert(&mut self, k: String, v: Value) -> Option<Value>",
         "Inserts a key-value pair into the map. If the map did not have this key present, `None` is returned."),
    item("jsonish::Map::remove", "method", "pub fn remove(&mut self, key: &str) -> Option<Value>",
         "Removes a key from the map, returning the value at the key if the key was previously in the map."),
    item("jsonish::encode_hex", "function", "pub fn encode_hex(data: &[u8]) -> String",
         "Encodes bytes as a hex string of lowercase characters."),
    item("jsonish::decode_hex", "function", "pub fn decode_hex(data: &str) -> Result<Vec<u8>>",
         "Decodes a hex string of lowercase characters into bytes."),
    item("jsonish::Digest", "struct", "pub struct Digest",
         "A SHA-256 digest of a byte string, and the UTF-8 text of its hex form."),
    item("jsonish::Ipv6Addr", "struct", "pub struct Ipv6Addr", "An IPv6 address: eight 16-bit segments."),
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def corpus(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        Crate.objects.all().delete()
        store_release(crate="cells", version="1.0.0", items=CELLS)
        store_release(crate="jsonish", version="1.0.0", items=JSONISH)
        yield
        Crate.objects.all().delete()


def paths(hits) -> list[str]:
    return [h.path for h in hits]


@pytest.mark.django_db
def test_parallel_twins_fold_into_one_hit_that_names_its_twin():
    hits = search_docs(query="initialize a once cell lazily with a closure get_or_init", crate="cells", limit=5)
    found = [h for h in hits if h.path.endswith("::get_or_init")]
    assert len(found) == 1, paths(hits)
    twin = {"cells::sync::OnceCell::get_or_init", "cells::unsync::OnceCell::get_or_init"} - {found[0].path}
    assert found[0].twins == sorted(twin)
    # Structs whose docs differ are not twins: both stay on the page.
    cells = search_docs(query="OnceCell", crate="cells", limit=10)
    assert {"cells::sync::OnceCell", "cells::unsync::OnceCell"} <= set(paths(cells))


def test_twins_need_sibling_paths_and_alike_docs():
    assert sibling_paths("a::sync::OnceCell::get", "a::unsync::OnceCell::get")
    assert sibling_paths("regex::Regex::is_match", "regex::bytes::Regex::is_match")
    assert not sibling_paths("a::sync::OnceCell::get", "a::sync::OnceCell::get")
    assert not sibling_paths("a::sync::OnceCell::get", "a::unsync::Lazy::get")  # two segments differ
    assert not sibling_paths("a::x::get", "b::x::get")  # another crate
    assert not sibling_paths("tokio::net::TcpStream::take_error", "tokio::net::UdpSocket::take_error")  # types
    docs = {1: "Gets the value.", 2: "Gets the value!", 3: "Something else entirely, about sockets."}
    paths_by_id = {1: "a::sync::C::get", 2: "a::unsync::C::get", 3: "a::raw::C::get"}
    kept, twins = group_twins([1, 2, 3], key=lambda i: (1, "method", paths_by_id[i]), text=docs.__getitem__)
    assert kept == [1, 3] and twins == {1: ["a::unsync::C::get"]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "wanted", "inverse"),
    [
        ("parse a JSON string into a struct", "jsonish::from_str", "jsonish::to_string"),
        ("turn a struct into a JSON string: serialize it", "jsonish::to_string", "jsonish::from_str"),
        ("insert a key into the map", "jsonish::Map::insert", "jsonish::Map::remove"),
        ("remove a key from the map", "jsonish::Map::remove", "jsonish::Map::insert"),
        ("decode a hex string into bytes", "jsonish::decode_hex", "jsonish::encode_hex"),
        ("encode bytes as a hex string", "jsonish::encode_hex", "jsonish::decode_hex"),
    ],
)
def test_the_operation_asked_for_ranks_above_its_inverse(query, wanted, inverse):
    found = paths(search_docs(query=query, crate="jsonish", limit=10))
    assert wanted in found and (inverse not in found or found.index(wanted) < found.index(inverse)), found


def test_verb_intent_reads_the_question_not_its_prepositions():
    assert verb_intent("parse a JSON string").inverse >= {"to", "format", "serialize"}
    assert "from" in verb_intent("parse a JSON string").wanted
    assert not verb_intent("convert a string to an integer")  # 'to' is a word here, not an operation
    assert not verb_intent("encode and decode base64")  # both sides: no preference
    assert name_words("serde_json::from_str") == {"from", "str"}
    assert name_words("flate2::read::ZlibDecoder") == {"zlib", "decoder"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "wanted"),
    [("sha256 digest", "jsonish::Digest"), ("utf8 text", "jsonish::Digest"), ("IPv6 address", "jsonish::Ipv6Addr"),
     ("ipv6", "jsonish::Ipv6Addr")],
)  # fmt: skip
def test_letter_digit_names_meet_their_spellings(query, wanted):
    assert paths(search_docs(query=query, crate="jsonish", limit=3, signals=("keyword",)))[:1] == [wanted]


def test_letter_digit_query_forms():
    assert tsquery_all_for("SHA-256") == "(sha256 | (sha & 256))"
    assert tsquery_all_for("base 64") == "(base64 | (base & 64))"
    assert tsquery_all_for("UTF-8") == "(utf8 | (utf & 8))"
    assert tsquery_all_for("IPv6") == "(ipv6 | (ipv & 6))"
