"""The after-job indexing task on a real ``manage.py qcluster`` worker: a finished job queues it, and the worker
moves every staged vector of the ingest into the HNSW column."""

from __future__ import annotations

from pathlib import Path

import pytest

from crates.models import Chunk, CrateRelease
from crates.pipeline.ingest import run_ingest
from crates.pipeline.types import NullProgress
from jobs.models import CrateJob
from jobs.runner import _queue_indexing
from tests.jobs_helpers import QCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FIXTURE_JSON = Path(__file__).parent / "fixtures" / "rustdoc" / "ferro_fixture.json.zst"


def test_a_real_worker_indexes_the_staged_vectors_a_job_left(settings, tmp_path):
    settings.EMBEDDING_PROVIDER = "hash"
    result = run_ingest(name="ferro-fixture", progress=NullProgress(), json_file=FIXTURE_JSON)
    release = CrateRelease.objects.get(pk=result.release_id)
    chunks = Chunk.objects.filter(release=release)
    assert chunks.count() > 0 and chunks.filter(staged_embedding__isnull=False).count() == chunks.count()
    staged = {pk: list(vector) for pk, vector in chunks.values_list("pk", "staged_embedding")}

    cluster = QCluster(log_path=tmp_path / "cluster.log", env={"Q_WORKERS": "1"}).start()
    try:
        # Exactly what the runner does when a job completes.
        _queue_indexing(job=CrateJob(crate_name="ferro-fixture"))
        wait_for(lambda: not chunks.filter(staged_embedding__isnull=False).exists(), timeout=60,
                 what="the worker to index the staged vectors")
    finally:
        cluster.stop()
    assert chunks.filter(embedding__isnull=True).count() == 0
    assert {pk: list(vector) for pk, vector in chunks.values_list("pk", "embedding")} == staged
