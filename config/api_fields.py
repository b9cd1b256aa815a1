"""The rules the API's validators enforce, stated in its OpenAPI schema (pattern, lengths): a generated client
must not send what the server refuses, nor be told it may not send what it accepts.

The validators (crates.names, crates.fronts) stay the source of the error messages; these fields only
describe them. tests/test_api_contract.py checks each description against the server's answers.
"""

from __future__ import annotations

import re
from typing import Any

from ninja import Field

from crates.names import CRATE_NAME_PATTERN, EXACT_VERSION_PATTERN, MAX_VERSION_LENGTH, VERSION_PATTERN

MAX_NAME_INPUT = 200  # longer input is refused unread (crates.fronts.MAX_NAME_INPUT)
MAX_ITEM_PATH_LENGTH = 1000

# Something besides whitespace, and no NUL.
QUERY_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
# A Rust path: no '/', '\\', NUL or '..', something besides whitespace (written without look-arounds); no
# newline either, which the URL's path converter does not match.
_PATH_CHAR = r"[^./\\\x00\n]"
ITEM_PATH_PATTERN = (
    rf"^[^\S\n]*(?:\.(?:{_PATH_CHAR}(?:\.?{_PATH_CHAR})*\.?)?|[^./\\\x00\s](?:\.?{_PATH_CHAR})*\.?)$"
)


def kind_pattern(words: set[str]) -> str:
    """Comma-separated kinds in any case, '_' also written ' ', empty entries ignored (crates.fronts)."""

    def spelled(word: str) -> str:
        return "".join(
            "[_ ]" if c == "_" else f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word
        )

    one = "(?:" + "|".join(spelled(w) for w in sorted(words, key=lambda w: (-len(w), w))) + ")"
    entry = rf"\s*(?:{one}\s*)?"
    return rf"^{entry}(?:,{entry})*$"


# An empty filter (?crate=) means no filter.
CRATE_FILTER_PATTERN = CRATE_NAME_PATTERN.replace("^", "^(?:|", 1)[:-1] + ")$"


def crate_name(default: Any = ..., **extra: Any) -> Any:
    """A crate name; with a default (an optional filter), also empty for "any crate"."""
    pattern = CRATE_NAME_PATTERN if default is ... else CRATE_FILTER_PATTERN
    return Field(default, max_length=MAX_NAME_INPUT, json_schema_extra={"pattern": pattern}, **extra)


def version(default: Any = None, *, exact: bool = False, **extra: Any) -> Any:
    """``latest``, nothing or an exact SemVer version; ``exact``: a SemVer version only (removals)."""
    pattern = EXACT_VERSION_PATTERN if exact else VERSION_PATTERN
    return Field(default, max_length=MAX_VERSION_LENGTH, json_schema_extra={"pattern": pattern}, **extra)
