"""Hybrid search ranking, filters, visibility and hostile input, on a small real corpus
(real chunker, real MiniLM embeddings, real PostgreSQL full-text and HNSW)."""

from __future__ import annotations

import pytest

from crates.errors import CrateNotFound, EmbeddingUnavailable, InvalidInput, VersionNotFound
from crates.models import Crate
from crates.search import embedding as search_embedding
from crates.search.engine import search
from crates.textsearch import query_word_groups, search_text_for, tsquery_all_for, tsquery_for
from tests.search_corpus import GHOST_DOCS, HASHBROWN, SERDE_JSON, TOKIO, item, store_release

LONG_ITEM = item(
    "tokio::runtime::Builder",
    "struct",
    "pub struct Builder",
    "\n\n".join(
        f"Paragraph {n}: the runtime builder configures worker threads, the blocking pool, the I/O and "
        f"time drivers, thread names and stack sizes before the runtime is built."
        for n in range(60)
    ),
)
OLD_ONLY = item(
    "tokio::runtime::old_entry_point",
    "function",
    "pub fn old_entry_point()",
    "An entry point that only the old 1.0.0 release of the runtime had.",
)


def _ghost(path: str) -> object:
    return item(path, "struct", "pub struct Ghost", GHOST_DOCS)


@pytest.fixture(scope="module", autouse=True)
def corpus(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        Crate.objects.all().delete()
        store_release(crate="tokio", version="1.24.2", items=[*TOKIO, LONG_ITEM])
        store_release(crate="tokio", version="1.0.0", items=[*TOKIO[:8], OLD_ONLY])
        store_release(crate="tokio", version="1.25.0", items=[_ghost("tokio::sync::GhostBuilding")], state="building")
        store_release(crate="serde_json", version="1.0.87", items=SERDE_JSON)
        store_release(
            crate="serde_json", version="1.0.80", items=[_ghost("serde_json::GhostSuperseded")], state="superseded"
        )
        store_release(crate="hashbrown", version="0.13.2", items=HASHBROWN)
        store_release(crate="ghostcrate", version="1.0.0", items=[_ghost("ghostcrate::GhostDeleted")], deleted=True)
        yield
        Crate.objects.all().delete()


pytestmark = pytest.mark.django_db


def paths(hits) -> list[str]:
    return [h.path for h in hits]


# --- identifier-aware text --------------------------------------------------------------------


def test_search_text_adds_split_and_joined_identifier_forms_once():
    text = search_text_for("Use HashMap::with_capacity, or HashMap::new.")
    extra = text.split("\n", 1)[1].split()
    assert {"hash", "map", "withcapacity"} <= set(extra)
    assert len(extra) == len(set(extra))


def test_query_side_expands_identifiers_and_joins_adjacent_words():
    assert query_word_groups("HashMap::with_capacity") == [
        ["hashmap", "hash", "map"],
        ["withcapacity", "with", "capacity"],
    ]
    assert "hashmap" in tsquery_for("hash map")
    hostile = tsquery_for("a'b\"c\\d:*&!|<->()😀 DROP TABLE x; --\x00")
    words = hostile.split(" | ")
    assert {"drop", "table", "x"} <= set(words)
    assert all(w.isascii() and w.isalnum() for w in words)


@pytest.mark.parametrize("query", ["with capacity", "with_capacity", "withcapacity"])
def test_keyword_signal_matches_snake_case_identifier_in_any_spelling(query):
    hits = search(query=query, signals=("keyword",))
    assert "hashbrown::HashMap::with_capacity" in paths(hits)


@pytest.mark.parametrize("query", ["HashMap", "hashmap", "hash map"])
def test_keyword_signal_matches_camel_case_identifier_in_any_spelling(query):
    hits = search(query=query, signals=("keyword",), crate="hashbrown")
    assert {"hashbrown::HashMap", "hashbrown::HashMap::with_capacity"} <= set(paths(hits))


# --- ranking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Mutex::lock", "tokio::sync::Mutex::lock"),
        ("tokio::sync::Mutex::lock", "tokio::sync::Mutex::lock"),
        ("Mutex lock", "tokio::sync::Mutex::lock"),
        ("mutex.lock()", "tokio::sync::Mutex::lock"),
        ("HashMap::with_capacity", "hashbrown::HashMap::with_capacity"),
        ("serde_json::from_str", "serde_json::from_str"),
        ("from_str", "serde_json::from_str"),
        ("tokio::Mutex", "tokio::sync::Mutex"),  # a re-export alias
        ("serde_json::value::Value", "serde_json::Value"),
        ("spawn_blocking", "tokio::task::spawn_blocking"),
        ("Runtime", "tokio::runtime::Runtime"),
        ("serde_json::Map::with_capacity", "serde_json::map::Map::with_capacity"),  # through the type's alias
        ("select!", "tokio::select"),
        ("json!", "serde_json::json"),
    ],
)
def test_identifier_query_puts_its_item_first(query, expected):
    hits = search(query=query)
    assert hits, query
    assert hits[0].path == expected, paths(hits)
    assert "path" in hits[0].signals


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("how do I run a future to completion from synchronous code", "tokio::runtime::Runtime::block_on"),
        ("parse a JSON string into a struct", "serde_json::from_str"),
        ("wait for some time without blocking the thread", "tokio::time::sleep"),
        ("run CPU-heavy work without stalling the async executor", "tokio::task::spawn_blocking"),
        ("pretty print json", "serde_json::to_string_pretty"),
        ("give up on a future if it takes too long", "tokio::time::timeout"),
        ("send messages between tasks", "tokio::sync::mpsc::channel"),
        ("which line of the input had the error", "serde_json::Error::line"),
    ],
)
def test_natural_language_query_finds_the_item_in_the_top_3(query, expected):
    hits = search(query=query, limit=10)
    assert expected in paths(hits)[:3], paths(hits)[:5]


