"""Stage 4: cut one item's documentation into chunks that fit the embedding model.

Every chunk belongs to exactly one item and starts with a header (path, kind, signature) so that it
stands alone in search results and in the embedding. The docs are split at markdown headings, then
paragraphs, then sentences, then lines/words, and greedily packed back together up to the token
budget. Fenced code blocks stay whole unless a single block alone exceeds the budget; then they are
cut at line boundaries and every piece is re-fenced so it is still a valid code block.

Token counts: the packer assumes a count is additive over text joined with whitespace, which holds
exactly for the BERT word-piece tokenizer of the default model (whitespace is never a token). Each
finished chunk is counted once more as a whole; a counter that is not additive (an approximation)
and overflows makes the item be packed again with a smaller budget, so no chunk ever exceeds it.

What is left out of chunk text (it stays in ``Document.docs``): rustdoc's hidden doctest lines
(``# use foo;`` inside Rust code blocks, which docs.rs does not show either, so JSON and HTML
sources chunk alike), markdown link reference definitions (``[`Foo`]: crate::Foo``) and the URLs that
``Document.docs`` gives links: rustdoc JSON items are chunked from their markdown as written
(``ParsedItem.chunk_docs``, where intra-doc links name paths), HTML items with each link as its text
(``[`lock`](https://docs.rs/…#method.lock)`` as ```lock```), since a URL would take a good share of the model's
word-piece budget and put ``https``, ``docs``, ``rs``… into every keyword index.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crates.pipeline.doclinks import link_text_only
from crates.pipeline.types import ChunkData, ParsedItem

if TYPE_CHECKING:
    from crates.pipeline.embed import Embedder

logger = logging.getLogger(__name__)

CountTokens = Callable[[str], int]

KIND_LABELS = {
    "assoc_type": "associated type",
    "assoc_const": "associated constant",
    "type_alias": "type alias",
    "trait_alias": "trait alias",
}
ELLIPSIS = " …"
BLOCK_SEP = "\n\n"
# Joins made of these only are whitespace to BERT's pre-tokenizer and to the chunker's token counters.
_ADDITIVE_SEPARATORS = " \t\n\r"
# A continuation chunk repeats the header; a long signature there is cut to this share of the budget.
CONTINUATION_HEADER_SHARE = 4
# When the full signature leaves less than this share of the budget in the first chunk, the first
# chunk carries the header alone instead of a sliver of docs.
MIN_FIRST_BODY_SHARE = 4
MAX_REPACK_ATTEMPTS = 6

_FENCE_OPEN_RE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_HEADING_RE = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_LINK_DEF_RE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S")
# Boundaries inside a paragraph, strongest first: list items, sentence ends, clause ends, newlines,
# any whitespace. The separator is kept so the text is rebuilt faithfully.
_LIST_ITEM_RE = re.compile(r"[ \t]*\n(?=[ \t]*(?:[-*+]|\d+[.)])[ \t])")
_SENTENCE_RE = re.compile(r"(?<=[.!?])[\"')\]*]*\s+")
_CLAUSE_RE = re.compile(r"(?<=[:;,])\s+")
_NEWLINE_RE = re.compile(r"[ \t]*\n\s*")
_SPACE_RE = re.compile(r"\s+")
_TEXT_LEVELS = (_LIST_ITEM_RE, _SENTENCE_RE, _CLAUSE_RE, _NEWLINE_RE, _SPACE_RE)
# Code keeps its indentation: cut at line ends only, then (one giant line) at whitespace.
_CODE_LEVELS = (re.compile(r"\n"), _SPACE_RE)

_RUST_LANG_ATTRS = frozenset(
    {
        "rust",
        "ignore",
        "should_panic",
        "no_run",
        "compile_fail",
        "test_harness",
        "standalone_crate",
        "allow_fail",
    }
)


@dataclass(slots=True)
class _Block:
    kind: str  # "heading" | "para" | "code"
    text: str
    fence_open: str = ""
    fence_close: str = ""
    code: str = ""  # a code block's inner lines


@dataclass(slots=True)
class _Piece:
    text: str
    tokens: int
    sep: str  # joins this piece to the previous one in the same chunk
    sticky: bool = False  # a heading: must not end a chunk
    section_tokens: int = 0  # for a heading: tokens up to the next heading
    splittable: _Block | None = None  # the source, to cut further when a chunk has less room


class CachedCounter:
    """Memoises a token counter: headers and paragraphs repeat a lot across items (trait impls).

    ``additive``: the counter's count of texts joined with ASCII whitespace is the sum of their counts (true of
    BERT word pieces and of ``approx_token_count``); taken from the wrapped counter's own ``additive`` attribute
    unless given.
    """

    def __init__(self, count_tokens: CountTokens, *, max_entries: int = 200_000, additive: bool | None = None) -> None:
        self._count = count_tokens
        self._cache: dict[str, int] = {}
        self._max_entries = max_entries
        self.additive = bool(getattr(count_tokens, "additive", False) if additive is None else additive)

    def __call__(self, text: str) -> int:
        cached = self._cache.get(text)
        if cached is None:
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            cached = self._cache[text] = self._count(text)
        return cached


def chunk_item(item: ParsedItem, *, max_tokens: int, count_tokens: CountTokens) -> list[ChunkData]:
    """Chunks of one item, each at most ``max_tokens`` by ``count_tokens``, header included."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens={max_tokens} is too small to hold a chunk header")
    count = count_tokens if isinstance(count_tokens, CachedCounter) else CachedCounter(count_tokens)
    first_header, cont_header = _headers(item, max_tokens=max_tokens, count=count)
    blocks = _blocks(_body_markdown(item))

    budget = max_tokens
    for _attempt in range(MAX_REPACK_ATTEMPTS):
        packed = _pack_item(blocks, first_header, cont_header, budget=budget, max_tokens=max_tokens, count=count)
        texts = [text for text, _tokens in packed]
        counts = [count(text) if tokens is None else tokens for text, tokens in packed]
        overflow = max(counts) - max_tokens
        if overflow <= 0:
            return [_chunk(ordinal, text, n) for ordinal, (text, n) in enumerate(zip(texts, counts, strict=True))]
        # Only a non-additive counter gets here; shrink the body budget and pack again.
        budget -= max(overflow, 1)
    logger.warning("chunking %s: token counter is not additive, truncating chunks to fit", item.path)
    texts = [_truncate_to(text, max_tokens, count) for text in texts]
    return [_chunk(ordinal, text, count(text)) for ordinal, text in enumerate(texts)]


