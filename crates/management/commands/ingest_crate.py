"""Ingest one crate in the foreground: from docs.rs, a local rustdoc JSON file or a cargo doc directory.

It is a job like any other (requested_by cli: deduplicated, checkpointed, in the admin's history), run in
this process with a progress bar (jobs.foreground).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crates.cli_progress import CliProgress
from crates.errors import FerrodexError
from crates.projects import add_from_lockfile
from crates.services import index_staged_chunks
from jobs.foreground import ingest_in_foreground
from jobs.models import CrateJob


class Command(BaseCommand):
    help = (
        "Ingest a crate's documentation now (docs.rs, --json-file or --doc-dir), with a progress bar; or, with "
        "--lockfile, queue one ingest job per crate a Cargo.lock locks, at its exact version (a worker runs them)."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Our --version is the crate's version, not Django's.
        kwargs.setdefault("conflict_handler", "resolve")
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", nargs="?", help="crate name, e.g. serde_json (not with --lockfile)")
        parser.add_argument("--version", dest="crate_version", default="latest", help="exact version or 'latest'")
        parser.add_argument("--force", action="store_true", help="re-ingest even if the release is current")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--json-file", type=Path, help="a local rustdoc JSON file (.json, .json.zst, .json.gz)")
        source.add_argument("--doc-dir", type=Path, help="a local `cargo doc` output directory (target/doc)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the result as JSON")
        lock = parser.add_argument_group("a project's Cargo.lock")
        lock.add_argument("--lockfile", type=Path, help="queue the exact versions this Cargo.lock locks")
        lock.add_argument("--manifest", type=Path, help="the project's Cargo.toml: direct dependencies and features")
        lock.add_argument("--direct-only", action="store_true", help="only direct dependencies (normal, dev, build)")
        lock.add_argument("--project", help="save the locked versions under this name, for search(project=...)")

    def handle(self, *args, **options) -> None:
        if options["lockfile"] is not None:
            return self._lockfile(options)
        if not options["name"]:
            raise CommandError("Give a crate name, or --lockfile Cargo.lock.")
        for flag in ("manifest", "project"):
            if options[flag]:
                raise CommandError(f"--{flag} goes with --lockfile.")
        if options["direct_only"]:
            raise CommandError("--direct-only goes with --lockfile.")
        for flag in ("json_file", "doc_dir"):
            path = options[flag]
            if path is not None and not path.exists():
                raise CommandError(f"{path} does not exist")
        progress = CliProgress(stream=self.stderr._out)
        try:
            run = ingest_in_foreground(
                name=options["name"],
                version=options["crate_version"],
                force=options["force"],
                display=progress,
                json_file=options["json_file"],
                doc_dir=options["doc_dir"],
            )
        except FerrodexError as exc:
            progress.finish()
            raise CommandError(f"{type(exc).__name__}: {exc}") from None
        except KeyboardInterrupt:
            progress.finish()
            raise CommandError("interrupted; the job is cancelled and the previous release (if any) is still "
                               "active") from None
        progress.finish()
        job = run.job
        followed = " (run by a worker; this command followed it)" if run.followed else ""
        self.stderr.write(f"job {job.pk}: {job.status}{followed}")
        if job.status == CrateJob.Status.FAILED:
            raise CommandError(f"{job.error_type}: {job.error_message}")
        if job.status != CrateJob.Status.COMPLETE:
            raise CommandError(f"the job ended {job.status}: {job.stage_message}")
        result = job.result
        if not result.get("up_to_date"):
            # The crate is searchable already (staged vectors are scanned exactly); without a worker
            # running, nobody else moves them into the HNSW index, so do it before returning.
            index_staged_chunks()
        if options["as_json"]:
            self.stdout.write(json.dumps(result))
        elif result.get("up_to_date"):
            restored = " (restored: it was soft-deleted)" if result.get("restored") else ""
            self.stdout.write(f"{result['crate_name']} {result['version']} is already up to date{restored}")
        else:
            self.stdout.write(
                f"{result['crate_name']} {result['version']}: {result['documents']} documents, {result['chunks']} "
                f"chunks, {result['embeddings']} embeddings ({result['embedded_new']} newly embedded), "
                f"{result['http_requests']} HTTP requests"
                + (f"; from {result['docs_source']}" if result.get("docs_source") else "")
            )
            for note in result.get("provenance") or ():
                self.stdout.write(f"  {note}")

    def _lockfile(self, options: dict) -> None:
        if options["name"] or options["json_file"] or options["doc_dir"]:
            raise CommandError("--lockfile takes no crate name, --json-file or --doc-dir: the lockfile names them.")
        texts = {}
        for flag in ("lockfile", "manifest"):
            path = options[flag]
            if path is not None:
                if not path.is_file():
                    raise CommandError(f"{path} does not exist or is not a file")
                texts[flag] = path.read_bytes()
        try:
            result = add_from_lockfile(
                lockfile=texts["lockfile"], manifest=texts.get("manifest"), direct_only=options["direct_only"],
                project=options["project"], requested_by="cli",
            )  # fmt: skip
        except FerrodexError as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from None
        if options["as_json"]:
            from dataclasses import asdict

            self.stdout.write(json.dumps(asdict(result), default=str))
            return
        fresh = sum(1 for job in result.jobs if not job["deduplicated"])
        self.stdout.write(
            f"Cargo.lock v{result.lockfile_version}, {result.packages} packages: {fresh} ingest job(s) queued, "
            f"{len(result.jobs) - fresh} already under way, {len(result.skipped)} skipped"
            + (f"; saved as project {result.project!r}" if result.project else "")
        )
        for job in result.jobs:
            again = " (already queued)" if job["deduplicated"] else ""
            self.stdout.write(f"  queued {job['crate']} {job['version']}: job {job['job']['id']}{again}")
        for skipped in result.skipped:
            self.stdout.write(f"  skipped {skipped['crate']} {skipped['version']}: {skipped['detail']}")
        for warning in result.warnings:
            self.stdout.write(f"  note: {warning}")
        if result.jobs:
            self.stdout.write("A worker runs the jobs (manage.py qcluster, or scripts/up).")