def test_fused_ranking_beats_vector_only_on_an_identifier_query():
    fused = search(query="Mutex::lock")
    vector_only = search(query="Mutex::lock", signals=("vector",))
    assert fused[0].path == "tokio::sync::Mutex::lock"
    assert fused[0].signals[0] == "vector" and set(fused[0].signals) >= {"path", "keyword"}
    assert {"vector"} == {s for h in vector_only for s in h.signals}


def test_hits_carry_what_a_caller_needs_and_are_ordered_by_score():
    hits = search(query="serde_json::to_string", limit=5)
    top = hits[0]
    assert (top.crate, top.version, top.kind) == ("serde_json", "1.0.87", "function")
    assert top.signature.startswith("pub fn to_string")
    assert top.url == "https://docs.rs/serde_json/1.0.87/serde_json/to_string.html"
    assert "Serialize the given data structure" in top.snippet
    assert not top.snippet.startswith("serde_json::to_string")  # the header is not repeated
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def _snippet_of_chunk(*, path: str, ordinal: int = 0) -> str:
    from crates.models import Chunk
    from crates.search.engine import _snippet

    chunk = Chunk.objects.select_related("document").get(
        document__path=path, document__release__version="1.24.2", ordinal=ordinal
    )
    return _snippet(chunk.text, path=path, signature=chunk.document.signature)


def test_a_chunk_hit_gets_its_matched_chunk_as_snippet():
    hits = search(query="Mutex lock", crate="tokio")
    top = next(h for h in hits if h.path == "tokio::sync::Mutex::lock")
    assert top.snippet == _snippet_of_chunk(path="tokio::sync::Mutex::lock")


def test_a_path_only_hit_gets_its_first_chunk_as_snippet():
    from django.db import connection

    with CaptureQueries(connection) as sent:
        hits = search(query="tokio::sync::Mutex::lock", crate="tokio", signals=("path",))
    assert hits[0].path == "tokio::sync::Mutex::lock" and hits[0].signals == ["path"]
    assert hits[0].snippet and hits[0].snippet == _snippet_of_chunk(path="tokio::sync::Mutex::lock")
    assert any("/* snippets */" in q for q in sent)


def test_snippets_show_link_text_not_intra_doc_link_syntax():
    from crates.search.engine import _snippet

    text = "tokio::sync::Mutex::lock\nLocks this mutex; returns a [`MutexGuard`] (see [`try_lock`](Self::try_lock))."
    assert _snippet(text, path="tokio::sync::Mutex::lock", signature="") == (
        "Locks this mutex; returns a MutexGuard (see try_lock)."
    )


def test_snippets_read_as_text_not_markdown():
    from crates.search.engine import _snippet

    module = (
        "once_cell\n```rust\nuse once_cell::sync::OnceCell;\nstatic CELL: OnceCell<String> = OnceCell::new();\n```\n\n"
        "# Overview\n\n**once_cell** provides two new cell-like types, `unsync::OnceCell` and `sync::OnceCell`.\n\n"
        "- a `Lazy` value\n- a *thread-safe* cell\n\n> Note: <b>no</b> `unsafe`."
    )
    assert _snippet(module, path="once_cell", signature="") == (
        "once_cell provides two new cell-like types, unsync::OnceCell and sync::OnceCell. a Lazy value. "
        "a thread-safe cell. Note: no unsafe."
    )
    only_code = "x::demo\n# Examples\n```\nlet cell = OnceCell::new();\nassert!(cell.get().is_none());\n```"
    assert _snippet(only_code, path="x::demo", signature="") == "Example: let cell = OnceCell::new();"