def token_counter(embedder: Embedder) -> CachedCounter:
    """One memoising counter for many items (``counts_additively``: see CachedCounter's ``additive``)."""
    return CachedCounter(embedder.count_tokens, additive=getattr(embedder, "counts_additively", False))


def chunk_items(
    items: Iterable[ParsedItem], *, embedder: Embedder, max_tokens: int | None = None
) -> Iterator[tuple[ParsedItem, list[ChunkData]]]:
    """Chunk many items with the embedder's tokenizer and budget, sharing one token-count cache."""
    count = token_counter(embedder)
    budget = max_tokens or embedder.max_tokens
    for item in items:
        yield item, chunk_item(item, max_tokens=budget, count_tokens=count)


def _chunk(ordinal: int, text: str, tokens: int) -> ChunkData:
    return ChunkData(
        ordinal=ordinal,
        text=text,
        token_count=tokens,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )


# --- header ------------------------------------------------------------------------


def _headers(item: ParsedItem, *, max_tokens: int, count: CountTokens) -> tuple[str, str]:
    """(first chunk header, continuation header), each without the trailing blank line."""
    label = f"{item.path} ({KIND_LABELS.get(item.kind, item.kind)})"
    label = _truncate_to(label, max_tokens // 2, count)
    signature = item.signature.strip()
    full = f"{label}\n{signature}" if signature else label
    full_tokens = count(full)
    first = full if full_tokens <= max_tokens else _truncate_signature(label, signature, max_tokens // 2, count)
    cont_limit = max(max_tokens // CONTINUATION_HEADER_SHARE, count(label))
    cont = first if count(first) <= cont_limit else _truncate_signature(label, signature, cont_limit, count)
    return first, cont


def _truncate_signature(label: str, signature: str, limit: int, count: CountTokens) -> str:
    """Label plus the longest whitespace-cut prefix of the signature that fits ``limit``."""
    if count(label + "\n" + ELLIPSIS.strip()) > limit:
        return label
    cuts = [m.start() for m in _SPACE_RE.finditer(signature)] or [len(signature)]
    lo, hi = 0, len(cuts) - 1
    best = ""
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = f"{label}\n{signature[: cuts[mid]].rstrip()}{ELLIPSIS}"
        if count(candidate) <= limit:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best or f"{label}\n{ELLIPSIS.strip()}"


def _truncate_to(text: str, limit: int, count: CountTokens) -> str:
    """Longest prefix of ``text`` within ``limit`` tokens (last resort; cuts anywhere)."""
    if count(text) <= limit:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


# --- markdown blocks ---------------------------------------------------------------------


def _body_markdown(item: ParsedItem) -> str:
    # Chunks from rustdoc JSON keep the author's intra-doc links as written (``[`Sender`]``,
    # ``[`lock`](Self::lock)``: paths, no URLs), which search quality measured better than their text alone
    # (bench/README.md). HTML docs carry URLs: chunks get the text.
    docs = item.chunk_docs if item.chunk_docs is not None else link_text_only(item.docs)
    docs = docs.replace("\r\n", "\n").replace("\r", "\n").strip()
    doc_aliases = item.metadata.get("doc_aliases")
    if doc_aliases:  # `#[doc(alias)]`: the names users search for it by
        line = "Aliases: " + ", ".join(doc_aliases)
        docs = f"{line}\n\n{docs}" if docs else line
    if item.deprecated:
        note = item.deprecation_note.strip()
        deprecated = f"Deprecated: {note}" if note else "Deprecated."
        docs = f"{deprecated}\n\n{docs}" if docs else deprecated
    return docs


def _blocks(markdown: str) -> list[_Block]:
    blocks: list[_Block] = []
    lines = markdown.split("\n")
    para: list[str] = []

    def flush_para() -> None:
        if para:
            blocks.append(_Block("para", "\n".join(para).strip()))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE_OPEN_RE.match(line)
        if fence and not (fence.group(2)[0] == "`" and "`" in fence.group(3)):
            flush_para()
            i = _read_fence(lines, i, fence, blocks)
            continue
        if not line.strip():
            flush_para()
        elif _HEADING_RE.match(line):
            flush_para()
            blocks.append(_Block("heading", line.strip()))
        elif not _LINK_DEF_RE.match(line):
            para.append(line)
        i += 1
    flush_para()
    return blocks


def _read_fence(lines: list[str], start: int, fence: re.Match, blocks: list[_Block]) -> int:
    """Append the code block opened at ``start``; return the index after it."""
    indent, marker, info = fence.group(1), fence.group(2), fence.group(3).strip()
    close_re = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
    body: list[str] = []
    i = start + 1
    while i < len(lines) and not close_re.match(lines[i]):
        body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
        i += 1
    if _is_rust(info):
        body = _visible_rust_lines(body)
    code = "\n".join(body).strip("\n")
    if code.strip():
        blocks.append(_code_block(f"{marker}{info}", code, marker))
    return i + 1


def _code_block(fence_open: str, code: str, fence_close: str) -> _Block:
    return _Block(
        "code", f"{fence_open}\n{code}\n{fence_close}", fence_open=fence_open, fence_close=fence_close, code=code
    )


def _is_rust(info: str) -> bool:
    for attr in re.split(r"[\s,{}]+", info):
        attr = attr.strip(".")
        if not attr or attr in _RUST_LANG_ATTRS or attr.startswith(("edition", "ignore-")):
            continue
        if re.fullmatch(r"E\d{4}", attr):
            continue
        return False
    return True


def _visible_rust_lines(lines: list[str]) -> list[str]:
    """Drop rustdoc's hidden doctest lines (``# ...``) and unescape ``##``, as rendered docs do."""
    visible = []
    for line in lines:
        stripped = line.lstrip()
        if stripped == "#" or stripped.startswith("# "):
            continue
        if stripped.startswith("##"):
            line = line.replace("##", "#", 1)
        visible.append(line)
    return visible


# --- splitting ----------------------------------------------------------------------


def _pieces(blocks: list[_Block], cap: int, count: CountTokens) -> list[_Piece]:
    pieces: list[_Piece] = []
    for block in blocks:
        tokens = count(block.text)
        if tokens <= cap:
            pieces.append(_Piece(block.text, tokens, BLOCK_SEP, sticky=block.kind == "heading", splittable=block))
            continue
        parts = _split_block(block, cap, count)
        parts[0].sep = BLOCK_SEP
        pieces.extend(parts)
    _mark_sections(pieces)
    return pieces


def _mark_sections(pieces: list[_Piece]) -> None:
    heading: _Piece | None = None
    for piece in pieces:
        if piece.sticky:
            heading = piece
        if heading is not None:
            heading.section_tokens += piece.tokens


def _split_block(block: _Block, cap: int, count: CountTokens) -> list[_Piece]:
    """Pieces of one block, each within ``cap`` tokens (only called when the block is larger)."""
    if block.kind != "code":
        return [_Piece(text, n, sep) for sep, text, n in _split_text(block.text, cap, count, _TEXT_LEVELS)]
    overhead = count(block.fence_open) + count(block.fence_close)
    if overhead * 2 >= cap:
        return [_Piece(text, n, sep) for sep, text, n in _split_text(block.text, cap, count, _CODE_LEVELS)]
    return [
        _Piece(
            f"{block.fence_open}\n{text}\n{block.fence_close}",
            n + overhead,
            "\n",
            splittable=_code_block(block.fence_open, text, block.fence_close),
        )
        for _sep, text, n in _split_text(block.code, cap - overhead, count, _CODE_LEVELS)
    ]


def _split_text(text: str, cap: int, count: CountTokens, levels: tuple[re.Pattern, ...]) -> list[tuple[str, str, int]]:
    """(separator, text, tokens) parts within ``cap``: cut at the strongest boundary that helps."""
    tokens = count(text)
    if tokens <= cap:
        return [("", text, tokens)]
    if not levels:
        return _split_chars(text, cap, count)
    parts = _cut(text, levels[0])
    if len(parts) == 1:
        return _split_text(text, cap, count, levels[1:])
    units: list[tuple[str, str, int]] = []
    for sep, part in parts:
        sub = _split_text(part, cap, count, levels[1:])
        units.append((sep, sub[0][1], sub[0][2]))
        units.extend(sub[1:])
    return _merge(units, cap)


def _cut(text: str, boundary: re.Pattern) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    sep, pos = "", 0
    for match in boundary.finditer(text):
        # A sentence boundary keeps its closing quote/bracket with the sentence before it.
        end_of_part = match.start() + len(match.group(0)) - len(match.group(0).lstrip("\"')]*"))
        if end_of_part > pos:
            parts.append((sep, text[pos:end_of_part]))
            sep, pos = text[end_of_part : match.end()], match.end()
    if pos < len(text):
        parts.append((sep, text[pos:]))
    return parts or [("", text)]


def _merge(units: list[tuple[str, str, int]], cap: int) -> list[tuple[str, str, int]]:
    merged: list[tuple[str, str, int]] = []
    for sep, text, tokens in units:
        if merged and merged[-1][2] + tokens <= cap:
            prev_sep, prev_text, prev_tokens = merged[-1]
            merged[-1] = (prev_sep, prev_text + sep + text, prev_tokens + tokens)
        else:
            merged.append((sep, text, tokens))
    return merged


def _split_chars(text: str, cap: int, count: CountTokens) -> list[tuple[str, str, int]]:
    """A single giant word: cut it into the longest prefixes that fit."""
    out: list[tuple[str, str, int]] = []
    rest = text
    while rest:
        head = _truncate_to(rest, cap, count) or rest[:1]
        out.append(("", head, count(head)))
        rest = rest[len(head) :]
    return out


# --- packing ------------------------------------------------------------------------


def _pack_item(
    blocks: list[_Block], first_header: str, cont_header: str, *, budget: int, max_tokens: int, count: CountTokens
) -> list[tuple[str, int | None]]:
    """(chunk text, its token count when known without counting it again, else None)."""
    first_room = budget - count(first_header)
    cont_room = budget - count(cont_header)
    if not blocks:
        return [(first_header, count(first_header))]
    pieces = _pieces(blocks, max(cont_room, 1), count)
    bodies: list[list[_Piece]] = []
    if first_room < max_tokens // MIN_FIRST_BODY_SHARE:
        # The full signature nearly fills the first chunk: let it stand alone.
        bodies.append([])
        first_room = cont_room
    bodies.extend(_pack(pieces, first_room=max(first_room, 1), room=max(cont_room, 1), count=count))
    additive = getattr(count, "additive", False)
    packed = []
    for index, body in enumerate(bodies):
        header = first_header if index == 0 else cont_header
        text = f"{header}{BLOCK_SEP}{_join(body)}" if body else header
        packed.append((text, _joined_count(header, body, count) if additive else None))
    return packed


def _joined_count(header: str, body: list[_Piece], count: CountTokens) -> int | None:
    """Tokens of header + pieces as ``_pack_item`` joins them, from the (memoised) counts of the parts.

    Exact for an additive counter when every join is ASCII whitespace; any other join (a giant word cut
    with no separator) returns None and the chunk is counted whole. Each piece is counted by its own text,
    never by the packer's running sums, so nothing rests on how a piece was merged.
    """
    total = count(header)
    for position, piece in enumerate(body):
        sep = BLOCK_SEP if position == 0 else piece.sep
        if not sep or sep.strip(_ADDITIVE_SEPARATORS):
            return None
        total += count(piece.text)
    return total


def _pack(pieces: list[_Piece], *, first_room: int, room: int, count: CountTokens) -> list[list[_Piece]]:
    """Greedy packing in order; a heading never ends a chunk and prefers to start one."""
    chunks: list[list[_Piece]] = []
    current: list[_Piece] = []
    used = 0
    cap = first_room
    stack = list(reversed(pieces))  # pop() takes the next piece
    while stack:
        piece = stack.pop()
        only_headings = all(p.sticky for p in current)
        fits = used + piece.tokens <= cap
        if fits and (only_headings or not _starts_new_section(piece, used, cap)):
            current.append(piece)
            used += piece.tokens
            continue
        if not only_headings:
            carried: list[_Piece] = []
            while current[-1].sticky:
                carried.insert(0, current.pop())
            chunks.append(current)
            current, used, cap = carried, sum(p.tokens for p in carried), room
            stack.append(piece)
            continue
        # Nothing but headings (or nothing) so far: cut the piece to fill the room they leave.
        left = cap - used
        parts = _recut(piece, left, count) if left > 0 and not piece.sticky else []
        if len(parts) > 1 or (parts and parts[0].tokens <= left):
            stack.extend(reversed(parts))
        elif current:
            chunks.append(current)
            current, used, cap = [], 0, room
            stack.append(piece)
        else:
            # Cannot be cut any smaller by this counter; the final count check repacks the item.
            current, used = [piece], piece.tokens
    if current:
        chunks.append(current)
    return chunks


def _starts_new_section(piece: _Piece, used: int, cap: int) -> bool:
    """Start a fresh chunk at a heading whose section does not fit the rest of this one."""
    if not piece.sticky or used == 0 or used + piece.section_tokens <= cap:
        return False
    return piece.section_tokens <= cap or used * 2 >= cap


def _recut(piece: _Piece, cap: int, count: CountTokens) -> list[_Piece]:
    block = piece.splittable
    if block is None:
        block = _Block("para", piece.text)
    parts = _split_block(block, cap, count)
    parts[0].sep = piece.sep
    return parts


def _join(pieces: list[_Piece]) -> str:
    if not pieces:
        return ""
    return pieces[0].text + "".join(p.sep + p.text for p in pieces[1:])
