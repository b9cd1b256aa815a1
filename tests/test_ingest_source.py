"""Which docs a release is built from (rustdoc JSON of any newer format, else the HTML bundle), within the request
budget, and what the release says about it — on the fake docs.rs serving real rustdoc output."""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils.html import escape
from ninja.testing import TestClient

from config.api import api
from crates.apikeys import create_api_key
from crates.errors import CorruptArtifact
from crates.fronts import item_detail
from crates.models import CrateRelease, Document
from crates.pipeline.ingest import run_ingest
from crates.pipeline.parse_json import parse_rustdoc_json
from crates.pipeline.types import NullProgress
from crates.selectors import get_item, search_docs
from jobs.models import CrateJob
from tests.fakes import ferro_fixture_doc_zip, ferro_fixture_json, zstd
from tests.test_format_drift import _doc, inner_renamed, new_fields, unknown_item_kind

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURES = Path(__file__).parent / "fixtures"
JSON_ROUTE = "/crate/ferro-fixture/0.3.1/json"
DOWNLOAD_ROUTE = "/crate/ferro-fixture/0.3.1/download"


@pytest.fixture(autouse=True)
def _hash_embedder(settings):
    settings.EMBEDDING_PROVIDER = "hash"


@cache
def _v63() -> bytes:
    return json.dumps(new_fields(_doc("ferro_fixture.json.zst"))).encode()


def _unreadable() -> bytes:
    return json.dumps(inner_renamed(_doc("ferro_fixture.json.zst"))).encode()


def _publish(fake_docsrs, *, json_bytes: bytes | None, zip_bytes: bytes | None = None) -> None:
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=json_bytes,
                          zip_bytes=ferro_fixture_doc_zip() if zip_bytes is None else zip_bytes or None,
                          description="Fixture crate.")  # fmt: skip


def _paths(release_id: int) -> set[str]:
    return set(Document.objects.filter(release_id=release_id).values_list("path", flat=True))


def test_a_newer_format_with_additive_changes_ingests_from_json_in_three_requests(fake_docsrs):
    _publish(fake_docsrs, json_bytes=zstd(_v63()))
    result = run_ingest(name="ferro-fixture", progress=NullProgress())
    assert result.http_requests == 3
    assert fake_docsrs.count(DOWNLOAD_ROUTE) == 0
    assert result.docs_source == "rustdoc JSON v63" and result.provenance == []
    release = CrateRelease.objects.get(pk=result.release_id)
    assert (release.docs_source, release.format_version, release.source_notes) == ("rustdoc-json", 63, [])
    at_57 = {item.path for item in parse_rustdoc_json(ferro_fixture_json()).items}
    assert len(_paths(release.pk) & at_57) >= 0.95 * len(at_57)


def test_unreadable_json_falls_back_to_the_html_bundle_in_four_requests(fake_docsrs):
    _publish(fake_docsrs, json_bytes=zstd(_unreadable()))
    result = run_ingest(name="ferro-fixture", progress=NullProgress())
    assert result.http_requests == 4
    assert fake_docsrs.count(JSON_ROUTE) == 1 and fake_docsrs.count(DOWNLOAD_ROUTE) == 1
    assert result.docs_source == "HTML bundle"
    assert result.provenance[0].startswith("HTML bundle: fell back to the HTML bundle: rustdoc JSON unreadable")
    release = CrateRelease.objects.get(pk=result.release_id)
    assert release.docs_source == "html" and release.source_notes == result.provenance
    assert {"ferro_fixture::Counter", "ferro_fixture::Counter::with_capacity"} <= _paths(release.pk)


