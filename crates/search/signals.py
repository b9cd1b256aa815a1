"""The three ranked signals. Each returns documents best first; all SQL is parameterised.

Chunks are grouped into their document here (first = best chunk), so one
long item cannot fill a signal's list with its chunks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from django.db import connection

from crates.search.query import PathProbe
from crates.search.scope import Scope, id_array
from crates.textsearch import query_word_groups, tsquery_all_for, tsquery_for, tsquery_pairs_for

# HNSW candidate list size: higher finds more true neighbours at some latency cost. It equals the vector
# ranking's depth for the default limit of 10 (engine.search): a longer list than the ranking keeps costs scan
# CPU without changing the fused results (bench/README.md).
EF_SEARCH = 30
# Stop an iterative (filtered) scan after this many tuples; pgvector's default is 20000.
MAX_SCAN_TUPLES = 40000
# Up to this many chunks in scope, vector search computes every distance instead of using HNSW.
EXACT_SCAN_MAX_CHUNKS = 10_000
# Most chunks ranked per keyword query, and how many chunks a word may match and still
# select candidates (see keyword_ranking).
KEYWORD_CANDIDATES = 500
# The last tier (chunks matching any one informative word) only serves queries whose words never
# meet in one chunk. Its candidates arrive in table order, not by relevance, so a big pool buys
# little: on bench/queries, quality is the same from 500 down to 30; each candidate costs a heap
# visit (~3 us), and on 100k synthetic chunks this tier was half of the keyword signal's time.
KEYWORD_ANY_CANDIDATES = 150
COMMON_WORD_MATCHES = 5000
# Past this many releases the release filter never is the selective condition of a signal, and
# the planner costing index paths for a long ANY(array) is wasted work: "+ 0" keeps it
# a plain filter (a hashed one: the array is a constant).
FILTER_ONLY_RELEASES = 8
# Substring matching on names scans documents; only do it on small scopes.
SUBSTRING_MAX_DOCUMENTS = 20_000

_KIND_ORDER = {
    "module": 1, "struct": 0, "enum": 0, "trait": 0, "union": 0, "type_alias": 1, "function": 0, "macro": 1,
    "constant": 1, "static": 1, "trait_alias": 1, "primitive": 2, "keyword": 2,
    "method": 2, "assoc_type": 3, "assoc_const": 3, "field": 4, "variant": 3,
}  # fmt: skip


class DocRow(NamedTuple):
    """What fusion (kind, parent) and the hits (the rest) need of a ranked document.

    A named tuple: one is made per ranked row (~100 a search), straight from the row's last columns.
    """

    release_id: int
    path: str
    kind: str
    parent_path: str
    signature: str
    url: str


# Every signal statement ends its rows with these columns of the document (alias d), so
# fusion and the hits need no further query.
DOC_COLUMNS = "d.release_id, d.path, d.kind, d.parent_path, d.signature, d.url"
_DOC_WIDTH = 6


@dataclass(slots=True)
class Ranked:
    """A document in one signal's ranking."""

    document_id: int
    chunk_id: int | None  # best chunk, when the signal works on chunks
    weight: float = 1.0  # how strongly this match counts in fusion (path tiers differ)
    score: float = 0.0  # the signal's own score: cosine similarity, ts_rank
    detail: str = ""
    doc: DocRow | None = None


@dataclass(slots=True)
class Statement:
    """One signal's SQL, its parameters and how its rows become a ranking.

    The engine sends the statements of a search together, in one multi-statement round trip
    (crates.search.engine.run_statements), with parameter names made unique per statement.
    """

    sql: str
    params: dict
    rank: Callable[[list[tuple]], list[Ranked]]
    extra: dict = field(default_factory=dict)
    # Server-side prepared statement: parsed once per connection, planned as ``plan`` says.
    prepare: bool = True
    # "generic": always the prepared statement's one generic plan, for SQL whose plan does not depend on
    # its values, which PostgreSQL's estimate of the generic plan cannot tell (see vector_statement);
    # "custom": planned for the values every time (path_statement); "": PostgreSQL chooses (plan_cache_mode auto).
    plan: str = ""
    # Parameterless SQL run just before / after this statement, in the same transaction.
    before: str = ""
    after: str = ""


