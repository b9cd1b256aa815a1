"""Type-search rows for releases ingested before type search existed (idempotent, safe to run any time)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from crates.services import backfill_type_signatures


class Command(BaseCommand):
    help = (
        "Give releases stored before type search their type signatures and trait impls, read from the stored "
        "declarations. Releases that have them are skipped; re-ingesting (force) gives the full rustdoc JSON view."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--crate", help="only this crate")

    def handle(self, *args, **options) -> None:
        counts = backfill_type_signatures(crate=options.get("crate"))
        self.stdout.write(
            f"backfilled {counts['releases']} release(s): {counts['signatures']} signature(s),"
            f" {counts['impls']} impl(s)"
        )
