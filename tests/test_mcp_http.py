"""``manage.py runmcp --transport http``: streamable HTTP on localhost, driven by the SDK's client."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys

import anyio
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

from crates.apikeys import create_api_key, revoke_api_key
from tests.jobs_helpers import BASE_DIR, wait_for
from tests.jobs_helpers import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def runmcp_http(tmp_path, *extra: str):
    """A ``runmcp --transport http`` process on a free port; yields (port, its log file path)."""
    port = free_port()
    log_path = tmp_path / f"runmcp-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runmcp", "--transport", "http", "--port", str(port), *extra],
        cwd=BASE_DIR, env={**os.environ, "DATABASE_URL": database_url(), "EMBEDDING_PROVIDER": "hash"},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: listening(port) or proc.poll() is not None, timeout=60, interval=0.1, what="runmcp http")
        assert proc.poll() is None, log_path.read_text()
        yield port, log_path
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def agent_session(port: int, headers: dict[str, str] | None = None):
    async def session():
        transport = streamable_http_client(
            f"http://127.0.0.1:{port}/mcp", http_client=create_mcp_http_client(headers=headers)
        )
        async with Client(transport) as client:
            tools = await client.list_tools()
            added = await client.call_tool("add_rust_crate", {"name": "serde"})
            bad = await client.call_tool("add_rust_crate", {"name": "no such name!"})
            return tools, added, bad

    return anyio.run(session)


def initialize(port: int, **headers: str) -> requests.Response:
    """One raw MCP initialize request, as any HTTP client would send it."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
    return requests.post(
        f"http://127.0.0.1:{port}/mcp", data=json.dumps(body), timeout=10,
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers},
    )  # fmt: skip


def test_streamable_http_transport_serves_the_tools_to_a_client_with_an_api_key(tmp_path):
    _key, raw = create_api_key(name="agent")
    with runmcp_http(tmp_path) as (port, log_path):
        tools, added, bad = agent_session(port, {"Authorization": f"Bearer {raw}"})
    assert "restore_rust_crate" in {tool.name for tool in tools.tools} and len(tools.tools) == 10
    assert added.structured_content["job"]["status"] == "queued"
    assert bad.is_error and "Invalid crate name" in bad.content[0].text
    # Bound to the loopback interface only.
    output = log_path.read_text()
    assert f"127.0.0.1:{port}" in output and "API key required" in output


def test_http_requests_without_a_valid_key_are_refused_like_the_json_api(tmp_path):
    _key, raw = create_api_key(name="agent")
    revoked, revoked_raw = create_api_key(name="old")
    revoke_api_key(key_id=revoked.pk)
    with runmcp_http(tmp_path) as (port, _log):
        missing = initialize(port)
        unknown = initialize(port, Authorization="Bearer fdx_not-a-key")
        other_scheme = initialize(port, Authorization=f"Token {raw}")
        gone = initialize(port, **{"X-API-Key": revoked_raw})
        by_header = initialize(port, **{"X-API-Key": raw})
        by_bearer = initialize(port, Authorization=f"Bearer {raw}")
        with pytest.raises(Exception):  # noqa: B017 - the SDK client fails in its own way on a 401
            agent_session(port)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == 'Bearer realm="ferrodex"'
    assert "needs an API key" in missing.json()["error"]["message"]
    assert "create_api_key" in missing.json()["error"]["message"]
    assert unknown.status_code == 401 and "not valid" in unknown.json()["error"]["message"]
    assert other_scheme.status_code == 401 and "'Token'" in other_scheme.json()["error"]["message"]
    assert gone.status_code == 403 and "revoked" in gone.json()["error"]["message"]
    assert by_header.status_code == 200 and by_bearer.status_code == 200
    assert "serverInfo" in by_bearer.text


def test_no_auth_serves_without_keys_on_localhost_only(tmp_path):
    with runmcp_http(tmp_path, "--no-auth") as (port, log_path):
        tools, added, _bad = agent_session(port)
    assert len(tools.tools) == 10 and added.structured_content["job"]["status"] == "queued"
    assert "without API keys" in log_path.read_text()
    refused = subprocess.run(
        [sys.executable, "manage.py", "runmcp", "--transport", "http", "--host", "0.0.0.0", "--no-auth"],
        cwd=BASE_DIR, env={**os.environ, "DATABASE_URL": database_url()}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "--no-auth is for this machine only" in refused.stderr


def test_invalid_http_options_are_refused():
    result = subprocess.run(
        [sys.executable, "manage.py", "runmcp", "--transport", "http", "--port", "0"],
        cwd=BASE_DIR, env={**os.environ, "DATABASE_URL": database_url()}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "--port" in result.stderr
