"""Ingest one crate in the foreground: from docs.rs, a local rustdoc JSON file or a cargo doc directory."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crates.cli_progress import CliProgress
from crates.errors import FerrodexError
from crates.pipeline.ingest import run_ingest
from crates.services import index_staged_chunks


class Command(BaseCommand):
    help = "Ingest a crate's documentation now (docs.rs, --json-file or --doc-dir), with a progress bar."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Our --version is the crate's version, not Django's.
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="crate name, e.g. serde_json")
        parser.add_argument("--version", dest="crate_version", default="latest", help="exact version or 'latest'")
        parser.add_argument("--force", action="store_true", help="re-ingest even if the release is current")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--json-file", type=Path, help="a local rustdoc JSON file (.json, .json.zst, .json.gz)")
        source.add_argument("--doc-dir", type=Path, help="a local `cargo doc` output directory (target/doc)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the result as JSON")

    def handle(self, *args, **options) -> None:
        for flag in ("json_file", "doc_dir"):
            path = options[flag]
            if path is not None and not path.exists():
                raise CommandError(f"{path} does not exist")
        progress = CliProgress(stream=self.stderr._out)
        try:
            result = run_ingest(
                name=options["name"],
                version=options["crate_version"],
                force=options["force"],
                progress=progress,
                json_file=options["json_file"],
                doc_dir=options["doc_dir"],
            )
        except FerrodexError as exc:
            progress.finish()
            raise CommandError(f"{type(exc).__name__}: {exc}") from None
        except KeyboardInterrupt:
            progress.finish()
            raise CommandError("interrupted; the previous release (if any) is still active") from None
        progress.finish()
        if not result.up_to_date:
            # The crate is searchable already (staged vectors are scanned exactly); without a worker
            # running, nobody else moves them into the HNSW index, so do it before returning.
            index_staged_chunks()
        if options["as_json"]:
            from dataclasses import asdict

            self.stdout.write(json.dumps(asdict(result)))
        elif result.up_to_date:
            restored = " (restored: it was soft-deleted)" if result.restored else ""
            self.stdout.write(f"{result.crate_name} {result.version} is already up to date{restored}")
        else:
            self.stdout.write(
                f"{result.crate_name} {result.version}: {result.documents} documents, {result.chunks} chunks, "
                f"{result.embeddings} embeddings ({result.embedded_new} newly embedded), "
                f"{result.http_requests} HTTP requests"
                + (f"; from {result.docs_source}" if result.docs_source else "")
            )
            for note in result.provenance:
                self.stdout.write(f"  {note}")
