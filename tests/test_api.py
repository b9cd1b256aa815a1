"""The JSON API through ninja's TestClient (and Django's client for docs, static assets and unknown URLs).

Search and items run on the real ferro_fixture rustdoc JSON ingested by the real pipeline (hash embedder).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone
from ninja.testing import TestClient

from config.api import api
from crates.apikeys import create_api_key, revoke_api_key
from crates.models import Crate
from crates.pipeline.ingest import run_ingest
from crates.pipeline.types import NullProgress
from jobs.models import CrateJob

FIXTURE_JSON = Path(__file__).parent / "fixtures" / "rustdoc" / "ferro_fixture.json.zst"

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def ingested(django_db_setup, django_db_blocker):
    """ferro_fixture 0.3.1, stored once for the module by the real pipeline."""
    from crates.pipeline.embed import reset_embedders

    with django_db_blocker.unblock(), override_settings(EMBEDDING_PROVIDER="hash"):
        reset_embedders()
        Crate.objects.by_name("ferro_fixture").delete()
        run_ingest(name="ferro_fixture", progress=NullProgress(), json_file=FIXTURE_JSON)
        yield
        Crate.objects.by_name("ferro_fixture").delete()
        CrateJob.objects.all().delete()


@pytest.fixture(autouse=True)
def _hash_embedder(settings):
    settings.EMBEDDING_PROVIDER = "hash"


@pytest.fixture
def client() -> TestClient:
    return TestClient(api)


@pytest.fixture
def key() -> str:
    return create_api_key(name="tests")[1]


@pytest.fixture
def auth(key) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error_of(response, status: int, code: str | None = None) -> dict:
    """Assert the one error shape of the API and return its ``error`` object."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def fields_of(error: dict) -> set[str]:
    return {f["field"] for f in error["details"]["fields"]}


# --- auth ---------------------------------------------------------------------------------------


def test_write_without_a_key_is_401_with_a_hint(client):
    response = client.post("/crates", json={"name": "serde"})
    error = error_of(response, 401, "unauthorized")
    assert "X-API-Key" in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not CrateJob.objects.exists()


def test_a_key_sent_with_another_scheme_is_401_naming_the_scheme(client, key):
    error = error_of(client.post("/crates", json={"name": "serde"}, headers={"Authorization": f"Token {key}"}),
                     401, "unauthorized")
    assert "uses the scheme 'Token', not Bearer" in error["message"] and "X-API-Key" in error["message"]
    assert not CrateJob.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer fdx_not-a-real-key"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "fdx_not-a-real-key"},
        {"X-API-Key": "x" * 10_000},
    ],
)
def test_wrong_key_is_401(client, headers):
    error_of(client.post("/crates", json={"name": "serde"}, headers=headers), 401, "unauthorized")
    assert not CrateJob.objects.exists()


def test_revoked_key_is_403(client):
    api_key, raw = create_api_key(name="old")
    revoke_api_key(key_id=api_key.pk)
    error_of(client.post("/crates", json={"name": "serde"}, headers={"X-API-Key": raw}), 403, "forbidden")


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_a_valid_key_in_either_header_is_accepted(client, key, header):
    value = f"Bearer {key}" if header == "Authorization" else key
    assert client.post("/crates", json={"name": "serde"}, headers={header: value}).status_code == 202


def test_reads_are_open_by_default_and_can_require_a_key(client, key, settings):
    assert client.get("/crates").status_code == 200
    assert client.get("/jobs").status_code == 200
    settings.API_READ_REQUIRES_KEY = True
    error_of(client.get("/crates"), 401, "unauthorized")
    error_of(client.get("/search", query_params={"q": "counter"}), 401)
    assert client.get("/crates", headers={"X-API-Key": key}).status_code == 200
    # Health stays open for load balancers.
    assert client.get("/health").status_code in (200, 503)


def test_a_wrong_key_on_an_open_read_is_still_refused(client):
    error_of(client.get("/crates", headers={"X-API-Key": "typo"}), 401)


# --- POST /crates -------------------------------------------------------------------------------