_make_doc = DocRow._make


def _doc(row: tuple) -> DocRow:
    return _make_doc(row[-_DOC_WIDTH:])


def _group(rows: list[tuple]) -> list[Ranked]:
    """Chunk rows (chunk id, document id, score, document columns...) best first -> one entry per document."""
    seen: dict[int, Ranked] = {}
    for row in rows:
        document_id = row[1]
        if document_id not in seen:
            seen[document_id] = Ranked(document_id, row[0], 1.0, float(row[2]), "", _make_doc(row[-_DOC_WIDTH:]))
    return list(seen.values())


def _in_releases(alias: str, *, releases: int) -> str:
    column = f"{alias}.release_id" + (" + 0" if releases > FILTER_ONLY_RELEASES else "")
    return f"{column} = ANY(%(releases)s::bigint[])"


def _chunk_kind_clause(scope: Scope, params: dict) -> str:
    """Chunks (alias c) of documents of the scope's kinds; empty without a kind filter."""
    if not scope.kinds:
        return ""
    params["kinds"] = list(scope.kinds)
    return (
        " AND c.document_id IN (SELECT d.id FROM crates_document d"
        " WHERE d.release_id = ANY(%(releases)s::bigint[]) AND d.kind = ANY(%(kinds)s))"
    )


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


def vector_literal(vector: list[float]) -> str:
    """The pgvector text form; repr is the shortest exact form of a float and the fastest to make."""
    return "[" + ",".join(map(repr, vector)) + "]"


def vector_statement(*, scope: Scope, vector: list[float], depth: int, release_ids: list[int]) -> Statement | None:
    """Nearest chunks by cosine distance (HNSW). ``release_ids``: releases embedded with the query's model."""
    if not release_ids:
        return None
    params: dict = {
        "vec": vector_literal(vector),
        "releases": scope.release_array if len(release_ids) == len(scope.releases) else id_array(release_ids),
        "depth": depth,
    }
    kind_filter = _chunk_kind_clause(scope, params)
    wanted = set(release_ids)
    in_scope = sum(r.chunk_count for r in scope.releases if r.id in wanted)
    exact = in_scope <= EXACT_SCAN_MAX_CHUNKS
    sql = _nearest_sql(exact=exact, kind_filter=kind_filter, releases=len(release_ids))
    # The HNSW plan is the same for any vector and release list: the index scan in distance order, the
    # filter, the partial index of staged chunks. PostgreSQL costs the generic plan above the custom one (it
    # cannot see the LIMIT) and so would plan every search, though both run alike.
    plan = "generic" if not exact and not kind_filter else ""
    if depth > EF_SEARCH:
        # A limit over 10: a bigger candidate list for this statement only. The statements of a
        # search run as one implicit transaction, so is_local ends with it; the reset covers an
        # enclosing transaction.
        return Statement(
            sql=sql,
            params=params,
            rank=_group,
            plan=plan,
            before=f"SELECT set_config('hnsw.ef_search', '{int(depth)}', true)",
            after=f"SELECT set_config('hnsw.ef_search', '{EF_SEARCH}', true)",
        )
    return Statement(sql=sql, params=params, rank=_group, plan=plan)


def _nearest_sql(*, exact: bool, kind_filter: str, releases: int) -> str:
    """Nearest chunks over both vector columns: ``embedding`` (HNSW) and ``staged_embedding``.

    A chunk has at most one of the two (see Chunk.staged_embedding); one statement sees one snapshot,
    so a chunk the indexer moves meanwhile is counted exactly once.
    """
    # The exact scan finds its rows through the release index; HNSW only filters by release.
    in_scope = " FROM crates_chunk c WHERE " + _in_releases("c", releases=1 if exact else releases)
    if exact:
        # A crate or two: computing every distance is cheap and exact, while an HNSW scan filtered
        # down to 0.1% of a big table could stop (max_scan_tuples) before `depth` rows. The OFFSET 0
        # fence keeps the planner off HNSW and computes each distance once.
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
        f" SELECT n.id, n.document_id, 1 - n.distance, {DOC_COLUMNS}"
        " FROM nearest n JOIN crates_document d ON d.id = n.document_id ORDER BY n.distance, n.id"
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


