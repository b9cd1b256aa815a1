"""One operation, one behaviour: the API, MCP and the admin reach the same service and get the same outcome.

Each front soft-deletes a crate while an ingest of it runs; the outcome (the job queued, what happened to
the running ingest, the crate's state before and after the job) must be the same whichever front asked.
The same for a bad crate name: refused by the service, each front says so in its own way.
"""

from __future__ import annotations

import anyio
import pytest
from django.urls import reverse
from django.utils import timezone
from mcp import Client
from ninja.testing import TestClient

from config.api import api
from crates.apikeys import create_api_key
from crates.models import Crate
from jobs.models import CrateJob
from jobs.runner import run_next_job
from mcp_bridge.server import build_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_persistent_connections(monkeypatch):
    """MCP tool threads then close their connection after each call, so the test database can be dropped."""
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)


def _mcp(tool: str, arguments: dict):
    async def main():
        async with Client(build_server()) as client:
            return await client.call_tool(tool, arguments)

    return anyio.run(main)


def _soft_delete(front: str, crate: Crate, admin_client) -> None:
    if front == "api":
        raw = create_api_key(name="fronts")[1]
        response = TestClient(api).delete(f"/crates/{crate.name}?soft=true", headers={"X-API-Key": raw})
        assert response.status_code == 202, response.json()
    elif front == "mcp":
        assert not _mcp("remove_rust_crate", {"name": crate.name, "soft_delete": True}).is_error
    else:
        response = admin_client.post(reverse("admin:crates_crate_soft_delete", args=[crate.pk]))
        assert response.status_code == 302


def _outcome(front: str, admin_client) -> dict:
    crate = Crate.objects.create(name=f"shared-{front}")
    ingest = CrateJob.objects.create(crate_name=crate.name, normalized_name=crate.normalized_name,
                                     status="running", attempts=1, started_at=timezone.now(), requested_by="api")
    _soft_delete(front, crate, admin_client)
    removal = CrateJob.objects.get(operation="remove", normalized_name=crate.normalized_name)
    ingest.refresh_from_db()
    crate.refresh_from_db()
    hidden_at_once = crate.is_deleted
    # The worker stops the ingest at its next check; only then does the removal run.
    CrateJob.objects.filter(pk=ingest.pk).update(status="cancelled", finished_at=timezone.now())
    outcome = run_next_job()
    crate.refresh_from_db()
    return {
        "removal": (removal.status, removal.requested_version, removal.options, removal.requested_by == front),
        "running_ingest_asked_to_stop": ingest.cancel_requested_at is not None,
        "hidden_at_once": hidden_at_once,
        "removal_outcome": outcome,
        "hidden_after_the_job": crate.is_deleted,
        "events": list(removal.events.order_by("id").values_list("event_type", flat=True)),
    }


def test_soft_delete_has_one_behaviour_from_the_api_mcp_and_the_admin(admin_client):
    outcomes = {front: _outcome(front, admin_client) for front in ("api", "mcp", "admin")}
    assert outcomes["api"] == outcomes["mcp"] == outcomes["admin"], outcomes
    assert outcomes["admin"] == {
        "removal": ("queued", "*", {"soft": True}, True),
        "running_ingest_asked_to_stop": True,
        "hidden_at_once": False,
        "removal_outcome": "complete",
        "hidden_after_the_job": True,
        "events": ["created", "started", "progress", "progress", "completed"],
    }


def test_a_bad_crate_name_is_refused_by_the_service_and_every_front_says_so(admin_client):
    """The name is checked once, by the service; each front maps its error (the field it names included)."""
    raw = create_api_key(name="fronts")[1]
    api_error = TestClient(api).post("/crates", json={"name": "9lives"}, headers={"X-API-Key": raw})
    assert api_error.status_code == 422
    assert api_error.json()["error"]["code"] == "invalid_crate_name"
    assert api_error.json()["error"]["details"]["fields"][0]["field"] == "name"
    mcp_error = _mcp("add_rust_crate", {"name": "9lives"})
    assert mcp_error.is_error and "must start with an ASCII letter" in mcp_error.content[0].text
    page = admin_client.post(reverse("admin:crates_crate_add"), {"name": "9lives", "version": ""})
    assert page.status_code == 200 and "must start with an ASCII letter" in page.context["form"].errors["name"][0]
    assert not CrateJob.objects.exists()
