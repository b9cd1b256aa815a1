"""Start-up checks: catch an embedding dimension mismatch before the first ingest."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.db import connection
from django.db.utils import DatabaseError


def stored_embedding_dimension() -> int | None:
    """Dimension of the ``crates_chunk.embedding`` column, or None before migrations."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = to_regclass('crates_chunk') AND attname = 'embedding'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] and row[0] > 0 else None


@register(Tags.database)
def check_embedding_dimension(app_configs=None, **kwargs):
    try:
        stored = stored_embedding_dimension()
    except DatabaseError:
        return []
    if stored is not None and stored != settings.EMBEDDING_DIMENSION:
        return [
            Error(
                f"EMBEDDING_DIMENSION is {settings.EMBEDDING_DIMENSION} but the database stores "
                f"{stored}-dimensional embeddings.",
                hint="Set EMBEDDING_DIMENSION to match, or use a fresh database for the new model.",
                id="ferrodex.E001",
            )
        ]
    return []
