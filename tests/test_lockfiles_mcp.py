"""add_rust_crates_from_lockfile driven by the SDK's stdio client against ``manage.py runmcp``, with a real worker:
a Cargo.lock (and Cargo.toml) in, the exact locked version ingested (not the newer release), then project-scoped
search and item lookups that say which feature an item needs and that the project does not enable it."""

from __future__ import annotations

import sys

import anyio
import pytest
from mcp import Client, StdioServerParameters, stdio_client

from jobs.models import CrateJob
from tests.fakes import GATED_FIXTURE_FEATURES, gated_fixture_json, zstd
from tests.jobs_helpers import BASE_DIR, QCluster
from tests.test_mcp_stdio import run_with_logs, server_env

pytestmark = pytest.mark.django_db(transaction=True)

LOCK = """\
version = 4

[[package]]
name = "gated-fixture"
version = "0.2.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "my-app"
version = "0.1.0"
dependencies = [
 "gated-fixture",
]
"""
MANIFEST = """\
[package]
name = "my-app"
version = "0.1.0"

[dependencies]
gated-fixture = { version = "0.2", default-features = false, features = ["net"] }
"""


@pytest.mark.slow
def test_lockfile_to_project_scoped_docs_over_stdio(fake_docsrs, tmp_path):
    # 0.3.0 is newer: a project locked at 0.2.0 must never be answered from it.
    fake_docsrs.add_crate("gated-fixture", versions=["0.2.0", "0.3.0"], json_bytes=zstd(gated_fixture_json()),
                          features=GATED_FIXTURE_FEATURES)  # fmt: skip
    env = {**fake_docsrs.env(), "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest"}
    worker = QCluster(log_path=tmp_path / "qcluster.log", env={**env, "EMBEDDING_PROVIDER": "hash"}).start()
    params = StdioServerParameters(
        command=sys.executable, args=["manage.py", "runmcp"], cwd=str(BASE_DIR), env=server_env(env)
    )

    async def flow() -> dict:
        out: dict = {}
        with open(tmp_path / "runmcp.stderr", "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                out["bad"] = await client.call_tool(
                    "add_rust_crates_from_lockfile", {"lockfile": LOCK.replace('"0.2.0"', '"0.2"'), "project": "app"}
                )
                out["added"] = await client.call_tool(
                    "add_rust_crates_from_lockfile",
                    {"lockfile": LOCK, "manifest": MANIFEST, "direct_only": True, "project": "app"},
                )
                job_id = out["added"].structured_content["jobs"][0]["job"]["id"]
                with anyio.fail_after(120):
                    while True:
                        status = await client.call_tool("check_rust_status", {"job_id": job_id})
                        if status.structured_content["job"]["finished"]:
                            out["done"] = status.structured_content["job"]
                            break
                        await anyio.sleep(0.25)
                out["search"] = await client.call_tool(
                    "search_rust_docs", {"query": "read a file", "crate": "gated_fixture", "project": "app"}
                )
                out["item"] = await client.call_tool(
                    "get_rust_item",
                    {"crate": "gated_fixture", "path": "gated_fixture::net::send_file", "project": "app"},
                )
                out["listing"] = await client.call_tool("list_rust_crates", {})
        return out

    out = run_with_logs(flow, stderr_file=tmp_path / "runmcp.stderr", worker=worker)

    assert out["bad"].is_error is True
    assert "package 'gated-fixture' '0.2' at line 3" in out["bad"].content[0].text
    added = out["added"].structured_content
    assert added["project"] == "app" and added["direct_from"] == "manifest"
    assert [(j["crate"], j["version"], j["deduplicated"]) for j in added["jobs"]] == [("gated-fixture", "0.2.0", False)]
    assert added["skipped"] == [{"crate": "my-app", "version": "0.1.0", "reason": "path", "detail": added["skipped"][0]
                                 ["detail"]}]  # fmt: skip
    assert "Saved as project 'app'" in out["added"].content[0].text
    assert CrateJob.objects.get(pk=job_id_of(added)).requested_by == "mcp"
    assert out["done"]["status"] == "complete" and out["done"]["resolved_version"] == "0.2.0", out["done"]
    hits = {h["path"]: h for h in out["search"].structured_content["results"]}
    assert {h["version"] for h in hits.values()} == {"0.2.0"}
    assert hits["gated_fixture::read_file"]["gate"]["needs_features"] == ["fs"]
    assert "NEEDS FEATURE fs" in out["search"].content[0].text
    item = out["item"].structured_content
    assert item["version"] == "0.2.0" and item["gate"]["needs_features"] == ["fs"]
    line = 'gated-fixture = { version = "0.2.0", default-features = false, features = ["net", "fs"] }'
    assert item["gate"]["cargo_toml"] == line
    assert line in out["item"].content[0].text
    assert "features: fs, full, net, std (default: std)" in out["listing"].content[0].text


def job_id_of(added: dict) -> str:
    return added["jobs"][0]["job"]["id"]
