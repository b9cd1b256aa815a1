"""Staged chunk vectors: the ingest writes them outside the HNSW index, search finds them at once,
``index_staged_chunks`` moves them into the index (idempotent, resumable)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection, transaction

from crates.models import Chunk, CrateRelease
from crates.pipeline.embed import get_embedder
from crates.pipeline.ingest import run_ingest
from crates.pipeline.types import NullProgress
from crates.portal_selectors import deletion_summary
from crates.search import signals
from crates.search.engine import run_statements
from crates.search.scope import search_scope
from crates.services import index_staged_chunks

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURE_JSON = Path(__file__).parent / "fixtures" / "rustdoc" / "ferro_fixture.json.zst"


@pytest.fixture(autouse=True)
def _hash_embedder(settings):
    settings.EMBEDDING_PROVIDER = "hash"


def _ingest() -> CrateRelease:
    result = run_ingest(name="ferro-fixture", progress=NullProgress(), json_file=FIXTURE_JSON)
    return CrateRelease.objects.get(pk=result.release_id)


def _ranked(text: str, *, exact: bool, monkeypatch, depth: int = 10) -> list[signals.Ranked]:
    """Vector search for ``text``, by the exact scan or the HNSW + staged union."""
    monkeypatch.setattr(signals, "EXACT_SCAN_MAX_CHUNKS", 10**9 if exact else 0)
    vector = get_embedder().embed([text])[0]
    scope = search_scope(crate="ferro-fixture", version=None, kinds=None)
    statement = signals.vector_statement(scope=scope, vector=vector, depth=depth, release_ids=scope.release_ids)
    return statement.rank(run_statements({"vector": statement})["vector"])


def _nearest(text: str, *, exact: bool, monkeypatch) -> list[int]:
    return [r.chunk_id for r in _ranked(text, exact=exact, monkeypatch=monkeypatch)]


def _scores(text: str, *, monkeypatch) -> list[float]:
    """Similarities of the exact ranking (chunk ids may swap among equal scores)."""
    return [round(r.score, 5) for r in _ranked(text, exact=True, monkeypatch=monkeypatch)]


def _states(release: CrateRelease) -> tuple[int, int, int]:
    """(indexed, staged, both-or-neither) chunk counts of ``release``."""
    chunks = Chunk.objects.filter(release=release)
    return (
        chunks.filter(embedding__isnull=False).count(),
        chunks.filter(staged_embedding__isnull=False).count(),
        chunks.filter(embedding__isnull=True, staged_embedding__isnull=True).count()
        + chunks.filter(embedding__isnull=False, staged_embedding__isnull=False).count(),
    )


def test_ingest_stages_vectors_and_counts_them_as_embeddings():
    release = _ingest()
    assert _states(release) == (0, release.chunk_count, 0)
    assert release.embedding_count == release.chunk_count > 30
    assert deletion_summary(crate=release.crate).embeddings == release.chunk_count
    # The staged vector is the embedder's vector for the chunk text (float32, as pgvector stores it).
    chunk = Chunk.objects.filter(release=release).order_by("id").first()
    expected = np.asarray(get_embedder().embed([chunk.text])[0], dtype=np.float32)
    assert np.array_equal(np.asarray(chunk.staged_embedding, dtype=np.float32), expected)


@pytest.mark.parametrize("exact", [True, False], ids=["exact-scan", "hnsw-union-staged"])
def test_staged_chunks_are_found_by_vector_search_immediately(monkeypatch, exact):
    release = _ingest()
    target = Chunk.objects.filter(release=release, document__path="ferro_fixture::Counter::with_capacity").first()
    assert target is not None and target.embedding is None
    assert _nearest(target.text, exact=exact, monkeypatch=monkeypatch)[0] == target.pk


def test_indexing_moves_every_vector_and_search_gives_the_same_answer(monkeypatch):
    release = _ingest()
    queries = ["counter with capacity", "parse a config file", "error kinds"]
    before = {q: _scores(q, monkeypatch=monkeypatch) for q in queries}
    staged = dict(Chunk.objects.filter(release=release).values_list("id", "staged_embedding"))

    assert index_staged_chunks(batch_size=7) == release.chunk_count
    assert _states(release) == (release.chunk_count, 0, 0)
    for pk, vector in Chunk.objects.filter(release=release).values_list("id", "embedding"):
        assert np.array_equal(np.asarray(vector), np.asarray(staged[pk]))
    assert {q: _scores(q, monkeypatch=monkeypatch) for q in queries} == before
    release.refresh_from_db()
    assert release.embedding_count == release.chunk_count
    assert deletion_summary(crate=release.crate).embeddings == release.chunk_count
    assert index_staged_chunks() == 0  # idempotent: nothing left to move


def test_a_killed_indexing_run_leaves_consistent_rows_and_a_rerun_finishes(monkeypatch):
    release = _ingest()
    total = release.chunk_count
    # A run that stops after two batches is what a kill leaves behind: committed batches only.
    assert index_staged_chunks(batch_size=5, max_batches=2) == 10
    assert _states(release) == (10, total - 10, 0)
    target = Chunk.objects.filter(release=release, staged_embedding__isnull=False).first()
    assert _nearest(target.text, exact=False, monkeypatch=monkeypatch)[0] == target.pk
    assert index_staged_chunks() == total - 10
    assert _states(release) == (total, 0, 0)


def test_a_kill_mid_batch_rolls_the_batch_back(monkeypatch):
    release = _ingest()
    with connection.cursor() as cursor:  # a batch that dies before its commit
        cursor.execute("BEGIN")
        cursor.execute(
            "UPDATE crates_chunk SET embedding = staged_embedding, staged_embedding = NULL"
            " WHERE id IN (SELECT id FROM crates_chunk WHERE release_id = %s LIMIT 5)", [release.pk]
        )
        cursor.execute("ROLLBACK")
    assert _states(release) == (0, release.chunk_count, 0)
    assert index_staged_chunks() == release.chunk_count


def test_two_concurrent_indexers_move_each_chunk_once():
    release = _ingest()
    results: list[int] = []

    def run() -> None:
        try:
            results.append(index_staged_chunks(batch_size=3))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) + index_staged_chunks() == release.chunk_count
    assert _states(release) == (release.chunk_count, 0, 0)


def test_management_commands_index_staged_vectors():
    release = _ingest()
    out = io.StringIO()
    call_command("index_staged_chunks", stdout=out)
    assert f"indexed {release.chunk_count} staged" in out.getvalue()
    # ingest_crate (foreground, maybe no worker running) indexes before it returns.
    call_command("ingest_crate", "ferro-fixture", "--force", "--json-file", str(FIXTURE_JSON), stdout=io.StringIO(),
                 stderr=io.StringIO())
    active = CrateRelease.objects.get(crate__normalized_name="ferro_fixture", state="active")
    assert _states(active) == (active.chunk_count, 0, 0)


def _pending_pages() -> int:
    """Pages waiting in the GIN pending lists of documents and chunks (merging them reports the count)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(gin_clean_pending_list(i.indexrelid)), 0) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
            " WHERE a.amname = 'gin' AND i.indrelid IN ('crates_document'::regclass, 'crates_chunk'::regclass)"
        )
        return int(cursor.fetchone()[0])


def test_indexing_merges_the_text_indexes_pending_lists():
    # Every search that uses a GIN index reads its whole pending list; after an ingest it is full of the new
    # rows until something merges it (autovacuum may take hours on a big table).
    _ingest()
    with transaction.atomic():
        assert _pending_pages() > 0  # the ingest's rows are pending (rolled back: still pending after)
        transaction.set_rollback(True)
    index_staged_chunks()
    assert _pending_pages() == 0