def test_one_item_with_many_chunks_appears_once():
    hits = search(query="runtime builder worker threads blocking pool", limit=10)
    assert paths(hits).count("tokio::runtime::Builder") == 1
    assert len(paths(hits)) == len(set(paths(hits)))


# --- filters and visibility -------------------------------------------------------------------


def test_crate_filter_holds_and_still_fills_the_page():
    hits = search(query="lock", crate="tokio", limit=10)
    assert len(hits) == 10
    assert {h.crate for h in hits} == {"tokio"}
    assert {h.version for h in hits} == {"1.24.2"}


def test_filtered_vector_search_returns_limit_results():
    hits = search(query="a map from keys to values", crate="hashbrown", signals=("vector",), limit=4)
    assert len(hits) == 4
    assert {h.crate for h in hits} == {"hashbrown"}


def test_crate_name_spelling_does_not_matter():
    assert {h.crate for h in search(query="value", crate="Serde-JSON")} == {"serde_json"}


def test_version_filter_and_default_to_newest_active_release():
    old = search(query="entry point of the runtime", crate="tokio", version="1.0.0", limit=10)
    assert old and {h.version for h in old} == {"1.0.0"}
    assert "tokio::runtime::old_entry_point" in paths(old)
    newest = search(query="old_entry_point", limit=20)
    assert "tokio::runtime::old_entry_point" not in paths(newest)
    assert "1.0.0" not in {h.version for h in newest}


def test_version_filter_without_crate_searches_that_version_only():
    hits = search(query="old_entry_point", version="1.0.0")
    assert hits[0].path == "tokio::runtime::old_entry_point"
    assert {h.version for h in hits} == {"1.0.0"}


@pytest.mark.parametrize("kinds", [["function"], ["macro"], ["method", "struct"]])
def test_kind_filter_holds(kinds):
    hits = search(query="json async lock map", kinds=kinds, limit=20)
    assert hits
    assert {h.kind for h in hits} <= set(kinds)


def test_rare_kind_filter_still_finds_every_match_through_the_vector_index():
    hits = search(query="wait for whichever branch finishes first", kinds=["macro"], signals=("vector",))
    assert set(paths(hits)) == {"tokio::select", "serde_json::json"}


@pytest.mark.parametrize("crate", [None, "tokio", "serde_json"])
def test_building_superseded_and_soft_deleted_releases_never_appear(crate):
    for query in [GHOST_DOCS, "Zanzibar quokka marmalade", "GhostBuilding", "GhostSuperseded", "GhostDeleted"]:
        hits = search(query=query, crate=crate, limit=50)
        assert not [p for p in paths(hits) if "Ghost" in p], (query, crate)
        assert "ghostcrate" not in {h.crate for h in hits}


def test_visible_releases_are_cached_but_every_change_to_them_shows_at_once():
    from django.db import connection

    from crates import services
    from crates.models import CrateRelease

    def crates_seen(query: str) -> set[str]:
        return {h.crate for h in search(query=query, limit=50)}

    assert "hashbrown" in crates_seen("HashMap")
    with CaptureQueries(connection) as cached:
        crates_seen("HashMap")
    assert not [q for q in cached if "crates_craterelease r JOIN" in q], "second search re-read the releases"

    services.remove_crate(name="hashbrown", soft=True)
    assert "hashbrown" not in crates_seen("HashMap")
    services.restore_crate(name="hashbrown")
    assert "hashbrown" in crates_seen("HashMap")

    # A release leaving the active state (superseded by an ingest) disappears too.
    release = CrateRelease.objects.get(crate__name="hashbrown")
    CrateRelease.objects.filter(pk=release.pk).update(state="superseded")
    assert "hashbrown" not in crates_seen("HashMap")
    CrateRelease.objects.filter(pk=release.pk).update(state="active")
    assert "hashbrown" in crates_seen("HashMap")


