"""Turning user text into what each signal needs. Pure functions: no database."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from crates.textsearch import clean_query, tsquery_all_for, tsquery_for

_SEGMENT = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH_RE = re.compile(rf"^(?:::)?{_SEGMENT}(?:(?:::|\.){_SEGMENT})*(?:::)?$")
_IDENT_WORD_RE = re.compile(rf"^{_SEGMENT}$")
_COMPOUND_RE = re.compile(rf"{_SEGMENT}(?:::{_SEGMENT})+|{_SEGMENT}")
# Text sent to the embedding model: its context is 256 tokens anyway.
MAX_EMBED_CHARS = 1000
MAX_PATH_PROBES = 3


@dataclass(frozen=True, slots=True)
class PathProbe:
    """One path-like string to look up: ``mutex::lock`` (lower case) and how it was typed."""

    lowered: str
    typed: str
    whole_query: bool  # the query IS this path (not a token inside a sentence)
    root: str = ""  # set on a fallback probe: the path must start with this crate segment
    macro: bool = False  # typed as a macro call (`anyhow!`): macros rank before other kinds

    def fallback(self) -> PathProbe | None:
        """``serde_json::Value::as_str`` -> ``value::as_str`` under ``serde_json``.

        Methods are documented under their type's canonical path only
        (``serde_json::value::Value::as_str``), so a path through a re-export of
        the type needs its middle segments dropped to be found.
        """
        lowered, typed = self.lowered.split("::"), self.typed.split("::")
        if self.root or len(lowered) < 3:
            return None
        return PathProbe(
            lowered="::".join(lowered[-2:]),
            typed="::".join(typed[-2:]),
            whole_query=self.whole_query,
            root=lowered[0],
            macro=self.macro,
        )


# Operations that come in inverse pairs: asking for one side must not rank its inverse first ("parse a
# JSON string" wants serde_json::from_str, not to_string). A side lists the words a question uses for it
# and the words of item names that do it; "from"/"to" count in names only, a question uses them as words.
_INFLECTIONS = ("", "s", "d", "r", "ed", "er", "es", "ing", "ion", "ation", "ers", "ors", "or")


def _side(*stems: str) -> frozenset[str]:
    words = {stem + ending for stem in stems for ending in _INFLECTIONS}
    words |= {stem[:-1] + ending for stem in stems if stem.endswith("e") for ending in ("ing", "ion", "ation")}
    return frozenset(words)


VERB_SIDES: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (_side("parse", "deserialize", "decode", "unmarshal", "read", "load"), _side("format", "serialize", "encode",
     "marshal", "write", "dump", "stringify")),
    (_side("insert", "push", "append"), _side("remove", "delete", "pop")),
    (_side("open", "connect", "lock", "acquire"), _side("close", "disconnect", "shutdown", "unlock", "release")),
    (_side("compress", "deflate"), _side("decompress", "inflate")),
    (_side("encrypt", "seal"), _side("decrypt", "unseal")),
    (_side("send"), _side("recv", "receive")),
)  # fmt: skip
# Name words that mark a side without being a question's verb: serde_json::from_str / to_string, serde::de / ser.
_NAME_ONLY = ({"from", "de"}, {"to", "ser"})


@dataclass(frozen=True, slots=True)
class VerbIntent:
    """The sides of VERB_SIDES a query asks for: ``wanted`` and ``inverse`` are name words."""

    wanted: frozenset[str] = frozenset()
    inverse: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.inverse)


def verb_intent(text: str) -> VerbIntent:
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
    wanted: set[str] = set()
    inverse: set[str] = set()
    for index, (first, second) in enumerate(VERB_SIDES):
        asks_first, asks_second = bool(words & first), bool(words & second)
        if asks_first == asks_second:  # neither, or both ("encode and decode")
            continue
        near, far = (first, second) if asks_first else (second, first)
        wanted |= near
        inverse |= far
        if index == 0:
            names = _NAME_ONLY if asks_first else _NAME_ONLY[::-1]
            wanted |= names[0]
            inverse |= names[1]
    return VerbIntent(frozenset(wanted), frozenset(inverse))


@functools.lru_cache(maxsize=65536)
def name_words(path: str) -> frozenset[str]:
    """The words of an item's name: ``from_str`` -> from, str; ``ZlibDecoder`` -> zlib, decoder."""
    name = path.rsplit("::", 1)[-1]
    return frozenset(w.lower() for part in name.split("_") for w in _NAME_WORD_RE.findall(part))


