"""The three ranked signals. Each returns documents best first; all SQL is parameterised.

Chunks are grouped into their document here (first = best chunk), so one
long item cannot fill a signal's list with its chunks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from django.db import connection, transaction

from crates.search.query import PathProbe
from crates.search.scope import Scope, id_array
from crates.textsearch import query_word_groups, tsquery_all_for, tsquery_for, tsquery_pairs_for

# HNSW candidate list size: higher finds more true neighbours at some latency cost
# (at 1M chunks, 100 cost ~30 ms a query on 2 cores, 40 about half).
EF_SEARCH = 40
# Stop an iterative (filtered) scan after this many tuples; pgvector's default is 20000.
MAX_SCAN_TUPLES = 40000
# Up to this many chunks in scope, vector search computes every distance instead of using HNSW.
EXACT_SCAN_MAX_CHUNKS = 10_000
# Most chunks ranked per keyword query, and how many chunks a word may match and still
# select candidates (see keyword_ranking).
KEYWORD_CANDIDATES = 500
COMMON_WORD_MATCHES = 5000
# Substring matching on names scans documents; only do it on small scopes.
SUBSTRING_MAX_DOCUMENTS = 20_000

_KIND_ORDER = {
    "module": 1, "struct": 0, "enum": 0, "trait": 0, "union": 0, "type_alias": 1, "function": 0, "macro": 1,
    "constant": 1, "static": 1, "trait_alias": 1, "primitive": 2, "keyword": 2,
    "method": 2, "assoc_type": 3, "assoc_const": 3, "field": 4, "variant": 3,
}  # fmt: skip


@dataclass(slots=True)
class Ranked:
    """A document in one signal's ranking."""

    document_id: int
    chunk_id: int | None  # best chunk, when the signal works on chunks
    weight: float = 1.0  # how strongly this match counts in fusion (path tiers differ)
    score: float = 0.0  # the signal's own score: cosine similarity, ts_rank
    detail: str = ""


def _group(rows: list[tuple[int, int, float]]) -> list[Ranked]:
    seen: dict[int, Ranked] = {}
    for chunk_id, document_id, score in rows:
        if document_id not in seen:
            seen[document_id] = Ranked(document_id=document_id, chunk_id=chunk_id, score=float(score))
    return list(seen.values())


def _kind_clause(scope: Scope, column: str, params: dict) -> str:
    if not scope.kinds:
        return ""
    params["kinds"] = list(scope.kinds)
    return f" AND {column} = ANY(%(kinds)s)"


def session_settings_sql() -> str:
    """HNSW search settings every connection starts with (see crates.apps), so a vector query is one round trip.

    relaxed_order lets a filtered HNSW scan keep going until it has enough rows; its output is
    only roughly ordered, hence the outer ORDER BY in vector_ranking.
    """
    return (
        f"SET hnsw.ef_search = {EF_SEARCH}; SET hnsw.iterative_scan = relaxed_order;"
        f" SET hnsw.max_scan_tuples = {MAX_SCAN_TUPLES}"
    )


def vector_ranking(*, scope: Scope, vector: list[float], depth: int, release_ids: list[int]) -> list[Ranked]:
    """Nearest chunks by cosine distance (HNSW). ``release_ids``: releases embedded with the query's model."""
    if not release_ids:
        return []
    params: dict = {
        "vec": "[" + ",".join(f"{x:.7g}" for x in vector) + "]",
        "releases": scope.release_array if len(release_ids) == len(scope.releases) else id_array(release_ids),
        "depth": depth,
    }
    kind_filter = ""
    if scope.kinds:
        kind_filter = (
            " AND c.document_id IN (SELECT d.id FROM crates_document d"
            " WHERE d.release_id = ANY(%(releases)s::bigint[]) AND d.kind = ANY(%(kinds)s))"
        )
        params["kinds"] = list(scope.kinds)
    wanted = set(release_ids)
    in_scope = sum(r.chunk_count for r in scope.releases if r.id in wanted)
    sql = _nearest_sql(exact=in_scope <= EXACT_SCAN_MAX_CHUNKS, kind_filter=kind_filter)
    with connection.cursor() as cursor:
        if depth > EF_SEARCH:
            # Rare (limit > 13): a bigger candidate list for this query only.
            with transaction.atomic():
                cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(depth)])
                cursor.execute(sql, params)
                rows = cursor.fetchall()
        else:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    return _group(rows)


