"""Hybrid search: run the signals, fuse them, build the hits."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from psycopg import errors as psycopg_errors

from crates.errors import InvalidInput
from crates.names import optional_version, validate_crate_name
from crates.search.embedding import embed_query
from crates.search.query import (
    ParsedQuery,
    name_words,
    parse_query,
    query_stems,
    stem,
    verb_intent,
)
from crates.search.scope import STAMP_SQL, Scope, forget_catalog, id_array, search_scope
from crates.search.signals import (
    DocRow,
    Ranked,
    Statement,
    guessed_stems_hold,
    keyword_statement,
    learn_stems,
    path_ranking,
    path_statement,
    stems_statement,
    vector_statement,
)
from crates.search.snippets import SNIPPET_CHARS
from crates.search.snippets import snippet as readable_snippet
from crates.search.twins import group_twins
from crates.search.types import parse_type_query, type_ranking, type_statements
from crates.textsearch import clean_query

logger = logging.getLogger(__name__)

SIGNALS = ("vector", "keyword", "path", "type")
MAX_LIMIT = 100
# Weighted reciprocal rank fusion. k was tuned on bench/queries (bench/search_quality.py):
# a small k lets a signal's first hits count -- the classic k=60 scored MRR@10 0.72 against
# 0.81 at k=5 on that set. Vector and keyword weigh the same; path weights come per match
# tier (signals.path_weight).
RRF_K = 5
# A type match is exact evidence: it outweighs the text signals, which see the query's type names as words.
SIGNAL_WEIGHTS = {"vector": 1.0, "keyword": 1.0, "path": 1.0, "type": 3.0}
# Kind damping of the vector and keyword contributions: module pages are overviews that
# mention everything, and associated types, fields and variants have one-line docs that
# repeat their parent's words; when one ties with a function, type or method, the latter is
# the better answer. A path match is never damped (asking for `tokio::sync` gets the module).
KIND_DAMPING = {"module": 0.6, "assoc_type": 0.6, "assoc_const": 0.6, "field": 0.7, "variant": 0.7}
# Each further item with the same parent counts this much less, so one type's twenty
# `write_*` methods do not push every other answer off the page.
SIBLING_DAMPING = 0.8
# An item named for the operation a query asks for (parse, insert, open...) against one named for its
# inverse (format, remove, close): tuned on the tuning half of bench/queries (bench/search_quality.py --split).
VERB_WANTED_BOOST = 1.0
VERB_INVERSE_DAMPING = 0.5
# How much an item gains when the query says every word of its name (a share of them: a share of this).
NAME_WORD_BOOST = 0.3
# A variant (timeout_at) against its base item (timeout) among the hits; the parent type or the crate the
# query names.
VARIANT_DAMPING = 0.6
PARENT_NAMED_BOOST = 1.2
CRATE_NAMED_BOOST = 1.2
# Hits looked at past the limit, to fill the places of twins folded into better hits.
TWIN_LOOKAHEAD = 5


@dataclass(slots=True)
class SearchHit:
    crate: str
    version: str
    path: str
    kind: str
    signature: str
    snippet: str
    url: str
    score: float
    signals: list[str] = field(default_factory=list)
    gate: dict | None = None  # the feature/platform gate (crates.gates), filled by the selector
    # "312/807 chunks": the crate is still being embedded, so vector ranking covers only that share of it.
    semantic: str | None = None
    # Paths of parallel twins folded into this hit: the same name and docs in a sibling module.
    twins: list[str] = field(default_factory=list)
    type_match: str = ""  # how a type query matched: "Duration → Sleep"


@dataclass(slots=True)
class _Fused:
    document_id: int
    score: float = 0.0
    signals: list[str] = field(default_factory=list)
    chunk_id: int | None = None
    type_match: str = ""


def fuse(
    rankings: dict[str, list[Ranked]], *, info: dict[int, tuple[str, str]] | None = None, k: int = RRF_K
) -> list[_Fused]:
    """Weighted reciprocal rank fusion over documents; keeps the best matching chunk of each.

    ``info``: (kind, parent path) by document id, for kind and sibling damping.
    """
    fused: dict[int, _Fused] = {}
    info = info or {}
    # Keyword chunks contain the query words, so they make the best snippet; then vector.
    no_info = ("", "")
    for name in ("keyword", "vector", "path", "type"):
        weight, damped = SIGNAL_WEIGHTS[name], name not in ("path", "type")
        for rank, ranked in enumerate(rankings.get(name, ()), start=1):
            document_id = ranked.document_id
            entry = fused.get(document_id)
            if entry is None:
                entry = fused[document_id] = _Fused(document_id)
            damping = KIND_DAMPING.get(info.get(document_id, no_info)[0], 1.0) if damped else 1.0
            entry.score += damping * weight * ranked.weight / (k + rank)
            entry.signals.append(name)
            entry.type_match = entry.type_match or (ranked.detail if name == "type" else "")
            if entry.chunk_id is None:
                entry.chunk_id = ranked.chunk_id
    ordered = sorted(fused.values(), key=lambda f: (-f.score, f.document_id))
    seen: dict[str, int] = {}
    for entry in ordered:
        parent = info.get(entry.document_id, ("", ""))[1]
        if parent:
            entry.score *= SIBLING_DAMPING ** seen.get(parent, 0)
            seen[parent] = seen.get(parent, 0) + 1
    return sorted(ordered, key=lambda f: (-f.score, f.document_id))


def weigh_names(
    fused: list[_Fused],
    *,
    documents: dict[int, DocRow],
    text: str,
    crates: dict[int, str] | None = None,
) -> list[_Fused]:
    """Re-weigh the fused hits by what the query says of their names.

    - the operation: items named for it count more, those named for its inverse (to_string for "parse ...") less;
    - the name's words: an item gains by the share of them the query says ("debug level": log::debug);
    - a variant (timeout_at, memrchr2, get_index_mut) counts less than its base item among the hits
      (timeout, memrchr, get_index) unless the query says what the variant adds;
    - the parent type the query names ("of an IndexMap": IndexMap's methods) and the crate whose name's
      words it says ("JSON": serde_json; ``crates``: crate name by release id) count more.
    """
    intent = verb_intent(text)
    words = query_stems(text)
    lowered = {w.lower() for w in re.findall(r"[A-Za-z0-9_]+", text)}
    known: dict[str, bool] = {}

    def said(word: str) -> bool:
        found = known.get(word)
        if found is None:
            found = known[word] = stem(word) in words or (len(word) >= 4 and any(q.startswith(word) for q in words))
        return found

    siblings: dict[tuple[int, str], set[str]] = {}
    for entry in fused:
        doc = documents.get(entry.document_id)
        if doc is not None:
            siblings.setdefault((doc.release_id, doc.parent_path), set()).add(doc.path.rsplit("::", 1)[-1])
    crate_said: dict[int, bool] = {}
    for entry in fused:
        doc = documents.get(entry.document_id)
        if doc is None:
            continue
        name = doc.path.rsplit("::", 1)[-1]
        named = name_words(doc.path)
        if intent:
            if named & intent.wanted:
                entry.score *= VERB_WANTED_BOOST
            elif named & intent.inverse:
                entry.score *= VERB_INVERSE_DAMPING
        if named and words:
            entry.score *= 1 + NAME_WORD_BOOST * sum(1 for w in named if said(w)) / len(named)
        base = _base_name(name, siblings.get((doc.release_id, doc.parent_path), set()))
        if base and not any(said(w) for w in name_words(name[len(base) :].strip("_")) if not w.isdigit()):
            entry.score *= VARIANT_DAMPING
        parent = doc.parent_path.rsplit("::", 1)[-1]
        if parent[:1].isupper() and parent.lower() in lowered:
            entry.score *= PARENT_NAMED_BOOST
        if crates and doc.release_id not in crate_said:
            crate = crates.get(doc.release_id, "").lower()
            crate_said[doc.release_id] = any(len(w) >= 3 and said(w) for w in re.split(r"[_-]", crate))
        if crate_said.get(doc.release_id):
            entry.score *= CRATE_NAMED_BOOST
    return sorted(fused, key=lambda f: (-f.score, f.document_id))


def _base_name(name: str, names: set[str]) -> str:
    """The longest other name among ``names`` that ``name`` extends by a ``_word`` or a number."""
    found = ""
    for other in names:
        if len(found) < len(other) < len(name) and name.startswith(other) and name[len(other)] in "_0123456789":
            found = other
    return found


def _clean_limit(limit: object) -> int:
    try:
        value = int(limit)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}.") from exc
    return max(1, min(value, MAX_LIMIT))


def _clean_signals(signals: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if not signals:
        return SIGNALS
    wanted = tuple(dict.fromkeys(str(s).strip().lower() for s in signals))
    unknown = [s for s in wanted if s not in SIGNALS]
    if unknown:
        raise InvalidInput(f"Unknown search signal(s) {unknown}; use any of {', '.join(SIGNALS)}.")
    return wanted


def _vector_releases(scope: Scope, model_name: str) -> list[int]:
    # Distances between vectors of different models mean nothing; releases built
    # before the model was recorded ("") are trusted.
    return [r.id for r in scope.releases if r.embedding_model in ("", model_name)]


class _StampMoved(Exception):
    """The catalog changed after the scope was read from this process's cache."""


def _statements(
    *, parsed: ParsedQuery, scope: Scope, depth: int, signals: tuple[str, ...]
) -> dict[str, Statement]:
    statements: dict[str, Statement] = {}
    if "path" in signals:
        for index, probe in enumerate(parsed.probes):
            statements[f"path{index}"] = path_statement(scope=scope, probe=probe, depth=depth)
    if "keyword" in signals:
        keyword = keyword_statement(scope=scope, text=parsed.text, depth=depth * 2, guess=True)
        if keyword is not None:
            statements["keyword"] = keyword
            if keyword.extra.get("guessed"):
                statements["stems"] = stems_statement(keyword.extra["guessed"])
    if "vector" in signals:
        embedded = embed_query(parsed.embed_text)
        if embedded is not None:
            model_name, vector = embedded
            vector = vector_statement(
                scope=scope, vector=vector, depth=depth, release_ids=_vector_releases(scope, model_name)
            )
            if vector is not None:
                statements["vector"] = vector
    return statements


# Prepared statement names this process created, by (raw) connection; None: not known after an error.
_prepared: weakref.WeakKeyDictionary[object, set[str] | None] = weakref.WeakKeyDictionary()
_PARAM = re.compile(r"%\((\w+)\)s")
# Transaction-local, so an error mid-batch cannot leave the session on generic plans.
_FORCE_PLAN = {
    "generic": "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)",
    "custom": "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)",
}
_AUTO_PLAN = "SELECT set_config('plan_cache_mode', 'auto', true)"


@functools.lru_cache(maxsize=256)
def _preparable(sql: str) -> tuple[str, str, tuple[str, ...]]:
    """(statement name, the SQL with $n placeholders, the parameter names in $n order)."""
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    positional = _PARAM.sub(number, sql)
    return "ferrodex_" + hashlib.blake2b(sql.encode(), digest_size=12).hexdigest(), positional, tuple(names)


def _known_prepared(cursor: CursorWrapper) -> set[str]:
    """This connection's PREPAREd statements; read from the session when not known (one query per connection)."""
    raw = connection.connection
    known = _prepared.get(raw)
    if known is None:  # first use of this connection, or an error may have left statements half-known
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'ferrodex\\_%%'")
        known = _prepared[raw] = {row[0] for row in cursor.fetchall()}
    return known


def run_statements(statements: dict[str, Statement], *, stamp: int | None = None) -> dict[str, list[tuple]]:
    """Rows of every statement, sent as one round trip (the simple protocol runs them in one transaction).

    Statements marked ``prepare`` run as EXECUTE of a statement this connection PREPAREd on first
    use (in the same batch): PostgreSQL parses the long signal SQL once, and may settle on a
    generic plan (or must, or must not: ``Statement.plan``), instead of parsing and planning it on
    every search. Each statement is labelled with its name in a comment (``/* keyword */``), for logs
    and tests. A session's prepared statements can vanish (psycopg deallocates them all at a rollback
    once it prepared one of its own; a pooler's DISCARD ALL): a batch that met one is sent again,
    inside a caller's transaction from a savepoint, so the failure does not abort that transaction.
    ``stamp``: the catalog stamp the statements' scope was read under; _StampMoved if it moved.
    """
    names = list(statements)
    with connection.cursor() as cursor:
        for attempt in (1, 2):
            known = _known_prepared(cursor)
            sql, params, skip, new = _batch(statements, names=names, stamp=stamp, known=known)
            # A savepoint only inside a transaction: in autocommit the failed batch ended its own.
            guard = transaction.atomic() if attempt == 1 and connection.in_atomic_block else nullcontext()
            try:
                with guard:
                    cursor.execute(sql, params)
            except Exception as exc:
                _prepared[connection.connection] = None  # which PREPAREs ran is unknown now
                if attempt == 1 and isinstance(exc.__cause__, psycopg_errors.InvalidSqlStatementName):
                    continue
                raise
            break
        known.update(new)
        results: list[list[tuple]] = []
        raw_cursor = cursor.cursor  # past Django's per-call wrappers: the rows are in memory already
        for ignored in skip:
            if not ignored:
                results.append(raw_cursor.fetchall())
            raw_cursor.nextset()
    if stamp is not None:
        current = results.pop(0)
        if not current or current[0][0] != stamp:
            raise _StampMoved
    return dict(zip(names, results, strict=True))


def _batch(
    statements: dict[str, Statement], *, names: list[str], stamp: int | None, known: set[str]
) -> tuple[str, dict, list[int], list[str]]:
    """(SQL, parameters, per result set 1 = not a signal's rows, statements it PREPAREs) of one batch."""
    parts: list[str] = []
    params: dict = {}
    skip: list[int] = []
    new: list[str] = []

    def add(sql: str, values: dict, *, prepared: bool, prefix: str, label: str) -> None:
        if not prepared:
            parts.append(_PARAM.sub(lambda m: f"%({prefix}{m.group(1)})s", sql) + f" /* {label} */")
            params.update({prefix + key: value for key, value in values.items()})
            return
        name, positional, order = _preparable(sql)
        if name not in known and name not in new:  # two path probes can share their SQL
            parts.append(f"PREPARE {name} AS {positional}")
            skip.append(1)
            new.append(name)
        arguments = f"({', '.join(f'%({prefix}{p})s' for p in order)})" if order else ""
        parts.append(f"EXECUTE {name}{arguments} /* {label} */")
        params.update({prefix + p: values[p] for p in order})

    if stamp is not None:
        add(STAMP_SQL, {}, prepared=True, prefix="", label="stamp")
        skip.append(0)
    for index, name in enumerate(names):
        statement = statements[name]
        before = [statement.before] if statement.before else []
        after = [statement.after] if statement.after else []
        if statement.plan and statement.prepare:
            before.append(_FORCE_PLAN[statement.plan])
            after.append(_AUTO_PLAN)
        for sql in before:
            parts.append(sql)
            skip.append(1)
        add(statement.sql, statement.params, prepared=statement.prepare, prefix=f"s{index}_", label=name)
        skip.append(0)
        for sql in after:
            parts.append(sql)
            skip.append(1)
    return "; ".join(parts), params, skip, new


def _rank(
    *, parsed: ParsedQuery, scope: Scope, statements: dict[str, Statement], rows: dict[str, list[tuple]], depth: int
) -> dict[str, list[Ranked]]:
    if "stems" in rows:
        learn_stems(rows["stems"])
        if not guessed_stems_hold(statements["keyword"].extra["guessed"]):
            keyword = keyword_statement(scope=scope, text=parsed.text, depth=depth * 2)
            statements["keyword"] = keyword
            rows["keyword"] = run_statements({"keyword": keyword})["keyword"]
    rankings = {name: statements[name].rank(rows[name]) for name in ("keyword", "vector") if name in rows}
    path_names = [name for name in statements if name.startswith("path")]
    if path_names:
        matches = [(i, parsed.probes[i], rows[name]) for i, name in enumerate(path_names)]
        # A probe that found nothing may be a crate-qualified path ("tokio::Mutex"): one more round trip.
        fallbacks = {i: probe.fallback() for i, probe, found in matches if not found}
        fallbacks = {i: probe for i, probe in fallbacks.items() if probe is not None}
        if fallbacks:
            extra = run_statements(
                {f"path{i}": path_statement(scope=scope, probe=probe, depth=depth) for i, probe in fallbacks.items()}
            )
            matches = [(i, fallbacks[i], extra[f"path{i}"]) if i in fallbacks else (i, p, r) for i, p, r in matches]
        rankings["path"] = path_ranking(matches=matches, depth=depth)
    return rankings


def rankings_for(*, query: str, scope: Scope, depth: int, signals: tuple[str, ...]) -> dict[str, list[Ranked]]:
    """Every wanted signal's ranking, from one round trip (two when a path probe needs its fallback)."""
    typed = parse_type_query(clean_query(query)) if "type" in signals else None
    parsed = parse_query(typed.words if typed is not None else query)
    if typed is not None and typed.arrow:  # `-> LevelFilter` asks for what returns one, not for the type
        signals = tuple(s for s in signals if s != "path")
    if (parsed.empty and typed is None) or not scope.releases:
        if scope.stamp is not None:
            run_statements({}, stamp=scope.stamp)  # an empty cached catalog may be stale
        return {}
    statements = _statements(parsed=parsed, scope=scope, depth=depth, signals=signals) if not parsed.empty else {}
    if typed is not None:
        statements.update(type_statements(scope=scope, query=typed))
    if not statements:
        return {}
    rows = run_statements(statements, stamp=scope.stamp)
    rankings = _rank(parsed=parsed, scope=scope, statements=statements, rows=rows, depth=depth)
    if "type" in rows:
        rankings["type"] = type_ranking(query=typed, rows=rows["type"], impl_rows=rows["type_impls"], depth=depth)
    return rankings


def _snippet(text: str, *, path: str, signature: str) -> str:
    return readable_snippet(text, path=path, signature=signature, limit=SNIPPET_CHARS)


def _snippet_texts(fused: list[_Fused]) -> dict[int, str]:
    """document id -> the text its snippet comes from: the matched chunk, else the first chunk, else the docs."""
    if not fused:
        return {}
    chunk_ids = [f.chunk_id for f in fused if f.chunk_id is not None]
    missing = [f.document_id for f in fused if f.chunk_id is None]
    sql = "SELECT document_id, text FROM crates_chunk WHERE id = ANY(%(chunks)s::bigint[])"
    params = {"chunks": id_array(chunk_ids)}
    if missing:  # path-only hits: their first chunk, else their docs
        sql += (
            " UNION ALL (SELECT DISTINCT ON (document_id) document_id, text FROM crates_chunk"
            "  WHERE document_id = ANY(%(missing)s::bigint[]) ORDER BY document_id, ordinal)"
            " UNION ALL SELECT id, docs FROM crates_document d WHERE id = ANY(%(missing)s::bigint[])"
            "  AND NOT EXISTS (SELECT 1 FROM crates_chunk c WHERE c.document_id = d.id)"
        )
        params["missing"] = id_array(missing)
    statement = Statement(sql=sql, params=params, rank=_no_ranking)
    return dict(run_statements({"snippets": statement})["snippets"])


def _no_ranking(rows: list[tuple]) -> list[Ranked]:
    raise TypeError("snippet rows are not a ranking")


def _hits(fused: list[_Fused], scope: Scope, documents: dict[int, DocRow], *, limit: int) -> list[SearchHit]:
    """The first ``limit`` hits, each parallel twin folded into the better-ranked one (crates.search.twins)."""
    releases = scope.by_id()
    texts = _snippet_texts(fused)
    fused = [entry for entry in fused if entry.document_id in documents]  # else removed since the ranking
    snippets = {
        entry.document_id: _snippet(
            texts.get(entry.document_id) or "",
            path=documents[entry.document_id].path,
            signature=documents[entry.document_id].signature,
        )
        for entry in fused
    }

    def key(document_id: int) -> tuple[int, str, str]:
        doc = documents[document_id]
        return doc.release_id, doc.kind, doc.path

    kept, twins = group_twins([f.document_id for f in fused], key=key, text=snippets.__getitem__)
    by_id = {entry.document_id: entry for entry in fused}
    hits = []
    for document_id in kept[:limit]:
        entry, doc = by_id[document_id], documents[document_id]
        release = releases[doc.release_id]
        hits.append(
            SearchHit(
                crate=release.crate_name,
                version=release.version,
                path=doc.path,
                kind=doc.kind,
                signature=doc.signature,
                snippet=snippets[document_id],
                url=doc.url,
                score=round(entry.score, 6),
                signals=sorted(set(entry.signals), key=SIGNALS.index),
                semantic=release.semantic_note,
                twins=twins.get(document_id, []),
                type_match=entry.type_match,
            )
        )
    return hits


def search(
    *,
    query: object,
    crate: str | None = None,
    version: str | None = None,
    kinds: list[str] | None = None,
    limit: int = 10,
    signals: tuple[str, ...] = SIGNALS,
    project: str | None = None,
) -> list[SearchHit]:
    crate = validate_crate_name(crate, field="crate") if crate else None
    version = optional_version(version)
    limit = _clean_limit(limit)
    wanted = _clean_signals(signals)
    depth = max(limit * 3, 30)
    text = query if isinstance(query, str) else ""
    try:
        scope = search_scope(crate=crate, version=version, kinds=kinds, trust_cache=True, project=project)
        rankings = rankings_for(query=text, scope=scope, depth=depth, signals=wanted)
    except _StampMoved:
        forget_catalog()
        scope = search_scope(crate=crate, version=version, kinds=kinds, project=project)
        rankings = rankings_for(query=text, scope=replace(scope, stamp=None), depth=depth, signals=wanted)
    documents = {r.document_id: r.doc for ranking in rankings.values() for r in ranking if r.doc is not None}
    info = {pk: (doc.kind, doc.parent_path) for pk, doc in documents.items()}
    crates = {r.id: r.crate_name for r in scope.releases}
    fused = fuse(rankings, info=info)
    # Only the head can reach the page: the name weights multiply a score by at most ~2.
    fused = weigh_names(fused[:depth], documents=documents, text=clean_query(text), crates=crates)
    # A few more than asked: a twin folded into a better hit leaves its place to the next answer.
    fused = fused[: limit + min(limit, TWIN_LOOKAHEAD)]
    return _hits(fused, scope, documents, limit=limit)
