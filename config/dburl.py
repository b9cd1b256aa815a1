"""DATABASE_URL -> Django's DATABASES entry, by dj-database-url, refusing anything but PostgreSQL."""

from __future__ import annotations

from urllib.parse import urlparse

import dj_database_url


class DatabaseUrlError(ValueError):
    pass


def parse_database_url(url: str) -> dict:
    scheme = urlparse(url).scheme
    if scheme not in {"postgres", "postgresql", "pgsql"}:
        raise DatabaseUrlError(
            f"DATABASE_URL must be a postgresql:// URL (got scheme {scheme!r}); "
            "Ferrodex needs PostgreSQL with the vector extension"
        )
    config = dict(dj_database_url.parse(url))
    options = dict(config.get("OPTIONS") or {})
    # A socket directory given as ?host=... (what the embedded server hands out) belongs in HOST.
    if not config.get("HOST") and options.get("host"):
        config["HOST"] = options.pop("host")
    options.pop("host", None)
    config["OPTIONS"] = options
    config["PORT"] = str(config.get("PORT") or "")
    return config