def _nearest_sql(*, exact: bool, kind_filter: str) -> str:
    """Nearest chunks over both vector columns: ``embedding`` (HNSW) and ``staged_embedding``.

    A chunk has at most one of the two (see Chunk.staged_embedding); one statement sees one snapshot,
    so a chunk the indexer moves meanwhile is counted exactly once.
    """
    in_scope = " FROM crates_chunk c WHERE c.release_id = ANY(%(releases)s::bigint[])"
    if exact:
        # A crate or two: computing every distance is cheap and exact, while an HNSW scan filtered
        # down to 0.1% of a big table could stop (max_scan_tuples) before `depth` rows. The OFFSET 0
        # fence keeps the planner off HNSW and computes each distance once (each reads the
        # vector from TOAST).
        scan = (
            "SELECT c.id, c.document_id, coalesce(c.embedding, c.staged_embedding) <=> %(vec)s::vector AS distance"
            + in_scope + " AND (c.embedding IS NOT NULL OR c.staged_embedding IS NOT NULL)" + kind_filter
        )
        nearest = f"SELECT * FROM ({scan} OFFSET 0) s ORDER BY distance LIMIT %(depth)s"
    else:
        indexed = (
            "SELECT c.id, c.document_id, c.embedding <=> %(vec)s::vector AS distance" + in_scope
            + " AND c.embedding IS NOT NULL" + kind_filter + " ORDER BY c.embedding <=> %(vec)s::vector LIMIT %(depth)s"
        )
        # Chunks of recent ingests not yet moved into the HNSW graph: few, found by a partial index.
        staged = (
            "SELECT c.id, c.document_id, c.staged_embedding <=> %(vec)s::vector AS distance" + in_scope
            + " AND c.staged_embedding IS NOT NULL" + kind_filter
        )
        nearest = (
            f"SELECT * FROM (({indexed}) UNION ALL (SELECT * FROM ({staged} OFFSET 0) s"
            " ORDER BY distance LIMIT %(depth)s)) u ORDER BY distance LIMIT %(depth)s"
        )
    return (
        f"WITH nearest AS MATERIALIZED ({nearest})"
        " SELECT id, document_id, 1 - distance FROM nearest ORDER BY distance, id"
    )


# Lexemes too common to select keyword candidates, per database, refreshed every few minutes:
# planner statistics change slowly and a stale list only makes the bound a little loose.
_COMMON_TTL_SECONDS = 300
_common_cache: dict[str, tuple[float, frozenset[str]]] = {}


def _common_lexemes() -> frozenset[str]:
    """Lexemes that alone match more than COMMON_WORD_MATCHES chunks (ANALYZE's statistics)."""
    key = str(connection.settings_dict.get("NAME"))
    cached = _common_cache.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT u.e FROM pg_stats s,"
            " unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS u(e, f)"
            " WHERE s.schemaname = current_schema() AND s.tablename = 'crates_chunk'"
            " AND s.attname = 'search_vector' AND u.e IS NOT NULL"
            " AND u.f * (SELECT reltuples FROM pg_class WHERE oid = 'crates_chunk'::regclass) > %s",
            [COMMON_WORD_MATCHES],
        )
        common = frozenset(row[0] for row in cursor.fetchall())
    _common_cache[key] = (time.monotonic() + _COMMON_TTL_SECONDS, common)
    return common


_stem_cache: dict[str, str] = {}
_STEM_CACHE_MAX = 50_000