_STEMS_SQL = (
    "SELECT w, coalesce((tsvector_to_array(to_tsvector('english', w)))[1], '') FROM unnest(%(words)s::text[]) AS w"
)


def learn_stems(rows: list[tuple[str, str]]) -> None:
    """Remember word -> english lexeme ('' for a stop word); the dictionary never changes."""
    if len(_stem_cache) > _STEM_CACHE_MAX:
        _stem_cache.clear()
    _stem_cache.update(rows)


def stems_statement(words: list[str]) -> Statement:
    """The lexemes of ``words``, for ``learn_stems``."""
    return Statement(sql=_STEMS_SQL, params={"words": list(words)}, rank=_unranked)


def _stems(words: list[str]) -> dict[str, str]:
    """word -> its english lexeme ('' for a stop word), asking the database for the unknown ones."""
    missing = [w for w in words if w not in _stem_cache]
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(_STEMS_SQL, {"words": missing})
            learn_stems(cursor.fetchall())
    return {w: _stem_cache.get(w, "") for w in words}


def guessed_stems_hold(words: list[str]) -> bool:
    """Whether treating ``words`` as their own lexemes (see keyword_statement) picked the same candidates."""
    common = _common_lexemes()
    return all(
        (not _stem_cache.get(w, w) or _stem_cache.get(w, w) in common) == (w in common) for w in words
    )