class CaptureQueries:
    """The SQL a block sends (a context manager over connection.execute_wrapper)."""

    def __init__(self, connection) -> None:
        self.connection, self.sql = connection, []

    def __enter__(self) -> list[str]:
        self._cm = self.connection.execute_wrapper(self._wrap)
        self._cm.__enter__()
        return self.sql

    def __exit__(self, *exc) -> None:
        self._cm.__exit__(*exc)

    def _wrap(self, execute, sql, params, many, context):
        self.sql.append(sql)
        return execute(sql, params, many, context)


def test_unknown_or_soft_deleted_crate_and_unindexed_version_are_errors_not_empty_pages():
    with pytest.raises(CrateNotFound):
        search(query="lock", crate="no-such-crate")
    with pytest.raises(CrateNotFound):
        search(query="ghost", crate="ghostcrate")
    with pytest.raises(VersionNotFound) as info:
        search(query="lock", crate="tokio", version="1.25.0")  # building: not searchable
    assert "1.24.2" in str(info.value) and "1.0.0" in str(info.value)
    with pytest.raises(InvalidInput):
        search(query="lock", kinds=["gizmo"])


# --- hostile input ----------------------------------------------------------------------------

HOSTILE = [
    "",
    "   ",
    '"',
    "'",
    "\\",
    "\\\\'\"",
    ":",
    "::",
    ":::::",
    "&",
    "!",
    "&&||!!",
    "!(",
    "<->",
    "a:*",
    "foo & !bar | (baz",
    "'; DROP TABLE crates_chunk; --",
    "1' OR '1'='1",
    "%_%",
    "Robert'); SELECT pg_sleep(10);--",
    "😀🦀🔥",
    "Mutex\x00lock",
    "\x00",
    "tokio::\x00sync",
    "select * from crates_document",
    "Vec<T>::push()",
    "<'a, T: ?Sized>",
    "ünïcödé ŝtrïng — “quotes”",
    "x" * 10_000,
    "lock " * 2_000,
    "::" * 600,
    "a" * 70,
]


@pytest.mark.parametrize("query", HOSTILE, ids=[f"q{i}" for i in range(len(HOSTILE))])
def test_hostile_query_returns_a_list(query):
    hits = search(query=query, limit=5)
    assert isinstance(hits, list)
    assert all(h.path for h in hits)
    for signals in (("vector",), ("keyword",), ("path",)):
        assert isinstance(search(query=query, crate="tokio", kinds=["method"], signals=signals), list)


def test_mutex_with_a_nul_byte_still_finds_the_lock():
    assert search(query="Mutex\x00lock")[0].path == "tokio::sync::Mutex::lock"


def test_search_without_an_embedder_falls_back_to_keyword_and_path(monkeypatch):
    def broken():
        raise EmbeddingUnavailable("embedding API is down")

    monkeypatch.setattr(search_embedding, "query_embedder", broken)
    hits = search(query="Mutex::lock")
    assert hits[0].path == "tokio::sync::Mutex::lock"
    assert all("vector" not in h.signals for h in hits)


def test_limit_is_clamped():
    assert len(search(query="tokio", limit=0)) == 1
    assert len(search(query="the", limit=1000)) <= 100


def test_common_words_do_not_select_keyword_candidates_but_still_rank(monkeypatch):
    from crates.search import signals

    # As if "lock" were in most chunks of a huge corpus (planner statistics say so).
    monkeypatch.setattr(signals, "_common_lexemes", lambda: frozenset({"lock"}))
    hits = search(query="mutex lock", signals=("keyword",), crate="tokio")
    assert "tokio::sync::Mutex::lock" in paths(hits)[:3]
    only_common = search(query="lock", signals=("keyword",), crate="tokio")
    assert "tokio::sync::Mutex::lock" in paths(only_common)  # nothing informative: any word selects


def test_a_precise_match_of_a_compound_token_needs_its_joined_form_or_every_part():
    # "hash" alone is a loose match of HashMap: it is left to the any-word tier.
    assert tsquery_all_for("HashMap") == "(hashmap | (hash & map))"
    assert tsquery_all_for("HashMap", skip=lambda w: w == "map") == "(hashmap | hash)"
    assert tsquery_for("HashMap") == "hashmap | hash | map"


def test_skipped_words_leave_the_tsquery():
    assert tsquery_for("hash map", skip=lambda w: w == "map") == "hash | hashmap"
    assert tsquery_all_for("HashMap::with_capacity", skip=lambda w: w in {"hash", "map"}) == (
        "hashmap & (withcapacity | (with & capacity))"
    )
    assert tsquery_all_for("map", skip=lambda w: True) == ""