def test_add_crate_answers_202_with_the_job_and_links_that_resolve(client, auth):
    response = client.post("/crates", json={"name": "Serde-JSON", "version": "1.0.87"}, headers=auth)
    assert response.status_code == 202
    body = response.json()
    job = body["job"]
    assert body["deduplicated"] is False
    assert job["status"] == "queued" and job["operation"] == "ingest"
    assert job["crate"] == "Serde-JSON" and job["version"] == "1.0.87" and job["progress"] == 0
    assert CrateJob.objects.get(pk=job["id"]).requested_by == "api"
    assert body["links"] == {"job": f"/api/v1/jobs/{job['id']}", "crate": "/api/v1/crates/Serde-JSON"}
    followed = client.get(body["links"]["job"].removeprefix("/api/v1"))
    assert followed.status_code == 200 and followed.json()["id"] == job["id"]
    assert [e["type"] for e in followed.json()["events"]] == ["created"]


def test_adding_the_same_crate_again_returns_the_same_job_deduplicated(client, auth):
    first = client.post("/crates", json={"name": "tokio"}, headers=auth).json()
    again = client.post("/crates", json={"name": "TOKIO", "version": "latest", "force": True}, headers=auth)
    assert again.status_code == 202
    assert again.json()["deduplicated"] is True
    assert again.json()["job"]["id"] == first["job"]["id"]
    assert CrateJob.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "no spaces allowed"}, "name"),
        ({"name": "9lives"}, "name"),
        ({"name": "ünïcode"}, "name"),
        ({"name": "a" * 65}, "name"),
        ({"name": ""}, "name"),
        ({"name": "../../etc/passwd"}, "name"),
        ({"name": "serde", "version": "1.0"}, "version"),
        ({"name": "serde", "version": "^1.2.3"}, "version"),
        ({"name": "serde", "version": "1.0.0\x00"}, "version"),
    ],
)
def test_bad_name_or_version_is_422_naming_the_field(client, auth, payload, field):
    error = error_of(client.post("/crates", json=payload, headers=auth), 422)
    assert fields_of(error) == {field}
    assert not CrateJob.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": 42}, "name"),
        ({"name": "x" * 100_000}, "name"),
        ({"name": "serde", "force": "very"}, "force"),
        ({"name": "serde", "version": ["1.0.0"]}, "version"),
        ({"name": "serde", "foce": True}, "foce"),  # a misspelt option is not silently dropped
    ],
)
def test_malformed_body_is_422_validation_error_with_field_messages(client, auth, payload, field):
    error = error_of(client.post("/crates", json=payload, headers=auth), 422, "validation_error")
    assert field in fields_of(error)
    assert all(f["message"] for f in error["details"]["fields"])


@pytest.mark.parametrize("force", ["yes", "true", "on", 1, 0, "1", None, [], {}])
def test_force_must_be_a_json_boolean(client, auth, force):
    """Lax pydantic took "yes" and 1 for true: a request that did not say true must not force a re-ingest."""
    error = error_of(client.post("/crates", json={"name": "serde", "force": force}, headers=auth), 422)
    assert fields_of(error) == {"force"}
    assert not CrateJob.objects.exists()


@pytest.mark.parametrize(("value", "listed"), [("true", True), ("1", True), ("TRUE", True), ("false", False),
                                               ("0", False)])
def test_boolean_query_parameters_take_true_false_1_0(client, auth, value, listed):
    crate = Crate.objects.create(name="hidden_one", deleted_at=timezone.now())
    body = client.get("/crates", query_params={"include_deleted": value, "search": "hidden_one"}).json()
    assert [c["name"] for c in body["items"]] == ([crate.name] if listed else [])


@pytest.mark.parametrize("value", ["yes", "on", "t", "2", "", "flase", "truee"])
def test_other_boolean_query_values_are_422_naming_the_field(client, auth, value):
    assert fields_of(error_of(client.get("/crates", query_params={"include_deleted": value}), 422)) == {
        "include_deleted"
    }
    error = error_of(client.delete("/crates/serde", query_params={"soft": value}, headers=auth), 422)
    assert fields_of(error) == {"soft"}
    assert not CrateJob.objects.exists()


