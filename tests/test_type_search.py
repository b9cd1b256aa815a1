"""Type search and the trait graph end to end: the real ferro_fixture rustdoc JSON through the real pipeline
(hash embedder), searched through the selectors, the JSON API and the MCP server; an HTML-only release's
declarations."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from django.test import override_settings
from mcp import Client
from ninja.testing import TestClient

from config.api import api
from crates.errors import InvalidInput, ItemNotFound
from crates.models import Crate, TraitImpl, TypeSignature
from crates.pipeline.ingest import run_ingest
from crates.pipeline.parse_html import parse_html_pages, read_doc_dir
from crates.pipeline.types import NullProgress
from crates.selectors import get_item, search_docs
from crates.trait_graph import list_implementations
from crates.typesig import render
from mcp_bridge.server import build_server

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_JSON = FIXTURES / "rustdoc" / "ferro_fixture.json.zst"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _hash_embedder(settings, monkeypatch):
    from django.db import connection

    from crates.pipeline.embed import reset_embedders

    settings.EMBEDDING_PROVIDER = "hash"
    reset_embedders()
    # MCP tools run on worker threads with connections of their own; they close them after each call.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)


@pytest.fixture
def ingested():
    with override_settings(EMBEDDING_PROVIDER="hash"):
        run_ingest(name="ferro_fixture", progress=NullProgress(), json_file=FIXTURE_JSON)
    yield
    Crate.objects.by_name("ferro_fixture").delete()


def top(query: str, **kwargs):
    return search_docs(query=query, crate="ferro_fixture", limit=5, **kwargs)


def test_ingest_stores_signatures_with_self_resolved_and_trait_impls(ingested):
    lock = TypeSignature.objects.get(document__path="ferro_fixture::sync::Mutex::lock")
    assert [render(n) for n in lock.signature["i"]] == ["&Mutex<T>"]
    assert render(lock.signature["o"]) == "MutexGuard<T>"
    assert {"i:mutex", "o:mutexguard"} <= set(lock.terms)
    rect = TraitImpl.objects.get(trait_name="Shape", type_name="Rect")
    assert rect.declaration.startswith("impl<T: Into<f64> + Copy> Shape for Rect<T>")
    assert rect.document.path == "ferro_fixture::shapes::Rect"


def test_type_query_finds_the_method_and_explains_the_match(ingested):
    hits = top("&Mutex<T> -> MutexGuard<T>")
    assert hits[0].path == "ferro_fixture::sync::Mutex::lock"
    assert "type" in hits[0].signals and hits[0].type_match == "&Mutex<T> → MutexGuard<T>"


def test_unboxing_a_result_alias(ingested):
    hits = top("&str -> u8")
    assert hits[0].path == "ferro_fixture::parse_log_level"  # pub use internal::parse_level as parse_log_level
    assert hits[0].type_match.startswith("&str → Result<u8")


def test_bounded_parameter_in_a_slice_and_output_only_queries(ingested):
    assert top("&[Shape] -> f64")[0].path == "ferro_fixture::shapes::total_area"
    assert "ferro_fixture::Counter::new" in [h.path for h in top("-> Counter")[:3]]
    # Self of a trait method takes a type the trait graph says implements the trait
    circle = top("&Circle -> f64")
    assert circle[0].path.startswith("ferro_fixture::shapes::Shape::")
    assert "Self = Circle: Shape" in circle[0].type_match


def test_type_prefix_and_plain_queries_are_not_type_searches(ingested):
    assert "ferro_fixture::sync::Mutex::try_lock" in [h.path for h in top("type:MutexGuard")]
    assert all("type" not in h.signals for h in top("lock the mutex"))


def test_bad_type_syntax_is_invalid_input_everywhere(ingested):
    with pytest.raises(InvalidInput, match="never closed"):
        search_docs(query="Vec<u8 -> usize")
    response = TestClient(api).get("/search", query_params={"q": "A -> B -> C"})
    assert response.status_code == 422
    assert "'->'" in response.json()["error"]["message"]
    result = call("search_rust_docs", {"query": "&str ->> Value"})
    assert result.is_error is True


def test_get_item_lists_implementors_of_a_trait_and_traits_of_a_type(ingested):
    shape = get_item(crate="ferro_fixture", path="ferro_fixture::shapes::Shape")
    assert {i["type"] for i in shape.implementors} == {"Circle", "Rect"}
    rect = get_item(crate="ferro_fixture", path="ferro_fixture::shapes::Rect")
    shape_impl = next(i for i in rect.implements if i["trait"] == "Shape")
    assert "Into<f64>" in shape_impl["declaration"] and shape_impl["blanket"] is False
    counter = get_item(crate="ferro_fixture", path="ferro_fixture::Counter")
    assert "Iterator" in {i["trait"] for i in counter.implements}
    lock = get_item(crate="ferro_fixture", path="ferro_fixture::sync::Mutex::lock")
    assert lock.implementors is None and lock.implements is None


def test_list_implementations_by_name_and_errors(ingested):
    display = list_implementations(crate="ferro_fixture", trait="Display")
    assert "FixtureError" in {i["type"] for i in display["implementations"]}
    both = list_implementations(crate="ferro_fixture", trait="Shape", type="Circle")
    assert [i["declaration"] for i in both["implementations"]] == ["impl Shape for Circle"]
    with pytest.raises(InvalidInput, match="trait, a type"):
        list_implementations(crate="ferro_fixture")
    with pytest.raises(ItemNotFound, match="No implementations"):
        list_implementations(crate="ferro_fixture", trait="Serialize")


def test_api_implementations_endpoint(ingested):
    client = TestClient(api)
    body = client.get("/items/ferro_fixture/ferro_fixture::shapes::Shape/implementations").json()
    assert body["item"] == "ferro_fixture::shapes::Shape" and body["count"] == 2
    body = client.get("/items/ferro_fixture/Circle/implementations").json()
    assert "Shape" in {i["trait"] for i in body["implementations"]}
    response = client.get("/items/ferro_fixture/ferro_fixture::sync::Mutex::lock/implementations")
    assert response.status_code == 422 and "traits and types" in response.json()["error"]["message"]
    assert client.get("/items/ferro_fixture/NoSuchThing/implementations").status_code == 404
    # the item route itself is unchanged, and carries the graph
    assert client.get("/items/ferro_fixture/ferro_fixture::shapes::Shape").json()["implementors"]


def call(name: str, arguments: dict):
    async def main():
        async with Client(build_server()) as client:
            return await client.call_tool(name, arguments)

    return anyio.run(main)


def test_mcp_type_search_and_list_rust_implementations(ingested):
    result = call("search_rust_docs", {"query": "&Mutex<T> -> MutexGuard<T>", "crate": "ferro_fixture"})
    assert result.structured_content["results"][0]["type_match"] == "&Mutex<T> → MutexGuard<T>"
    assert "type match: &Mutex<T> → MutexGuard<T>" in result.content[0].text
    result = call("list_rust_implementations", {"crate": "ferro_fixture", "trait": "Shape"})
    assert result.is_error is False and result.structured_content["count"] == 2
    assert "impl Shape for Circle" in result.content[0].text
    result = call("list_rust_implementations", {"crate": "ferro_fixture"})
    assert result.is_error is True


def test_html_only_release_gets_types_from_declarations():
    parsed = parse_html_pages(read_doc_dir(FIXTURES / "html" / "ferro_fixture"), crate_name="ferro_fixture")
    by_path = {item.path: item for item in parsed.items}
    lock = by_path["ferro_fixture::sync::Mutex::lock"].type_sig
    assert [render(n) for n in lock["i"]] == ["&Mutex<T>"] and render(lock["o"]) == "MutexGuard<T>"
    total = by_path["ferro_fixture::shapes::total_area"].type_sig
    assert total["i"] == [["&", [["[]", [["#S", [["Shape", []]]]]]]]] and render(total["o"]) == "f64"
    shape = next(i for i in by_path["ferro_fixture::shapes::Rect"].impls if i["trait"] == "Shape")
    assert shape["trait_path"] == "ferro_fixture::shapes::Shape"
    assert shape["declaration"] == "impl<T: Into<f64> + Copy> Shape for Rect<T>"  # generics and bounds as shown
    # the old (rustdoc 1.63) layout
    old = parse_html_pages(read_doc_dir(FIXTURES / "html" / "log-0.4.17"), crate_name="log")
    by_path = {item.path: item for item in old.items}
    assert render(by_path["log::max_level"].type_sig["o"]) == "LevelFilter"
    racy = by_path["log::set_logger_racy"].type_sig
    assert [render(n) for n in racy["i"]] == ["&Log"] and render(racy["o"]) == "Result<(), SetLoggerError>"


def test_backfill_gives_releases_stored_before_type_search_their_signatures():
    from django.core.management import call_command

    from tests.search_corpus import TOKIO, store_release

    Crate.objects.by_name("tokio").delete()
    store_release(crate="tokio", version="1.24.2", items=TOKIO)  # stored without type rows, as before
    assert not TypeSignature.objects.filter(release__crate__name="tokio").exists()
    assert all("type" not in h.signals for h in search_docs(query="&Mutex<T> -> MutexGuard<T>", crate="tokio"))
    call_command("backfill_type_signatures", "--crate", "tokio")
    hits = search_docs(query="&Mutex<T> -> MutexGuard<T>", crate="tokio")
    assert hits[0].path == "tokio::sync::Mutex::lock" and hits[0].type_match == "&Mutex<T> → MutexGuard<T>"
    signatures = TypeSignature.objects.filter(release__crate__name="tokio").count()
    call_command("backfill_type_signatures")  # idempotent: the release has its rows now
    assert TypeSignature.objects.filter(release__crate__name="tokio").count() == signatures
    Crate.objects.by_name("tokio").delete()
