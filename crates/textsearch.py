"""Identifier-aware text for PostgreSQL full-text search.

rustdoc text is full of identifiers (``HashMap::with_capacity``). The
``english`` parser would keep some whole and split others, so we add the
split and the joined forms ourselves: a query for ``with capacity``,
``with_capacity``, ``HashMap`` or ``hashmap`` then meets the same lexemes.
"""

from __future__ import annotations

import re

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def identifier_parts(identifier: str) -> list[str]:
    """``HashMap::with_capacity`` -> hashmap, hash, map, with_capacity, withcapacity, with, capacity."""
    out: list[str] = []
    for segment in identifier.split("::"):
        if not segment:
            continue
        lowered = segment.lower()
        out.append(lowered)
        words = [w.lower() for part in segment.split("_") for w in _CAMEL_RE.findall(part)]
        if len(words) > 1:
            out.append("".join(words))
            out.extend(words)
    return out


def search_text_for(text: str) -> str:
    """The text stored in ``Chunk.search_text``: the original plus identifier expansions."""
    extra: list[str] = []
    for match in _IDENT_RE.finditer(text):
        token = match.group(0)
        if "_" in token or "::" in token or any(c.isupper() for c in token[1:]):
            extra.extend(identifier_parts(token))
    return text if not extra else f"{text}\n{' '.join(extra)}"
