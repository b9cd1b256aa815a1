"""``manage.py runmcp --transport http``: streamable HTTP on localhost, driven by the SDK's client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import anyio
import pytest
from mcp import Client

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


def test_streamable_http_transport_serves_the_tools_on_localhost(tmp_path):
    port = free_port()
    log = open(tmp_path / "runmcp.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runmcp", "--transport", "http", "--port", str(port)],
        cwd=BASE_DIR, env={**os.environ, "DATABASE_URL": database_url(), "EMBEDDING_PROVIDER": "hash"},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    async def session():
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            tools = await client.list_tools()
            added = await client.call_tool("add_rust_crate", {"name": "serde"})
            bad = await client.call_tool("add_rust_crate", {"name": "no such name!"})
            return tools, added, bad

    try:
        wait_for(lambda: listening(port) or proc.poll() is not None, timeout=60, interval=0.1, what="runmcp http")
        assert proc.poll() is None, (tmp_path / "runmcp.log").read_text()
        tools, added, bad = anyio.run(session)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert "restore_rust_crate" in {tool.name for tool in tools.tools} and len(tools.tools) == 8
    assert added.structured_content["job"]["status"] == "queued"
    assert bad.is_error and "Invalid crate name" in bad.content[0].text
    # Bound to the loopback interface only.
    output = (tmp_path / "runmcp.log").read_text()
    assert f"127.0.0.1:{port}" in output


def test_invalid_http_options_are_refused():
    result = subprocess.run(
        [sys.executable, "manage.py", "runmcp", "--transport", "http", "--port", "0"],
        cwd=BASE_DIR, env={**os.environ, "DATABASE_URL": database_url()}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "--port" in result.stderr
