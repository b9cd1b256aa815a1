"""Stage 1: name/version validation and resolution against a fake crates.io sparse index + API."""

from __future__ import annotations

import json
import logging

import pytest
from werkzeug.wrappers import Response

from crates.errors import (
    CrateNotFound,
    InvalidCrateName,
    InvalidVersion,
    UpstreamRejected,
    VersionNotFound,
    VersionYanked,
)
from crates.pipeline.http import HttpClient
from crates.pipeline.resolve import resolve_release


@pytest.fixture
def client(fake_docsrs):
    with HttpClient(rps=0) as http:
        yield http


def test_latest_skips_yanked_and_prerelease_versions(fake_docsrs, client):
    fake_docsrs.add_crate(
        "ferro-fixture",
        versions=["0.1.0", "0.2.0", "0.3.1", "0.10.0-beta.2"],
        yanked=["0.4.0"],
        description="A small crate written for Ferrodex's tests.",
        repository="https://example.invalid/ferro",
    )

    release = resolve_release(name="ferro-fixture", version="latest", client=client)

    assert release.name == "ferro-fixture"
    assert release.version == "0.3.1"
    assert release.available_versions == ["0.10.0-beta.2", "0.3.1", "0.2.0", "0.1.0"]
    assert release.description == "A small crate written for Ferrodex's tests."
    assert release.repository == "https://example.invalid/ferro"
    # Index + crates.io API; nothing from docs.rs while resolving.
    assert fake_docsrs.paths() == ["/index/fe/rr/ferro-fixture", "/api/v1/crates/ferro-fixture"]


def test_semver_precedence_not_string_order(fake_docsrs, client):
    fake_docsrs.add_crate("semverish", versions=["1.9.0", "1.10.0", "1.2.0"])
    assert resolve_release(name="semverish", version="latest", client=client).version == "1.10.0"


def test_only_prereleases_gives_the_newest_non_yanked_prerelease(fake_docsrs, client):
    fake_docsrs.add_crate("early", versions=["0.1.0-alpha.1", "0.1.0-alpha.2", "0.1.0-beta.1"], yanked=["0.1.0-rc.1"])
    assert resolve_release(name="early", version="latest", client=client).version == "0.1.0-beta.1"


def test_every_version_yanked_has_no_latest(fake_docsrs, client):
    fake_docsrs.add_crate("gone", versions=[], yanked=["1.0.0", "1.0.1"])
    with pytest.raises(VersionYanked, match="Every published version of gone has been yanked"):
        resolve_release(name="gone", version="latest", client=client)


def test_explicit_version(fake_docsrs, client):
    fake_docsrs.add_crate("ferro-fixture", versions=["0.1.0", "0.3.1"])
    release = resolve_release(name="ferro-fixture", version="0.1.0", client=client)
    assert (release.name, release.version) == ("ferro-fixture", "0.1.0")


def test_yanked_explicit_version_errors_listing_alternatives(fake_docsrs, client):
    fake_docsrs.add_crate("ferro-fixture", versions=["0.1.0", "0.3.1"], yanked=["0.3.2"])

    with pytest.raises(VersionYanked) as caught:
        resolve_release(name="ferro-fixture", version="0.3.2", client=client)

    message = str(caught.value)
    assert "ferro-fixture 0.3.2 was yanked" in message
    assert "0.3.1, 0.1.0" in message
    assert caught.value.context["available"] == ["0.3.1", "0.1.0"]
    assert not caught.value.transient
    assert fake_docsrs.docsrs_requests() == []


def test_a_yanked_version_suggests_stable_releases_before_prereleases(fake_docsrs, client):
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1", "0.4.0-rc.1"], yanked=["0.3.2"])

    with pytest.raises(VersionYanked) as caught:
        resolve_release(name="ferro-fixture", version="0.3.2", client=client)

    assert "Use one of: 0.3.1, 0.4.0-rc.1, or 'latest'." in str(caught.value)
    assert caught.value.context["available"] == ["0.3.1", "0.4.0-rc.1"]


def test_missing_version_lists_the_newest_available(fake_docsrs, client):
    versions = [f"1.0.{patch}" for patch in range(15)]
    fake_docsrs.add_crate("many", versions=versions, yanked=["1.0.15"])

    with pytest.raises(VersionNotFound) as caught:
        resolve_release(name="many", version="2.0.0", client=client)

    message = str(caught.value)
    assert "many has no version 2.0.0" in message
    assert "1.0.14, 1.0.13" in message and "(and 5 older)" in message
    assert "1.0.15" not in message  # yanked ones are not offered
    assert len(caught.value.context["available"]) == 10


def test_unknown_crate_errors_without_any_docsrs_request(fake_docsrs, client):
    fake_docsrs.add_crate("serde", versions=["1.0.0"], json_bytes=b"{}")

    with pytest.raises(CrateNotFound, match="no crate named 'no-such-crate'"):
        resolve_release(name="no-such-crate", version="latest", client=client)

    assert fake_docsrs.requests, "the index must have been asked"
    assert fake_docsrs.docsrs_requests() == []
    assert fake_docsrs.count(service="api") == 0
    # Both spellings were tried, like cargo does.
    assert fake_docsrs.paths() == ["/index/no/-s/no-such-crate", "/index/no/_s/no_such_crate"]


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("a", "/index/1/a"),
        ("xy", "/index/2/xy"),
        ("Abc", "/index/3/a/abc"),
        ("Serde_JSON", "/index/se/rd/serde_json"),
    ],
)
def test_sparse_index_path_shapes(fake_docsrs, client, name, path):
    fake_docsrs.add_crate(name, versions=["1.0.0"])

    release = resolve_release(name=name.lower(), version="latest", client=client)

    assert release.name == name  # the spelling as published
    assert fake_docsrs.paths(service="index") == [path]


