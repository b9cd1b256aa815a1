"""The MCP server in-process through the SDK's ``Client``: tool listing, schemas, results and errors.

Tools run on the SDK's worker threads with their own database connections, so these tests use
committed data (``transaction=True``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest
from mcp import Client

from crates.pipeline.ingest import run_ingest
from crates.pipeline.types import NullProgress
from jobs.models import CrateJob
from mcp_bridge.server import build_server

FIXTURE_JSON = Path(__file__).parent / "fixtures" / "rustdoc" / "ferro_fixture.json.zst"
TOOLS = {
    "add_rust_crate",
    "add_rust_crates_from_lockfile",
    "check_rust_status",
    "list_rust_crates",
    "remove_rust_crate",
    "restore_rust_crate",
    "cancel_rust_job",
    "search_rust_docs",
    "get_rust_item",
    "list_rust_implementations",
}

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _hash_embedder(settings):
    from crates.pipeline.embed import reset_embedders

    settings.EMBEDDING_PROVIDER = "hash"
    reset_embedders()


@pytest.fixture(autouse=True)
def _no_persistent_connections(monkeypatch):
    """Tool threads then close their connection after each call, so the test database can be dropped."""
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)


@pytest.fixture
def ingested():
    run_ingest(name="ferro_fixture", progress=NullProgress(), json_file=FIXTURE_JSON)


def call(name: str, arguments: dict):
    """One tool call on a fresh in-process server; returns the CallToolResult."""

    async def main():
        async with Client(build_server()) as client:
            return await client.call_tool(name, arguments)

    return anyio.run(main)


def text_of(result) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def failed(result) -> str:
    assert result.is_error is True, result
    return text_of(result)


def test_tools_are_listed_with_input_and_output_schemas_and_guidance():
    async def main():
        async with Client(build_server()) as client:
            return await client.list_tools()

    tools = {tool.name: tool for tool in anyio.run(main).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
        assert len(tool.description) > 80 and "\n    " not in tool.description
    assert tools["add_rust_crate"].input_schema["required"] == ["name"]
    assert "check_rust_status" in tools["add_rust_crate"].description
    assert "get_rust_item" in tools["search_rust_docs"].description
    # the kinds an agent may filter by are named, not left to guess
    assert "struct" in tools["search_rust_docs"].input_schema["properties"]["kind"]["description"]
    assert "type_alias" in tools["search_rust_docs"].input_schema["properties"]["kind"]["description"]
    assert tools["search_rust_docs"].input_schema["properties"]["limit"]["maximum"] == 50
    assert tools["remove_rust_crate"].annotations.destructive_hint is True
    assert tools["get_rust_item"].annotations.read_only_hint is True


def test_add_returns_a_queued_job_at_once_and_dedupes():
    result = call("add_rust_crate", {"name": "serde_json", "version": "1.0.87"})
    assert result.is_error is False
    job = result.structured_content["job"]
    assert job["status"] == "queued" and job["crate"] == "serde_json" and job["version"] == "1.0.87"
    assert result.structured_content["deduplicated"] is False
    assert job["id"] in text_of(result) and "check_rust_status" in text_of(result)
    assert CrateJob.objects.get(pk=job["id"]).requested_by == "mcp"
    again = call("add_rust_crate", {"name": "Serde-JSON", "version": "1.0.87"})
    assert again.structured_content["deduplicated"] is True and again.structured_content["job"]["id"] == job["id"]


def test_status_of_a_job_and_the_system_summary():
    job_id = call("add_rust_crate", {"name": "anyhow"}).structured_content["job"]["id"]
    one = call("check_rust_status", {"job_id": job_id})
    assert one.structured_content["job"]["id"] == job_id and one.structured_content["system"] is None
    assert one.structured_content["job"]["events"][0]["type"] == "created"
    assert "queued" in text_of(one)
    summary = call("check_rust_status", {})
    assert summary.structured_content["job"] is None
    assert summary.structured_content["system"]["queued"] == 1
    assert summary.structured_content["system"]["workers_alive"] == 0
    assert "No worker is running" in text_of(summary)


def test_a_queued_job_with_no_worker_alive_says_so_where_the_agent_looks():
    """runmcp over stdio runs no worker: an agent that adds a crate and polls its job would wait forever.
    The add and the job's status say no worker is running (not only the queue summary)."""
    added = call("add_rust_crate", {"name": "anyhow"})
    assert "No worker is running" in text_of(added)
    status = call("check_rust_status", {"job_id": added.structured_content["job"]["id"]})
    assert "No worker is running" in text_of(status) and "qcluster" in text_of(status)


