"""Type search, the fourth signal: rustdoc's query syntax over stored function signatures.

``A, B -> C`` (inputs in any order, then the output), ``-> C``, ``A ->``, or ``type:A`` (A anywhere).
Types are written as in Rust: generics (``Vec<T> -> usize``, ``&HashMap<K, V>, &K -> Option<&V>``), references,
slices, tuples; paths match by their last segment (``io::Result`` is ``Result``); a single capital letter
(``T``, ``K``) is a type parameter that matches any type. A query type matches a function's type when:

* the names are equal and the query's generic arguments match the function's (``Vec<u8>`` in ``Vec<u8>``);
* the function's type wraps it (unboxing: ``Value`` in ``Result<Value>``, ``&str`` in ``Option<&str>``);
* references are transparent (``str`` matches ``&str``), an explicit ``&`` prefers a reference;
* the function's type is a parameter whose bounds allow it (``T: Deserialize`` takes ``Value`` when the
  trait graph says ``Value: Deserialize``), or that names it (``impl Future`` for ``Future``);
* ``Self`` is the impl's type (stored so at ingest).

Candidates come from the GIN index on ``crates_typesignature.terms`` (crates.typesig.terms), the exact match
and its score from ``match_signature``; each hit explains the match (``&str → Result<T> (T = Value)``).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field

from crates.errors import InvalidInput
from crates.search.scope import Scope
from crates.search.signals import DOC_COLUMNS, DocRow, Ranked, Statement
from crates.typesig import (
    IGNORED_BOUNDS,
    WRAPPERS,
    Node,
    TypeReader,
    TypeSyntaxError,
    concrete_head,
    is_generic,
    key,
    render,
    split_top_level,
    tokenize,
)

TYPE_PREFIX = "type:"
# Candidates matched exactly in Python, best first by how many query types they hold by name.
CANDIDATES = 400
MAX_QUERY_TYPES = 8
_FUNCTION_KINDS = ("function", "method")
_REFS = frozenset({"&", "&mut", "*"})
# Score factor per function input the query does not mention.
EXTRA_INPUT = 0.85
# A type parameter whose bounds the query's type satisfies (T = Value where T: Deserialize).
BOUND_HELD = 0.95
STD_TRUSTED = 0.6
STD_TRAITS = frozenset({
    "ord", "partialord", "eq", "partialeq", "hash", "debug", "display", "clone", "copy", "default", "tostring",
    "fromstr", "borrow", "asref", "into", "from", "error", "sized",
})
STD_TYPES = frozenset({
    "str", "string", "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128",
    "isize", "f32", "f64", "vec", "box", "option", "result", "hashmap", "btreemap", "hashset", "btreeset", "path",
    "pathbuf", "osstr", "osstring", "duration", "instant", "systemtime", "rc", "arc", "cow", "socketaddr", "ipaddr",
})


@dataclass(frozen=True, slots=True)
class TypeQuery:
    inputs: tuple[Node, ...] = ()
    outputs: tuple[Node, ...] = ()
    anywhere: tuple[Node, ...] = ()  # type:A without an arrow
    words: str = ""  # the query as text for the other signals
    arrow: bool = False

    def elements(self) -> list[tuple[str, Node]]:
        return [("i", n) for n in self.inputs] + [("o", n) for n in self.outputs] + [("*", n) for n in self.anywhere]


_DECLARATION = re.compile(r"\bfn\s+[A-Za-z_]")
_KEYWORDS = frozenset({"mut", "dyn", "impl", "const", "fn", "unsafe", "extern", "for", "as"})


def is_type_query(text: str) -> bool:
    """``type:`` always; ``->`` when the text is made of types (``String -> Value conversion`` is prose)."""
    if text.lstrip().lower().startswith(TYPE_PREFIX):
        return True
    if "->" not in text or _DECLARATION.search(text):  # a pasted `fn name(..) -> T` is looked up by its name
        return False
    try:
        tokens = tokenize(text)
    except TypeSyntaxError:
        return False
    names = [t[0].isalpha() or t[0] == "_" for t in tokens]
    if not any(names):
        return False
    return not any(
        names[i] and names[i + 1] and tokens[i] not in _KEYWORDS and tokens[i + 1] not in _KEYWORDS
        for i in range(len(tokens) - 1)
    )


def parse_type_query(text: str) -> TypeQuery | None:
    """The type query in ``text``, None when it is not one; InvalidInput (422, a tool error) on bad syntax."""
    if not is_type_query(text):
        return None
    body = text.strip()
    if body.lower().startswith(TYPE_PREFIX):
        body = body[len(TYPE_PREFIX):].strip()
    if not body:
        raise InvalidInput("The type query is empty: write types after 'type:', e.g. 'type:Duration -> Sleep'.")
    try:
        tokens = tokenize(body)
    except TypeSyntaxError as exc:
        raise InvalidInput(f"Cannot read the type query {text!r}: {exc}.") from exc
    unbalanced = _unbalanced(tokens)
    if unbalanced:
        raise InvalidInput(f"Cannot read the type query {text!r}: {unbalanced}. Example: 'Vec<u8> -> usize'.")
    arrows = [i for i, t in enumerate(tokens) if t == "->" and _depth(tokens, i) == 0]
    if len(arrows) > 1:
        raise InvalidInput(
            f"The type query {text!r} has {len(arrows)} '->': write 'inputs -> output', e.g. '&str -> Value'."
        )
    try:
        if arrows:
            left, right = tokens[: arrows[0]], tokens[arrows[0] + 1 :]
            inputs, outputs = _types(left, "input"), _types(right, "output")
            if not inputs and not outputs:
                raise InvalidInput(
                    "The type query has no types: write e.g. 'Duration -> Sleep', '-> Sleep' or 'Duration ->'."
                )
            query = TypeQuery(inputs=inputs, outputs=outputs, arrow=True, words=_words(tokens))
        else:
            anywhere = _types(tokens, "type")
            query = TypeQuery(anywhere=anywhere, words=_words(tokens))
    except TypeSyntaxError as exc:
        raise InvalidInput(f"Cannot read the type query {text!r}: {exc}. Example: '&str -> Value'.") from exc
    if len(query.elements()) > MAX_QUERY_TYPES:
        raise InvalidInput(f"A type query takes at most {MAX_QUERY_TYPES} types.")
    return query


def _unbalanced(tokens: list[str]) -> str:
    stack: list[str] = []
    pairs = {">": "<", ")": "(", "]": "["}
    for token in tokens:
        if token in ("<", "(", "["):
            stack.append(token)
        elif token in pairs:
            if not stack or stack[-1] != pairs[token]:
                return f"{token!r} has no matching {pairs[token]!r}"
            stack.pop()
    return f"{stack[-1]!r} is never closed" if stack else ""


def _depth(tokens: list[str], at: int) -> int:
    depth = 0
    for token in tokens[:at]:
        if token in ("<", "(", "["):
            depth += 1
        elif token in (">", ")", "]"):
            depth -= 1
    return depth


def _types(tokens: list[str], what: str) -> tuple[Node, ...]:
    if not tokens:
        return ()
    out = []
    for part in split_top_level(tokens, ","):
        if not part:
            raise TypeSyntaxError(f"an {what} type is missing between commas")
        reader = TypeReader(part, query=True)
        out.append(reader.type())
        if not reader.done():
            raise TypeSyntaxError(f"unexpected {reader.peek()!r} after {render(out[-1])!r}")
    return tuple(out)


def _words(tokens: list[str]) -> str:
    return " ".join(t for t in tokens if t[0].isalnum() or t[0] == "_")


# --- candidates ------------------------------------------------------------------------------------------------


def _sides(side: str) -> tuple[str, ...]:
    return ("i", "o") if side == "*" else (side,)


def type_statements(*, scope: Scope, query: TypeQuery) -> dict[str, Statement]:
    """The candidate statement and the trait lookup (``type_impls``) for ``type_ranking``; {} when nothing to ask."""
    if scope.kinds and not set(scope.kinds) & set(_FUNCTION_KINDS):
        return {}
    named = list(dict.fromkeys((side, name) for side, node in query.elements() for name in _keys(node)))
    if not named:  # only type parameters (`T -> T`): nothing selective to look signatures up by
        return {}
    # Every named type of the query, nested ones too: their traits decide bounds (Result<Value> vs Result<T>).
    every_name = sorted({key(n) for _s, node in query.elements() for n in _names(node)})
    params: dict = {"releases": scope.release_array, "names": every_name,
                    "cap": CANDIDATES}  # fmt: skip
    impls = Statement(
        sql="SELECT type_key, array_agg(DISTINCT trait_key) FROM crates_traitimpl"
        " WHERE release_id = ANY(%(releases)s::bigint[]) AND type_key = ANY(%(names)s::text[]) GROUP BY type_key",
        params={"releases": params["releases"], "names": params["names"]},
        rank=_unranked,
        plan="custom",
    )
    conditions, exact = [], []
    for index, (side, name) in enumerate(named):
        sides = _sides(side)
        trusted = [f"#{t}" for t in sorted(STD_TRAITS)] if name in STD_TYPES else []
        params[f"alt{index}"] = [f"{s}:{v}" for s in sides for v in (name, "#" + name, *trusted)]
        params[f"name{index}"] = name
        params[f"exact{index}"] = [f"{s}:{name}" for s in sides]
        prefix = " || ".join(f"'{s}:#' || t" for s in sides)
        traits = (
            f"coalesce((SELECT array_agg({prefix}) FROM tr, unnest(tr.traits) t WHERE tr.type_key = %(name{index})s),"
            " '{}'::text[])"
        )
        conditions.append(f"s.terms && (%(alt{index})s::text[] || {traits})")
        exact.append(f"(s.terms && %(exact{index})s::text[])::int")
    kinds = ""
    if scope.kinds:
        params["kinds"] = [k for k in scope.kinds if k in _FUNCTION_KINDS]
        kinds = " AND d.kind = ANY(%(kinds)s)"
    sql = (
        "WITH tr AS MATERIALIZED (SELECT type_key, array_agg(DISTINCT trait_key) AS traits FROM crates_traitimpl"
        " WHERE release_id = ANY(%(releases)s::bigint[]) AND type_key = ANY(%(names)s::text[]) GROUP BY type_key)"
        f" SELECT s.document_id, s.signature::text, {DOC_COLUMNS} FROM crates_typesignature s"
        " JOIN crates_document d ON d.id = s.document_id"
        " WHERE s.release_id = ANY(%(releases)s::bigint[]) AND " + " AND ".join(conditions) + kinds
        + " ORDER BY " + (f"{' + '.join(exact)} DESC, " if exact else "")
        + "cardinality(s.terms), s.document_id LIMIT %(cap)s"
    )
    return {"type": Statement(sql=sql, params=params, rank=_unranked, plan="custom"), "type_impls": impls}


def _names(node: Node) -> list[str]:
    if is_generic(node):
        return []
    own = [] if node[0] in WRAPPERS else [node[0]]
    return own + [name for child in node[1] for name in _names(child)]


def _keys(node: Node) -> list[str]:
    """Names a stored signature must hold for ``node`` to match: its head under references and slices; each
    member of a tuple."""
    if node[0] == "()":
        return [name for child in node[1] for name in _keys(child)]
    head = concrete_head(node)
    return [key(head[0])] if head is not None else []


def _unranked(rows: list[tuple]) -> list[Ranked]:
    raise TypeError("type rows are ranked by type_ranking")


def type_ranking(*, query: TypeQuery, rows: list[tuple], impl_rows: list[tuple], depth: int) -> list[Ranked]:
    impls = {type_key: set(traits) for type_key, traits in impl_rows}
    matcher = Matcher(impls)
    scored = []
    for row in rows:
        signature = json.loads(row[1]) if isinstance(row[1], str | bytes) else row[1]
        found = matcher.signature(query, signature)
        if found is None:
            continue
        score, explanation = found
        doc = DocRow._make(row[-6:])
        scored.append((-score, len(doc.path), doc.path, Ranked(row[0], None, score, score, explanation, doc)))
    scored.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in scored[:depth]]


# --- matching --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Match:
    score: float
    notes: list[str] = field(default_factory=list)


class Matcher:
    """Matches query types against stored signatures; ``impls``: type key -> keys of the traits it implements."""

    def __init__(self, impls: dict[str, set[str]] | None = None) -> None:
        self.impls = impls or {}

    def node(self, q: Node, f: Node, depth: int = 0, inside: bool = False) -> _Match | None:
        """``inside``: ``f`` is a type argument of a type the query names (``T`` in ``Mutex<T>`` for ``Mutex<u32>``),
        where an unbounded parameter takes any type; elsewhere it takes only the query's own parameters."""
        if depth > 6:
            return None
        qn, fn = q[0], f[0]
        if is_generic(q):  # a query type parameter takes anything
            return _Match(0.9 if is_generic(f) else 0.75)
        if fn in _REFS and f[1]:
            if qn in _REFS and q[1]:
                inner = self.node(q[1][0], f[1][0], depth + 1, inside)
                return _scaled(inner, 1.0 if qn == fn or (qn == "&" and fn == "&mut") else 0.9)
            return _scaled(self.node(q, f[1][0], depth + 1, inside), 0.97)
        if qn in _REFS and q[1]:
            return _scaled(self.node(q[1][0], f, depth + 1, inside), 0.8)
        if is_generic(f):
            return self._parameter(q, f, depth, inside)
        best = None
        if key(qn) == key(fn):
            best = self._same_name(q, f, depth)
        for child in f[1]:  # unboxing: Value in Result<Value>
            inner = _scaled(self.node(q, child, depth + 1), 0.85)
            if inner is not None and (best is None or inner.score > best.score):
                best = inner
        return best

    def _same_name(self, q: Node, f: Node, depth: int) -> _Match | None:
        if not q[1]:
            return _Match(1.0)
        notes: list[str] = []
        scores = []
        for position, qa in enumerate(q[1]):
            options = []
            # As many arguments on both sides: by position (Map<String, Value> is not Map<Value, String>).
            candidates = [(position, f[1][position])] if len(q[1]) == len(f[1]) else enumerate(f[1])
            for index, fa in candidates:
                found = self.node(qa, fa, depth + 1, inside=True)
                if found is not None:
                    options.append((found.score * (1.0 if index == position else 0.95), found.notes))
            if not options:
                return None
            score, found_notes = max(options, key=lambda option: option[0])
            scores.append(score)
            notes.extend(found_notes)
        return _Match(0.6 + 0.4 * sum(scores) / len(scores), notes)

    def _parameter(self, q: Node, f: Node, depth: int, inside: bool) -> _Match | None:
        name = f[0][1:]
        if name.startswith("::"):  # an associated type (F::Output): what it is depends on the caller's types
            return None
        bounds = [b for b in f[1] if key(b[0]) not in IGNORED_BOUNDS]
        qk = key(q[0])
        for bound in bounds:
            if key(bound[0]) == qk:  # `Future` for `impl Future`, `AsyncRead` for `R: AsyncRead`
                if not q[1]:
                    return _Match(0.9)
                args = self._same_name(q, bound, depth)
                return _Match(0.9 * args.score, args.notes) if args is not None else None
        shown = render(q)
        if not bounds:
            if not inside:
                return None
            return _Match(0.5, [f"{name} = {shown}"] if name not in ("_", "impl") else [])
        implemented = self.impls.get(qk)
        if implemented:
            held = [b for b in bounds if key(b[0]) in implemented]
            if held:
                return _Match(BOUND_HELD, [f"{name} = {shown}: {held[0][0]}" if name not in ("impl", "_")
                                    else f"{shown}: {held[0][0]}"])
        if (implemented is None or qk in STD_TYPES) and all(key(b[0]) in STD_TRAITS for b in bounds):
            # The standard library's types (str, String, u64) and those no indexed crate implements anything
            # for: its common traits are taken on trust, at a lower score.
            return _Match(STD_TRUSTED, [f"{name} = {shown}" if name not in ("impl", "_") else shown])
        for bound in bounds:  # impl Into<String>, F: Future<Output = T>: the type is in the bound's arguments
            for arg in bound[1]:
                inner = _scaled(self.node(q, arg, depth + 1), 0.7)
                if inner is not None:
                    return inner
        return None

    def signature(self, query: TypeQuery, signature: dict) -> tuple[float, str] | None:
        inputs: list[Node] = signature.get("i") or []
        output: Node | None = signature.get("o")
        score = 1.0
        notes: list[str] = []
        used: list[int] = []
        if query.inputs:
            found = self._inputs(list(query.inputs), inputs)
            if found is None:
                return None
            match, used = found
            score *= match.score
            notes += match.notes
        if query.outputs:
            if output is None or output == ["()", []]:
                return None
            targets = output[1] if output[0] == "()" and len(query.outputs) > 1 else [output]
            found = self._inputs(list(query.outputs), targets)
            if found is None:
                return None
            score *= found[0].score
            notes += found[0].notes
        if query.arrow:  # as rustdoc: fewer inputs the query leaves unmatched rank first
            score *= EXTRA_INPUT ** (len(inputs) - len(query.inputs))
        for q in query.anywhere:
            sides = [*inputs, *([output] if output else [])]
            options = [(m, i) for i, f in enumerate(sides) if (m := self.node(q, f)) is not None]
            if not options:
                return None
            best, index = max(options, key=lambda option: option[0].score)
            score *= best.score
            notes += best.notes
            if index < len(inputs):
                used.append(index)
        shown_inputs = [render(inputs[i]) for i in sorted(set(used))] if query.inputs or query.anywhere else []
        if query.inputs and not shown_inputs:
            shown_inputs = [render(i) for i in inputs]
        left = ", ".join(shown_inputs)
        explanation = f"{left} → {render(output)}" if left else f"→ {render(output)}"
        unique_notes = list(dict.fromkeys(notes))
        if unique_notes:
            explanation += " (" + "; ".join(unique_notes[:3]) + ")"
        return score, explanation.strip()

    def _inputs(self, wanted: list[Node], have: list[Node]) -> tuple[_Match, list[int]] | None:
        """Each wanted type to a different one of ``have`` (any order), best total; None if one cannot be placed."""
        if len(wanted) > len(have):
            return None
        table = [[self.node(q, f) for f in have] for q in wanted]
        best: tuple[float, tuple[int, ...]] | None = None
        if len(have) <= 7:
            for choice in itertools.permutations(range(len(have)), len(wanted)):
                if any(table[w][h] is None for w, h in enumerate(choice)):
                    continue
                total = sum(table[w][h].score for w, h in enumerate(choice))
                total += 0.001 * sum(1 for w, h in enumerate(choice) if w == h)  # in the written order
                if best is None or total > best[0]:
                    best = (total, choice)
        else:
            taken: list[int] = []
            for row in table:
                options = [(m.score, h) for h, m in enumerate(row) if m is not None and h not in taken]
                if not options:
                    return None
                taken.append(max(options)[1])
            best = (sum(table[w][h].score for w, h in enumerate(taken)), tuple(taken))
        if best is None:
            return None
        notes = [note for w, h in enumerate(best[1]) for note in table[w][h].notes]
        return _Match(min(1.0, best[0] / len(wanted)), notes), list(best[1])


def _scaled(match: _Match | None, factor: float) -> _Match | None:
    if match is None:
        return None
    return _Match(match.score * factor, match.notes)
