"""Cargo.lock in, exact versions out: parsing (v1-v4, sources, manifests, workspaces, bad input), the one service
behind the MCP tool, the API and the CLI (jobs, dedupe, skips, nothing queued on a rejected file), and projects
that scope search and items to exactly the locked versions."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from ninja.testing import TestClient

from config.api import api
from crates import projects
from crates.apikeys import create_api_key
from crates.errors import InvalidInput, VersionNotFound
from crates.lockfiles import MAX_PACKAGES, LockfileError, find_direct, parse_lockfile
from crates.models import Project
from crates.pipeline.ingest import run_ingest
from crates.pipeline.types import NullProgress
from crates.selectors import get_item, search_docs
from jobs.models import CrateJob

LOCKS = Path(__file__).parent / "fixtures" / "lockfiles"
FIXTURE_JSON = Path(__file__).parent / "fixtures" / "rustdoc" / "ferro_fixture.json.zst"


def read(name: str) -> str:
    return (LOCKS / name).read_text()


# --- parsing: no database -------------------------------------------------------------------------


def test_v3_lockfile_sources_and_lines():
    lock = parse_lockfile(read("v3.lock"))
    assert lock.format_version == 3
    by = {(p.name, p.version): p for p in lock.packages}
    assert by[("ferro-fixture", "0.3.1")].source == "crates.io"
    assert by[("my-app", "0.1.0")].source == "path"
    assert by[("internal-tool", "2.0.0")].source == "git"
    assert by[("vendored", "1.2.3")].source == "registry"
    assert {v for n, v in by if n == "serde"} == {"1.0.150", "0.9.15"}  # two majors of one crate, both kept
    assert by[("gated-fixture", "0.2.0")].line == 11  # its [[package]] header, for error messages


def test_v4_sparse_source_and_v1_metadata_format():
    v4 = parse_lockfile(read("v4.lock"))
    assert v4.format_version == 4 and v4.packages[0].source == "crates.io"  # sparse+https://index.crates.io/
    v1 = parse_lockfile(read("v1.lock"))
    assert v1.format_version == 1
    direct = find_direct(v1, manifest=None).direct
    assert set(direct) == {("ferro_fixture", "0.3.1")}  # "name version (source)" entries resolved
    assert parse_lockfile(read("v1.lock").split("[metadata]")[0]).format_version == 2  # no key, no [metadata]


def test_manifest_gives_direct_dependencies_with_kinds_and_features():
    lock = find_direct(parse_lockfile(read("v3.lock")), manifest=read("app.toml"))
    assert lock.direct_from == "manifest"
    gated = lock.direct[("gated_fixture", "0.2.0")]
    assert gated.kinds == ["normal"] and gated.features == ["net"] and gated.default_features is False
    assert lock.direct[("serde", "1.0.150")].kinds == ["dev"]  # 'serde 1.0.150' in the lockfile's list
    assert ("serde", "0.9.15") not in lock.direct and ("ferro_fixture", "0.3.1") not in lock.direct


def test_default_features_stay_on_when_any_declaration_keeps_them():
    """cargo unifies a dependency's declarations: features add up, and the defaults are on unless every
    declaration turns them off (a unix-only table asking for `fs` with defaults keeps `std` on)."""
    manifest = read("app.toml").replace(
        "[dev-dependencies]",
        '[target.\'cfg(unix)\'.dependencies]\ngated-fixture = { version = "0.2", features = ["fs"] }\n\n'
        "[dev-dependencies]",
    )
    gated = find_direct(parse_lockfile(read("v3.lock")), manifest=manifest).direct[("gated_fixture", "0.2.0")]
    assert gated.features == ["net", "fs"] and gated.default_features is True
    reversed_order = manifest.replace('features = ["fs"] }', 'default-features = false, features = ["fs"] }')
    gated = find_direct(parse_lockfile(read("v3.lock")), manifest=reversed_order).direct[("gated_fixture", "0.2.0")]
    assert gated.default_features is False


def test_workspace_manifest_and_its_members():
    lock = find_direct(parse_lockfile(read("workspace/Cargo.lock")), manifest=read("workspace/Cargo.toml"))
    # app depends on gated-fixture (declared in [workspace.dependencies] with fs), util on ferro-fixture
    assert set(lock.direct) == {("gated_fixture", "0.2.0"), ("ferro_fixture", "0.3.1")}
    assert lock.direct[("gated_fixture", "0.2.0")].features == ["fs"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('version = 3\n[[package]]\nname = "a"\nversion = "1.0.0\n', "not valid TOML at line 4"),
        ('[package]\nname = "app"\nversion = "0.1.0"\n', "not a Cargo.lock"),
        ('version = 9\n[[package]]\nname = "a"\nversion = "1.0.0"\n', "format version 9 is not supported"),
        ('version = 3\n\n[[package]]\nname = "ok"\nversion = "1.0.0"\n\n[[package]]\nname = "bad name"\n'
         'version = "1.0.0"\n', "package 'bad name' '1.0.0' at line 7"),
        ('version = 3\n[[package]]\nname = "serde"\nversion = "1.0"\n', "package 'serde' '1.0' at line 2"),
        ('version = 3\n[[package]]\nname = "x"\nversion = "1.0.0"\nsource = "svn+http://x"\n', "unknown source"),
    ],
)
def test_bad_lockfiles_name_the_line_or_package(text, expected):
    with pytest.raises(LockfileError) as caught:
        parse_lockfile(text)
    assert expected in caught.value.message
    assert isinstance(caught.value, InvalidInput)


def test_size_and_package_limits():
    with pytest.raises(LockfileError, match="most Ferrodex reads is 5,242,880 bytes"):
        parse_lockfile("#" * (5 * 1024 * 1024 + 1))
    many = "version = 3\n" + "".join(
        f'[[package]]\nname = "c{i}"\nversion = "1.0.0"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n'
        for i in range(MAX_PACKAGES + 1)
    )
    with pytest.raises(LockfileError, match="2,001 packages; the most Ferrodex takes at once is 2,000"):
        parse_lockfile(many)


@pytest.mark.parametrize("nested", ["x = " + "[" * 50_000 + "]" * 50_000, "x = " + "{a=" * 5_000 + "1" + "}" * 5_000])
def test_deeply_nested_toml_is_a_lockfile_error_not_a_crash(nested):
    """100 KB of brackets is far under the size limit; tomllib recurses on each level (a 500 in the API)."""
    with pytest.raises(LockfileError, match="nested too deeply"):
        parse_lockfile(nested)
    lock = 'version = 3\n[[package]]\nname = "app"\nversion = "0.1.0"\n'
    with pytest.raises(LockfileError, match="nested too deeply") as caught:
        find_direct(parse_lockfile(lock), manifest=nested)
    assert caught.value.context["field"] == "manifest"


# --- the service, with the database ---------------------------------------------------------------


@pytest.mark.django_db
def test_one_job_per_registry_package_at_its_exact_version_and_skips_with_reasons():
    result = projects.add_from_lockfile(lockfile=read("v3.lock"), requested_by="cli")
    queued = {(j["crate"], j["version"]) for j in result.jobs}
    assert queued == {("ferro-fixture", "0.3.1"), ("gated-fixture", "0.2.0"), ("serde", "1.0.150"),
                      ("serde", "0.9.15")}  # fmt: skip
    assert all(j["deduplicated"] is False for j in result.jobs)
    jobs = {(j.crate_name, j.requested_version) for j in CrateJob.objects.all()}
    assert jobs == queued  # the exact locked version, never "latest"
    skipped = {s["crate"]: s["reason"] for s in result.skipped}
    assert skipped == {"my-app": "path", "internal-tool": "git", "vendored": "registry"}
    again = projects.add_from_lockfile(lockfile=read("v3.lock"), requested_by="api")
    assert all(j["deduplicated"] is True for j in again.jobs) and CrateJob.objects.count() == 4


@pytest.mark.django_db
def test_direct_only_with_a_manifest(settings):
    result = projects.add_from_lockfile(lockfile=read("v3.lock"), manifest=read("app.toml"), direct_only=True,
                                        requested_by="mcp")  # fmt: skip
    assert {(j["crate"], j["version"]) for j in result.jobs} == {("gated-fixture", "0.2.0"), ("serde", "1.0.150")}
    skipped = {(s["crate"], s["version"]): s["reason"] for s in result.skipped}
    assert skipped[("ferro-fixture", "0.3.1")] == "not_direct" and skipped[("serde", "0.9.15")] == "not_direct"
    assert result.direct_from == "manifest"
    assert {j["crate"]: j["dependency_kinds"] for j in result.jobs} == {"gated-fixture": ["normal"], "serde": ["dev"]}


@pytest.mark.django_db
def test_a_rejected_file_queues_nothing_and_saves_nothing():
    bad = read("v3.lock") + '\n[[package]]\nname = "oops"\nversion = "one"\n'
    with pytest.raises(LockfileError, match="package 'oops' 'one' at line"):
        projects.add_from_lockfile(lockfile=bad, project="p", requested_by="api")
    with pytest.raises(LockfileError, match="manifest"):
        projects.add_from_lockfile(lockfile=read("v3.lock"), manifest="[dependencies]\n", requested_by="api")
    assert CrateJob.objects.count() == 0 and not Project.objects.exists()


@pytest.fixture
def two_versions(settings):
    """ferro_fixture ingested as 0.3.1 and as a newer 0.4.0 (same docs), both active."""
    from crates.pipeline.embed import reset_embedders

    settings.EMBEDDING_PROVIDER = "hash"
    reset_embedders()
    for version in ("0.3.1", "0.4.0"):
        run_ingest(name="ferro_fixture", version=version, progress=NullProgress(), json_file=FIXTURE_JSON)


@pytest.mark.django_db(transaction=True)
def test_a_project_reads_exactly_its_locked_versions(two_versions):
    result = projects.add_from_lockfile(lockfile=read("v4.lock"), project="tiny-app", requested_by="api")
    assert result.jobs == [] and result.skipped[0]["reason"] == "already_active"  # 0.3.1 is ingested
    hits = search_docs(query="shape area", project="tiny-app")
    assert hits and {h.version for h in hits} == {"0.3.1"}
    assert {h.version for h in search_docs(query="shape area")} == {"0.4.0"}  # without it: the newest
    item = get_item(crate="ferro_fixture", path="ferro_fixture::shapes::Shape", project="tiny-app")
    assert item.version == "0.3.1"
    with pytest.raises(InvalidInput, match=r"locks ferro_fixture 0\.3\.1, not '0\.4\.0'"):
        search_docs(query="shape", crate="ferro_fixture", project="tiny-app", version="0.4.0")
    with pytest.raises(InvalidInput, match="does not lock 'serde'"):
        get_item(crate="serde", path="serde::Serialize", project="tiny-app")


@pytest.mark.django_db(transaction=True)
def test_a_locked_version_that_is_not_ingested_is_never_answered_from_another(two_versions):
    projects.add_from_lockfile(lockfile=read("v4.lock").replace('"0.3.1"', '"0.2.0"'), project="older",
                               requested_by="api")  # fmt: skip
    with pytest.raises(VersionNotFound, match=r"locks ferro-fixture 0\.2\.0, which is not ingested yet"):
        get_item(crate="ferro_fixture", path="ferro_fixture::shapes::Shape", project="older")
    with pytest.raises(VersionNotFound, match="not ingested yet"):
        search_docs(query="shape", crate="ferro_fixture", project="older")
    assert search_docs(query="shape area", project="older") == []


@pytest.mark.django_db
def test_projects_listed_replaced_and_removed():
    projects.add_from_lockfile(lockfile=read("v3.lock"), manifest=read("app.toml"), project="svc", requested_by="api")
    [listed] = projects.list_projects()
    assert listed["name"] == "svc" and listed["packages"] == 7 and listed["has_manifest"] is True
    detail = {c["crate"] + " " + c["version"]: c for c in projects.project_detail(name="svc")["crates"]}
    assert detail["gated-fixture 0.2.0"]["features"] == ["net"] and detail["gated-fixture 0.2.0"]["direct"]
    projects.add_from_lockfile(lockfile=read("v4.lock"), project="svc", requested_by="api")  # replaces the set
    assert [c["crate"] for c in projects.project_detail(name="svc")["crates"]] == ["ferro-fixture", "tiny"]
    assert projects.delete_project(name="svc")["deleted"] is True and not Project.objects.exists()
    with pytest.raises(projects.ProjectNotFound, match="No project named 'svc'"):
        search_docs(query="x", project="svc")


# --- the fronts -----------------------------------------------------------------------------------


@pytest.fixture
def client():
    return TestClient(api)


@pytest.fixture
def key():
    return create_api_key(name="lockfiles")[1]


@pytest.mark.django_db(transaction=True)
def test_api_lockfiles_projects_and_search(client, key, two_versions):
    auth = {"Authorization": f"Bearer {key}"}
    response = client.post("/lockfiles", json={"lockfile": read("v3.lock"), "project": "svc"}, headers=auth)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["project"] == "svc" and body["lockfile_version"] == 3
    assert {(j["crate"], j["version"]) for j in body["jobs"]} == {("gated-fixture", "0.2.0"), ("serde", "1.0.150"),
                                                                  ("serde", "0.9.15")}  # fmt: skip
    assert {s["crate"]: s["reason"] for s in body["skipped"]}["ferro-fixture"] == "already_active"
    assert client.get("/projects").json()["items"][0]["name"] == "svc"
    hits = client.get("/search", query_params={"q": "shape area", "project": "svc"}).json()["results"]
    assert hits and {h["version"] for h in hits} == {"0.3.1"}
    item = client.get("/items/ferro_fixture/ferro_fixture::shapes::Shape", query_params={"project": "svc"}).json()
    assert item["version"] == "0.3.1"
    assert client.delete("/projects/svc", headers=auth).json()["deleted"] is True
    assert client.get("/projects/svc").status_code == 404


@pytest.mark.django_db
def test_api_bad_lockfile_is_a_422_naming_the_package_and_queues_nothing(client, key):
    auth = {"Authorization": f"Bearer {key}"}
    bad = read("v3.lock").replace('name = "serde"\nversion = "1.0.150"', 'name = "serde"\nversion = "1.0"')
    response = client.post("/lockfiles", json={"lockfile": bad}, headers=auth)
    assert response.status_code == 422
    error = response.json()["error"]
    assert "package 'serde' '1.0' at line 35" in error["message"]
    assert error["details"]["fields"][0]["field"] == "lockfile"
    assert client.post("/lockfiles", json={"lockfile": "x", "project": "no spaces"}, headers=auth).status_code == 422
    assert client.post("/lockfiles", json={"lockfile": read("v4.lock")}).status_code == 401
    huge = client.post("/lockfiles", json={"lockfile": "#" * (5 * 1024 * 1024 + 1)}, headers=auth)
    assert huge.status_code == 422 and huge.json()["error"]["details"]["fields"][0]["field"] == "lockfile"
    assert CrateJob.objects.count() == 0


@pytest.mark.django_db
def test_cli_lockfile(tmp_path):
    out = StringIO()
    call_command("ingest_crate", "--lockfile", str(LOCKS / "v3.lock"), "--manifest", str(LOCKS / "app.toml"),
                 "--direct-only", "--project", "cli-app", "--json", stdout=out)  # fmt: skip
    result = json.loads(out.getvalue())
    assert {(j["crate"], j["version"]) for j in result["jobs"]} == {("gated-fixture", "0.2.0"), ("serde", "1.0.150")}
    assert {j.requested_by for j in CrateJob.objects.all()} == {"cli"}
    assert Project.objects.get(name="cli-app").direct_only is True
    bad = tmp_path / "Cargo.lock"
    bad.write_text("not = [toml")
    with pytest.raises(CommandError, match="not valid TOML at line 1"):
        call_command("ingest_crate", "--lockfile", str(bad))
    with pytest.raises(CommandError, match="goes with --lockfile"):
        call_command("ingest_crate", "serde", "--project", "x")


@pytest.mark.django_db(transaction=True)
def test_a_yanked_locked_version_is_still_ingested(fake_docsrs, settings, monkeypatch):
    """cargo keeps a yanked version a Cargo.lock already has, and docs.rs its docs: a lockfile's job takes it."""
    from crates.errors import VersionYanked
    from crates.pipeline.embed import reset_embedders
    from jobs.runner import _run_ingest
    from tests.fakes import ferro_fixture_json, zstd

    settings.EMBEDDING_PROVIDER = "hash"
    settings.FERRODEX_INGEST_FUNCTION = "crates.pipeline.ingest.run_ingest"
    reset_embedders()
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1", "0.4.0"], yanked=["0.3.1"],
                          json_bytes=zstd(ferro_fixture_json()))  # fmt: skip
    with pytest.raises(VersionYanked):  # asked for by hand, a yanked version is still refused
        run_ingest(name="ferro-fixture", version="0.3.1", progress=NullProgress())
    result = projects.add_from_lockfile(lockfile=read("v4.lock"), requested_by="api")
    job = CrateJob.objects.get(pk=result.jobs[0]["job"]["id"])
    assert job.requested_version == "0.3.1" and job.options == {"force": False, "allow_yanked": True}
    monkeypatch.setattr("jobs.runner.checkpoint_saver", lambda job: lambda checkpoint: None)  # no worker's attempt
    assert _run_ingest(job=job, progress=NullProgress()).version == "0.3.1"