@pytest.mark.parametrize("body", [b"{not json", b"\x00", b'{"name": "serde"', b"name=serde", b"\xff\xfe"])
def test_a_body_that_is_not_json_is_a_422_saying_what_to_send(client, auth, body):
    # It was a 400 'Cannot parse request body' (a status the schema does not list) that did not say what was
    # wrong or what to send instead.
    response = client.post("/crates", data=body, content_type="application/json", headers=auth)
    error = error_of(response, 422, "invalid_body")
    assert fields_of(error) == {"body"}
    assert "not valid JSON" in error["message"] and '{"name": "serde_json"}' in error["message"], error
    assert not CrateJob.objects.exists()


def test_a_body_over_the_upload_limit_is_a_413_not_a_500(auth, settings):
    # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with RequestDataTooBig, which
    # reached the API's catch-all: '500 Internal error; it has been logged.'
    from django.test import Client

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"name": "serde", "x": "a" * 2000}).encode()
    response = Client().post("/api/v1/crates", data=body, content_type="application/json", headers=auth)
    error = error_of(response, 413, "payload_too_large")
    assert "1000 bytes" in error["message"] and '{"name": "serde_json"}' in error["message"], error
    assert not CrateJob.objects.exists()


@pytest.mark.parametrize(
    ("method", "url", "typo"),
    [
        ("get", "/api/v1/search?q=mutex&crates=tokio", "crates"),
        ("get", "/api/v1/crates?page_szie=5", "page_szie"),
        ("get", "/api/v1/jobs?state=failed", "state"),
        ("get", "/api/v1/items/tokio/tokio::sync::Mutex?verison=1.0.0", "verison"),
        ("delete", "/api/v1/crates/serde?sfot=true", "sfot"),
    ],
)
def test_a_misspelt_query_parameter_is_a_422_naming_it(auth, method, url, typo):
    # A misspelt parameter was ignored: '?crates=tokio' searched every crate, '?sfot=true' queued a hard delete.
    from django.test import Client

    error = error_of(getattr(Client(), method)(url, headers=auth), 422)
    assert fields_of(error) == {typo}, error
    assert "Unknown parameter" in error["message"] and "/api/v1/docs" in error["message"], error
    assert not CrateJob.objects.exists()


def test_too_many_query_parameters_is_a_4xx_not_a_500(auth):
    # Django refuses more than DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) with TooManyFieldsSent, which reached the
    # API's catch-all as a 500.
    from django.test import Client

    query = "&".join(f"k{i}=1" for i in range(1100))
    error = error_of(Client().get(f"/api/v1/search?q=x&{query}"), 400, "bad_request")
    assert "1000" in error["message"], error


@pytest.mark.parametrize(("body", "says"), [(b"", "needs a JSON object"), (b"[1]", "JSON object")])
def test_a_missing_body_or_one_that_is_no_object_names_the_body_not_an_internal_parameter(client, auth, body, says):
    response = client.post("/crates", data=body, content_type="application/json", headers=auth)
    error = error_of(response, 422)
    assert fields_of(error) == {"body"} and "payload" not in error["message"], error
    assert says in error["message"] and '{"name": "serde_json"}' in error["message"], error


# --- crates -------------------------------------------------------------------------------------


def test_list_crates_has_stats_and_pagination(client, ingested):
    body = client.get("/crates", query_params={"page_size": 5}).json()
    assert body["page"] == 1 and body["page_size"] == 5 and body["total"] >= 1
    crate = next(c for c in body["items"] if c["name"] == "ferro_fixture")
    assert crate["latest_version"] == "0.3.1" and crate["docs_source"] == "rustdoc-json"
    assert crate["documents"] > 30 and crate["chunks"] >= crate["documents"] and crate["deleted"] is False
    assert client.get("/crates", query_params={"search": "no-such-thing"}).json()["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"page": -1},
        {"page": 10**30},
        {"page": "two"},
        {"page_size": 0},
        {"page_size": 101},
        {"page_size": -5},
        {"page_size": 10**12},
        {"search": "x" * 5000},
        {"include_deleted": "perhaps"},
    ],
)
def test_bad_pagination_and_filters_are_422(client, params):
    error = error_of(client.get("/crates", query_params=params), 422, "validation_error")
    assert fields_of(error) == set(params)
    if set(params) <= {"page", "page_size"}:
        assert fields_of(error_of(client.get("/jobs", query_params=params), 422)) == set(params)