def _stems(words: list[str]) -> dict[str, str]:
    """word -> its english lexeme ('' for a stop word); remembered, the dictionary never changes."""
    missing = [w for w in words if w not in _stem_cache]
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT w, coalesce((tsvector_to_array(to_tsvector('english', w)))[1], '')"
                " FROM unnest(%s::text[]) AS w",
                [missing],
            )
            if len(_stem_cache) > _STEM_CACHE_MAX:
                _stem_cache.clear()
            _stem_cache.update(cursor.fetchall())
    return {w: _stem_cache.get(w, "") for w in words}


def keyword_ranking(*, scope: Scope, text: str, depth: int) -> list[Ranked]:
    """Chunks matching the query words (identifier-expanded), ranked by ts_rank.

    ts_rank is not index-assisted and costs a few microseconds a chunk, so it ranks a bounded
    candidate set, chosen best first: chunks matching every informative query token, then
    (for three or more tokens) chunks matching any two of them, then chunks matching any one,
    each part capped at KEYWORD_CANDIDATES. A word is not informative when it is a stop word
    or alone would match more than COMMON_WORD_MATCHES chunks (by the planner statistics
    ANALYZE keeps on ``search_vector``); it still counts in the rank.
    """
    rank_q = tsquery_for(text)
    if not rank_q or not scope.releases:
        return []
    common = _common_lexemes()
    stems = _stems(sorted({w for group in query_word_groups(text) for w in group}))
    skip = lambda word: stems.get(word, "") in common or not stems.get(word)  # noqa: E731
    pick_any = tsquery_for(text, skip=skip) or rank_q
    pick_all = tsquery_all_for(text, skip=skip) or pick_any
    pick_pairs = tsquery_pairs_for(text, skip=skip)
    params: dict = {
        "rank": rank_q,
        "any": pick_any,
        "all": pick_all,
        "pairs": pick_pairs,
        "releases": scope.release_array,
        "depth": depth,
        "cap": KEYWORD_CANDIDATES,
    }
    where = " AND c.release_id = ANY(%(releases)s::bigint[])"
    if scope.kinds:
        where += (
            " AND c.document_id IN (SELECT d.id FROM crates_document d"
            " WHERE d.release_id = ANY(%(releases)s::bigint[]) AND d.kind = ANY(%(kinds)s))"
        )
        params["kinds"] = list(scope.kinds)
    # The rank is computed where the candidate row is read: joining back to the chunk for it
    # read every candidate's heap page (and its search_vector) a second time.
    part = (
        "(SELECT c.id, c.document_id, ts_rank(c.search_vector, q.rank_q, 1) AS rank"
        " FROM crates_chunk c, q WHERE c.search_vector @@ q.{pick}" + where + " LIMIT %(cap)s)"
    )
    parts = [part.format(pick="all_q")]
    if pick_pairs:
        parts.append(part.format(pick="pairs_q"))
    if pick_any != pick_all:
        parts.append(part.format(pick="any_q"))
    sql = (
        "WITH q AS (SELECT to_tsquery('english', %(rank)s) AS rank_q, to_tsquery('english', %(any)s) AS any_q,"
        " to_tsquery('english', %(all)s) AS all_q, to_tsquery('english', %(pairs)s) AS pairs_q)"
        " SELECT id, document_id, rank FROM (" + " UNION ".join(parts) + ") hits"
        " ORDER BY rank DESC, id LIMIT %(depth)s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return _group(rows)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _path_rows(*, scope: Scope, probe: PathProbe, depth: int) -> list[tuple]:
    params: dict = {"releases": scope.release_array, "tail": probe.lowered, "depth": depth}
    kind_filter = _kind_clause(scope, "d.kind", params)
    if probe.root:
        params["root"] = _like_escape(probe.root) + "::%"
        kind_filter += " AND lower(d.path) LIKE %(root)s"
    select = "SELECT d.id, d.path, d.name, d.kind, d.metadata -> 'aliases' FROM crates_document d"
    where = " WHERE d.release_id = ANY(%(releases)s::bigint[])" + kind_filter
    queries = [
        select + where + " AND ferrodex_path_tails(d.path, d.metadata) @> ARRAY[%(tail)s]::text[]"
        " ORDER BY length(d.path), d.path LIMIT %(depth)s"
    ]
    if probe.whole_query and not probe.root and len(probe.lowered) >= 3:
        params["prefix"] = _like_escape(probe.lowered) + "%"
        queries.append(
            select + where + " AND lower(d.path) LIKE %(prefix)s ORDER BY length(d.path), d.path LIMIT %(depth)s"
        )
        if "::" not in probe.lowered and scope.document_count <= SUBSTRING_MAX_DOCUMENTS:
            params["contains"] = "%" + _like_escape(probe.lowered) + "%"
            queries.append(
                select + where + " AND lower(d.name) LIKE %(contains)s ORDER BY length(d.name), d.path LIMIT %(depth)s"
            )
    # One round trip; each part keeps its own limit. The order of rows does not matter: path_ranking
    # sorts them by match tier.
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(f"({q})" for q in queries), params)
        return cursor.fetchall()