def keyword_statement(*, scope: Scope, text: str, depth: int, guess: bool = False) -> Statement | None:
    """Chunks matching the query words (identifier-expanded), ranked by ts_rank.

    ts_rank is not index-assisted and costs a few microseconds a chunk, so it ranks a bounded
    candidate set, chosen best first: chunks matching every informative query token, then
    (for three or more tokens) chunks matching any two of them, then chunks matching any one,
    each part capped at KEYWORD_CANDIDATES. A word is not informative when it is a stop word
    or alone would match more than COMMON_WORD_MATCHES chunks (by the planner statistics
    ANALYZE keeps on ``search_vector``); it still counts in the rank.

    ``guess``: words whose lexeme this process has not seen yet count as their own lexeme
    instead of costing a round trip; ``extra["guessed"]`` lists them, for the caller to look
    up in the same round trip (stems_statement) and to redo the statement when a guess was
    wrong (guessed_stems_hold) -- rare: mostly stop words, which are learnt on first sight.
    """
    rank_q = tsquery_for(text)
    if not rank_q or not scope.releases:
        return None
    common = _common_lexemes()
    words = sorted({w for group in query_word_groups(text) for w in group})
    guessed = [w for w in words if w not in _stem_cache] if guess else []
    stems = {w: _stem_cache.get(w, w) for w in words} if guess else _stems(words)
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
        "anycap": KEYWORD_ANY_CANDIDATES,
    }
    where = " AND " + _in_releases("c", releases=len(scope.releases)) + _chunk_kind_clause(scope, params)
    # The rank is computed where the candidate row is read: joining back to the chunk for it
    # read every candidate's heap page (and its search_vector) a second time. A looser tier only
    # runs while the tighter ones found fewer than `depth` chunks (a one-time filter: its scan is
    # skipped, not filtered): a chunk with fewer of the words rarely outranks one with all of them,
    # and every candidate costs a heap visit.
    part = (
        "SELECT c.id, c.document_id, ts_rank(c.search_vector, q.rank_q, 1) AS rank"
        " FROM crates_chunk c, q WHERE c.search_vector @@ q.{pick}" + where + "{gate} LIMIT %({cap})s"
    )
    tiers = [("all_q", "cap")]
    if pick_pairs:
        tiers.append(("pairs_q", "cap"))
    if pick_any != pick_all:
        tiers.append(("any_q", "anycap"))
    ctes, found = [], []
    for index, (pick, cap) in enumerate(tiers):
        gate = f" AND ({' + '.join(found)}) < %(depth)s" if found else ""
        ctes.append(f"t{index} AS MATERIALIZED ({part.format(pick=pick, cap=cap, gate=gate)})")
        found.append(f"(SELECT count(*) FROM t{index})")
    sql = (
        "WITH q AS (SELECT to_tsquery('english', %(rank)s) AS rank_q, to_tsquery('english', %(any)s) AS any_q,"
        " to_tsquery('english', %(all)s) AS all_q, to_tsquery('english', %(pairs)s) AS pairs_q), "
        + ", ".join(ctes)
        + f" SELECT h.id, h.document_id, h.rank, {DOC_COLUMNS} FROM ("
        " SELECT id, document_id, rank FROM ("
        + " UNION ".join(f"SELECT * FROM t{index}" for index in range(len(tiers)))
        + ") hits ORDER BY rank DESC, id LIMIT %(depth)s) h JOIN crates_document d ON d.id = h.document_id"
        " ORDER BY h.rank DESC, h.id"
    )
    # Each tier takes its first `cap` matches in the order its scan yields them, so a plan other than the one
    # made for the values could pick other candidates. Over many releases (a plain hashed filter) the scans
    # can only be the GIN bitmap ones; over a few, a generic plan might read the release index instead.
    plan = "" if len(scope.releases) > FILTER_ONLY_RELEASES and not scope.kinds else "custom"
    return Statement(
        sql=sql, params=params, rank=_group, extra={"guessed": guessed} if guessed else {}, plan=plan
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def path_statement(*, scope: Scope, probe: PathProbe, depth: int) -> Statement:
    """Documents whose path, alias tail, prefix or name matches ``probe``; ranked by ``path_ranking``."""
    params: dict = {"releases": scope.release_array, "tail": probe.lowered, "depth": depth}
    kind_filter = _kind_clause(scope, "d.kind", params)
    if probe.root:
        params["root"] = _like_escape(probe.root) + "::%"
        kind_filter += " AND lower(d.path) LIKE %(root)s"
    select = f"SELECT d.id, d.path, d.name, d.kind, d.metadata -> 'aliases', {DOC_COLUMNS} FROM crates_document d"
    where = " WHERE " + _in_releases("d", releases=len(scope.releases)) + kind_filter
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
    # Each part keeps its own limit. The order of rows does not matter: path_ranking sorts them by match tier.
    # Always a custom plan: a generic one is blind to the release array and the pattern, and far slower.
    return Statement(sql=" UNION ALL ".join(f"({q})" for q in queries), params=params, rank=_unranked, plan="custom")


def _unranked(rows: list[tuple]) -> list[Ranked]:
    raise TypeError("path rows are ranked across probes by path_ranking")


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


def path_ranking(*, matches: list[tuple[int, PathProbe, list[tuple]]], depth: int) -> list[Ranked]:
    """Rank the rows of every probe's ``path_statement``: (probe index, the probe that ran, its rows)."""
    scored: dict[int, tuple[tuple, Ranked]] = {}
    for probe_index, probe, rows in matches:
        for row in rows:
            doc_id, path, _name, kind, aliases = row[:5]
            if not probe.whole_query and kind == "module" and "::" not in path:
                continue  # a crate named in a sentence ("... a serde_json Value") is context, not the answer
            tier, case_match = _tier(probe=probe, path=path, aliases=aliases)
            if probe.macro and kind != "macro":
                tier += 2  # `anyhow!` asks for the macro, not the crate root of the same name
            key = (
                tier, not probe.whole_query, probe_index, not case_match, _KIND_ORDER.get(kind, 5),
                path.count("::"), len(path), path,
            )  # fmt: skip
            if doc_id not in scored or key < scored[doc_id][0]:
                ranked = Ranked(
                    document_id=doc_id, chunk_id=None, weight=path_weight(tier=tier, whole_query=probe.whole_query),
                    detail=f"tier{tier}", doc=_doc(row),
                )
                scored[doc_id] = (key, ranked)
    return [ranked for _key, ranked in sorted(scored.values(), key=lambda pair: pair[0])][:depth]


# Fusion weight of a path match by how good a match it is: the query *being* a path
# must put that item first; a tail is strong evidence; prefix/substring are hints.
_PATH_WEIGHTS = {0: 4.0, 1: 3.0, 2: 0.6, 3: 0.3, 4: 0.2}


def path_weight(*, tier: int, whole_query: bool) -> float:
    weight = _PATH_WEIGHTS.get(tier, 0.3)
    return weight if whole_query else weight * 0.35
