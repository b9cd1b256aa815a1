"""Move staged chunk vectors into the HNSW index now (the workers do it after each ingest and every minute)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from crates.services import INDEX_STAGED_BATCH, index_staged_chunks


class Command(BaseCommand):
    help = "HNSW-index the chunk embeddings that ingests staged (idempotent, safe to run any time)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=INDEX_STAGED_BATCH, help="chunks per transaction")

    def handle(self, *args, **options) -> None:
        moved = index_staged_chunks(batch_size=options["batch_size"])
        self.stdout.write(f"indexed {moved} staged chunk embeddings")
