"""Parallel twins: one API documented twice in sibling modules (``once_cell::sync::OnceCell::get_or_init`` and
``once_cell::unsync::OnceCell::get_or_init``; ``regex::Regex`` and ``regex::bytes::Regex``). On a page of
five they take two places with one answer, so a search shows the better-ranked one naming its twin."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

# How alike two twins' docs must be (difflib ratio over the start of their snippet text): the sync and
# unsync cells differ by a word or two, a str and a bytes API by their examples.
TWIN_SIMILARITY = 0.75
_COMPARED_CHARS = 400


def _module(segment: str) -> bool:
    return segment.islower() or segment.isdigit()


def sibling_paths(first: str, second: str) -> bool:
    """Same crate and name, and the paths differ by one module segment, changed (``sync``/``unsync``) or
    added (``Regex``/``bytes::Regex``). Types differing (``TcpStream::take_error``/``UdpSocket::take_error``)
    are different items, not twins."""
    a, b = first.split("::"), second.split("::")
    if a == b or a[0] != b[0] or a[-1] != b[-1] or len(a) < 2 or len(b) < 2:
        return False
    if len(a) == len(b):
        differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(differ) == 1 and _module(a[differ[0]]) and _module(b[differ[0]])
    shorter, longer = sorted((a, b), key=len)
    if len(longer) - len(shorter) != 1:
        return False
    return any(longer[:i] + longer[i + 1 :] == shorter and _module(longer[i]) for i in range(1, len(longer) - 1))


def _alike(first: str, second: str) -> bool:
    a, b = " ".join(first.split())[:_COMPARED_CHARS], " ".join(second.split())[:_COMPARED_CHARS]
    if not a or not b:
        return a == b
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return all(ratio() >= TWIN_SIMILARITY for ratio in (matcher.real_quick_ratio, matcher.quick_ratio, matcher.ratio))


def group_twins(
    ids: Sequence[int], *, key: Callable[[int], tuple[int, str, str] | None], text: Callable[[int], str]
) -> tuple[list[int], dict[int, list[str]]]:
    """(the ids without twins of a better-ranked id, twin paths by the id kept). ``ids`` best first;
    ``key(id)``: (release id, kind, path) or None; ``text(id)``: the docs compared."""
    kept: list[int] = []
    twins: dict[int, list[str]] = {}
    by_name: dict[tuple[int, str, str], list[int]] = {}
    for doc_id in ids:
        found = key(doc_id)
        if found is None:
            kept.append(doc_id)
            continue
        release, kind, path = found
        group = by_name.setdefault((release, kind, path.rsplit("::", 1)[-1]), [])
        twin_of = next(
            (k for k in group if sibling_paths(key(k)[2], path) and _alike(text(k), text(doc_id))), None
        )
        if twin_of is None:
            group.append(doc_id)
            kept.append(doc_id)
        else:
            twins.setdefault(twin_of, []).append(path)
    return kept, twins