def test_get_crate_has_releases_and_latest_job(client, ingested):
    body = client.get("/crates/ferro-fixture").json()
    assert body["name"] == "ferro_fixture"
    assert [r["version"] for r in body["releases"]] == ["0.3.1"]
    assert body["releases"][0]["state"] == "active"
    error_of(client.get("/crates/never_added"), 404, "crate_not_found")
    error = error_of(client.get("/crates/bad name!"), 422)
    assert fields_of(error) == {"name"}


def test_remove_crate_answers_202_with_a_removal_job(client, auth, ingested):
    response = client.delete("/crates/ferro_fixture", query_params={"soft": True}, headers=auth)
    assert response.status_code == 202
    job = response.json()["job"]
    assert job["operation"] == "remove" and job["status"] == "queued" and job["options"] == {"soft": True}
    CrateJob.objects.filter(pk=job["id"]).delete()
    error_of(client.delete("/crates/ferro_fixture", headers={}), 401)
    error_of(client.delete("/crates/never_added", headers=auth), 404, "crate_not_found")
    error = error_of(client.delete("/crates/ferro_fixture", query_params={"version": "latest"}, headers=auth), 422)
    assert fields_of(error) == {"version"}
    error = error_of(client.delete("/crates/ferro_fixture", query_params={"version": "1.x"}, headers=auth), 422)
    assert fields_of(error) == {"version"}


def test_a_soft_delete_of_one_version_is_422_not_a_hidden_crate(client, auth, ingested):
    response = client.delete("/crates/ferro_fixture", query_params={"version": "0.3.1", "soft": True}, headers=auth)
    error = error_of(response, 422, "invalid_input")
    assert fields_of(error) == {"version"} and "hides the whole crate" in error["message"]
    assert not CrateJob.objects.filter(operation="remove").exists()
    assert not Crate.objects.get(normalized_name="ferro_fixture").is_deleted


def test_removing_a_version_that_is_not_stored_is_404_and_cancels_nothing(client, auth, ingested):
    running = CrateJob.objects.create(crate_name="ferro_fixture", normalized_name="ferro_fixture", status="running")
    response = client.delete("/crates/ferro_fixture", query_params={"version": "9.9.9"}, headers=auth)
    error = error_of(response, 404, "version_not_found")
    assert "stored versions: 0.3.1" in error["message"] and error["details"]["available"] == ["0.3.1"]
    # The typo used to be queued as a job that failed later, after cancelling the crate's running ingest.
    assert CrateJob.objects.get(pk=running.pk).cancel_requested_at is None
    assert not CrateJob.objects.filter(operation="remove").exists()
    running.delete()


def test_restore_undoes_a_soft_delete(client, auth):
    from crates.services import remove_crate

    Crate.objects.create(name="restorable")
    remove_crate(name="restorable", soft=True)
    assert client.get("/crates", query_params={"search": "restorable"}).json()["total"] == 0
    hidden = client.get("/crates", query_params={"search": "restorable", "include_deleted": True}).json()
    assert hidden["items"][0]["deleted"] is True
    response = client.post("/crates/restorable/restore", headers=auth)
    assert response.status_code == 200 and response.json()["deleted"] is False
    error_of(client.post("/crates/restorable/restore"), 401)
    error_of(client.post("/crates/nothing_here/restore", headers=auth), 404)


# --- jobs ---------------------------------------------------------------------------------------


def _queue(client, auth, name: str) -> str:
    return client.post("/crates", json={"name": name}, headers=auth).json()["job"]["id"]


def test_list_jobs_filters_by_status_and_crate(client, auth):
    first, second = _queue(client, auth, "alpha"), _queue(client, auth, "beta")
    assert client.post(f"/jobs/{first}/cancel", headers=auth).status_code == 200
    body = client.get("/jobs").json()
    assert body["total"] == 2 and [j["id"] for j in body["items"]] == [second, first]
    assert [j["id"] for j in client.get("/jobs", query_params={"status": "cancelled"}).json()["items"]] == [first]
    assert [j["id"] for j in client.get("/jobs", query_params={"crate": "BETA"}).json()["items"]] == [second]
    error = error_of(client.get("/jobs", query_params={"status": "exploded"}), 422)
    assert fields_of(error) == {"status"}
    assert fields_of(error_of(client.get("/jobs", query_params={"crate": "no way"}), 422)) == {"crate"}


