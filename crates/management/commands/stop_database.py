"""manage.py stop_database: stop the embedded PostgreSQL (var/pgdata) cleanly, as root too."""

from __future__ import annotations

import subprocess

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.embedded_db import stop_server


class Command(BaseCommand):
    help = (
        "Stop the embedded PostgreSQL in var/pgdata (a clean stop: running workers leave it stopped). "
        "Does nothing with DATABASE_URL set: that server is not Ferrodex's to stop."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--mode", choices=["smart", "fast", "immediate"], default="fast",
                            help="pg_ctl's shutdown mode (default fast: open sessions are ended)")  # fmt: skip

    def handle(self, *args, mode: str, **options) -> None:
        if settings.DATABASE_URL:
            raise CommandError("DATABASE_URL is set: Ferrodex does not run that server, so it does not stop it.")
        pgdata = settings.EMBEDDED_PGDATA
        try:
            stopped = stop_server(pgdata, mode=mode)
        except subprocess.CalledProcessError as exc:
            raise CommandError(f"pg_ctl could not stop the server in {pgdata}: {exc.stderr.strip()}") from exc
        if stopped:
            self.stdout.write(f"Stopped the embedded PostgreSQL in {pgdata}.")
        else:
            self.stdout.write(f"The embedded PostgreSQL in {pgdata} is not running.")
