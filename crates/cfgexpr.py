"""`cfg` expressions: one tree for what rustdoc JSON, rustdoc HTML and the read side say about feature gates.

A gate is stored on a document as a string in Rust's own syntax (``metadata["cfg"]``, e.g.
``all(feature = "net", unix)``); this module parses that string, combines gates (an item in a gated module
needs both), describes them in words and tells which crate features a gate needs. No Django, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Platform names as rustdoc writes them in its "Available on ... only" notes, and their cfg.
_PLATFORMS: dict[str, tuple[str, str | None]] = {
    "Unix": ("unix", None), "Windows": ("windows", None), "WebAssembly": ("target_family", "wasm"),
    "Linux": ("target_os", "linux"), "macOS": ("target_os", "macos"), "iOS": ("target_os", "ios"),
    "Android": ("target_os", "android"), "FreeBSD": ("target_os", "freebsd"), "NetBSD": ("target_os", "netbsd"),
    "OpenBSD": ("target_os", "openbsd"), "DragonFly BSD": ("target_os", "dragonfly"), "WASI": ("target_os", "wasi"),
    "Fuchsia": ("target_os", "fuchsia"), "Redox": ("target_os", "redox"), "Solaris": ("target_os", "solaris"),
    "illumos": ("target_os", "illumos"), "Haiku": ("target_os", "haiku"), "Hermit": ("target_os", "hermit"),
    "x86-64": ("target_arch", "x86_64"), "x86": ("target_arch", "x86"), "AArch64": ("target_arch", "aarch64"),
    "ARM": ("target_arch", "arm"), "RISC-V": ("target_arch", "riscv64"), "PowerPC": ("target_arch", "powerpc"),
    "PowerPC-64": ("target_arch", "powerpc64"), "MIPS": ("target_arch", "mips"), "s390x": ("target_arch", "s390x"),
    "LoongArch LA64": ("target_arch", "loongarch64"), "32-bit": ("target_pointer_width", "32"),
    "64-bit": ("target_pointer_width", "64"), "16-bit": ("target_pointer_width", "16"),
    "little-endian": ("target_endian", "little"), "big-endian": ("target_endian", "big"),
    "GNU": ("target_env", "gnu"), "MSVC": ("target_env", "msvc"), "musl": ("target_env", "musl"),
    "debug-assertions enabled": ("debug_assertions", None), "test": ("test", None),
}  # fmt: skip
_WORDS = {value: word for word, value in _PLATFORMS.items()}
# cfgs that are never a gate a user acts on: docs.rs sets docsrs, rustdoc sets doc.
_IGNORED = frozenset({"docsrs", "doc", "rustdoc"})
# What rustc and cargo set themselves; any other name is a crate's own `--cfg` (tokio's `loom`, `tokio_wasi`).
_BUILTIN = frozenset({"feature", "unix", "windows", "test", "debug_assertions", "panic", "proc_macro", "miri",
                      "overflow_checks", "ub_checks", "target_os", "target_arch", "target_family", "target_env",
                      "target_pointer_width", "target_endian", "target_vendor", "target_has_atomic", "target_abi",
                      "target_feature", "relocation_model", "sanitize", "fmt_debug", "contract_checks"})

@dataclass(frozen=True, slots=True)
class Cfg:
    """``op`` is "all", "any", "not" (with ``args``) or "name" (``name`` and optional ``value``)."""

    op: str
    args: tuple[Cfg, ...] = ()
    name: str = ""
    value: str | None = None

    def __str__(self) -> str:
        if self.op == "name":
            return self.name if self.value is None else f'{self.name} = "{self.value}"'
        return f"{self.op}({', '.join(str(a) for a in self.args)})"


def name(key: str, value: str | None = None) -> Cfg:
    return Cfg("name", name=key, value=value)


def combine(*parts: Cfg | None) -> Cfg | None:
    """Every part must hold (an item's own gate and its module's): a flat, de-duplicated ``all``."""
    terms: list[Cfg] = []
    for part in parts:
        if part is None:
            continue
        for term in part.args if part.op == "all" else (part,):
            if term not in terms:
                terms.append(term)
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else Cfg("all", tuple(terms))


def simplify(cfg: Cfg | None) -> Cfg | None:
    """Drop the cfgs nobody acts on (``docsrs``, ``doc``); None when nothing is left."""
    if cfg is None:
        return None
    if cfg.op == "name":
        return None if cfg.name in _IGNORED else cfg
    args = tuple(a for a in (simplify(x) for x in cfg.args) if a is not None)
    if cfg.op == "not":
        if args and args[0].op == "name" and (args[0].name not in _BUILTIN or args[0].name == "test"):
            return None  # not(loom), not(test): a crate's own test cfgs, off in every user's build
        return Cfg("not", args) if args else None
    if not args:
        return None
    if cfg.op == "any" and len(args) != len(cfg.args):
        return None  # any(docsrs, x) holds on docs.rs: no gate a user sees
    return args[0] if len(args) == 1 else Cfg(cfg.op, args)


# --- parsing Rust's syntax: feature = "x", all(...), any(...), not(...) --------------------------

_TOKEN = re.compile(r'\s*(?:(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<sym>[(),=]))')


def parse(text: str) -> Cfg | None:
    """A cfg predicate as Rust writes it; None when the text is not one."""
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            return None
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    try:
        cfg, rest = _predicate(tokens, 0)
    except (IndexError, ValueError):
        return None
    return cfg if rest == len(tokens) else None


def _predicate(tokens: list, i: int) -> tuple[Cfg, int]:
    kind, word = tokens[i]
    if kind != "ident":
        raise ValueError(word)
    if i + 1 < len(tokens) and tokens[i + 1] == ("sym", "(") and word in ("all", "any", "not"):
        args, i = [], i + 2
        while tokens[i] != ("sym", ")"):
            arg, i = _predicate(tokens, i)
            args.append(arg)
            if tokens[i] == ("sym", ","):
                i += 1
        return Cfg(word, tuple(args)), i + 1
    if i + 2 < len(tokens) and tokens[i + 1] == ("sym", "=") and tokens[i + 2][0] == "str":
        return name(word, tokens[i + 2][1][1:-1]), i + 3
    return name(word), i + 1


# --- rustdoc's HTML words: "Available on crate features net and fs only." ----------------------

_AVAILABLE = re.compile(r"Available\s+on\s+(?P<expr>.+?)\s+only\.?\s*$", re.DOTALL)


def from_portability(text: str) -> Cfg | None:
    """The gate an HTML "Available on ... only." note describes (rustdoc's own wording), None if there is none."""
    match = _AVAILABLE.search(" ".join(text.split()))
    if match is None:
        return None
    expr = match.group("expr").replace("`", "").replace("*", "")  # the HTML parser keeps <strong>/<code> as markdown
    op = "any" if " or " in expr and " and " not in expr else "all"
    joiner = " or " if op == "any" else " and "
    expr = re.sub(r",\s*(?:and|or)\s+|,\s*", joiner, expr)
    terms: list[Cfg] = []
    features_mode = False
    for raw in (t.strip(" ()") for t in expr.split(joiner)):
        if not raw:
            continue
        negate = raw.startswith("non-")
        word = raw[4:] if negate else raw
        if word.startswith(("crate feature ", "crate features ")):
            features_mode = True
            term = name("feature", word.split(" ", 2)[2])
        elif word in _PLATFORMS:
            features_mode = False
            term = name(*_PLATFORMS[word])
        elif features_mode:
            term = name("feature", word)
        else:
            term = name(word.replace(" ", "_").replace("-", "_"))
        terms.append(Cfg("not", (term,)) if negate else term)
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else Cfg(op, tuple(terms))


# --- reading a gate: words, required features, platforms ----------------------------------------


def words(cfg: Cfg) -> str:
    """Rustdoc-like words: 'crate feature `net`', 'Unix and crate feature `std`'."""
    if cfg.op == "name":
        if cfg.name == "feature" and cfg.value is not None:
            return f"crate feature `{cfg.value}`"
        word = _WORDS.get((cfg.name, cfg.value))
        return word or str(cfg)
    if cfg.op == "not":
        return f"non-{words(cfg.args[0])}" if cfg.args[0].op == "name" else f"not ({words(cfg.args[0])})"
    inner = [words(a) if a.op == "name" or a.op == "not" else f"({words(a)})" for a in cfg.args]
    return f" {'and' if cfg.op == 'all' else 'or'} ".join(inner)


def features_in(cfg: Cfg) -> list[str]:
    """Every crate feature the gate names, in order."""
    if cfg.op == "name":
        return [cfg.value] if cfg.name == "feature" and cfg.value else []
    found: list[str] = []
    for arg in cfg.args:
        found += [f for f in features_in(arg) if f not in found]
    return found


def platforms_in(cfg: Cfg) -> list[str]:
    """The platform conditions (unix, windows, target_arch = "x86_64"...), as cfg text."""
    if cfg.op == "name":
        return [str(cfg)] if cfg.name != "feature" else []
    found: list[str] = []
    for arg in cfg.args:
        found += [p for p in platforms_in(arg) if p not in found]
    return found


def holds(cfg: Cfg, *, features: set[str]) -> bool:
    """Whether the gate's feature conditions hold with ``features`` on; platform conditions count as held."""
    if cfg.op == "name":
        return cfg.value in features if cfg.name == "feature" else True
    if cfg.op == "not":
        only_features = all(a.op == "name" and a.name == "feature" for a in cfg.args)
        return not holds(cfg.args[0], features=features) if only_features else True
    results = [holds(a, features=features) for a in cfg.args]
    return all(results) if cfg.op == "all" else any(results)


def missing_features(cfg: Cfg, *, features: set[str]) -> list[str]:
    """The features to turn on so the gate holds (for an ``any``, its first alternative's)."""
    if holds(cfg, features=features):
        return []
    if cfg.op == "name":
        return [cfg.value] if cfg.name == "feature" and cfg.value else []
    if cfg.op == "all":
        found: list[str] = []
        for arg in cfg.args:
            found += [f for f in missing_features(arg, features=features) if f not in found]
        return found
    if cfg.op == "any":
        options = [missing_features(a, features=features) for a in cfg.args]
        options = [o for o in options if o]
        return min(options, key=len) if options else []
    return []


def enabled_features(table: dict, *, asked: list[str], default: bool) -> set[str]:
    """What cargo turns on from ``asked`` (+ "default"), following the crate's [features] table."""
    todo = list(asked) + (["default"] if default else [])
    on: set[str] = set()
    while todo:
        feature = todo.pop()
        if feature in on:
            continue
        on.add(feature)
        for entry in table.get(feature) or []:
            if not isinstance(entry, str) or entry.startswith("dep:") or "?/" in entry:
                continue
            # "dep/feat" turns on the dependency itself: an optional one's implicit feature, unlisted in the index
            todo.append(entry.split("/", 1)[0])
    return on
