"""``manage.py runmcp`` as a subprocess, driven over stdio: by raw JSON-RPC lines (stdout must carry
nothing but protocol) and by the SDK's stdio client through a whole add -> complete -> search ->
get item -> remove flow with a real worker on the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anyio
import pytest
from mcp import Client, StdioServerParameters, stdio_client

from jobs.models import CrateJob
from tests.fakes import ferro_fixture_json, zstd
from tests.jobs_helpers import BASE_DIR, QCluster
from tests.jobs_helpers import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url(),
        "EMBEDDING_PROVIDER": "hash",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


def run_with_logs(flow, *, stderr_file, worker):
    """Run an async client flow; on failure print the server's stderr and the worker's log. Stops the worker."""
    try:
        return anyio.run(flow)
    except BaseException:
        print(stderr_file.read_text()[-5000:], file=sys.stderr)
        print(worker.log()[-5000:], file=sys.stderr)
        raise
    finally:
        worker.stop()


def rpc(id_: int | None, method: str, params: dict | None = None) -> str:
    message = {"jsonrpc": "2.0", "method": method}
    if id_ is not None:
        message["id"] = id_
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def test_stdout_carries_only_protocol_and_logs_go_to_stderr():
    lines = [
        rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                              "clientInfo": {"name": "raw", "version": "1"}}),
        rpc(None, "notifications/initialized"),
        rpc(2, "tools/list"),
        rpc(3, "tools/call", {"name": "add_rust_crate", "arguments": {"name": "bad name"}}),
        rpc(4, "tools/call", {"name": "add_rust_crate", "arguments": {"name": "serde"}}),
        rpc(5, "tools/call", {"name": "check_rust_status", "arguments": {}}),
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runmcp"], cwd=BASE_DIR, env={**os.environ, **server_env()},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    # Send one request at a time and wait for its answer, so EOF never races a pending call.
    responses = {}
    try:
        for line in lines:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
            if '"id"' in line:
                raw = proc.stdout.readline()
                message = json.loads(raw)  # any non-protocol byte on stdout fails here
                assert message["jsonrpc"] == "2.0"
                responses[message["id"]] = message
        proc.stdin.close()
        proc.wait(timeout=30)
        rest, stderr = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rest == b""
    assert "restore_rust_crate" in {tool["name"] for tool in responses[2]["result"]["tools"]}
    assert len(responses[2]["result"]["tools"]) == 10
    assert responses[3]["result"]["isError"] is True
    assert "Invalid crate name" in responses[3]["result"]["content"][0]["text"]
    job = responses[4]["result"]["structuredContent"]["job"]
    assert CrateJob.objects.get(pk=job["id"]).requested_by == "mcp"
    assert responses[5]["result"]["structuredContent"]["system"]["queued"] == 1
    assert b"MCP tool add_rust_crate refused" in stderr


@pytest.mark.slow
def test_full_flow_over_stdio_with_a_real_worker(fake_docsrs, tmp_path):
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=zstd(ferro_fixture_json()))
    env = {**fake_docsrs.env(), "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest"}
    worker = QCluster(log_path=tmp_path / "qcluster.log", env={**env, "EMBEDDING_PROVIDER": "hash"}).start()
    params = StdioServerParameters(
        command=sys.executable, args=["manage.py", "runmcp"], cwd=str(BASE_DIR), env=server_env(env)
    )

    async def wait_done(client: Client, job_id: str) -> dict:
        with anyio.fail_after(120):
            while True:
                status = await client.call_tool("check_rust_status", {"job_id": job_id})
                job = status.structured_content["job"]
                if job["finished"]:
                    return job
                await anyio.sleep(0.25)

    async def flow() -> dict:
        out: dict = {}
        with open(tmp_path / "runmcp.stderr", "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                tools = (await client.list_tools()).tools
                out["tools"] = {t.name: t for t in tools}
                added = await client.call_tool("add_rust_crate", {"name": "ferro-fixture"})
                out["added"] = added.structured_content
                out["done"] = await wait_done(client, added.structured_content["job"]["id"])
                out["search"] = await client.call_tool(
                    "search_rust_docs", {"query": "shape area", "crate": "ferro_fixture", "kind": "method"}
                )
                out["item"] = await client.call_tool(
                    "get_rust_item", {"crate": "ferro_fixture", "path": "ferro_fixture::shapes::Shape"}
                )
                removed = await client.call_tool("remove_rust_crate", {"name": "ferro_fixture"})
                out["removed"] = await wait_done(client, removed.structured_content["job"]["id"])
                out["after"] = await client.call_tool("search_rust_docs", {"query": "shape area"})
                out["listing"] = await client.call_tool("list_rust_crates", {})
        return out

    out = run_with_logs(flow, stderr_file=tmp_path / "runmcp.stderr", worker=worker)

    assert set(out["tools"]) >= {"add_rust_crate", "check_rust_status", "search_rust_docs", "get_rust_item"}
    assert all(t.output_schema for t in out["tools"].values())
    assert out["added"]["job"]["status"] == "queued" and out["added"]["deduplicated"] is False
    assert out["done"]["status"] == "complete", out["done"]
    assert out["done"]["counters"]["documents"] > 30
    paths = [hit["path"] for hit in out["search"].structured_content["results"]]
    assert "ferro_fixture::shapes::Shape::area" in paths
    item = out["item"].structured_content
    assert item["kind"] == "trait" and "ferro_fixture::shapes::Shape::area" in {c["path"] for c in item["children"]}
    assert out["removed"]["status"] == "complete" and out["removed"]["operation"] == "remove"
    assert out["after"].is_error is False and out["after"].structured_content["results"] == []
    assert out["listing"].structured_content["total"] == 0


def test_a_fresh_runmcp_loads_the_model_in_the_background_and_says_when_it_is_ready(tmp_path):
    """The first search_rust_docs of a session must not pay for the model: runmcp starts loading the real local
    model at start-up, and check_rust_status without a job id says whether it is ready yet."""
    params = StdioServerParameters(
        command=sys.executable, args=["manage.py", "runmcp"], cwd=str(BASE_DIR),
        env=server_env({"EMBEDDING_PROVIDER": "local", "HF_HUB_OFFLINE": "1"}),
    )

    async def flow() -> list:
        seen = []
        with open(tmp_path / "runmcp.stderr", "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                with anyio.fail_after(120):
                    while True:
                        status = await client.call_tool("check_rust_status", {})
                        model = status.structured_content["system"]["model"]
                        seen.append((model["preload"]["state"], model["ready"], status.content[0].text))
                        if model["ready"]:
                            break
                        await anyio.sleep(0.2)
                seen.append(await client.call_tool("search_rust_docs", {"query": "anything"}))
        return seen

    seen = anyio.run(flow)
    *states, search = seen
    assert states[-1][:2] == ("ready", True) and "The search model is ready." in states[-1][2]
    assert all(state in ("loading", "ready") for state, _ready, _text in states)  # started without a search
    assert all("loading in the background" in text for state, _ready, text in states if state == "loading")
    assert not search.is_error
