"""A hit's snippet as plain text: chunks are markdown (headings, code fences, emphasis, code spans), and a
snippet that joins them into one line shows ``# Examples ```rust use x; let y = ...`` instead of words."""

from __future__ import annotations

import re

from crates.pipeline.doclinks import link_text_only

SNIPPET_CHARS = 320

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+|$)")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_QUOTE = re.compile(r"^\s*>\s?")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}")
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_EMPHASIS = re.compile(r"(\*\*|\*)(?=\S)(.+?)(?<=\S)\1")
_CODE_SPAN = re.compile(r"(`+)\s?(.+?)\s?\1")


def _inline(text: str) -> str:
    """Inline markdown to text: code spans and emphasis lose their markers, HTML its tags."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), text)
    text = _EMPHASIS.sub(lambda m: m.group(2), text)
    text = _HTML_TAG.sub("", text)
    return text.replace("|", " ")


def _blocks(markdown: str) -> tuple[list[str], list[str]]:
    """(prose paragraphs as one line each, the code lines): headings, quotes and list markers dropped."""
    prose: list[str] = []
    code: list[str] = []
    paragraph: list[str] = []
    fence = ""
    for line in markdown.splitlines():
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            elif line.strip():
                code.append(line.strip())
            continue
        if opened:
            fence = opened.group(1)
        if opened or not line.strip() or _HEADING.match(line) or _TABLE_RULE.match(line):
            if paragraph:
                prose.append(" ".join(paragraph))
                paragraph = []
            continue
        line = _QUOTE.sub("", line)
        if _LIST_MARKER.match(line) and paragraph:  # each list item reads as its own sentence
            prose.append(" ".join(paragraph))
            paragraph = []
        paragraph.append(_LIST_MARKER.sub("", line).strip())
    if paragraph:
        prose.append(" ".join(paragraph))
    return [" ".join(_inline(p).split()) for p in prose if p.strip()], code


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?:;…" else text + "."


def snippet(text: str, *, path: str, signature: str, limit: int = SNIPPET_CHARS) -> str:
    """The chunk text as readable text, without the header lines that repeat the path and signature.

    Prose first, paragraphs as sentences; code only when the chunk has no prose (then its first line).
    """
    lines = link_text_only(text).splitlines()  # a chunk from rustdoc JSON keeps intra-doc link syntax
    while lines and (not lines[0].strip() or path in lines[0] or (signature and lines[0].strip() in signature)):
        lines.pop(0)
    prose, code = _blocks("\n".join(lines))
    body = " ".join(_sentence(p) for p in prose if p.strip(" .")) if prose else ""
    if not body and code:
        body = "Example: " + code[0]
    body = body or " ".join(text.split())
    return body if len(body) <= limit else body[: limit - 1].rstrip() + "…"