def test_unknown_words_are_guessed_then_checked_in_the_same_round_trip():
    from django.db import connection

    from crates.search import signals

    query = "how do I lock a mutex from sync code"
    signals._stem_cache.clear()
    with CaptureQueries(connection) as cold:
        guessed = search(query=query, signals=("keyword",), crate="tokio")
    assert signals._stem_cache["how"] == ""  # learnt: a stop word
    assert signals._stem_cache["mutex"] == "mutex"
    # No round trip of its own for the stems: they ride with the signals, and the keyword
    # statement ran again because "how", "do", "i", "a" were guessed informative.
    assert not [q for q in cold if q.startswith("SELECT w, coalesce")]
    assert len([q for q in cold if "/* keyword */" in q]) == 2
    with CaptureQueries(connection) as warm:
        known = search(query=query, signals=("keyword",), crate="tokio")
    assert len([q for q in warm if "/* keyword */" in q]) == 1
    assert paths(guessed) == paths(known)


def _reset_prepared() -> None:
    from django.db import connection

    from crates.search import engine

    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    engine._prepared.clear()


def test_prepared_signal_statements_give_the_hits_of_their_first_run(monkeypatch):
    import re

    from django.db import connection

    from crates.search import signals

    # Force the HNSW statement (the one that always runs its generic plan) on this small corpus.
    monkeypatch.setattr(signals, "EXACT_SCAN_MAX_CHUNKS", 0)
    _reset_prepared()
    queries = ["Mutex::lock", "how do I run a future to completion", "HashMap with_capacity"]
    with CaptureQueries(connection) as first:
        firsts = [search(query=q) for q in queries]
    assert any(q.startswith("PREPARE ferrodex_") or "; PREPARE ferrodex_" in q for q in first)
    for _ in range(6):  # past PostgreSQL's five custom plans, after which it may settle on a generic one
        with CaptureQueries(connection) as again:
            assert [search(query=q) for q in queries] == firsts
        assert not any("PREPARE" in q for q in again)
    vector = {m for q in again for m in re.findall(r"EXECUTE (ferrodex_\w+)\([^;]*/\* vector \*/", q)}
    assert len(vector) == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = %s", [vector.pop()])
        generic, custom = cursor.fetchone()
        assert generic >= 6 * len(queries) and custom == 0
        cursor.execute("SHOW plan_cache_mode")  # the forced generic plan was transaction-local and reset
        assert cursor.fetchone()[0] == "auto"


def test_a_failed_batch_leaves_no_prepared_statement_unknown():
    from django.db import DatabaseError, connection, transaction

    from crates.search.engine import run_statements
    from crates.search.signals import Statement

    _reset_prepared()
    fresh = Statement(sql="SELECT %(x)s::int + 1", params={"x": 1}, rank=list)
    broken = Statement(sql="SELECT 1 / %(zero)s::int", params={"zero": 0}, rank=list, prepare=False)
    with pytest.raises(DatabaseError), transaction.atomic():
        run_statements({"fresh": fresh, "broken": broken})  # PREPAREd `fresh`, then failed
    # Not PREPAREd a second time ("already exists"): the runner re-reads what the session has.
    assert run_statements({"fresh": fresh, "again": fresh}) == {"fresh": [(2,)], "again": [(2,)]}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'ferrodex%%'")
        assert cursor.fetchone()[0] == 1


def test_one_batch_may_run_the_same_new_statement_twice():
    from crates.search.engine import run_statements
    from crates.search.signals import Statement

    _reset_prepared()  # two path probes of one query can share their SQL: one PREPARE, two EXECUTEs
    probe = Statement(sql="SELECT %(x)s::int * 2", params={"x": 2}, rank=list, plan="custom")
    other = Statement(sql="SELECT %(x)s::int * 2", params={"x": 5}, rank=list, plan="custom")
    assert run_statements({"path0": probe, "path1": other}) == {"path0": [(4,)], "path1": [(10,)]}


def test_a_search_after_its_prepared_statements_vanished_prepares_them_again():
    """psycopg deallocates every prepared statement of a session at a rollback once it prepared one of its own,
    and a pooler may DISCARD ALL: the next search must not fail, nor abort the caller's transaction."""
    from django.db import connection

    queries = ["Mutex::lock", "how do I run a future to completion"]
    before = [search(query=q) for q in queries]
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # behind the runner's back: it still believes they exist
    with CaptureQueries(connection) as again:
        assert [search(query=q) for q in queries] == before
    assert any("PREPARE ferrodex_" in q for q in again)
    with connection.cursor() as cursor:  # the test's transaction is still usable
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'ferrodex%%'")
        assert cursor.fetchone()[0] >= 3
