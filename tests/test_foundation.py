"""Foundation: migrations, constraints, crate-name lookup, vector and full-text queries."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.postgres.search import SearchQuery
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from pgvector.django import CosineDistance

from crates.models import Chunk, Crate, CrateRelease, Document
from crates.textsearch import search_text_for
from jobs.models import CrateJob, JobEvent

pytestmark = pytest.mark.django_db


def _release(name: str = "serde_json", version: str = "1.0.0") -> CrateRelease:
    crate = Crate.objects.create(name=name)
    return CrateRelease.objects.create(crate=crate, version=version, docs_source="rustdoc-json")


def _unit(i: int) -> list[float]:
    vec = [0.0] * settings.EMBEDDING_DIMENSION
    vec[i] = 1.0
    return vec


def test_database_is_postgres_with_vector_extension():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)


def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_progress_outside_0_100_is_rejected():
    job = CrateJob.objects.create(crate_name="serde", normalized_name="serde")
    with pytest.raises(IntegrityError), transaction.atomic():
        CrateJob.objects.filter(pk=job.pk).update(progress=101)
    CrateJob.objects.filter(pk=job.pk).update(progress=100)
    job.refresh_from_db()
    assert job.progress == 100


def test_duplicate_document_path_and_kind_is_rejected():
    release = _release()
    Document.objects.create(release=release, path="serde_json::Value", name="Value", kind="enum", content_hash="a")
    Document.objects.create(release=release, path="serde_json::Value", name="Value", kind="macro", content_hash="b")
    with pytest.raises(IntegrityError), transaction.atomic():
        Document.objects.create(
            release=release, path="serde_json::Value", name="Value", kind="enum", content_hash="c"
        )


def test_crate_lookup_ignores_case_and_dash_underscore():
    Crate.objects.create(name="serde_json")
    for spelling in ("serde-json", "serde_json", "Serde_Json", "SERDE-JSON"):
        assert Crate.objects.by_name(spelling).get().name == "serde_json"
    with pytest.raises(IntegrityError), transaction.atomic():
        Crate.objects.create(name="Serde-Json")


def test_only_one_active_release_per_version():
    release = _release()
    release.state = "active"
    release.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        CrateRelease.objects.create(crate=release.crate, version="1.0.0", docs_source="html", state="active")
    CrateRelease.objects.create(crate=release.crate, version="1.0.0", docs_source="html", state="building")


def test_vector_nearest_neighbour_and_full_text_on_chunks():
    release = _release()
    texts = {
        0: "serde_json::Value enum: any valid JSON value",
        1: "HashMap::with_capacity creates an empty map with room for items",
        2: "serde_json::from_str deserializes an instance of T from a string of JSON text",
    }
    for i, text in texts.items():
        doc = Document.objects.create(
            release=release, path=f"serde_json::item{i}", name=f"item{i}", kind="function", content_hash=str(i)
        )
        Chunk.objects.create(
            document=doc,
            release=release,
            ordinal=0,
            text=text,
            search_text=search_text_for(text),
            content_hash=str(i),
            embedding=_unit(i),
        )
    query = [0.0] * settings.EMBEDDING_DIMENSION
    query[2], query[1] = 0.9, 0.1
    nearest = list(Chunk.objects.order_by(CosineDistance("embedding", query)).values_list("text", flat=True))
    assert nearest[0] == texts[2]
    assert nearest[1] == texts[1]

    for words in ("with capacity", "with_capacity", "HashMap", "hashmap"):
        hits = Chunk.objects.filter(search_vector=SearchQuery(words, config="english", search_type="plain"))
        assert [c.text for c in hits] == [texts[1]], words


def test_job_events_are_deleted_with_their_job():
    job = CrateJob.objects.create(crate_name="serde", normalized_name="serde")
    JobEvent.objects.create(job=job, event_type="created")
    job.delete()
    assert JobEvent.objects.count() == 0


def test_embedded_server_tuning_is_sized_from_memory_and_overridable(tmp_path, monkeypatch):
    from config import embedded_db

    small = embedded_db.tuning(memory_bytes=2 << 30)
    big = embedded_db.tuning(memory_bytes=64 << 30)
    assert small["shared_buffers"] == "512MB" and big["shared_buffers"] == "4096MB"
    assert big["maintenance_work_mem"] == "2048MB" and big["jit"] == "off"
    monkeypatch.setenv("EMBEDDED_PG_SHARED_BUFFERS", "256MB")
    assert embedded_db.tuning(memory_bytes=64 << 30)["shared_buffers"] == "256MB"

    (tmp_path / "postgresql.conf").write_text("max_connections = 100\n")
    embedded_db.write_tuning(tmp_path)
    embedded_db.write_tuning(tmp_path)  # every start: the include is added once
    conf = (tmp_path / "postgresql.conf").read_text()
    assert conf.count(embedded_db.INCLUDE_LINE) == 1
    assert "shared_buffers = '256MB'" in (tmp_path / embedded_db.TUNING_FILE).read_text()


@pytest.mark.django_db
def test_the_running_embedded_server_uses_the_tuning():
    import os

    from django.db import connection

    if os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL points at an external server: its tuning is the operator's")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
        cursor.execute("SHOW hnsw.iterative_scan")
        assert cursor.fetchone()[0] == "relaxed_order"  # per-connection search settings (crates.apps)


def test_mcp_and_the_shared_front_rules_import_no_django_ninja_module():
    """MCP shares the input rules and reads of the JSON API (crates.fronts) without importing django-ninja."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    shared = [*sorted((root / "mcp_bridge").glob("*.py")), root / "crates" / "fronts.py",
              root / "crates" / "schemas.py", root / "jobs" / "schemas.py"]
    for path in shared:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] != "ninja" and name not in ("crates.api_common", "crates.api_errors",
                                                                       "config.api"), (path.name, name)


def test_setting_up_django_starts_no_server_and_writes_nothing(tmp_path):
    """``import django; django.setup()`` touches nothing: the embedded PostgreSQL starts when the first
    connection needs it, and the secret key file is made when something first signs."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "data"
    env = {**os.environ, "FERRODEX_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "config.settings"}
    for name in ("DATABASE_URL", "SECRET_KEY"):
        env.pop(name, None)
    root = Path(__file__).resolve().parent.parent

    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    settings_seen = run("from django.conf import settings; import django.contrib.admin, jobs.services, "
                        "mcp_bridge.server; db = settings.DATABASES['default']; print(db['ENGINE'], db['HOST'] or '-')")
    assert settings_seen == "config.embedded_backend -" and not data.exists()
    # The first signature makes the key, once; it is the same in the next process.
    first = run("from django.core import signing; print(signing.Signer().sign('x'))")
    assert (data / "secret_key").is_file() and not (data / "pgdata").exists()
    assert run("from django.core import signing; print(signing.Signer().sign('x'))") == first