def test_status_of_a_job_waiting_to_retry_says_why_and_when():
    """A queued job after a transient failure is not simply 'queued': the agent polling it should see that
    attempt 1 failed, why, and when it runs again (the API and the portal show the same stage message)."""
    job_id = call("add_rust_crate", {"name": "anyhow"}).structured_content["job"]["id"]
    CrateJob.objects.filter(pk=job_id).update(
        attempts=1, error_type="UpstreamUnavailable", error_message="HTTP 503 from docs.rs after 6 attempts",
        stage_message="Retrying at 03:13:10 UTC (in 30 s): HTTP 503 from docs.rs after 6 attempts",
    )  # fmt: skip
    text = text_of(call("check_rust_status", {"job_id": job_id}))
    assert "is queued" in text and "Retrying at 03:13:10 UTC (in 30 s): HTTP 503 from docs.rs" in text


def test_cancel_and_cancelling_twice():
    job_id = call("add_rust_crate", {"name": "itoa"}).structured_content["job"]["id"]
    cancelled = call("cancel_rust_job", {"job_id": job_id})
    assert cancelled.structured_content["status"] == "cancelled"
    assert "already finished" in failed(call("cancel_rust_job", {"job_id": job_id}))


def test_list_search_item_and_remove(ingested):
    listing = call("list_rust_crates", {"page_size": 5})
    crates = listing.structured_content["items"]
    assert [c["name"] for c in crates] == ["ferro_fixture"] and crates[0]["documents"] > 30
    assert "ferro_fixture 0.3.1" in text_of(listing)
    assert "page 5 is past the last page (1)" in text_of(call("list_rust_crates", {"page": 5}))

    hits = call("search_rust_docs", {"query": "Mutex::lock", "crate": "ferro-fixture", "limit": 3})
    results = hits.structured_content["results"]
    assert results[0]["path"] == "ferro_fixture::sync::Mutex::lock" and len(results) <= 3
    assert "ferro_fixture::sync::Mutex::lock" in text_of(hits)

    item = call("get_rust_item", {"crate": "ferro_fixture", "path": "ferro_fixture::sync::Mutex"})
    assert item.structured_content["kind"] == "struct"
    assert any(c["path"] == "ferro_fixture::sync::Mutex::lock" for c in item.structured_content["children"])
    assert text_of(item).startswith("struct ferro_fixture::sync::Mutex")

    removal = call("remove_rust_crate", {"name": "ferro_fixture", "soft_delete": True})
    assert removal.structured_content["job"]["operation"] == "remove"


def test_item_text_names_its_re_exports_and_trait_impls(ingested):
    """Clients that read only the text (not structured content) see how to import the item and what it
    implements, as docs.rs's page shows them: 'use ferro_fixture::Circle' is the path code uses."""
    text = text_of(call("get_rust_item", {"crate": "ferro_fixture", "path": "ferro_fixture::shapes::Circle"}))
    assert "Also public as: ferro_fixture::Circle" in text
    assert "Implements: Clone, Copy, Debug, PartialEq, Shape" in text
    assert "StructuralPartialEq" not in text  # a compiler marker, not something code names
    plain = text_of(call("get_rust_item", {"crate": "ferro_fixture", "path": "ferro_fixture::sync::Mutex::lock"}))
    assert "Also public as" not in plain and "Implements" not in plain


