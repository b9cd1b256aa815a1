"""Type search, pure parts: the query parser (rustdoc syntax), declarations of HTML-only releases, the matcher."""

from __future__ import annotations

import pytest

from crates.errors import InvalidInput
from crates.search.types import Matcher, is_type_query, parse_type_query
from crates.typesig import render, signature_from_declaration, terms


def rendered(nodes) -> list[str]:
    return [render(n) for n in nodes]


# --- query parser ------------------------------------------------------------------------------------------------


def test_plain_text_is_not_a_type_query():
    assert parse_type_query("how do I sleep for a while") is None
    assert parse_type_query("Mutex::lock") is None
    assert not is_type_query("tokio sleep")
    # an arrow in prose, or among symbols only, is text to search, not a type query with bad syntax
    assert parse_type_query("convert a String -> Value in serde") is None
    assert parse_type_query("<->") is None and parse_type_query("$x -> y") is None
    assert is_type_query("&mut Vec<u8>, impl Read -> usize")
    assert parse_type_query("fn from_str(s: &str) -> Result<T>") is None  # a declaration: its name is searched
    assert is_type_query("fn(u8) -> u16 -> Vec<u8>")  # a function pointer is a type


def test_inputs_and_output():
    query = parse_type_query("Duration -> Sleep")
    assert rendered(query.inputs) == ["Duration"] and rendered(query.outputs) == ["Sleep"]
    assert query.words == "Duration Sleep"


def test_output_only_and_inputs_only():
    assert rendered(parse_type_query("-> JoinHandle").outputs) == ["JoinHandle"]
    assert parse_type_query("-> JoinHandle").inputs == ()
    query = parse_type_query("LevelFilter ->")
    assert rendered(query.inputs) == ["LevelFilter"] and query.outputs == ()


def test_generics_references_and_commas_inside_brackets():
    query = parse_type_query("&HashMap<K, V>, &K -> Option<&V>")
    assert rendered(query.inputs) == ["&HashMap<K, V>", "&K"]
    assert rendered(query.outputs) == ["Option<&V>"]
    # single capitals are type parameters of the query
    assert query.inputs[1] == ["&", [["#K", []]]]
    assert rendered(parse_type_query("Vec<T> -> usize").inputs) == ["Vec<T>"]


def test_paths_match_by_last_segment_and_slices_tuples():
    query = parse_type_query("std::time::Duration, &mut [u8] -> io::Result<(TcpStream, SocketAddr)>")
    assert rendered(query.inputs) == ["Duration", "&mut [u8]"]
    assert rendered(query.outputs) == ["Result<(TcpStream, SocketAddr)>"]


def test_impl_and_dyn_in_a_query_name_the_trait():
    assert parse_type_query("impl Read -> usize").inputs == (["Read", []],)
    assert parse_type_query("&dyn Log ->").inputs == (["&", [["Log", []]]],)


def test_type_prefix_without_arrow():
    query = parse_type_query("type:Duration")
    assert rendered(query.anywhere) == ["Duration"] and not query.arrow
    assert rendered(parse_type_query("type: &str -> Value").inputs) == ["&str"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A -> B -> C", "'->'"),
        ("type: ->", "no types"),
        ("type:", "empty"),
        ("Vec<u8 -> usize", "'<'"),
        ("u8,, u16 -> u32", "missing between commas"),
        ("Duration -> Sleep )", "')' has no matching '('"),
        ("type:Duration -> Sleep Instant", "unexpected 'Instant'"),
        ("type:$ -> Sleep", "unexpected character"),
    ],
)
def test_bad_syntax_is_a_clear_invalid_input(text, message):
    with pytest.raises(InvalidInput) as raised:
        parse_type_query(text)
    assert message in str(raised.value)


def test_too_many_types():
    with pytest.raises(InvalidInput, match="at most"):
        parse_type_query(", ".join(["u8"] * 9) + " -> u8")


# --- declarations (HTML-only releases) -----------------------------------------------------------------------------


def test_declaration_with_where_clause_and_lifetimes():
    sig = signature_from_declaration(
        "pub fn from_str<'a, T>(s: &'a str) -> Result<T>\nwhere\n    T: Deserialize<'a>,"
    )
    assert rendered(sig["i"]) == ["&str"]
    assert sig["o"] == ["Result", [["#T", [["Deserialize", []]]]]]
    assert terms(sig) == ["i:str", "o:result", "o:#deserialize"]


def test_declaration_self_is_the_impl_type():
    mutex = ["Mutex", [["#T", []]]]
    sig = signature_from_declaration("pub async fn lock(&self) -> MutexGuard<'_, T>", self_node=mutex,
                                     outer_generics={"T": []})
    assert rendered(sig["i"]) == ["&Mutex<T>"] and render(sig["o"]) == "MutexGuard<T>"
    sig = signature_from_declaration("pub fn new(value: T) -> Self", self_node=mutex, outer_generics={"T": []})
    assert render(sig["o"]) == "Mutex<T>"


