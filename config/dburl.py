"""Parse DATABASE_URL into Django's DATABASES entry (postgres only)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlparse


class DatabaseUrlError(ValueError):
    pass


def parse_database_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise DatabaseUrlError(
            f"DATABASE_URL must be a postgresql:// URL (got scheme {parsed.scheme!r}); "
            "Ferrodex needs PostgreSQL with the vector extension"
        )
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    host = unquote(parsed.hostname or "") or query.pop("host", "")
    query.pop("host", None)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": query,
    }