def test_get_job_has_progress_counters_timestamps_and_events(client, auth):
    job_id = _queue(client, auth, "gamma")
    body = client.get(f"/jobs/{job_id}").json()
    assert body["status"] == "queued" and body["progress"] == 0 and body["finished"] is False
    assert set(body["counters"]) >= {"items_found", "items_processed", "documents", "chunks", "embeddings"}
    assert body["created_at"] and body["error"] is None
    assert body["events"][0]["type"] == "created"


@pytest.mark.parametrize("bad", ["not-a-uuid", "1", "x" * 5000, "%00", "..%2F..%2Fetc"])
def test_malformed_job_id_is_422(client, bad):
    error_of(client.get(f"/jobs/{bad}"), 422)


def test_unknown_job_is_404(client, auth):
    missing = uuid.uuid4()
    error_of(client.get(f"/jobs/{missing}"), 404, "job_not_found")
    error_of(client.post(f"/jobs/{missing}/cancel", headers=auth), 404, "job_not_found")
    error_of(client.post(f"/jobs/{missing}/retry", headers=auth), 404, "job_not_found")


def test_cancel_then_retry_and_the_409s(client, auth):
    job_id = _queue(client, auth, "delta")
    error_of(client.post(f"/jobs/{job_id}/cancel"), 401)
    error_of(client.post(f"/jobs/{job_id}/retry", headers=auth), 409, "job_state")
    cancelled = client.post(f"/jobs/{job_id}/cancel", headers=auth)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    error = error_of(client.post(f"/jobs/{job_id}/cancel", headers=auth), 409, "job_state")
    assert "already finished" in error["message"]
    retried = client.post(f"/jobs/{job_id}/retry", headers=auth)
    assert retried.status_code == 202
    new = retried.json()["job"]
    assert new["id"] != job_id and new["status"] == "queued" and new["retry_of"] == job_id


# --- search and items ---------------------------------------------------------------------------


def test_search_finds_items_with_urls_and_scores(client, ingested):
    body = client.get("/search", query_params={"q": "Counter::with_capacity"}).json()
    assert body["count"] == len(body["results"]) >= 1
    top = body["results"][0]
    assert top["path"] == "ferro_fixture::Counter::with_capacity" and top["kind"] == "method"
    # A local-file ingest keeps docs.rs-relative URLs (the crate may not be on docs.rs).
    assert top["url"].startswith("ferro_fixture/") and ".html" in top["url"] and top["score"] > 0 and top["signals"]


def test_search_filters(client, ingested):
    params = {"q": "shape area", "crate": "ferro-fixture", "kind": "trait,method", "limit": 3}
    results = client.get("/search", query_params=params).json()["results"]
    assert 1 <= len(results) <= 3 and {r["kind"] for r in results} <= {"trait", "method"}
    assert client.get("/search", query_params={"q": "counter", "version": "0.3.1"}).status_code == 200
    error_of(client.get("/search", query_params={"q": "counter", "crate": "never_added"}), 404, "crate_not_found")
    error_of(client.get("/search", query_params={"q": "counter", "crate": "ferro_fixture", "version": "9.9.9"}), 404)


def test_search_says_when_the_query_or_the_filter_names_a_crate_that_is_not_indexed(client, ingested):
    body = client.get("/search", query_params={"q": "uuid v4 random"}).json()
    assert body["missing_crates"] == ["uuid"]
    assert "not indexed" in body["notice"] and "add_rust_crate" in body["notice"]
    assert 'POST /api/v1/crates {"name": "uuid"}' in body["notice"]
    plain = client.get("/search", query_params={"q": "counter with capacity"}).json()
    assert plain["missing_crates"] == [] and plain["notice"] == ""
    error = error_of(client.get("/search", query_params={"q": "v4", "crate": "uuid"}), 404, "crate_not_found")
    assert "not indexed" in error["message"] and "POST /api/v1/crates" in error["message"]
    assert "add_rust_crate" in error["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 501}, "q"),
        ({"q": "counter", "limit": 0}, "limit"),
        ({"q": "counter", "limit": 51}, "limit"),
        ({"q": "counter", "limit": -1}, "limit"),
        ({"q": "counter", "kind": "spaceship"}, "kind"),
        ({"q": "counter", "crate": "../etc"}, "crate"),
        ({"q": "counter", "crate": "x" * 300}, "crate"),
        ({"q": "counter", "version": "one"}, "version"),
    ],
)
def test_bad_search_input_is_422(client, params, field):
    assert field in fields_of(error_of(client.get("/search", query_params=params), 422))


