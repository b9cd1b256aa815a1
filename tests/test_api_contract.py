"""The OpenAPI schema states the rules the server enforces: for each parameter and body field, a value the
schema allows is not refused as invalid (422), and a value it does not allow is refused. Generated clients
(and schemathesis) send what the schema allows."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import jsonschema
import pytest
from django.test import Client

from crates.apikeys import create_api_key

pytestmark = pytest.mark.django_db

NAMES = ["serde", "a", "A-b_9", "a" * 64, "a" * 65, " serde ", "serde json", "serde@1.0.0", "0abc", "-a", "_a",
         "", "   ", "é", "a" * 201, "crates.io/crates/x", "\u0661abc", "a\x00"]  # fmt: skip
VERSIONS = ["1.0.0", "0.3.1", "1.2.3-alpha.1+build.5", " 1.0.0 ", "latest", "", "  ", "v1.0.0", "1.0", "01.0.0",
            "^1.0", "\u0661.\u0660.\u0660", "1.0.0-", "1." + "0" * 126, "1." + "0" * 127, "LATEST"]  # fmt: skip
QUERIES = ["serde", " x ", "", "   ", "a\x00b", "\t", "q" * 500, "q" * 501, "é", "a b"]
KINDS = ["struct", "Struct", "structs", "fn", "fn,trait", " fn , trait ", "struct,,trait", "", ",", "type alias",
         "type_alias", "types", "bogus", "struct,bogus", "FN", "fns"]  # fmt: skip
PATHS = ["ferro_fixture::Counter", "a::b", ".", "a.b", "a..b", "..", "   ", " a", "a\\b", "x" * 1000, "x" * 1001,
         "a\x00b", "a\nb", " " + "x" * 1000]  # fmt: skip


def _stored_crate() -> str:
    """A crate that exists (a removal looks the crate up before it reads the version)."""
    from crates.models import Crate

    Crate.objects.get_or_create(normalized_name="contract_crate", defaults={"name": "contract-crate"})
    return "contract-crate"


@pytest.fixture
def browser() -> Client:
    return Client(headers={"Authorization": f"Bearer {create_api_key(name='contract')[1]}"})


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    from config.api import api

    with django_db_blocker.unblock():
        return api.get_openapi_schema()


def parameter(schema, path, method, name) -> dict:
    params = schema["paths"][path][method]["parameters"]
    return next(p["schema"] for p in params if p["name"] == name)


def body_field(schema, path, method, name) -> dict:
    ref = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"][name]


def allowed(field_schema: dict, value) -> bool:
    return jsonschema.Draft202012Validator(field_schema).is_valid(value)


def refused_as_invalid(response) -> bool:
    if response.status_code == 422:
        return True
    # A value a URL route cannot take never reaches the endpoint: the API's JSON 404 for an unknown URL.
    return response.status_code == 404 and "No API endpoint" in response.json()["error"]["message"]


def check(field_schema: dict, value, response, what: str) -> None:
    assert response["Content-Type"].startswith("application/json"), (what, value, response.content[:300])
    expected = allowed(field_schema, value)
    assert refused_as_invalid(response) != expected, (
        f"{what}={value!r}: the schema {'allows' if expected else 'refuses'} it, the server answered "
        f"{response.status_code} {response.content[:300]!r}"
    )


CASES = [
    # (path in the schema, method, parameter, values, how to send one)
    ("/api/v1/crates/{name}", "get", "name", [n for n in NAMES if n.strip(" ") and "/" not in n],
     lambda c, v: c.get(f"/api/v1/crates/{quote(v)}")),
    ("/api/v1/search", "get", "crate", NAMES,
     lambda c, v: c.get("/api/v1/search?" + urlencode({"q": "x", "crate": v}))),
    ("/api/v1/search", "get", "version", VERSIONS,
     lambda c, v: c.get("/api/v1/search?" + urlencode({"q": "x", "version": v}))),
    ("/api/v1/search", "get", "q", QUERIES, lambda c, v: c.get("/api/v1/search?" + urlencode({"q": v}))),
    ("/api/v1/search", "get", "kind", KINDS, lambda c, v: c.get("/api/v1/search?" + urlencode({"q": "x", "kind": v}))),
    ("/api/v1/jobs", "get", "crate", NAMES, lambda c, v: c.get("/api/v1/jobs?" + urlencode({"crate": v}))),
    ("/api/v1/items/{crate}/{path}", "get", "path", PATHS,
     lambda c, v: c.get(f"/api/v1/items/serde/{quote(v)}")),
    ("/api/v1/items/{crate}/{path}/implementations", "get", "path", PATHS,
     lambda c, v: c.get(f"/api/v1/items/serde/{quote(v)}/implementations")),
    ("/api/v1/items/{crate}/{path}", "get", "version", VERSIONS,
     lambda c, v: c.get(f"/api/v1/items/serde/serde::X?{urlencode({'version': v})}")),
    ("/api/v1/crates/{name}", "delete", "version", VERSIONS,
     lambda c, v: c.delete(f"/api/v1/crates/{_stored_crate()}?{urlencode({'version': v})}")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "method", "name", "values", "send"), CASES, ids=[f"{c[1]} {c[0]} {c[2]}" for c in CASES]
)
def test_every_parameter_is_described_with_the_rules_the_server_applies(
    schema, browser, path, method, name, values, send
):
    field_schema = parameter(schema, path, method, name)
    for value in values:
        check(field_schema, value, send(browser, value), f"{method} {path} {name}")


@pytest.mark.parametrize(("name", "values", "other"), [("name", NAMES, {}), ("version", VERSIONS, {"name": "x1"})])
def test_the_ingest_body_is_described_with_the_rules_the_server_applies(schema, browser, name, values, other):
    field_schema = body_field(schema, "/api/v1/crates", "post", name)
    for value in values:
        body = {"name": "serde", **other, name: value}
        response = browser.post("/api/v1/crates", body, content_type="application/json")
        check(field_schema, value, response, f"POST /crates {name}")
