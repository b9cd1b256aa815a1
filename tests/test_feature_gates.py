"""Feature and platform gates: read from real rustdoc JSON (CfgTrace, format 57) and HTML ("Available on ... only")
of tests/fixtures/crates/gated_fixture, inherited from a gated module and from a gated `pub use`; older string
attributes; stated by get_rust_item / the API with the Cargo.toml line, carried by search hits, and marked
"needs feature" for a project whose manifest does not enable it. Crate features come from the sparse index."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from crates import cfgexpr, projects
from crates.models import CrateRelease
from crates.pipeline.parse_html import parse_html_pages
from crates.pipeline.parse_json import parse_rustdoc_json
from crates.pipeline.parse_json.cfg import attr_cfg
from crates.pipeline.types import NullProgress
from crates.selectors import get_crate, get_item, search_docs
from tests.fakes import GATED_FIXTURE_FEATURES, gated_fixture_json, zstd

FIXTURES = Path(__file__).parent / "fixtures"
HTML_ZIP = FIXTURES / "html" / "gated_fixture-0.2.0.zip"

EXPECTED = {
    "gated_fixture::always": None,
    "gated_fixture::read_file": 'feature = "fs"',  # gated directly
    "gated_fixture::net": 'feature = "net"',
    "gated_fixture::net::TcpStream": 'feature = "net"',  # a type in a gated module
    "gated_fixture::net::TcpStream::connect": 'feature = "net"',  # ... and its method
    "gated_fixture::net::send_file": 'all(feature = "net", feature = "fs")',  # module + its own
    "gated_fixture::Codec": 'feature = "full"',  # exported only through a gated `pub use`
    "gated_fixture::Either": 'any(feature = "net", feature = "fs")',  # doc(cfg) written by hand
    "gated_fixture::unix_only": "unix",  # platform gates the same way
    "gated_fixture::fast_path": 'all(target_arch = "x86_64", feature = "std")',
}


def _gates(items) -> dict[str, str | None]:
    return {i.path: i.metadata.get("cfg") for i in items}


def test_rustdoc_json_gates_direct_module_and_pub_use():
    parsed = parse_rustdoc_json(gated_fixture_json())
    assert parsed.format_version >= 54  # CfgTrace attributes
    gates = _gates(parsed.items)
    for path, cfg in EXPECTED.items():
        assert gates[path] == cfg, path


def test_default_feature_build_has_only_what_defaults_enable():
    gates = _gates(parse_rustdoc_json(gated_fixture_json(default_features=True)).items)
    assert "gated_fixture::read_file" not in gates and "gated_fixture::net::TcpStream" not in gates
    assert gates["gated_fixture::fast_path"] == 'all(target_arch = "x86_64", feature = "std")'
    assert gates["gated_fixture::always"] is None


def test_html_portability_notes_give_the_same_gates():
    with zipfile.ZipFile(io.BytesIO(HTML_ZIP.read_bytes())) as archive:
        pages = {n: archive.read(n) for n in archive.namelist() if n.endswith(".html")}
    gates = _gates(parse_html_pages(pages, version="0.2.0").items)
    for path, cfg in EXPECTED.items():
        if path in gates:  # the HTML has no page for members it lists inline
            assert cfgexpr.parse(gates[path] or "") == cfgexpr.parse(cfg or ""), path
    assert {"gated_fixture::Codec", "gated_fixture::net::TcpStream", "gated_fixture::Either"} <= set(gates)


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ('#[cfg(feature = "net")]', 'feature = "net"'),  # format < 54: plain strings
        ('#[doc(cfg(all(unix, feature = "fs")))]', 'all(unix, feature = "fs")'),
        ('#[cfg_attr(docsrs, doc(cfg(feature = "rt")))]', 'feature = "rt"'),
        ({"other": '#[attr = CfgTrace([Not(NameValue { name: "windows", value: None, span: a.rs:1:1: 1:2 (#0) }, '
                   'a.rs:1:1: 1:2 (#0))])]'}, "not(windows)"),
        ('#[cfg(docsrs)]', None),  # docs.rs' own cfg is no gate
        # tokio's own test cfgs (off in every user's build) are dropped, its platform and feature gates kept
        ('#[cfg(all(not(loom), unix, feature = "net", not(test)))]', 'all(unix, feature = "net")'),
        ("#[inline]", None),
    ],
)
def test_attribute_shapes(attr, expected):
    cfg = attr_cfg(attr)
    assert (str(cfg) if cfg else None) == expected


def test_a_dependency_feature_turns_on_its_optional_dependency():
    """`"std" = ["serde/std"]` turns on the optional dependency serde, so its implicit feature `serde` (which the
    sparse index does not list) is on: items behind `feature = "serde"` are not "needs feature serde". A weak
    `serde?/std` does not turn it on."""
    table = {"std": ["serde/std"], "alloc": ["serde?/alloc"], "default": ["std"]}
    assert "serde" in cfgexpr.enabled_features(table, asked=[], default=True)
    assert "serde" not in cfgexpr.enabled_features(table, asked=["alloc"], default=False)


def test_the_line_to_add_names_the_table_the_project_declares_it_in():
    """A dev-only dependency's missing feature goes to [dev-dependencies]: pasted under [dependencies] it would
    make the crate a dependency of the library itself."""
    from crates.gates import describe
    from crates.models import ProjectPackage

    for kinds, table in ((["dev"], "[dev-dependencies]"), (["build"], "[build-dependencies]"),
                         (["normal", "dev"], "[dependencies]"), ([], "[dependencies]")):  # fmt: skip
        package = ProjectPackage(name="gated-fixture", version="0.2.0", dependency_kinds=kinds, features=[],
                                 default_features=True)  # fmt: skip
        gate = describe(cfg='feature = "fs"', crate="gated-fixture", version="0.2.0",
                        features_table=GATED_FIXTURE_FEATURES, package=package)  # fmt: skip
        assert f"add to Cargo.toml {table}: gated-fixture = " in gate["text"], (kinds, gate["text"])


def test_unknown_crate_features_claim_no_missing_feature():
    """A release stored before features were read from the index has an empty table: what `default` or `full`
    turns on is unknown, so nothing is claimed missing for the project (`full` enables `net`: it was 'needs net')."""
    from crates.gates import describe
    from crates.models import ProjectPackage

    package = ProjectPackage(name="gated-fixture", version="0.2.0", dependency_kinds=["normal"], features=["full"],
                             default_features=True)  # fmt: skip
    unknown = describe(cfg='feature = "net"', crate="gated-fixture", version="0.2.0", features_table={},
                       package=package)  # fmt: skip
    assert unknown["needs_features"] is None  # stated as the item's need, as without a project
    known = describe(cfg='feature = "net"', crate="gated-fixture", version="0.2.0",
                     features_table=GATED_FIXTURE_FEATURES, package=package)  # fmt: skip
    assert known["needs_features"] == []


def test_words_and_needed_features():
    tree = cfgexpr.parse('all(feature = "net", feature = "fs", unix)')
    assert cfgexpr.words(tree) == "crate feature `net` and crate feature `fs` and Unix"
    on = cfgexpr.enabled_features(GATED_FIXTURE_FEATURES, asked=["net"], default=False)
    assert cfgexpr.missing_features(tree, features=on) == ["fs"]
    assert cfgexpr.enabled_features(GATED_FIXTURE_FEATURES, asked=["full"], default=False) >= {"net", "fs", "std"}
    assert cfgexpr.from_portability("Available on crate features net or fs only.") == cfgexpr.parse(
        'any(feature = "net", feature = "fs")'
    )
    assert cfgexpr.from_portability("Available on x86-64 and crate feature std only.") == cfgexpr.parse(
        'all(target_arch = "x86_64", feature = "std")'
    )


# --- stored, read, marked -------------------------------------------------------------------------


@pytest.fixture
def gated_crate(fake_docsrs, settings):
    """gated-fixture 0.2.0 ingested from the fake docs.rs (sparse index with its [features])."""
    from crates.pipeline.embed import reset_embedders
    from crates.pipeline.ingest import run_ingest

    settings.EMBEDDING_PROVIDER = "hash"
    reset_embedders()
    fake_docsrs.add_crate("gated-fixture", versions=["0.2.0"], json_bytes=zstd(gated_fixture_json()),
                          features=GATED_FIXTURE_FEATURES)  # fmt: skip
    run_ingest(name="gated-fixture", version="0.2.0", progress=NullProgress())


@pytest.mark.django_db(transaction=True)
def test_release_features_from_the_sparse_index(gated_crate):
    release = CrateRelease.objects.get(crate__normalized_name="gated_fixture", state="active")
    assert release.features == GATED_FIXTURE_FEATURES
    crate = get_crate(name="gated-fixture")
    assert crate["features"]["default"] == ["std"] and crate["features"]["features"]["full"] == ["net", "fs"]


@pytest.mark.django_db(transaction=True)
def test_item_states_its_gate_with_the_line_to_add(gated_crate):
    item = get_item(crate="gated_fixture", path="gated_fixture::net::TcpStream")
    assert item.gate["cfg"] == 'feature = "net"' and item.gate["features"] == ["net"]
    assert item.gate["cargo_toml"] == 'gated-fixture = { version = "0.2.0", features = ["net"] }'
    assert "Available on crate feature `net` only." in item.gate["text"]
    assert get_item(crate="gated_fixture", path="gated_fixture::always").gate is None
    unix = get_item(crate="gated_fixture", path="gated_fixture::unix_only").gate
    assert unix["platforms"] == ["unix"] and unix["cargo_toml"] is None and "Unix" in unix["text"]


@pytest.mark.django_db(transaction=True)
def test_project_marks_items_needing_a_feature_it_does_not_enable(gated_crate):
    lock = (FIXTURES / "lockfiles" / "v3.lock").read_text()
    manifest = (FIXTURES / "lockfiles" / "app.toml").read_text()  # gated-fixture: no defaults, features ["net"]
    projects.add_from_lockfile(lockfile=lock, manifest=manifest, project="app", requested_by="api")
    hits = {h.path: h for h in search_docs(query="read file path", crate="gated_fixture", project="app", limit=20)}
    assert hits["gated_fixture::read_file"].gate["needs_features"] == ["fs"]  # marked, not hidden
    # the project turns default features off: the line to paste keeps them off (else it enables `std` too)
    assert hits["gated_fixture::read_file"].gate["cargo_toml"] == (
        'gated-fixture = { version = "0.2.0", default-features = false, features = ["net", "fs"] }'
    )
    stream = get_item(crate="gated_fixture", path="gated_fixture::net::TcpStream", project="app")
    assert stream.gate["needs_features"] == []  # the project enables net
    fast = get_item(crate="gated_fixture", path="gated_fixture::fast_path", project="app")
    assert fast.gate["needs_features"] == ["std"]  # a default feature, but default-features = false
    plain = {h.path: h for h in search_docs(query="read file path", crate="gated_fixture", limit=20)}
    assert plain["gated_fixture::read_file"].gate["needs_features"] is None  # no project: nothing to compare


@pytest.mark.django_db(transaction=True)
def test_admin_shows_features_gate_badges_and_projects(gated_crate, admin_client):
    from crates.models import Crate, Project

    crate = Crate.objects.get(normalized_name="gated_fixture")
    page = admin_client.get(f"/admin/crates/crate/{crate.pk}/change/").content.decode()
    assert 'id="fx-features"' in page and ">full</code>" in page and "default: std" in page
    found = admin_client.get("/admin/crates/document/search/", {"q": "read file", "crate": "gated-fixture"})
    assert 'class="fx-pill fx-gate"' in found.content.decode() and "feature fs" in found.content.decode()
    lock = (FIXTURES / "lockfiles" / "v3.lock").read_text()
    projects.add_from_lockfile(lockfile=lock, project="svc", requested_by="admin")
    project = Project.objects.get(name="svc")
    listing = admin_client.get("/admin/crates/project/").content.decode()
    assert "svc" in listing
    assert "gated-fixture" in admin_client.get(f"/admin/crates/project/{project.pk}/change/").content.decode()
    admin_client.post(f"/admin/crates/project/{project.pk}/delete/", {"post": "yes"})
    assert not Project.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_api_items_search_and_crates_carry_gates_and_features(gated_crate):
    from ninja.testing import TestClient

    from config.api import api

    client = TestClient(api)
    item = client.get("/items/gated_fixture/gated_fixture::Codec").json()
    assert item["gate"]["cfg"] == 'feature = "full"' and item["gate"]["features"] == ["full"]
    assert item["gate"]["cargo_toml"] == 'gated-fixture = { version = "0.2.0", features = ["full"] }'
    hits = client.get("/search", query_params={"q": "tcp stream port", "crate": "gated_fixture"}).json()["results"]
    stream = next(h for h in hits if h["path"] == "gated_fixture::net::TcpStream")
    assert stream["gate"]["badge"] == "feature net" and stream["gate"]["needs_features"] is None
    crate = client.get("/crates/gated-fixture").json()
    assert crate["features"] == {"default": ["std"], "features": {"fs": ["std"], "full": ["net", "fs"], "net": [],
                                                                  "std": []}}  # fmt: skip
    assert client.get("/crates").json()["items"][0]["features"]["default"] == ["std"]