def _tier(*, probe: PathProbe, path: str, aliases: object) -> tuple[int, bool]:
    """(0 exact, 1 tail on a segment boundary, 2 prefix, 3 substring of the name; typed case matches)."""
    if isinstance(aliases, str | bytes):
        # Django's psycopg setup hands raw SQL jsonb back as text.
        try:
            aliases = json.loads(aliases)
        except ValueError:
            aliases = None
    names = [path] + ([a for a in aliases if isinstance(a, str)] if isinstance(aliases, list) else [])
    for candidate in names:
        if candidate.lower() == probe.lowered and not probe.root:
            return 0, candidate == probe.typed
    for candidate in names:
        if candidate.lower().endswith("::" + probe.lowered):
            return 1, candidate.endswith(probe.typed)
    if path.lower().startswith(probe.lowered):
        return 2, path.startswith(probe.typed)
    return 3, probe.typed in path


def path_ranking(*, scope: Scope, probes: tuple[PathProbe, ...], depth: int) -> list[Ranked]:
    """Documents whose path (or an alias) is, ends with, or starts with a path in the query."""
    if not probes or not scope.releases:
        return []
    scored: dict[int, tuple[tuple, Ranked]] = {}
    for probe_index, probe in enumerate(probes):
        rows = _path_rows(scope=scope, probe=probe, depth=depth)
        fallback = probe.fallback() if not rows else None
        if fallback is not None:
            probe, rows = fallback, _path_rows(scope=scope, probe=fallback, depth=depth)
        for doc_id, path, _name, kind, aliases in rows:
            if not probe.whole_query and kind == "module" and "::" not in path:
                continue  # a crate named in a sentence ("... a serde_json Value") is context, not the answer
            tier, case_match = _tier(probe=probe, path=path, aliases=aliases)
            if probe.macro and kind != "macro":
                tier += 2  # `anyhow!` asks for the macro, not the crate root of the same name
            key = (
                tier, not probe.whole_query, probe_index, not case_match, _KIND_ORDER.get(kind, 5),
                path.count("::"), len(path), path,
            )  # fmt: skip
            weight = path_weight(tier=tier, whole_query=probe.whole_query)
            if doc_id not in scored or key < scored[doc_id][0]:
                scored[doc_id] = (key, Ranked(document_id=doc_id, chunk_id=None, weight=weight, detail=f"tier{tier}"))
    return [ranked for _key, ranked in sorted(scored.values(), key=lambda pair: pair[0])][:depth]


# Fusion weight of a path match by how good a match it is: the query *being* a path
# must put that item first; a tail is strong evidence; prefix/substring are hints.
_PATH_WEIGHTS = {0: 4.0, 1: 3.0, 2: 0.6, 3: 0.3, 4: 0.2}


def path_weight(*, tier: int, whole_query: bool) -> float:
    weight = _PATH_WEIGHTS.get(tier, 0.3)
    return weight if whole_query else weight * 0.35
