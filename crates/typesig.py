"""Type signatures as small trees, shared by the parsers (ingest) and type search (query side).

A node is a JSON-friendly list ``[name, children]``:

* a named type: ``["Result", [["Value", []], ["Error", []]]]`` (last path segment, as written);
* a type parameter or ``impl Trait``: ``["#T", bounds]`` where ``bounds`` are trait nodes
  (``["#T", [["Deserialize", []]]]``); ``#Self`` inside a trait's own methods; ``#::Output`` an associated
  type (``F::Output``, ``<T as Trait>::Err``), which only a type parameter of the query matches;
* wrappers: ``&`` / ``&mut`` (reference), ``*`` (raw pointer), ``[]`` (slice or array), ``()`` (tuple,
  unit when empty), ``fn`` (function pointer: inputs then output).

A function's signature is ``{"i": [input nodes], "o": output node or None}``. ``terms`` turns one into the
flat strings the database indexes (GIN) to pick candidates; crates.search.types matches them exactly.
This module also reads Rust type text: the declarations of HTML-only releases and the type queries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

Node = list  # [name, children]

WRAPPERS = frozenset({"&", "&mut", "*", "[]", "()", "fn"})
# Bounds that say nothing about what a type is.
IGNORED_BOUNDS = frozenset({"sized", "send", "sync", "unpin", "copy", "clone", "debug", "static"})
MAX_TERMS = 64


class TypeSyntaxError(ValueError):
    """Rust type text that cannot be read; the message says where."""


def is_generic(node: Node) -> bool:
    return node[0].startswith("#")


def key(name: str) -> str:
    return name.lower()


def concrete_head(node: Node) -> Node | None:
    """The first named type under references, pointers and slices (``&[u8]`` -> ``u8``); None for generics."""
    while node[0] in WRAPPERS and node[0] != "()" and node[0] != "fn" and node[1]:
        node = node[1][0]
    if is_generic(node) or node[0] in WRAPPERS:
        return None
    return node


def terms(signature: dict) -> list[str]:
    """Index terms: ``i:duration`` / ``o:sleep`` for named types at any depth (unboxing), ``i:#deserialize`` for a
    type parameter bounded by ``Deserialize``, ``i:#`` for an unbounded one."""
    out: dict[str, None] = {}
    for node in signature.get("i") or []:
        _walk(node, "i", out)
    if signature.get("o"):
        _walk(signature["o"], "o", out)
    return list(out)[:MAX_TERMS]


def _walk(node: Node, side: str, out: dict[str, None], depth: int = 0) -> None:
    if depth > 6:
        return
    name, children = node[0], node[1]
    if name.startswith("#::"):
        return
    if name.startswith("#"):
        bounds = [b for b in children if key(b[0]) not in IGNORED_BOUNDS]
        if not bounds:
            out[f"{side}:#"] = None
        for bound in bounds:
            out[f"{side}:#{key(bound[0])}"] = None
            for arg in bound[1]:
                _walk(arg, side, out, depth + 1)
        return
    if name not in WRAPPERS:
        out[f"{side}:{key(name)}"] = None
    for child in children:
        _walk(child, side, out, depth + 1)


def render(node: Node | None) -> str:
    """Readable Rust for a node (``&str``, ``Result<T>``, ``impl Future``)."""
    if node is None:
        return "()"
    name, children = node[0], node[1]
    if name.startswith("#"):
        if name == "#impl":
            return "impl " + " + ".join(render(b) for b in children) if children else "impl _"
        return name[1:].removeprefix("::")
    if name == "&":
        return "&" + render(children[0]) if children else "&"
    if name == "&mut":
        return "&mut " + render(children[0]) if children else "&mut"
    if name == "*":
        return "*" + render(children[0]) if children else "*"
    if name == "[]":
        return "[" + (render(children[0]) if children else "") + "]"
    if name == "()":
        return "(" + ", ".join(render(c) for c in children) + ("," if len(children) == 1 else "") + ")"
    if name == "fn":
        *inputs, output = children or [None]
        return "fn(" + ", ".join(render(c) for c in inputs) + ")" + (f" -> {render(output)}" if output else "")
    return name + ("<" + ", ".join(render(c) for c in children) + ">" if children else "")


# --- reading Rust type text ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<lifetime>'[A-Za-z_][A-Za-z0-9_]*)|(?P<ident>r#[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<number>\d[\d_]*[a-z0-9]*)|(?P<string>\"[^\"]*\")|(?P<punct>->|::|[&*<>()\[\],;=:+!?{}.'\-/|]))"
)


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise TypeSyntaxError(f"unexpected character {text[position:].strip()[:1]!r} at position {position}")
        tokens.append(match.group(match.lastgroup))
        position = match.end()
    return tokens