_STEM_ENDINGS = ("ing", "ies", "es", "ed", "s")


def stem(word: str) -> str:
    """A crude English stem for matching query words to name words (inserts/inserting -> insert)."""
    for ending in _STEM_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            return word[: -len(ending)] + ("y" if ending == "ies" else "")
    return word


def query_stems(text: str) -> frozenset[str]:
    """Stems of the query's words and of the parts of its identifiers (``get_u32`` -> get, u32)."""
    words = {w.lower() for token in re.findall(r"[A-Za-z0-9_]+", text) for w in _split_name(token)}
    return frozenset(stem(w) for w in words if len(w) > 1)


# Name words: CamelCase and snake_case parts, a number kept with its letters (get_u32 -> get, u32).
_NAME_WORD_RE = re.compile(r"[A-Z]+(?![a-z])\d*|[A-Z]?[a-z]+\d*|\d+")


def _split_name(name: str) -> list[str]:
    return [w for part in name.split("_") for w in _NAME_WORD_RE.findall(part)] + [name]


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    text: str
    tsquery: str  # any word
    tsquery_all: str  # every word
    probes: tuple[PathProbe, ...]
    verbs: VerbIntent = VerbIntent()

    @property
    def embed_text(self) -> str:
        return self.text[:MAX_EMBED_CHARS]

    @property
    def empty(self) -> bool:
        return not self.text


def _strip_call(token: str) -> str:
    """``Mutex::lock()`` / ``fn from_str`` / ``serde_json::from_str::<T>`` -> the bare path."""
    token = re.sub(r"(?:::)?<[^<>]*>", "", token)
    token = re.sub(r"\(.*\)$", "", token)
    token = re.sub(r"^(?:fn|struct|enum|trait|macro|mod|type|const|static|union|impl)\s+", "", token)
    return token.strip().rstrip("!").strip(":").strip()


def _is_compound(token: str) -> bool:
    """An identifier rather than a word: ``a::b``, ``snake_case``, ``CamelCase`` (not ``JSON``)."""
    camel = any(c.isupper() for c in token[1:]) and any(c.islower() for c in token)
    return "::" in token or "_" in token.strip("_") or camel


def path_probes(text: str) -> tuple[PathProbe, ...]:
    """Path-like strings in the query, whole query first.

    ``Mutex::lock`` and ``Mutex.lock()`` -> ``mutex::lock``; ``Mutex lock`` (2-3 identifier
    words) -> ``mutex::lock`` and ``lock``-less forms are left to the other signals;
    in a sentence, identifiers with ``::``, ``_`` or inner capitals are probed too.
    """
    probes: dict[str, PathProbe] = {}
    whole = _strip_call(text)
    head, sep, rest = whole.partition("::")
    if sep and "-" in head:
        # crates.io names may use '-' where the library path has '_' (serde-json::Value).
        whole = f"{head.replace('-', '_')}::{rest}"
    if _PATH_RE.match(whole):
        path = whole.replace(".", "::")
        macro = bool(re.search(r"!\s*(?:\(.*\)|\[.*\]|\{.*\})?$", text))
        probes[path.lower()] = PathProbe(lowered=path.lower(), typed=path, whole_query=True, macro=macro)
    else:
        words = text.split()
        if 2 <= len(words) <= 3 and all(_IDENT_WORD_RE.match(w) for w in words):
            path = "::".join(words)
            probes[path.lower()] = PathProbe(lowered=path.lower(), typed=path, whole_query=True)
        if len(words) > 1:
            for match in _COMPOUND_RE.finditer(text):
                token = match.group(0)
                if _is_compound(token) and len(probes) < MAX_PATH_PROBES:
                    probes.setdefault(token.lower(), PathProbe(lowered=token.lower(), typed=token, whole_query=False))
    return tuple(probes.values())[:MAX_PATH_PROBES]


def parse_query(query: object) -> ParsedQuery:
    text = clean_query(query)
    return ParsedQuery(
        text=text,
        tsquery=tsquery_for(text),
        tsquery_all=tsquery_all_for(text),
        probes=path_probes(text) if text else (),
        verbs=verb_intent(text),
    )
