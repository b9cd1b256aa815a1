"""Links in item docs (markdown): rustdoc's intra-doc links made into URLs, and the link text chunks carry.

rustdoc JSON keeps the author's markdown, where a link names an item (``[`MutexGuard`]``,
``[`lock`](Self::lock)``, ``[Mutex](crate::sync::Mutex)``, ``[x]: crate::X``) and says in the item's ``links``
map which item each destination resolved to. ``resolve_links`` rewrites each such link to a normal markdown
link with the URL its caller finds for it: an agent can follow it and a renderer shows no literal brackets. A
link rustdoc could not resolve keeps its text without the brackets. Ordinary links (``https://…``, ``#anchor``,
``../x.html``) are left as written, and so is everything inside code blocks and code spans.

``link_text_only`` is what chunks get: every link reduced to its text, because URLs would eat the embedding
model's word-piece budget and pollute keyword search.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

# destination as written (``Self::lock``, ``"`Foo`"``) -> URL, or None when rustdoc did not resolve it
Resolve = Callable[[str], str | None]

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_DEFINITION_RE = re.compile(
    r"^(?P<indent> {0,3})\[(?P<label>(?:[^\]\\]|\\.)+)\]:[ \t]*(?P<dest><[^>\n]*>|\S+)"
    r"(?P<title>[ \t]+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^)\n]*\)))?[ \t]*$"
)
# What rustdoc tries as an intra-doc link: an item path, maybe in backticks, with a disambiguator
# (``struct@``, ``fn@``), call or macro suffix (``()``, ``!``) or a fragment (``#method.x``).
_PATH_LIKE_RE = re.compile(
    r"(?:[a-z]+@)?(?:::)?[A-Za-z_][A-Za-z0-9_]*(?:<[^<>]*>)?(?:::[A-Za-z_][A-Za-z0-9_]*(?:<[^<>]*>)?)*"
    r"(?:\(\)|!\(\)|!\[\]|!\{\}|!)?(?:#[A-Za-z0-9_.\-]*)?"
)
_BLOCK_STARTS = frozenset("`~[")
_SPECIAL_RE = re.compile(r"[\\`\[!]")
# A line that may open a fence or be a link reference definition (see _Rewriter._segments).
_BLOCK_LINE_RE = re.compile(r"^ {0,3}[`~\[]", re.MULTILINE)
_URL_LIKE_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:(?!:)|[/#.?])|\.html?\b|/")


def resolve_links(markdown: str, *, resolve: Resolve, page_url: str | None = None) -> str:
    """``markdown`` with every intra-doc link rustdoc resolved turned into a link to its URL (see module doc).

    ``page_url``: the URL of the page the docs are on; an ordinary relative link (``task/index.html``,
    ``#method.x``) is made relative to it, as a browser on that page would, instead of to nothing.
    """
    if "[" not in markdown:
        return markdown
    return _Rewriter(resolve, page_url=page_url).run(markdown)


def link_text_only(markdown: str) -> str:
    """``markdown`` with every link (inline, reference, shortcut) reduced to its text and link definitions
    dropped; code blocks and code spans unchanged."""
    if "[" not in markdown:
        return markdown
    return _Rewriter(None).run(markdown)


def is_intra_doc_candidate(destination: str) -> bool:
    """Whether rustdoc would try ``destination`` as an item path (not a URL, an anchor or a file)."""
    text = destination.strip().strip("`").strip()
    return bool(text) and not _URL_LIKE_RE.search(text) and bool(_PATH_LIKE_RE.fullmatch(text))


_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# Stands in for the docs root while joining URLs that stay relative to it (a local crate's docs).
_LOCAL_ROOT = "http://docs-root.invalid/"


def join_url(page_url: str, href: str) -> str:
    """``href`` as written on the page at ``page_url``; a ``page_url`` without a scheme is relative to the docs
    root, and so is the result then."""
    if _SCHEME_RE.match(href):
        return href
    if _SCHEME_RE.match(page_url):
        return urljoin(page_url, href)
    joined = urljoin(_LOCAL_ROOT + page_url, href)
    return joined.removeprefix(_LOCAL_ROOT) if joined.startswith(_LOCAL_ROOT) else joined


def markdown_destination(url: str) -> str:
    """``url`` written so a markdown link destination cannot end early (spaces, parentheses)."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def _normalize_label(label: str) -> str:
    return " ".join(label.split()).casefold()


@dataclass(slots=True)
class _Definition:
    destination: str
    url: str | None  # resolved intra-doc link; None: an ordinary link, or unresolved (see ``dropped``)
    dropped: bool  # an intra-doc definition rustdoc did not resolve: its uses become plain text
    relocated: str | None = None  # an ordinary relative link, made relative to the page instead


class _Rewriter:
    """One pass over the markdown. ``resolve`` None: reduce links to their text (chunk text)."""

    def __init__(self, resolve: Resolve | None, *, page_url: str | None = None) -> None:
        self.resolve = resolve
        self.page_url = page_url
        self.definitions: dict[str, _Definition] = {}

    # ------------------------------------------------------------ lines: fences and definitions

    def run(self, markdown: str) -> str:
        if not _BLOCK_LINE_RE.search(markdown):  # most docs: no fence, no definition, one run of text
            return self._inline(markdown)
        lines = markdown.split("\n")
        segments = self._segments(lines)
        for kind, start, _end in segments:
            if kind == "definition":
                self._collect_definition(lines[start])
        out: list[str] = []
        for kind, start, end in segments:
            if kind == "code":
                out.extend(lines[start:end])
            elif kind == "definition":
                line = self._definition_line(lines[start])
                if line is not None:
                    out.append(line)
            else:
                out.append(self._inline("\n".join(lines[start:end])))
        result = "\n".join(out)
        # Dropped definitions at the end leave the blank line that preceded them.
        return result if markdown.endswith("\n") else result.rstrip("\n")

    @staticmethod
    def _segments(lines: list[str]) -> list[tuple[str, int, int]]:
        """(kind, first line, end line) runs: "code" (a fenced block, fences included), "definition" (one
        link reference definition line) and "text"."""
        segments: list[tuple[str, int, int]] = []
        text_start = 0
        i = 0
        previous_blank = True
        while i < len(lines):
            line = lines[i]
            first = line.lstrip(" ")[:1]
            if first not in _BLOCK_STARTS:  # most lines: neither a fence nor a definition
                previous_blank = not line.strip()
                i += 1
                continue
            fence = _FENCE_RE.match(line)
            if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
                if text_start < i:
                    segments.append(("text", text_start, i))
                marker = fence.group(1)
                close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
                end = i + 1
                while end < len(lines) and not close.match(lines[end]):
                    end += 1
                end = min(end + 1, len(lines))
                segments.append(("code", i, end))
                i = text_start = end
                previous_blank = True
                continue
            # A definition cannot interrupt a paragraph; one after another definition or a blank line can start.
            if _DEFINITION_RE.match(line) and (previous_blank or (segments and segments[-1][0] == "definition"
                                                                  and text_start == i)):
                if text_start < i:
                    segments.append(("text", text_start, i))
                segments.append(("definition", i, i + 1))
                text_start = i + 1
                previous_blank = False
                i += 1
                continue
            previous_blank = not line.strip()
            i += 1
        if text_start < len(lines):
            segments.append(("text", text_start, len(lines)))
        return segments

    def _collect_definition(self, line: str) -> None:
        match = _DEFINITION_RE.match(line)
        label = _normalize_label(match["label"])
        if label in self.definitions:
            return  # the first definition of a label wins, as in CommonMark
        destination = match["dest"]
        if destination.startswith("<"):
            destination = destination[1:-1]
        url = self._lookup(destination) if self.resolve is not None else None
        dropped = url is None and is_intra_doc_candidate(destination)
        relocated = None if url is not None or dropped else self._relocated(destination)
        self.definitions[label] = _Definition(destination, url, dropped, relocated)

    def _definition_line(self, line: str) -> str | None:
        if self.resolve is None:
            return None
        match = _DEFINITION_RE.match(line)
        definition = self.definitions.get(_normalize_label(match["label"]))
        if definition is None or definition.destination != (
            match["dest"][1:-1] if match["dest"].startswith("<") else match["dest"]
        ):
            return line  # a later duplicate: ignored by renderers, kept as written
        # An intra-doc definition is gone either way: its uses now carry the URL inline (an agent reading one
        # paragraph sees where the link goes) or, unresolved, are plain text.
        if definition.url is not None or definition.dropped:
            return None
        if definition.relocated is not None:
            return f"{match['indent']}[{match['label']}]: {definition.relocated}{match['title'] or ''}"
        return line

    def _relocated(self, destination: str) -> str | None:
        """An ordinary link's destination made absolute against the page (None: nothing to change)."""
        if self.page_url is None or not destination or _SCHEME_RE.match(destination):
            return None
        return markdown_destination(join_url(self.page_url, destination))

    def _lookup(self, destination: str) -> str | None:
        assert self.resolve is not None
        stripped = destination.strip()
        # rustdoc keys a link by its destination as written; newer versions drop the backticks around it.
        for key in dict.fromkeys((destination, stripped, stripped.strip("<>"), stripped.strip("`").strip())):
            if key:
                url = self.resolve(key)
                if url:
                    return url
        return None

    # ------------------------------------------------------------ inline: code spans and links

    def _inline(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            # Jump over plain text: only these characters can start an escape, a code span or a link.
            special = _SPECIAL_RE.search(text, i)
            if special is None:
                out.append(text[i:])
                break
            if special.start() > i:
                out.append(text[i : special.start()])
                i = special.start()
            char = text[i]
            if char == "\\" and i + 1 < n:
                out.append(text[i : i + 2])
                i += 2
            elif char == "`":
                end = _code_span_end(text, i)
                out.append(text[i:end])
                i = end
            elif char == "[" or (char == "!" and text.startswith("[", i + 1)):
                consumed, replacement = self._link(text, i)
                out.append(replacement)
                i += consumed
            else:
                out.append(char)
                i += 1
        return "".join(out)

    def _link(self, text: str, start: int) -> tuple[int, str]:
        """(characters consumed, what replaces them) for a possible link starting at ``start``."""
        image = text[start] == "!"
        open_at = start + 1 if image else start
        close = _label_end(text, open_at)
        if close is None:
            return open_at + 1 - start, text[start : open_at + 1]
        label = text[open_at + 1 : close]
        after = close + 1
        if after < len(text) and text[after] == "(":
            dest_end = _destination_end(text, after)
            if dest_end is not None:
                whole = text[start:dest_end]
                if image:
                    return dest_end - start, whole
                destination, _title = _split_destination(text[after + 1 : dest_end - 1])
                return dest_end - start, self._inline_link(whole, label, destination)
        reference, end = None, after
        if after < len(text) and text[after] == "[":
            ref_close = _label_end(text, after)
            if ref_close is not None:
                reference, end = text[after + 1 : ref_close], ref_close + 1
        whole = text[start:end]
        if image:
            return end - start, whole
        return end - start, self._reference_link(whole, label, reference, preceded_by=text[start - 1 : start])

    def _inline_link(self, whole: str, label: str, destination: str) -> str:
        text = self._inline(label)
        if self.resolve is None:
            return text
        url = self._lookup(destination)
        if url is not None:
            return f"[{text}]({markdown_destination(url)})"
        if is_intra_doc_candidate(destination):
            return text
        relocated = self._relocated(destination)
        if relocated is not None:
            return f"[{text}]({relocated})"
        return f"[{text}]{whole[len(label) + 2 :]}"

    def _reference_link(self, whole: str, label: str, reference: str | None, *, preceded_by: str) -> str:
        key = reference if reference else label  # `[text][]` and `[text]` use the text as the label
        definition = self.definitions.get(_normalize_label(key)) if key.strip() else None
        text = self._inline(label)
        if definition is not None:
            if self.resolve is None or definition.dropped:
                return text
            if definition.url is not None:
                return f"[{text}]({markdown_destination(definition.url)})"
            return f"[{text}]{whole[len(label) + 2 :]}"
        if reference is not None and not reference.strip():
            reference = None  # collapsed `[text][]` without a definition: rustdoc tries the text
        candidate = reference if reference is not None else label
        if self.resolve is not None:
            url = self._lookup(candidate)
            if url is not None:
                return f"[{text}]({markdown_destination(url)})"
        if _looks_like_item_link(candidate) and not (preceded_by.isalnum() or preceded_by in ("_", "]")):
            return text
        if reference is None:
            # Not a link: keep the bracket as text and look for links inside the label.
            return f"[{text}]{whole[len(label) + 2 :]}"
        return whole


def _looks_like_item_link(candidate: str) -> bool:
    """A shortcut that reads as an item reference (``[`Foo`]``, ``[Foo::bar]``, ``[Vec]``), not prose in
    brackets (``[optional]``, ``[1]``): only those lose their brackets when nothing resolves them."""
    stripped = candidate.strip()
    if not is_intra_doc_candidate(stripped):
        return False
    bare = stripped.strip("`")
    return stripped.startswith("`") or "::" in bare or "@" in bare or bare.endswith(("()", "!")) or bare[:1].isupper()


def _code_span_end(text: str, start: int) -> int:
    """End of the code span opening at ``start`` (a backtick run), or the end of the run when none closes it."""
    run_end = start
    while run_end < len(text) and text[run_end] == "`":
        run_end += 1
    run = text[start:run_end]
    search = run_end
    while True:
        found = text.find(run, search)
        if found == -1:
            return run_end
        after = found + len(run)
        if after < len(text) and text[after] == "`":
            search = after
            while search < len(text) and text[search] == "`":
                search += 1
            continue
        return after


def _label_end(text: str, open_at: int) -> int | None:
    """Index of the ``]`` matching the ``[`` at ``open_at`` (nesting, escapes and code spans respected)."""
    depth = 0
    i = open_at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "`":
            i = _code_span_end(text, i)
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return i
        elif char == "\n" and text.startswith("\n", i + 1):
            return None  # a link label does not span a blank line
        i += 1
    return None


def _destination_end(text: str, open_at: int) -> int | None:
    """Index after the ``)`` closing the inline destination opened at ``open_at``."""
    depth = 0
    i = open_at
    in_angle = False
    quote = ""
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if quote:
            if char == quote:
                quote = ""
        elif in_angle:
            if char == ">":
                in_angle = False
        elif char == "<" and text[i - 1] in "( ":
            in_angle = True
        elif char in "\"'" and text[i - 1] in " \t\n":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        elif char == "\n" and text.startswith("\n", i + 1):
            return None
        i += 1
    return None


def _split_destination(inside: str) -> tuple[str, str]:
    """(destination, title) of an inline link's parenthesised part."""
    inside = inside.strip()
    if inside.startswith("<"):
        end = inside.find(">")
        if end != -1:
            return inside[1:end], inside[end + 1 :].strip()
    parts = inside.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""