class TypeReader:
    """Recursive descent over Rust type syntax; ``generics`` maps declared parameter names to their bounds."""

    def __init__(self, tokens: list[str], *, generics: dict[str, list[Node]] | None = None,
                 self_node: Node | None = None, query: bool = False) -> None:
        self.tokens = tokens
        self.at = 0
        self.generics = generics or {}
        self.self_node = self_node
        self.query = query

    def peek(self, offset: int = 0) -> str | None:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise TypeSyntaxError(f"expected {expected!r} but the text ended" if expected else "unexpected end")
        if expected is not None and token != expected:
            raise TypeSyntaxError(f"expected {expected!r} but found {token!r}")
        self.at += 1
        return token

    def done(self) -> bool:
        return self.at >= len(self.tokens)

    def type(self) -> Node:
        token = self.peek()
        if token is None:
            raise TypeSyntaxError("a type is missing")
        if token == "&":
            self.take()
            if self.peek() and self.peek().startswith("'"):
                self.take()
            mutable = self.peek() == "mut"
            if mutable:
                self.take()
            return ["&mut" if mutable else "&", [self.type()]]
        if token == "*":
            self.take()
            if self.peek() in ("const", "mut"):
                self.take()
            return ["*", [self.type()]]
        if token == "[":
            self.take()
            inner = self.type()
            if self.peek() == ";":
                self.take()
                self._skip_until("]")
            self.take("]")
            return ["[]", [inner]]
        if token == "(":
            self.take()
            items: list[Node] = []
            trailing_comma = False
            while self.peek() != ")":
                items.append(self.type())
                trailing_comma = False
                if self.peek() == ",":
                    self.take()
                    trailing_comma = True
                elif self.peek() != ")":
                    raise TypeSyntaxError(f"expected ',' or ')' in a tuple but found {self.peek()!r}")
            self.take(")")
            return items[0] if len(items) == 1 and not trailing_comma else ["()", items]
        if token == "!":
            self.take()
            return ["!", []]
        if token == "_":
            self.take()
            return ["#_", []]
        if token == "impl":
            self.take()
            bounds = self.bounds()
            if self.query and bounds:  # `impl Read` in a query names the trait, as `Read` does
                return bounds[0]
            return ["#impl", bounds]
        if token == "dyn":
            self.take()
            bounds = self.bounds()
            return bounds[0] if bounds else ["#dyn", []]
        if token in ("unsafe", "extern", "for") or (token == "fn" and self.peek(1) == "("):
            return self._fn_pointer()
        if token == "<":
            return self._qualified()
        if token and (token[0].isalpha() or token[0] == "_" or token.startswith("r#")):
            return self.path()
        raise TypeSyntaxError(f"expected a type but found {token!r}")

    def _skip_until(self, closer: str) -> None:
        depth = 0
        while self.peek() is not None:
            token = self.peek()
            if token in ("(", "[", "{", "<"):
                depth += 1
            elif token in (")", "]", "}", ">"):
                if depth == 0 and token == closer:
                    return
                depth -= 1
            self.take()

    def _fn_pointer(self) -> Node:
        if self.peek() == "for":
            self.take()
            self._angle_skip()
        while self.peek() in ("unsafe", "extern") or (self.peek() or "").startswith('"'):
            self.take()
        self.take("fn")
        inputs = self._parenthesized_types()
        output = None
        if self.peek() == "->":
            self.take()
            output = self.type()
        return ["fn", [*inputs, output or ["()", []]]]

    def _parenthesized_types(self) -> list[Node]:
        self.take("(")
        items = []
        while self.peek() != ")":
            if self.peek(1) == ":" and self.peek(2) != ":":  # a named parameter in a fn pointer
                self.take()
                self.take(":")
            items.append(self.type())
            if self.peek() == ",":
                self.take()
            elif self.peek() != ")":
                raise TypeSyntaxError(f"expected ',' or ')' but found {self.peek()!r}")
        self.take(")")
        return items

    def _angle_skip(self) -> None:
        self.take("<")
        depth = 1
        while depth:
            token = self.take()
            depth += {"<": 1, ">": -1}.get(token, 0)

    def _qualified(self) -> Node:
        # <T as Trait>::Name: an associated type; only its name is known here.
        self._angle_skip()
        name = "_"
        while self.peek() == "::":
            self.take()
            name = self.take()
        return ["#::" + name, []]

    def path(self) -> Node:
        segments = [self._ident()]
        args: list[Node] = []
        while True:
            if self.peek() == "::" and self.peek(1) == "<":
                self.take()
                continue
            if self.peek() == "<":
                args = self._generic_args()
                if self.peek() == "::" and self.peek(1) and self.peek(1)[0].isalpha():
                    self.take()
                    segments.append(self._ident())
                    continue
                break
            if self.peek() == "::" and self.peek(1) and (self.peek(1)[0].isalpha() or self.peek(1)[0] == "_"):
                self.take()
                segments.append(self._ident())
                continue
            break
        if self.peek() == "(" and segments[-1] in ("Fn", "FnMut", "FnOnce"):
            inputs = self._parenthesized_types()
            output = ["()", []]
            if self.peek() == "->":
                self.take()
                output = self.type()
            args = [*inputs, output]
        name = segments[-1].removeprefix("r#")
        if len(segments) == 1:
            if name == "Self" and self.self_node is not None:
                return self.self_node
            if name in self.generics:
                return ["#" + name, self.generics[name]]
            if self.query and _QUERY_GENERIC.match(name):
                return ["#" + name, []]
        elif len(segments) >= 2 and (segments[0] in self.generics or segments[0] == "Self") and not args:
            return ["#::" + name, []]  # T::Err, Self::Item: an associated type
        return [name, args]

    def _ident(self) -> str:
        token = self.take()
        if not (token[0].isalpha() or token[0] == "_" or token.startswith("r#")):
            raise TypeSyntaxError(f"expected a name but found {token!r}")
        return token

    def _generic_args(self) -> list[Node]:
        self.take("<")
        args: list[Node] = []
        while self.peek() != ">":
            token = self.peek()
            if token is None:
                raise TypeSyntaxError("'<' is never closed by '>'")
            if token.startswith("'"):
                self.take()
            elif token[0].isdigit() or token == "{" or token == "-":
                self._skip_arg()
            elif self.peek(1) == "=" and token[0].isalpha():  # Item = T
                self.take()
                self.take("=")
                args.append(self.type())
            elif self.peek(1) == ":" and self.peek(2) != ":" and token[0].isalpha():  # Item: Bound
                self.take()
                self.take(":")
                self.bounds()
            else:
                args.append(self.type())
            if self.peek() == ",":
                self.take()
            elif self.peek() != ">":
                raise TypeSyntaxError(f"expected ',' or '>' but found {self.peek()!r}")
        self.take(">")
        return args

    def _skip_arg(self) -> None:
        depth = 0
        while self.peek() is not None and not (depth == 0 and self.peek() in (",", ">")):
            token = self.take()
            depth += {"{": 1, "(": 1, "}": -1, ")": -1}.get(token, 0)

    def bounds(self) -> list[Node]:
        out: list[Node] = []
        while True:
            token = self.peek()
            if token is None:
                break
            if token.startswith("'"):
                self.take()
            elif token == "?":
                self.take()
                self.path()
            elif token == "(":
                self.take()
                out.extend(self.bounds())
                self.take(")")
            elif token == "for":
                self.take()
                self._angle_skip()
                continue
            elif token in ("~", "const") or token == "use":
                self.take()
                continue
            else:
                out.append(self.path())
            if self.peek() == "+":
                self.take()
                continue
            break
        return out