def test_item_text_says_how_many_children_it_leaves_out():
    from crates.schemas import ItemOut
    from mcp_bridge.server import _item_text

    children = [{"path": f"big::Module::f{n:03}", "kind": "function"} for n in range(120)]
    item = ItemOut(crate="big", version="1.0.0", path="big::Module", kind="module", children=children)
    text = _item_text(item)
    assert "120 child item(s)" in text and "big::Module::f049" in text and "big::Module::f050" not in text
    assert "… and 70 more" in text and "structured content" in text

    long = ItemOut(crate="big", version="1.0.0", path="big::Module", kind="module", docs="word " * 3000,
                   url="https://docs.rs/big/1.0.0/big/Module/index.html")  # fmt: skip
    text = _item_text(long)
    assert "[… 9,000 more characters" in text and "https://docs.rs/big/1.0.0/big/Module/index.html" in text


def test_search_and_get_item_say_what_is_missing_or_substituted(ingested):
    result = call("search_rust_docs", {"query": "uuid v4 random"})
    assert result.structured_content["missing_crates"] == ["uuid"]
    text = text_of(result)
    assert text.startswith("The query names 'uuid', not indexed here") and "add_rust_crate" in text
    assert "missing_crates" not in text_of(call("search_rust_docs", {"query": "counter"}))
    assert "not indexed" not in text_of(call("search_rust_docs", {"query": "counter"}))
    message = failed(call("search_rust_docs", {"query": "v4", "crate": "uuid"}))
    assert "not indexed" in message and "add_rust_crate" in message
    item = call("get_rust_item", {"crate": "ferro_fixture", "path": "FERRO_FIXTURE::SYNC::MUTEX"})
    assert item.structured_content["matched"] == "case_insensitive"
    assert "You asked for 'FERRO_FIXTURE::SYNC::MUTEX'" in text_of(item)
    exact = call("get_rust_item", {"crate": "ferro_fixture", "path": "ferro_fixture::sync::Mutex"})
    assert exact.structured_content["matched"] == "exact" and "You asked for" not in text_of(exact)


def test_list_names_every_searchable_version(ingested):
    """An agent that needs an older version must learn it is indexed before asking for it."""
    from crates.models import Crate, CrateRelease

    crate = Crate.objects.get(normalized_name="ferro_fixture")
    CrateRelease.objects.create(crate=crate, version="0.2.0", docs_source="html", state="active")
    listing = call("list_rust_crates", {})
    assert listing.structured_content["items"][0]["versions"] == ["0.3.1", "0.2.0"]
    assert "ferro_fixture 0.3.1 (also 0.2.0)" in text_of(listing)


