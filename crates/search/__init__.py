"""Hybrid documentation search: ``crates.search.engine.search``, what both fronts and the admin call.

``query`` turns user text into what each signal needs (pure), ``scope`` decides which
releases are visible, ``signals`` runs the three ranked SQL queries (pgvector HNSW,
full-text, path), ``types`` the fourth for type queries in rustdoc syntax (``&str -> Value``), ``engine``
fuses them (weighted RRF, grouped by item) and builds the hits, ``embedding`` caches query vectors per process.
"""
