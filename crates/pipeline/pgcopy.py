"""Bulk writes for the store stage: binary COPY with vectors encoded by numpy.

Django's ``bulk_create`` formats every vector as text (``str(float(v))`` per component) and builds a
model instance per row; for a large crate that was most of the Python time of the store stage.
Binary COPY sends float32 components as they are, which pgvector stores bit for bit the same.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import psycopg
from django.db import connection, transaction
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types import TypeInfo

_vector_types: dict[int, TypeInfo] = {}  # per server connection (backend pid): vector's oid is per database


def encode_vector(vector: Sequence[float]) -> bytes:
    """pgvector's binary wire format: uint16 dimension, uint16 unused, big-endian float32 components."""
    array = np.asarray(vector, dtype=">f4")
    return struct.pack(">HH", array.shape[0], 0) + array.tobytes()


class _EncodedVectorDumper(Dumper):
    """Passes bytes from ``encode_vector`` through; the oid is set per database by a subclass."""

    format = Format.BINARY

    def dump(self, obj: bytes) -> bytes:
        return obj


class EncodedVector(bytes):
    """Marks bytes from ``encode_vector`` as a vector parameter (plain bytes would be bytea)."""


def binary_cursor(django_cursor) -> tuple[psycopg.Cursor, int]:
    """A server-binding psycopg cursor on ``django_cursor``'s connection (same transaction) that sends
    ``EncodedVector`` as vector, and the vector type's oid.

    Django's own cursors bind parameters client-side, as text; the dumper is registered on the new
    cursor only, so nothing else on the connection changes.
    """
    conn = django_cursor.connection
    info = _vector_types.get(conn.info.backend_pid)
    if info is None:
        info = TypeInfo.fetch(conn, "vector")
        if info is None:
            raise RuntimeError("the pgvector extension is not installed in this database")
        _vector_types[conn.info.backend_pid] = info
    raw = psycopg.Cursor(conn)
    # Known by oid, a list of EncodedVector binds as vector[] (with a binary ``%b`` placeholder).
    info.register(raw)
    raw.adapters.register_dumper(EncodedVector, type("VectorDumper", (_EncodedVectorDumper,), {"oid": info.oid}))
    return raw, info.oid


def copy_rows(raw_cursor, *, table: str, columns: Sequence[str], types: Sequence[str | int],
              rows: Iterable[Sequence]) -> None:
    """COPY ``rows`` into ``table`` in binary; ``types`` are PostgreSQL type names or oids per column."""
    column_list = ", ".join(f'"{c}"' for c in columns)
    with raw_cursor.copy(f'COPY "{table}" ({column_list}) FROM STDIN (FORMAT BINARY)') as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


@contextmanager
def replayable_write() -> Iterator:
    """A Django cursor in a transaction for rows that are a cache (downloads, embeddings): on its own it commits
    without waiting for the WAL flush (a crash costs a download or a re-embedding); inside a caller's
    transaction it joins it, and that transaction decides how it commits."""
    nested = connection.in_atomic_block
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if not nested:
            cursor.execute("SET LOCAL synchronous_commit = off")
        yield cursor