def test_json_that_fails_validation_falls_back_to_the_html_bundle(fake_docsrs):
    doc = _doc("ferro_fixture.json.zst")
    doc["format_version"] = 63
    for item in doc["index"].values():  # every struct and function of a kind this Ferrodex does not know
        for kind in ("struct", "function", "enum"):
            if item.get("crate_id") == 0 and kind in item["inner"]:
                item["inner"] = {f"{kind}_v2": item["inner"][kind]}
    _publish(fake_docsrs, json_bytes=zstd(json.dumps(doc).encode()))
    result = run_ingest(name="ferro-fixture", progress=NullProgress())
    assert result.http_requests == 4 and result.docs_source == "HTML bundle"
    assert "rustdoc JSON v63 failed validation" in result.provenance[0]
    assert any("items of unknown kind `struct_v2` skipped" in note for note in result.provenance)
    assert "ferro_fixture::Counter" in _paths(result.release_id)


def test_json_404_ingests_the_html_bundle_in_four_requests(fake_docsrs):
    _publish(fake_docsrs, json_bytes=None)
    result = run_ingest(name="ferro-fixture", progress=NullProgress())
    assert result.http_requests == 4 and result.docs_source == "HTML bundle" and result.provenance == []
    assert "ferro_fixture::Counter" in _paths(result.release_id)


def test_unreadable_json_without_an_html_bundle_fails_clearly(fake_docsrs):
    _publish(fake_docsrs, json_bytes=zstd(_unreadable()), zip_bytes=b"")
    with pytest.raises(CorruptArtifact, match=r"no HTML bundle of ferro-fixture 0\.3\.1 to fall back to"):
        run_ingest(name="ferro-fixture", progress=NullProgress())
    assert not CrateRelease.objects.filter(state="active").exists()


def test_glob_reexports_of_another_crate_are_documents_from_the_html_bundle(fake_docsrs):
    facade_json = (FIXTURES / "rustdoc" / "ferro_facade.json.zst").read_bytes()
    facade_zip = (FIXTURES / "html" / "ferro_facade-0.2.0.zip").read_bytes()
    fake_docsrs.add_crate("ferro-facade", versions=["0.2.0"], json_bytes=facade_json, zip_bytes=facade_zip)
    result = run_ingest(name="ferro-facade", progress=NullProgress())
    assert result.http_requests == 4
    assert result.docs_source == "rustdoc JSON v57"
    assert result.provenance == [
        "rustdoc JSON v57: 2 items re-exported by glob from `ferro_facade_derive` taken from the HTML bundle"
    ]
    derive = get_item(crate="ferro-facade", path="ferro_facade::Describe")
    assert derive.kind == "macro"
    assert "Derives `ferro_facade::Described` for a type" in derive.docs
    assert derive.url.endswith("/ferro-facade/0.2.0/ferro_facade/derive.Describe.html")
    assert get_item(crate="ferro-facade", path="ferro_facade::traced").kind == "macro"
    assert get_item(crate="ferro-facade", path="ferro_facade::Described").kind == "trait"  # from the JSON
    hits = search_docs(query="ferro_facade::Describe", crate="ferro-facade")
    assert hits and hits[0].path == "ferro_facade::Describe"
    # What the MCP tool get_rust_item and the API's item route answer with.
    served = item_detail(crate="ferro-facade", path="ferro_facade::Describe", version=None)
    assert served["path"] == "ferro_facade::Describe" and "Derives" in served["docs"]


def test_a_local_json_file_of_a_newer_format_is_read(tmp_path):
    path = tmp_path / "ferro_fixture.json"
    path.write_bytes(json.dumps(unknown_item_kind(new_fields(_doc("ferro_fixture.json.zst")))).encode())
    out = io.StringIO()
    call_command("ingest_crate", "ferro-fixture", "--json-file", str(path), stdout=out, stderr=io.StringIO())
    release = CrateRelease.objects.get(state="active", crate__normalized_name="ferro_fixture")
    assert release.format_version == 63
    assert "ferro_fixture::Counter" in _paths(release.pk)
    assert release.source_notes == ["rustdoc JSON v63: 1 item of unknown kind `attribute_macro_v2` skipped"]
    assert "; from rustdoc JSON v63" in out.getvalue()
    assert "  rustdoc JSON v63: 1 item of unknown kind `attribute_macro_v2` skipped" in out.getvalue()