def test_declaration_impl_trait_and_fn_bounds():
    sig = signature_from_declaration("pub fn get_or_init<F>(&self, f: F) -> &T where F: FnOnce() -> T",
                                     self_node=["OnceCell", [["#T", []]]], outer_generics={"T": []})
    assert render(sig["o"]) == "&T"
    assert sig["i"][1][0] == "#F" and sig["i"][1][1][0][0] == "FnOnce"
    sig = signature_from_declaration("pub fn open(path: impl AsRef<Path>) -> io::Result<File>")
    assert sig["i"][0] == ["#impl", [["AsRef", [["Path", []]]]]]


def test_not_a_function_declaration():
    assert signature_from_declaration("pub struct Mutex<T: ?Sized>") is None


# --- matcher ---------------------------------------------------------------------------------------------------------


def match(query: str, declaration: str, impls=None, **kwargs):
    sig = signature_from_declaration(declaration, **kwargs)
    return Matcher(impls or {}).signature(parse_type_query(query), sig)


def test_exact_match_explains_itself():
    score, explanation = match("Duration -> Sleep", "pub fn sleep(duration: Duration) -> Sleep")
    assert score == pytest.approx(1.0) and explanation == "Duration → Sleep"


def test_wrong_types_do_not_match():
    assert match("Duration -> Sleep", "pub fn interval(period: Duration) -> Interval") is None
    assert match("Instant -> Sleep", "pub fn sleep(duration: Duration) -> Sleep") is None
    assert match("Duration, Instant -> Sleep", "pub fn sleep(duration: Duration) -> Sleep") is None


def test_unboxing_result_with_bounded_parameter():
    declaration = "pub fn from_str<'a, T>(s: &'a str) -> Result<T> where T: Deserialize<'a>"
    score, explanation = match("&str -> Value", declaration, impls={"value": {"deserialize", "serialize"}})
    assert 0 < score < 1 and explanation == "&str → Result<T> (T = Value: Deserialize)"
    # the bound is checked against the trait graph: a type that does not implement it does not match
    assert match("&str -> Value", declaration, impls={"value": {"serialize"}}) is None
    # an explicit Result in the query is matched by name
    assert match("&str -> Result<Value>", declaration, impls={"value": {"deserialize"}})[0] > score


def test_unboxing_option_and_references():
    declaration = "pub fn as_str(&self) -> Option<&str>"
    value = ["Value", []]
    assert match("&Value -> Option<&str>", declaration, self_node=value)[0] == pytest.approx(1.0)
    unboxed = match("Value -> str", declaration, self_node=value)[0]
    assert 0.5 < unboxed < 1.0
    assert match("&Value -> Option<i64>", declaration, self_node=value) is None


def test_generics_of_the_query_are_matched_by_position():
    declaration = "pub fn insert(&mut self, k: String, v: Value) -> Option<Value>"
    map_node = ["Map", [["String", []], ["Value", []]]]
    assert match("&mut Map<String, Value>, String, Value -> Option<Value>", declaration, self_node=map_node)
    assert match("&mut Map<Value, Value>, String, Value -> Option<Value>", declaration, self_node=map_node) is None


def test_inputs_in_any_order_and_extra_inputs_cost_a_little():
    declaration = "pub fn interval_at(start: Instant, period: Duration) -> Interval"
    in_order = match("Instant, Duration -> Interval", declaration)[0]
    swapped = match("Duration, Instant -> Interval", declaration)[0]
    fewer = match("Duration -> Interval", declaration)[0]
    assert swapped == pytest.approx(in_order, abs=0.01) and fewer < in_order


def test_self_in_trait_methods_is_bounded_by_the_trait():
    sig = signature_from_declaration(
        "fn deserialize<D>(deserializer: D) -> Result<Self, D::Error> where D: Deserializer<'de>",
        self_node=["#Self", [["Deserialize", []]]],
    )
    score, _ = Matcher({}).signature(parse_type_query("Deserializer -> Deserialize"), sig)
    assert score > 0.5


def test_query_type_parameters_take_any_type():
    assert match("Duration, F -> Timeout<F>", "pub fn timeout<F>(duration: Duration, future: F) -> Timeout<F>"
                 " where F: Future")
    assert match("T -> (Sender<T>, Receiver<T>)", "pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>)")


def test_trait_named_by_query_matches_a_bounded_parameter():
    assert match("Future -> JoinHandle", "pub fn spawn<T>(future: T) -> JoinHandle<T::Output> where T: Future")
    assert match("AsRef<Path> -> File", "pub async fn open(path: impl AsRef<Path>) -> io::Result<File>")
    assert match("AsRef<Url> -> File", "pub async fn open(path: impl AsRef<Path>) -> io::Result<File>") is None


def test_type_anywhere():
    assert match("type:Duration", "pub fn sleep(duration: Duration) -> Sleep")
    assert match("type:Sleep", "pub fn sleep(duration: Duration) -> Sleep")
    assert match("type:Instant", "pub fn sleep(duration: Duration) -> Sleep") is None


# --- rustdoc JSON shapes of older formats (decl, mutable, bindings, synthetic, string ids) ---------------------------


