"""The database goes away and comes back: the API and MCP answer a transient, actionable error meanwhile
(not a 500 'internal error' or a bare 'Error executing tool'), and work again once it is back.

The outage is real: the connection settings point at a socket directory where no server listens, so
psycopg's own connection failure reaches the code, as when PostgreSQL is restarted or stopped.
"""

from __future__ import annotations

import anyio
import pytest
from django.db import connection, connections
from mcp import Client
from ninja.testing import TestClient

from config.api import api
from crates.apikeys import create_api_key
from mcp_bridge.server import build_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _hash_embedder(settings):
    settings.EMBEDDING_PROVIDER = "hash"


class Outage:
    """Every new connection fails the way it does while the server is stopped, from ``start()`` to ``end()``."""

    def __init__(self, down_host: str) -> None:
        self.real_host, self.down_host = connection.settings_dict["HOST"], down_host

    def _set_host(self, host: str) -> None:
        for conn in connections.all():
            conn.close()
        connection.settings_dict["HOST"] = host  # shared by every thread's connection to the database

    def start(self) -> None:
        self._set_host(self.down_host)

    def end(self) -> None:
        self._set_host(self.real_host)


@pytest.fixture
def outage(monkeypatch, tmp_path):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    outage = Outage(down_host=str(tmp_path))  # a directory with no PostgreSQL socket in it
    yield outage
    outage.end()


def test_api_answers_503_database_unavailable_during_an_outage_and_recovers(outage):
    key = create_api_key(name="outage")[1]
    client = TestClient(api)
    outage.start()
    for response in (
        client.get("/jobs"),
        client.post("/crates", json={"name": "serde"}, headers={"Authorization": f"Bearer {key}"}),
    ):
        assert response.status_code == 503, response.content
        error = response.json()["error"]
        assert error["code"] == "database_unavailable"
        assert "database is unreachable" in error["message"] and "try again" in error["message"].lower()
        assert response["Retry-After"] == "5"
    outage.end()
    assert client.get("/jobs").status_code == 200


def test_mcp_tools_say_the_database_is_unreachable_and_work_again_after(outage):
    async def calls() -> list:
        async with Client(build_server()) as client:
            during = [
                await client.call_tool("check_rust_status", {}),
                await client.call_tool("add_rust_crate", {"name": "serde"}),
            ]
            await anyio.to_thread.run_sync(outage.end)
            after = await client.call_tool("check_rust_status", {})
            return [*during, after]

    outage.start()
    *during, after = anyio.run(calls)
    for result in during:
        assert result.is_error is True
        text = result.content[0].text
        assert "database is unreachable" in text and "try again" in text.lower(), text
    assert after.is_error is False, after.content[0].text


def test_mcp_http_key_check_is_a_503_during_an_outage(outage):
    from mcp_bridge.http_auth import Refused, check_key

    key = create_api_key(name="outage-http")[1]
    outage.start()
    with pytest.raises(Refused) as refused:
        check_key(key)
    assert refused.value.status == 503 and refused.value.code == "database_unavailable"
    assert "database is unreachable" in refused.value.message
    outage.end()
    assert check_key(key) == "outage-http"


@pytest.fixture
def unmigrated(monkeypatch):
    """The default connection points at an empty database (no migrate run yet) until the test ends."""
    name = f"{connection.settings_dict['NAME']}_unmigrated"
    with connection.cursor() as cursor:  # FORCE: the tool threads' connections may still be open
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    real = connection.settings_dict["NAME"]
    for conn in connections.all():
        conn.close()
    monkeypatch.setitem(connection.settings_dict, "NAME", name)
    yield
    for conn in connections.all():
        conn.close()
    connection.settings_dict["NAME"] = real
    with connection.cursor() as cursor:  # FORCE: the tool threads' connections may still be open
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_unmigrated_database_is_named_with_the_command_to_run(unmigrated):
    async def calls() -> list:
        async with Client(build_server()) as client:
            return [await client.call_tool("check_rust_status", {}), await client.call_tool("list_rust_crates", {})]

    for result in anyio.run(calls):
        assert result.is_error is True
        assert "no Ferrodex tables" in result.content[0].text and "manage.py migrate" in result.content[0].text
    response = TestClient(api).get("/jobs")
    assert response.status_code == 503 and "manage.py migrate" in response.json()["error"]["message"]