def test_dash_and_underscore_are_the_same_crate(fake_docsrs, client):
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"])

    release = resolve_release(name="Ferro_Fixture", version="latest", client=client)

    assert release.name == "ferro-fixture"
    assert fake_docsrs.paths(service="index") == ["/index/fe/rr/ferro_fixture", "/index/fe/rr/ferro-fixture"]
    assert fake_docsrs.paths(service="api") == ["/api/v1/crates/ferro-fixture"]


@pytest.mark.parametrize("name", ["", "1abc", "-x", "has space", "é", "a" * 65, "a/../b"])
def test_invalid_names_are_refused_before_any_request(fake_docsrs, client, name):
    with pytest.raises(InvalidCrateName):
        resolve_release(name=name, version="latest", client=client)
    assert fake_docsrs.requests == []


@pytest.mark.parametrize("version", ["1", "1.0", "v1.0.0", "01.0.0", "1.0.0-", "^1.2", "latest-ish"])
def test_invalid_versions_are_refused_before_any_request(fake_docsrs, client, version):
    with pytest.raises(InvalidVersion):
        resolve_release(name="serde", version=version, client=client)
    assert fake_docsrs.requests == []


def test_metadata_failure_never_fails_resolution(fake_docsrs, client, caplog):
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], description="unused")
    fake_docsrs.fail("/api/", status=500, times=None)

    with caplog.at_level(logging.WARNING, logger="crates.pipeline.resolve"):
        release = resolve_release(name="ferro-fixture", version="latest", client=client)

    assert (release.version, release.description, release.repository) == ("0.3.1", "", "")
    assert "crates.io metadata for ferro-fixture unavailable" in caplog.text
    assert 1 < fake_docsrs.count(service="api") <= 3  # a short retry budget, not the full one


def test_metadata_call_can_be_switched_off(fake_docsrs, client, settings):
    settings.FETCH_CRATE_METADATA = False
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], description="not fetched")

    release = resolve_release(name="ferro-fixture", version="latest", client=client)

    assert (release.version, release.description) == ("0.3.1", "")
    assert fake_docsrs.count(service="api") == 0


def test_requests_identify_the_product_and_contact(fake_docsrs, client, settings):
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"])
    resolve_release(name="ferro-fixture", version="latest", client=client)
    agents = {r.headers.get("User-Agent") for r in fake_docsrs.requests}
    assert agents == {settings.HTTP_USER_AGENT}
    assert "Ferrodex" in settings.HTTP_USER_AGENT and settings.FERRODEX_CONTACT in settings.HTTP_USER_AGENT


def _index_route(lines: list[dict | str]):
    body = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    return lambda _request: Response(body, content_type="text/plain")


def test_index_lines_without_yanked_or_with_new_fields_are_read_like_cargo(fake_docsrs, client):
    # cargo reads 'yanked' as optional (absent = not yanked) and ignores fields it does not know.
    fake_docsrs.add_route(
        "/index/od/di/oddidx",
        _index_route(
            [
                {"name": "oddidx", "vers": "1.0.0", "deps": [], "cksum": "00", "features": {}},
                {"name": "oddidx", "vers": "1.1.0", "features2": {"x": ["dep:y"]}, "v": 2, "rust_version": "1.60"},
                {"name": "oddidx", "vers": "1.2.0", "yanked": True},
            ]
        ),
    )

    release = resolve_release(name="oddidx", version="latest", client=client)

    assert release.version == "1.1.0"
    assert release.available_versions == ["1.1.0", "1.0.0"]


def test_an_index_file_with_no_readable_line_is_not_reported_as_a_missing_crate(fake_docsrs, client):
    fake_docsrs.add_route("/index/od/di/oddidx", _index_route(["not json", '["a list"]', {"name": "oddidx"}]))

    with pytest.raises(UpstreamRejected, match="exists but holds no version entry") as caught:
        resolve_release(name="oddidx", version="latest", client=client)

    assert not isinstance(caught.value, CrateNotFound)
    assert "CRATES_INDEX_URL" in caught.value.message


@pytest.mark.parametrize(
    ("version", "hint"),
    [
        ("v1.0.3", "Write it without the 'v': '1.0.3'"),
        ("=1.0.3", "Give the version itself: '1.0.3'"),
        ("^1.0.3", "Give the version itself: '1.0.3'"),
        ("~1.2", "a version requirement"),
        (">=1.0, <2", "a version requirement"),
        ("1.0", "all three numbers, e.g. '1.0.0'"),
        ("1", "all three numbers, e.g. '1.0.0'"),
        ("1.0.*", "a version requirement"),
    ],
)
def test_an_almost_version_says_how_to_write_it(version, hint):
    # A git tag ('v1.0.3'), a Cargo.toml requirement ('=1.0.3', '^1.0', '~1.2') or a partial version ('1.0') was
    # refused with the same generic 'use an exact SemVer version such as '1.0.3'' whatever was sent.
    from crates.names import validate_version

    with pytest.raises(InvalidVersion) as caught:
        validate_version(version)
    assert hint in caught.value.message, caught.value.message
    assert "'latest'" in caught.value.message
