"""Create an API key for the JSON API and print it once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from crates.apikeys import create_api_key
from crates.errors import InvalidInput


class Command(BaseCommand):
    help = "Create an API key for write endpoints of the JSON API. The key is printed once and never stored."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Who or what uses the key, e.g. 'ci-bot'.")
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="Print only the key, e.g. KEY=$(manage.py create_api_key ci -q).",
        )

    def handle(self, *args, **options) -> None:
        try:
            key, raw = create_api_key(name=options["name"])
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        # The key goes to stdout (capturable); the explanation to stderr.
        self.stdout.write(raw)
        if not options["quiet"]:
            self.stderr.write(
                f"API key '{key.name}' created (prefix {key.prefix}). Store it now: it cannot be shown again.\n"
                f"Use it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
            )