_QUERY_GENERIC = re.compile(r"^[A-Z][0-9]?$")


def parse_type(text: str, *, generics: dict[str, list[Node]] | None = None, self_node: Node | None = None,
               query: bool = False) -> Node:
    reader = TypeReader(tokenize(text), generics=generics, self_node=self_node, query=query)
    node = reader.type()
    if not reader.done():
        raise TypeSyntaxError(f"unexpected {reader.peek()!r} after the type {render(node)!r}")
    return node


def split_top_level(tokens: list[str], separator: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        if token in ("<", "(", "["):
            depth += 1
        elif token in (">", ")", "]"):
            depth -= 1
        if token == separator and depth == 0:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


# --- declarations (HTML-only releases) ---------------------------------------------------------------------

_FN_HEAD = re.compile(r"\bfn\s+(r#)?[A-Za-z_][A-Za-z0-9_]*\s*")


def _declared_generics(tokens: list[str]) -> dict[str, list[Node]]:
    generics: dict[str, list[Node]] = {}
    for part in split_top_level(tokens, ","):
        if not part or part[0].startswith("'"):
            continue
        if part[0] == "const":
            continue
        name = part[0]
        bounds: list[Node] = []
        if len(part) > 1 and part[1] == ":":
            reader = TypeReader(part[2:], generics={})
            try:
                bounds = reader.bounds()
            except TypeSyntaxError:
                bounds = []
        generics[name] = bounds
    return generics


def _where_bounds(tokens: list[str], generics: dict[str, list[Node]]) -> None:
    for part in split_top_level(tokens, ","):
        if len(part) < 3 or part[1] != ":" or part[0] not in generics:
            continue
        try:
            generics[part[0]] = generics[part[0]] + TypeReader(part[2:]).bounds()
        except TypeSyntaxError:
            continue


def _balanced(tokens: list[str], start: int, opener: str, closer: str) -> int:
    """Index just past the token closing the ``opener`` at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index] == opener:
            depth += 1
        elif tokens[index] == closer:
            depth -= 1
            if depth == 0:
                return index + 1
    raise TypeSyntaxError(f"{opener!r} is never closed")


def signature_from_declaration(declaration: str, *, self_node: Node | None = None,
                               outer_generics: dict[str, list[Node]] | None = None) -> dict | None:
    """``pub fn from_str<'a, T>(s: &'a str) -> Result<T> where T: Deserialize<'a>`` -> ``{"i": [...], "o": ...}``.

    None when the text is not a function declaration that can be read.
    """
    head = _FN_HEAD.search(declaration)
    if head is None:
        return None
    try:
        tokens = tokenize(declaration[head.end():].replace("\n", " "))
        generics = dict(outer_generics or {})
        at = 0
        if tokens and tokens[0] == "<":
            end = _balanced(tokens, 0, "<", ">")
            generics.update(_declared_generics(tokens[1 : end - 1]))
            at = end
        end = _balanced(tokens, at, "(", ")")
        params = tokens[at + 1 : end - 1]
        rest = tokens[end:]
        output_tokens: list[str] = []
        where_tokens: list[str] = []
        if rest and rest[0] == "->":
            rest = rest[1:]
            if "where" in rest:
                split = rest.index("where")
                output_tokens, where_tokens = rest[:split], rest[split + 1 :]
            else:
                output_tokens = rest
        elif rest and rest[0] == "where":
            where_tokens = rest[1:]
        while output_tokens and output_tokens[-1] in (";", "{", "}", ","):
            output_tokens = output_tokens[:-1]
        _where_bounds([t for t in where_tokens if t not in ("{", "}", ";")], generics)
        inputs = []
        for part in split_top_level(params, ","):
            if not part:
                continue
            inputs.append(_param(part, generics=generics, self_node=self_node))
        output = None
        if output_tokens:
            reader = TypeReader(output_tokens, generics=generics, self_node=self_node)
            output = reader.type()
        return {"i": inputs, "o": output}
    except (TypeSyntaxError, IndexError):
        return None


def _param(part: list[str], *, generics: dict[str, list[Node]], self_node: Node | None) -> Node:
    self_type = self_node or ["#Self", []]
    tokens = part[1:] if part[0] == "mut" else part
    if "self" in tokens and ":" not in tokens:  # self, &self, &'a mut self
        if tokens[0] == "&":
            return ["&mut" if "mut" in tokens else "&", [self_type]]
        return self_type
    if ":" in tokens:
        colon = next(i for i, t in enumerate(tokens) if t == ":" and (i + 1 >= len(tokens) or tokens[i + 1] != ":"))
        tokens = tokens[colon + 1 :]
    reader = TypeReader(tokens, generics=generics, self_node=self_node)
    return reader.type()


def self_from_declaration(declaration: str, name: str) -> tuple[Node, dict[str, list[Node]]]:
    """The type node of a struct/enum/trait from its declaration (``pub struct Mutex<T: ?Sized>``), its generics."""
    match = re.search(rf"\b{re.escape(name)}\s*(<)?", declaration)
    generics: dict[str, list[Node]] = {}
    if match and match.group(1):
        try:
            tokens = tokenize(declaration[match.start(1):])
            end = _balanced(tokens, 0, "<", ">")
            generics = _declared_generics(tokens[1 : end - 1])
        except TypeSyntaxError:
            generics = {}
    return [name, [["#" + g, b] for g, b in generics.items()]], generics


def flatten_names(nodes: Iterable[Node]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        head = concrete_head(node)
        if head is not None:
            names.add(key(head[0]))
    return names
