"""Reading rustdoc JSON nodes whatever their shape: tagged values, defensive access, and a tally of the shapes
not understood (so a newer format degrades to counted skips, never to an exception)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

Node = Any
# What the parse in progress could not render, counted: "type shape `x`" -> n (see ``collecting``).
_unknown: ContextVar[dict[str, int] | None] = ContextVar("rustdoc_unknown_shapes", default=None)


@contextlib.contextmanager
def collecting(counts: dict[str, int]) -> Iterator[dict[str, int]]:
    """Count the unknown shapes met while rendering inside the block into ``counts``."""
    token = _unknown.set(counts)
    try:
        yield counts
    finally:
        _unknown.reset(token)


def note_unknown(what: str, name: object) -> None:
    counts = _unknown.get()
    if counts is not None:
        key = f"{what} `{name or type(name).__name__}`"
        counts[key] = counts.get(key, 0) + 1


def as_object(value: Any) -> Mapping[str, Any]:
    """``value`` if it is an object, else an empty one: every read of a node tolerates another shape."""
    return value if isinstance(value, Mapping) else {}


def total(default: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A renderer that meets a shape it cannot read returns ``default`` and counts it, never raises."""

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except (AttributeError, TypeError, KeyError, IndexError, ValueError):
                note_unknown("unreadable shape in", function.__name__)
                return default() if callable(default) else default

        return guarded

    return wrap


def tag(node: Node) -> tuple[str, Any]:
    """Split an externally tagged serde enum: ``{"slice": T}`` -> ("slice", T); ``"infer"`` -> ("infer", None)."""
    if isinstance(node, str):
        return node, None
    if isinstance(node, dict) and len(node) == 1:
        key, value = next(iter(node.items()))
        return key, value
    return "", node
