"""PostgreSQL on the embedded server (DATABASE_URL unset), started when the first connection needs it.

Importing the settings starts nothing: this backend asks ``config.embedded_db.ensure_server`` for the
server's address when it first connects, and writes it into the connection settings (the socket
directory as HOST), which every later connection and helper then reads.
"""

from __future__ import annotations

import threading
from pathlib import Path

from django.db.backends.postgresql import base

from config.dburl import parse_database_url

_started = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict:
        ensure_started(self.settings_dict)
        return super().get_connection_params()


def ensure_started(settings_dict: dict) -> None:
    """Start the embedded server of ``settings_dict["PGDATA"]`` (once) and fill in where it listens."""
    if settings_dict.get("HOST"):
        return
    with _started:
        if settings_dict.get("HOST"):
            return
        from config.embedded_db import ensure_server

        address = parse_database_url(ensure_server(Path(settings_dict["PGDATA"])))
        for key in ("USER", "PASSWORD", "PORT"):
            settings_dict[key] = settings_dict.get(key) or address[key]
        settings_dict["OPTIONS"] = {**address["OPTIONS"], **settings_dict.get("OPTIONS", {})}
        settings_dict["HOST"] = address["HOST"]  # last: it marks the settings as filled in