@pytest.mark.parametrize(
    ("kind", "kinds"),
    [("fn", {"function"}), ("Traits, methods", {"trait", "method"}), ("mod,type,const", {"module", "type_alias",
     "constant"}), ("tymethod", {"method"}), ("structfield", {"field"})],
)  # fmt: skip
def test_search_kinds_take_rust_and_rustdoc_spellings(client, ingested, kind, kinds):
    """Agents write kinds as Rust does ('fn', 'mod'), as docs.rs names pages ('tymethod') or in the plural."""
    response = client.get("/search", query_params={"q": "shape area counter", "kind": kind, "limit": 50})
    assert response.status_code == 200, response.json()
    assert {r["kind"] for r in response.json()["results"]} <= kinds


@pytest.mark.parametrize(
    "query", ["\x00", "' OR 1=1 --", "🦀 rust crab", "<script>alert(1)</script>", "a & b | !c", "::", "ä" * 500]
)
def test_hostile_search_queries_answer_200_or_422_never_500(client, ingested, query):
    assert client.get("/search", query_params={"q": query}).status_code in (200, 422)


def test_a_search_query_with_nul_says_so_not_that_it_is_empty(client):
    error = error_of(client.get("/search", query_params={"q": "mutex\x00lock"}), 422)
    assert "NUL" in error["message"] and "empty" not in error["message"]
    assert fields_of(error) == {"q"}


def test_get_item_by_path_with_children(client, ingested):
    body = client.get("/items/ferro_fixture/ferro_fixture::sync::Mutex").json()
    assert body["path"] == "ferro_fixture::sync::Mutex" and body["kind"] == "struct"
    assert body["version"] == "0.3.1" and body["url"] == "ferro_fixture/sync/struct.Mutex.html"
    assert "ferro_fixture::sync::Mutex::lock" in {c["path"] for c in body["children"]}
    assert client.get("/items/ferro-fixture/ferro_fixture::Counter", query_params={"version": "0.3.1"}).json()[
        "kind"
    ] == "struct"


def test_get_item_says_how_it_matched(client, ingested):
    exact = client.get("/items/ferro_fixture/ferro_fixture::sync::Mutex").json()
    assert (exact["matched"], exact["requested"]) == ("exact", "ferro_fixture::sync::Mutex")
    suffix = client.get("/items/ferro_fixture/sync::Mutex::lock").json()
    assert suffix["path"] == "ferro_fixture::sync::Mutex::lock" and suffix["matched"] in ("exact", "suffix")
    folded = client.get("/items/ferro_fixture/FERRO_FIXTURE::SYNC::MUTEX").json()
    assert (folded["path"], folded["matched"]) == ("ferro_fixture::sync::Mutex", "case_insensitive")


def test_unknown_item_is_404_with_suggestions(client, ingested):
    error = error_of(client.get("/items/ferro_fixture/ferro_fixture::sync::Mutexx"), 404, "item_not_found")
    assert "ferro_fixture::sync::Mutex" in error["details"]["suggestions"]
    error_of(client.get("/items/never_added/never_added::Thing"), 404, "crate_not_found")


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "ferro_fixture/../secrets",
        "ferro_fixture::..::Counter",
        "a\\b",
        "ferro_fixture::Counter\x00",
        "x" * 1001,
        "%2e%2e%2fetc%2fpasswd",
    ],
)
def test_traversal_and_junk_item_paths_are_4xx(client, ingested, path):
    response = client.get(f"/items/ferro_fixture/{path}")
    assert response.status_code in (404, 422)
    error_of(response, response.status_code)


def test_item_with_bad_crate_or_version_is_422(client, ingested):
    assert fields_of(error_of(client.get("/items/bad crate/x::Y"), 422)) == {"crate"}
    assert fields_of(error_of(client.get("/items/ferro_fixture/ferro_fixture::Counter?version=v1"), 422)) == {
        "version"
    }


# --- health, docs, unknown URLs, internal errors ---------------------------------------------------