def test_restore_undoes_a_soft_delete(ingested):
    from crates.services import remove_crate

    remove_crate(name="ferro_fixture", soft=True)  # what the soft removal job does
    assert call("list_rust_crates", {}).structured_content["total"] == 0
    assert "soft-deleted" in failed(call("search_rust_docs", {"query": "Mutex", "crate": "ferro_fixture"}))

    restored = call("restore_rust_crate", {"name": "Ferro-Fixture"})
    assert restored.structured_content["name"] == "ferro_fixture" and not restored.structured_content["deleted"]
    assert text_of(restored).startswith("ferro_fixture 0.3.1 is listed and searchable")
    assert call("list_rust_crates", {}).structured_content["total"] == 1
    hits = call("search_rust_docs", {"query": "Mutex::lock", "crate": "ferro_fixture"}).structured_content
    assert hits["results"][0]["path"] == "ferro_fixture::sync::Mutex::lock"


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("add_rust_crate", {"name": "not a crate!"}, "Invalid crate name"),
        ("add_rust_crate", {"name": "9lives"}, "must start with an ASCII letter"),
        # the standard library is not on crates.io or docs.rs: a job would only fail with 'no crate named std'
        ("add_rust_crate", {"name": "std"}, "part of the Rust toolchain"),
        ("search_rust_docs", {"query": "Vec", "crate": "core"}, "part of the Rust toolchain"),
        ("get_rust_item", {"crate": "std", "path": "std::vec::Vec"}, "--json-file"),
        # a name with its version, as cargo and crates.io write them: say to split it
        ("add_rust_crate", {"name": "serde_json@1.0.87"}, "name 'serde_json' and version '1.0.87'"),
        ("add_rust_crate", {"name": "serde_json 1.0.87"}, "name 'serde_json' and version '1.0.87'"),
        ("add_rust_crate", {"name": "https://crates.io/crates/serde_json"}, "name 'serde_json'"),
        ("add_rust_crate", {"name": "https://docs.rs/tokio/1.24.2/tokio/"}, "name 'tokio' and version '1.24.2'"),
        ("add_rust_crate", {"name": "serde", "version": "1.0"}, "Invalid version"),
        ("add_rust_crate", {"name": "x" * 10_000}, "name"),
        ("add_rust_crate", {}, "name"),
        ("check_rust_status", {"job_id": str(uuid.uuid4())}, "There is no job"),
        ("check_rust_status", {"job_id": "../../etc/passwd"}, "not a job id"),
        ("cancel_rust_job", {"job_id": str(uuid.uuid4())}, "There is no job"),
        ("list_rust_crates", {"page": 0}, "page"),
        ("list_rust_crates", {"page_size": 10_000}, "page_size"),
        ("list_rust_crates", {"page_size": -1}, "page_size"),
        ("remove_rust_crate", {"name": "never_added"}, "No crate named"),
        ("restore_rust_crate", {"name": "never_added"}, "never_added"),
        ("remove_rust_crate", {"name": "serde", "version": "latest"}, "exact version"),
        ("search_rust_docs", {"query": ""}, "query"),
        ("search_rust_docs", {"query": "x" * 501}, "query"),
        ("search_rust_docs", {"query": "mutex\x00lock"}, "NUL"),
        ("search_rust_docs", {"query": "lock", "kind": "spaceship"}, "Unknown item kind"),
        ("search_rust_docs", {"query": "lock", "crate": "never_added"}, "never_added"),
        ("search_rust_docs", {"query": "lock", "limit": 1000}, "limit"),
        ("get_rust_item", {"crate": "ferro_fixture", "path": "../../etc/passwd"}, "Rust path"),
        ("get_rust_item", {"crate": "ferro_fixture", "path": "a\x00b"}, "Rust path"),
        ("get_rust_item", {"crate": "never_added", "path": "never_added::X"}, "never_added"),
        ("no_such_tool", {}, "Unknown tool"),
        # booleans are strict, as in the JSON API: "yes" or 1 is not a request to force or to soft-delete
        ("add_rust_crate", {"name": "serde", "force": "yes"}, "force"),
        ("add_rust_crate", {"name": "serde", "force": 1}, "force"),
        ("list_rust_crates", {"include_deleted": "on"}, "include_deleted"),
        ("remove_rust_crate", {"name": "serde", "soft_delete": "y"}, "soft_delete"),
    ],
)
def test_bad_input_is_a_tool_error_with_a_clear_message(tool, arguments, message):
    assert message in failed(call(tool, arguments))


def test_unknown_item_error_lists_close_matches(ingested):
    text = failed(call("get_rust_item", {"crate": "ferro_fixture", "path": "ferro_fixture::sync::Mutexx"}))
    assert "ferro_fixture::sync::Mutex" in text


def test_a_crash_inside_a_tool_is_an_opaque_tool_error_and_the_server_keeps_serving(monkeypatch):
    from crates import selectors

    def explode(**kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(selectors, "list_crates", explode)

    async def main():
        async with Client(build_server()) as client:
            crashed = await client.call_tool("list_rust_crates", {})
            after = await client.call_tool("check_rust_status", {})
            return crashed, after

    crashed, after = anyio.run(main)
    assert crashed.is_error and "secret" not in text_of(crashed)
    assert after.is_error is False


@pytest.mark.parametrize(("tool", "arguments", "expected"), [
    ("search_rust_docs", {"query": "x", "limit": 500},
     "Invalid arguments: limit: Input should be less than or equal to 50"),
    ("search_rust_docs", {"query": ""}, "Invalid arguments: query: String should have at least 1 character"),
    ("list_rust_crates", {"page": 0, "page_size": "many"}, "Invalid arguments: page: Input should be greater than or "
                                                           "equal to 1; page_size: Input should be a valid integer, "
                                                           "unable to parse string as an integer"),
    ("add_rust_crate", {}, "Invalid arguments: name: Field required"),
])  # fmt: skip
def test_argument_errors_read_like_the_apis_422_messages(tool, arguments, expected):
    message = failed(call(tool, arguments))
    assert message == expected
    assert "pydantic" not in message and "validation error for" not in message and "Arguments" not in message
