"""Identifier-aware text for PostgreSQL full-text search.

rustdoc text is full of identifiers (``HashMap::with_capacity``). The
``english`` parser splits ``with_capacity`` at the underscore but keeps
``HashMap`` whole, so a query for ``hash map`` or ``withcapacity`` would miss.
We add the missing forms ourselves, on both sides:

* the stored side (:func:`search_text_for`, filled into ``Chunk.search_text``)
  appends CamelCase parts (``hash``, ``map``) and the joined form of
  snake_case (``withcapacity``), once per chunk;
* the query side (:func:`tsquery_for`) expands the query the same way and
  also joins adjacent words (``hash map`` -> ``hashmap``), then builds a
  tsquery string out of plain ``[a-z0-9]`` words only, so raw user text never
  reaches ``to_tsquery`` syntax.

A query for ``with capacity``, ``with_capacity``, ``HashMap`` or ``hashmap``
thus meets the lexemes of a chunk that mentions ``HashMap::with_capacity``.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_WORD_RE = re.compile(r"[A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)*")
# Longest query text we look at; the rest cannot change the ranking much and costs time.
MAX_QUERY_CHARS = 1000
MAX_QUERY_WORDS = 48
# Joining two stop words ("howdo") only adds noise lexemes.
_STOP_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "get",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "the",
        "this",
        "to",
        "use",
        "using",
        "what",
        "when",
        "where",
        "which",
        "with",
        "without",
        "you",
    }
)


def _words(segment: str) -> list[str]:
    return [w.lower() for part in segment.split("_") for w in _CAMEL_RE.findall(part)]


def identifier_parts(identifier: str) -> list[str]:
    """``HashMap::with_capacity`` -> hashmap, hash, map, with_capacity, withcapacity, with, capacity."""
    out: list[str] = []
    for segment in identifier.split("::"):
        if not segment:
            continue
        lowered = segment.lower()
        out.append(lowered)
        words = _words(segment)
        if len(words) > 1:
            out.append("".join(words))
            out.extend(words)
    return out


def _is_compound(token: str) -> bool:
    return "_" in token or "::" in token or any(c.isupper() for c in token[1:])


def _extra_forms(identifier: str) -> list[str]:
    """The forms the english parser does not produce by itself for ``identifier``."""
    out: list[str] = []
    for segment in identifier.split("::"):
        words = _words(segment)
        if len(words) <= 1:
            continue
        out.append("".join(words))  # with_capacity -> withcapacity, HashMap -> hashmap
        if any(c.isupper() for c in segment[1:]):
            out.extend(words)  # the parser keeps HashMap whole: add hash, map
    return out


def search_text_for(text: str) -> str:
    """The text stored in ``Chunk.search_text``: the original plus identifier expansions.

    Expansions are added once per chunk, so they make an item findable without
    inflating its term frequencies.
    """
    seen: dict[str, None] = {}
    forms_of = _forms_cache
    for token in _IDENT_RE.findall(text):
        forms = forms_of.get(token)
        if forms is None:
            forms = _token_forms(token)
        for form in forms:
            seen.setdefault(form, None)
    return text if not seen else f"{text}\n{' '.join(seen)}"


# Identifiers repeat a lot across a crate's chunks: their extra forms are computed once per process.
_forms_cache: dict[str, tuple[str, ...]] = {}
_MAX_CACHED_TOKENS = 200_000


def _token_forms(token: str) -> tuple[str, ...]:
    forms = tuple(_extra_forms(token)) if _is_compound(token) else ()
    if len(_forms_cache) >= _MAX_CACHED_TOKENS:
        _forms_cache.clear()
    _forms_cache[token] = forms
    return forms


def clean_query(query: object) -> str:
    """User text made safe to handle: a string, no NULs or control characters, bounded length."""
    if not isinstance(query, str):
        query = "" if query is None else str(query)
    query = query.replace("\x00", " ")
    query = "".join(ch if ch.isprintable() or ch in "\t\n" else " " for ch in query[: MAX_QUERY_CHARS * 4])
    return " ".join(query.split())[:MAX_QUERY_CHARS]


def _safe(word: str) -> bool:
    return word.isascii() and word.isalnum() and len(word) <= 64


def _token_groups(query: str) -> list[list[str]]:
    # One search tokenizes its query for four tsqueries and the stems: remember the last few.
    return [list(group) for group in _cached_token_groups(query)]


# A letter-digit identifier (base64, sha256, utf8, i64, IPv6): its letters and its number, whatever the case.
_LETTERS_DIGITS_RE = re.compile(r"^([A-Za-z]+)(\d+)$")


def _query_words(segment: str) -> list[str]:
    """``_words`` for the query side, where ``IPv6`` is ipv + 6 (as ``ipv6``, ``Ipv6Addr`` are), not i + pv + 6."""
    match = _LETTERS_DIGITS_RE.match(segment)
    if match and "_" not in segment:
        return [match.group(1).lower(), match.group(2)]
    return [w for w in _words(segment) if w]


@functools.lru_cache(maxsize=256)
def _cached_token_groups(query: str) -> tuple[tuple[str, ...], ...]:
    groups: list[tuple[str, ...]] = []
    tokens = _WORD_RE.findall(clean_query(query))[:MAX_QUERY_WORDS]
    for token in tokens:
        for segment in token.split("::"):
            words = _query_words(segment)
            if not words:
                continue
            previous = groups[-1] if groups else ()
            if words[0].isdigit() and len(words) == 1 and len(previous) == 1 and previous[0].isalpha():
                # "SHA-256", "UTF-8", "base 64": one identifier written apart (sha256 | (sha & 256)).
                groups[-1] = (previous[0] + words[0], previous[0], words[0])
                continue
            alternatives = ["".join(words), *words] if len(words) > 1 else words
            groups.append(tuple(dict.fromkeys(alternatives)))
    return tuple(groups)


def query_word_groups(query: str) -> list[list[str]]:
    """One group of alternative ``[a-z0-9]`` words per query token (an identifier or a word).

    ``HashMap::with_capacity`` -> [[hashmap, hash, map], [withcapacity, with, capacity]];
    two adjacent plain words also get their joined form (``hash map`` -> ``hashmap``).
    """
    groups = _token_groups(query)
    joined: list[list[str]] = []
    for first, second in itertools.pairwise(groups):
        if len(first) == 1 and len(second) == 1 and not ({first[0], second[0]} & _STOP_WORDS):
            joined.append([first[0] + second[0]])
    return groups + joined


def tsquery_for(query: str, *, skip: Callable[[str], bool] | None = None) -> str:
    """A ``to_tsquery('english', ...)`` string that ORs every query word and expansion.

    Only ``[a-z0-9]`` words, ``|`` and spaces are in it, so it can never be a
    tsquery syntax error whatever the user typed. Empty when the query has no words.
    ``skip(word)`` leaves words out (search drops words too common to select anything).
    """
    words: dict[str, None] = {}
    for group in query_word_groups(query):
        for word in group:
            if _safe(word) and not (skip and skip(word)):
                words.setdefault(word, None)
    return " | ".join(words)


def _group_term(group: tuple[str, ...] | list[str], skip: Callable[[str], bool] | None) -> str:
    """One query token as a tsquery term that a precise match must satisfy.

    A compound token's group is [joined, *parts] (``HashMap`` -> hashmap, hash, map): a chunk
    matches it with the joined spelling or with every part (``hashmap | (hash & map)``), not with
    one part alone -- a chunk that only says "map" is a loose match, left to the any-word tier.
    """
    words = [w for w in group if _safe(w) and not (skip and skip(w))]
    if len(words) <= 1:
        return words[0] if words else ""
    joined, parts = group[0], list(group[1:])
    if joined not in words or len(parts) < 2:
        return "(" + " | ".join(words) + ")"
    kept = [w for w in parts if w in words]
    if not kept:
        return joined
    return f"({joined} | {kept[0]})" if len(kept) == 1 else f"({joined} | ({' & '.join(kept)}))"


def tsquery_all_for(query: str, *, skip: Callable[[str], bool] | None = None) -> str:
    """Like :func:`tsquery_for` but every query token must match (see :func:`_group_term`).

    ``HashMap::with_capacity`` -> ``(hashmap | (hash & map)) & (withcapacity | (with & capacity))``;
    stop words drop out inside ``to_tsquery``. A token whose spellings are all skipped is
    left out of the AND. Used to find the precise matches first.
    """
    terms: dict[str, None] = {}
    for group in _token_groups(query):
        term = _group_term(group, skip)
        if term:
            terms.setdefault(term, None)
    return " & ".join(terms)


# More query tokens than this and the pairs query would grow past usefulness (n·(n-1)/2 pairs).
MAX_PAIR_TOKENS = 8


def tsquery_pairs_for(query: str, *, skip: Callable[[str], bool] | None = None) -> str:
    """Chunks matching at least two query tokens: ``(a & b) | (a & c) | (b & c)``.

    For a sentence no chunk has every word, and "any word" is a third of a small corpus; the
    chunks that share two informative words are where the answer usually is. Empty with fewer
    than three usable tokens (then "all" already is "two").
    """
    terms: dict[str, None] = {}
    for group in _token_groups(query):
        term = _group_term(group, skip)
        if term:
            terms.setdefault(term, None)
    tokens = list(terms)[:MAX_PAIR_TOKENS]
    if len(tokens) < 3:
        return ""
    return " | ".join(f"({a} & {b})" for a, b in itertools.combinations(tokens, 2))