def test_signatures_and_impls_from_an_older_json_shape():
    from crates.pipeline.parse_json.types import annotate_types
    from crates.pipeline.types import ParsedItem

    generic_t = {"type": {"generic": "T"}}
    mutex_type = {"resolved_path": {"name": "Mutex", "id": "0:1", "args": {"angle_bracketed": {"args": [generic_t],
                                                                                               "bindings": []}}}}
    index = {
        "0:1": {"id": "0:1", "name": "Mutex", "inner": {"struct": {"impls": ["0:3", "0:4", "0:6"]}}},
        "0:2": {"id": "0:2", "name": "lock", "inner": {"function": {
            "decl": {"inputs": [["self", {"borrowed_ref": {"lifetime": None, "mutable": False,
                                                           "type": {"generic": "Self"}}}]],
                     "output": {"resolved_path": {"name": "MutexGuard", "id": "0:5", "args": {
                         "angle_bracketed": {"args": [generic_t], "bindings": []}}}}},
            "generics": {"params": [], "where_predicates": []}}}},
        "0:3": {"id": "0:3", "inner": {"impl": {
            "generics": {"params": [{"name": "T", "kind": {"type": {"bounds": [], "synthetic": False}}}],
                         "where_predicates": []},
            "trait": None, "for": mutex_type, "items": ["0:2"], "negative": False, "synthetic": False}}},
        "0:4": {"id": "0:4", "inner": {"impl": {
            "generics": {"params": [], "where_predicates": []}, "trait": {"name": "fmt::Debug", "id": "1:9"},
            "for": mutex_type, "items": [], "negative": False, "synthetic": False, "blanket_impl": None}}},
        "0:6": {"id": "0:6", "inner": {"impl": {
            "generics": {"params": [], "where_predicates": []}, "trait": {"name": "Send", "id": "1:10"},
            "for": mutex_type, "items": [], "negative": False, "synthetic": True, "blanket_impl": None}}},
    }
    mutex = ParsedItem(path="c::Mutex", name="Mutex", kind="struct", metadata={"rustdoc_id": "0:1"})
    lock = ParsedItem(path="c::Mutex::lock", name="lock", kind="method", metadata={"rustdoc_id": "0:2"})
    annotate_types(index, {"1:9": {"path": ["core", "fmt", "Debug"]}}, [mutex, lock])
    assert [render(n) for n in lock.type_sig["i"]] == ["&Mutex<T>"] and render(lock.type_sig["o"]) == "MutexGuard<T>"
    assert [(i["trait"], i["trait_path"], i["declaration"]) for i in mutex.impls] == [
        ("Debug", "core::fmt::Debug", "impl Debug for Mutex<T>")
    ]


def test_unbounded_parameters_take_a_type_only_as_a_type_argument():
    mutex = ["Mutex", [["#T", []]]]
    lock = "pub fn lock(&self) -> MutexGuard<'_, T>"
    score, explanation = match("&Mutex<u32> -> MutexGuard<u32>", lock, self_node=mutex, outer_generics={"T": []})
    assert score > 0.5 and "T = u32" in explanation
    # a bare `T` (or Option<T>) is not every type: `-> Value` does not find fn get<T>() -> Option<T>
    assert match("-> Value", "pub fn get<T>(&self) -> Option<T>") is None
    assert match("Value ->", "pub fn new<T>(value: T) -> Self", self_node=["Cell", []]) is None


def test_associated_types_match_only_query_parameters():
    spawn = "pub fn spawn<T>(future: T) -> JoinHandle<T::Output> where T: Future"
    assert match("Future -> JoinHandle<Sleep>", spawn) is None
    assert match("Future -> JoinHandle<R>", spawn)


def test_standard_traits_are_trusted_for_types_no_crate_implements_anything_for():
    get = "pub fn get<Q>(&self, key: &Q) -> Option<&Value> where String: Borrow<Q>, Q: ?Sized + Ord + Eq + Hash"
    found = match("&str -> Option<&Value>", get, self_node=["Map", []])
    assert found and found[0] < 0.7 and "Q = str" in found[1]
    # a type the trait graph knows, without the bound: no
    assert match("&Value -> Option<&Value>", get, impls={"value": {"serialize"}}, self_node=["Map", []]) is None


def test_nested_query_types_are_checked_against_their_bounds():
    declaration = "pub fn from_str<'a, T>(s: &'a str) -> Result<T> where T: Deserialize<'a>"
    impls = {"value": {"deserialize"}, "result": {"deserialize"}}
    _score, explanation = match("&str -> Result<Value>", declaration, impls=impls)
    assert "T = Value: Deserialize" in explanation


def test_a_query_of_type_parameters_only_asks_the_database_nothing():
    from crates.search.scope import Scope
    from crates.search.types import type_statements

    scope = Scope(releases=(), kinds=())
    assert type_statements(scope=scope, query=parse_type_query("T -> T")) == {}
    assert set(type_statements(scope=scope, query=parse_type_query("T -> Vec<T>"))) == {"type", "type_impls"}