def test_a_local_json_file_says_what_it_could_not_give(tmp_path):
    """A facade's local JSON has no HTML bundle for its glob re-exports: the release says they are missing, as
    the docs.rs route says when docs.rs has no bundle, instead of silently storing the root module alone."""
    path = tmp_path / "ferro_facade.json"
    path.write_bytes(_raw_fixture("ferro_facade.json.zst"))
    out = io.StringIO()
    call_command("ingest_crate", "ferro-facade", "--json-file", str(path), stdout=out, stderr=io.StringIO())
    release = CrateRelease.objects.get(state="active", crate__normalized_name="ferro_facade")
    assert release.source_notes == [
        "rustdoc JSON v57: items re-exported by glob from `ferro_facade_derive` missing: a local JSON file has no "
        "HTML bundle (ingest the `cargo doc` output with --doc-dir for them)"
    ]
    assert "missing: a local JSON file has no HTML bundle" in out.getvalue()


def _raw_fixture(name: str) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress((FIXTURES / "rustdoc" / name).read_bytes())


def test_provenance_shows_in_the_api_and_the_admin(fake_docsrs, admin_client):
    _publish(fake_docsrs, json_bytes=zstd(_unreadable()))
    result = run_ingest(name="ferro-fixture", progress=NullProgress())
    note = result.provenance[0]

    key = create_api_key(name="tests")[1]
    detail = TestClient(api).get("/crates/ferro-fixture", headers={"Authorization": f"Bearer {key}"}).json()
    active = next(r for r in detail["releases"] if r["state"] == "active")
    assert active["docs_source"] == "html" and active["source_notes"] == result.provenance

    release = CrateRelease.objects.get(pk=result.release_id)
    page = admin_client.get(reverse("admin:crates_crate_change", args=[release.crate_id]))
    assert escape(note) in page.content.decode()

    job = CrateJob.objects.create(crate_name="ferro-fixture", normalized_name="ferro_fixture", status="complete",
                                  requested_by="api", result={"docs_source": result.docs_source,
                                                              "provenance": result.provenance})  # fmt: skip
    page = admin_client.get(reverse("admin:jobs_cratejob_change", args=[job.pk])).content.decode()
    assert "Documents from <strong>HTML bundle</strong>" in page and escape(note) in page


@pytest.mark.slow
def test_a_job_on_a_worker_records_the_fallback_in_its_result(fake_docsrs, settings, tmp_path):
    from jobs import services
    from tests.jobs_helpers import QCluster, wait_for

    settings.FERRODEX_INGEST_FUNCTION = "tests.pipelines.must_not_run"
    _publish(fake_docsrs, json_bytes=zstd(_unreadable()))
    worker = QCluster(
        log_path=tmp_path / "qcluster.log",
        env={**fake_docsrs.env(), "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest",
             "EMBEDDING_PROVIDER": "hash", "Q_WORKERS": "1"},
    ).start()  # fmt: skip
    try:
        queued = services.enqueue_ingest(name="ferro-fixture", requested_by="api").job
        job = wait_for(lambda: CrateJob.objects.filter(pk=queued.pk, status__in=["complete", "failed"]).first(),
                       timeout=90, what="the job to finish")  # fmt: skip
        assert job.status == "complete", f"{job.error_message}\n{worker.log()[-3000:]}"
        assert job.http_requests == len(fake_docsrs.requests) == 4, fake_docsrs.paths()
        assert job.result["docs_source"] == "HTML bundle"
        assert job.result["provenance"][0].startswith("HTML bundle: fell back to the HTML bundle")
        assert CrateRelease.objects.get(state="active").source_notes == job.result["provenance"]
    finally:
        worker.stop()