def test_health_reports_every_part_without_loading_the_model(client, settings):
    settings.EMBEDDING_PROVIDER = "local"
    from crates.pipeline.embed import _embedders

    _embedders.pop("local", None)
    response = client.get("/health")
    body = response.json()
    checks = body["checks"]
    assert checks["database"]["ok"] is True
    assert checks["vector"]["ok"] is True and re.match(r"^\d+\.\d+", checks["vector"]["version"])
    assert checks["embedder"] == {
        "provider": "local", "model": "all-MiniLM-L6-v2", "dimension": settings.EMBEDDING_DIMENSION,
        "loaded": False, "available": True, "ok": True, "ready": False, "preload": {"state": "not started"},
        "note": "the model loads on the first search in this process (EMBEDDING_PRELOAD is off or this process "
                "does not preload)",
    }  # fmt: skip
    assert "local" not in _embedders
    assert checks["queue"]["queued"] == 0 and "workers_alive" in checks["queue"]
    assert response.status_code == 200 and body["status"] == "ok"


@pytest.mark.parametrize(
    ("provider", "model"), [("hash", "ferrodex-hash-v1"), ("local", "all-MiniLM-L6-v2"), ("openai", "my-model")]
)
def test_health_names_the_model_the_releases_are_embedded_with(client, settings, provider, model):
    settings.EMBEDDING_PROVIDER = provider
    settings.EMBEDDING_MODEL = "my-model"  # read by the openai provider only
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9"
    assert client.get("/health").json()["checks"]["embedder"]["model"] == model


def test_health_is_503_when_jobs_wait_and_no_worker_is_alive(client, auth):
    _queue(client, auth, "stuck")
    response = client.get("/health")
    assert response.status_code == 503
    queue = response.json()["checks"]["queue"]
    assert queue["ok"] is False and queue["queued"] == 1 and queue["workers_alive"] == 0
    assert "qcluster" in queue["error"]


def test_health_is_503_for_an_unusable_embedder(client, settings):
    settings.EMBEDDING_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = ""
    settings.OPENAI_API_KEY = ""
    response = client.get("/health")
    assert response.status_code == 503 and response.json()["checks"]["embedder"]["ok"] is False


def test_unexpected_errors_are_a_logged_opaque_500(client, monkeypatch, caplog):
    from crates import selectors

    def explode(**kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(selectors, "list_crates", explode)
    with caplog.at_level(logging.ERROR, logger="crates.api_errors"):
        response = client.get("/crates")
    error = error_of(response, 500, "internal_error")
    assert "secret" not in response.content.decode()
    assert error["details"]["error_id"] in caplog.text and "secret internal detail" in caplog.text


def test_openapi_and_offline_docs(client):
    from django.test import Client

    schema = client.get("/openapi.json").json()
    assert {"/api/v1/crates", "/api/v1/jobs/{job_id}", "/api/v1/search", "/api/v1/health"} <= set(schema["paths"])
    assert set(schema["components"]["securitySchemes"]) == {"ApiKeyBearer", "ApiKeyXHeader"}
    assert "202" in schema["paths"]["/api/v1/crates"]["post"]["responses"]

    browser = Client()
    page = browser.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in assets:
        assert browser.get(asset).status_code == 200, asset


def test_openapi_says_reads_need_no_key_while_they_are_open(client, settings):
    # Reads are open by default, but the schema gave them the write endpoints' key-only security: generated
    # clients and Swagger UI asked for a key, and a contract test (schemathesis) flagged every open read.
    # '{}' in an operation's security means "no key needed"; a key that is sent must still be valid.
    def security(schema, path, method):
        return schema["paths"][path][method].get("security")

    keys = [{"ApiKeyBearer": []}, {"ApiKeyXHeader": []}]
    schema = client.get("/openapi.json").json()
    for path in ["/api/v1/crates", "/api/v1/search", "/api/v1/jobs", "/api/v1/jobs/{job_id}"]:
        assert security(schema, path, "get") == [{}, *keys], path
    assert security(schema, "/api/v1/crates", "post") == keys
    assert security(schema, "/api/v1/jobs/{job_id}/cancel", "post") == keys
    settings.API_READ_REQUIRES_KEY = True
    schema = client.get("/openapi.json").json()
    assert security(schema, "/api/v1/crates", "get") == keys
    assert security(schema, "/api/v1/search", "get") == keys


def test_unknown_api_urls_answer_json_404(client):
    from django.test import Client

    for url in ["/api/v1/nope", "/api/v2/crates", "/api/v1/crates/a/b/c"]:
        response = Client().get(url)
        error_of(response, 404, "not_found")


def test_unknown_api_urls_answer_json_404_to_writes_too(auth):
    # A POST or DELETE to an unknown API URL met Django's CSRF check first and got its HTML '403 Forbidden: CSRF
    # verification failed' page: a client that wrote '/api/v1/crates/' (trailing slash) was told about cookies.
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    for method in ("post", "delete", "put"):
        error = error_of(getattr(browser, method)("/api/v1/nope", headers=auth), 404, "not_found")
        assert "/api/v1/docs" in error["message"]
    error = error_of(browser.post("/api/v1/crates/", {"name": "serde"}, "application/json", headers=auth), 404)
    assert "without the trailing slash: /api/v1/crates" in error["message"], error
    assert "trailing slash" not in error_of(browser.get("/api/v1/nope/"), 404)["message"]


def test_a_method_an_endpoint_does_not_take_is_a_405_in_the_error_shape(auth):
    # It was a bare text/plain 'Method not allowed'.
    from django.test import Client

    response = Client().put("/api/v1/crates", headers=auth)
    error = error_of(response, 405, "method_not_allowed")
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert "PUT" in error["message"] and "GET" in error["message"] and "POST" in error["message"], error


HOSTILE = ["x" * 10_000, "ünï🦀", "../../etc/passwd", "..%2F..%2Fetc", "%00", "a%00b", "' OR 1=1 --", "-1", "  "]
ROUTES = [
    ("get", "/api/v1/crates/{x}"),
    ("delete", "/api/v1/crates/{x}"),
    ("post", "/api/v1/crates/{x}/restore"),
    ("get", "/api/v1/jobs/{x}"),
    ("post", "/api/v1/jobs/{x}/cancel"),
    ("post", "/api/v1/jobs/{x}/retry"),
    ("get", "/api/v1/items/{x}/ferro_fixture::Counter"),
    ("get", "/api/v1/items/ferro_fixture/{x}"),
    ("get", "/api/v1/crates?page_size={x}"),
    ("get", "/api/v1/jobs?page={x}"),
    ("get", "/api/v1/search?q=counter&limit={x}"),
    ("get", "/api/v1/search?q=counter&crate={x}"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
@pytest.mark.parametrize("value", HOSTILE, ids=["huge", "unicode", "traversal", "encoded-traversal", "nul",
                                               "inner-nul", "sql", "negative", "blank"])  # fmt: skip
def test_hostile_values_on_every_route_are_4xx_in_the_error_shape(key, method, route, value):
    """Through the whole Django stack (URL decoding, middleware), with a valid key so auth is not the answer."""
    from django.test import Client

    response = getattr(Client(), method)(route.format(x=value), headers={"X-API-Key": key})
    assert 400 <= response.status_code < 500, (route, value, response.status_code, response.content[:300])
    error_of(response, response.status_code)


def test_the_docs_say_plainly_which_endpoints_need_a_key(client, settings):
    # Swagger UI draws '[{}, key]' as a closed lock and '[key]' as an open one: the opposite of what a reader
    # expects. Every operation's summary and description say it in words.
    def words(schema):
        out = {}
        for path, operations in schema["paths"].items():
            for method, op in operations.items():
                out[(method, path)] = (op["summary"], op.get("description", ""))
        return out

    ops = words(client.get("/openapi.json").json())
    assert ops[("post", "/api/v1/crates")][0].endswith("(API key required)")
    assert "Needs an API key" in ops[("post", "/api/v1/crates")][1]
    assert ops[("get", "/api/v1/search")][0].endswith("(no key needed)")
    assert "No API key needed" in ops[("get", "/api/v1/search")][1]
    assert ops[("get", "/api/v1/health")][0].endswith("(no key needed)")
    for (method, path), (summary, _description) in ops.items():
        assert summary.endswith(("(API key required)", "(no key needed)")), (method, path, summary)
    settings.API_READ_REQUIRES_KEY = True
    ops = words(client.get("/openapi.json").json())
    assert ops[("get", "/api/v1/search")][0].endswith("(API key required)")
