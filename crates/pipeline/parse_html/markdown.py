"""Turn rustdoc-rendered HTML back into text: code headers as plain Rust, doc blocks as markdown.

The JSON parser keeps the author's markdown; these helpers rebuild markdown that reads the same way from the
rendered page (fenced code blocks, ``#`` headings, lists, inline code), so documents from both sources chunk
and embed alike. Links stay links, with absolute URLs (rustdoc writes them relative to the page): inside
``links_relative_to(page_url)``, which the page parser opens for each page; outside it they keep their text only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

from bs4 import Tag
from bs4.element import NavigableString, PreformattedString

from crates.pipeline.doclinks import join_url, markdown_destination

# Decorations rustdoc puts inside code headers and doc blocks that are not part of the code or prose:
# "ⓘ" notable-trait and example tooltips, "§" anchors, "Source" links, "1.0.0" since-markers, copy buttons.
_SKIP_CLASSES = frozenset(
    {
        "tooltip",
        "notable-traits",
        "notable-traits-tooltip",
        "notable-traits-tooltiptext",
        "anchor",
        "doc-anchor",
        "rightside",
        "src",
        "srclink",
        "since",
        "information",
        "copy-button",
        "emoji",
    }
)
_SKIP_TAGS = frozenset({"script", "style", "button", "noscript", "template", "img", "svg"})
# In code, a <summary> is rustdoc's "Show 32 methods" toggle around a long declaration, not code.
_SKIP_IN_CODE = frozenset({"summary"})
_INLINE_TAGS = frozenset(
    {
        "a", "abbr", "b", "bdi", "bdo", "br", "cite", "code", "data", "del", "dfn", "em", "i", "ins", "kbd",
        "mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var",
        "wbr", "img", "svg",
    }
)  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLANK_LINES = re.compile(r"\n{3,}")
# The URL of the page being converted (absolute, or relative to the docs root for a local `cargo doc` tree).
# A context variable rather than a parameter of every converter below: one page's conversion is one call tree.
_PAGE_URL: ContextVar[str | None] = ContextVar("ferrodex_html_page_url", default=None)
_NOT_FOLLOWABLE = ("javascript:", "data:")


@contextlib.contextmanager
def links_relative_to(page_url: str) -> Iterator[None]:
    """Keep links (``[text](url)``) while converting the page at ``page_url``, hrefs made absolute against it."""
    token = _PAGE_URL.set(page_url)
    try:
        yield
    finally:
        _PAGE_URL.reset(token)


def classes_of(tag: Tag) -> list[str]:
    """The CSS classes of a tag, whether the soup split multi-valued attributes or kept them as text."""
    classes = tag.get("class")
    if not classes:
        return []
    return classes.split() if isinstance(classes, str) else list(classes)


def find_by_class(root: Tag, css_class: str, *, name: str | None = None, recursive: bool = True) -> Tag | None:
    """First tag under ``root`` having ``css_class`` (and tag ``name``), in document order."""
    candidates = root.descendants if recursive else root.children
    for tag in candidates:
        if isinstance(tag, Tag) and (name is None or tag.name == name) and css_class in classes_of(tag):
            return tag
    return None


def _skipped(tag: Tag) -> bool:
    if tag.name in _SKIP_TAGS:
        return True
    classes = tag.get("class")
    return bool(classes) and not _SKIP_CLASSES.isdisjoint(classes_of(tag))


def code_text(element: Tag) -> str:
    """The code as rustdoc shows it, without tooltips, anchors and source links; ``<br>`` become newlines."""
    parts: list[str] = []
    _collect_code(element, parts)
    return "".join(parts)


def _collect_code(element: Tag, parts: list[str]) -> None:
    for child in element.children:
        if isinstance(child, Tag):
            if child.name == "br":
                parts.append("\n")
            elif child.name not in _SKIP_IN_CODE and not _skipped(child):
                # A div is a line of its own: `#[repr(C)]` in div.code-attribute, a where clause in div.where.
                if child.name == "div":
                    parts.append("\n")
                _collect_code(child, parts)
                if child.name == "div":
                    parts.append("\n")
        elif isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
            parts.append(str(child))


def one_line(text: str) -> str:
    """Collapse all whitespace (including non-breaking spaces) to single spaces."""
    return " ".join(text.split())


def inline_markdown(element: Tag) -> str:
    """Inline content of one element as markdown text (code in backticks, emphasis kept, links as text)."""
    parts: list[str] = []
    _collect_inline(element, parts)
    return "".join(parts)


def _collect_inline(element: Tag, parts: list[str]) -> None:
    for child in element.children:
        if isinstance(child, Tag):
            _inline_tag(child, parts)
        elif isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
            parts.append(str(child))


def _inline_tag(tag: Tag, parts: list[str]) -> None:
    name = tag.name
    if name == "br":
        parts.append("\n")
    elif _skipped(tag):
        return
    elif name in ("code", "kbd", "samp", "tt"):
        parts.append(_backticks(code_text(tag)))
    elif name in ("em", "i"):
        parts.append(_wrap(inline_markdown(tag), "*"))
    elif name in ("strong", "b"):
        parts.append(_wrap(inline_markdown(tag), "**"))
    elif name in ("del", "s", "strike"):
        parts.append(_wrap(inline_markdown(tag), "~~"))
    elif name == "a":
        parts.append(_link(tag))
    else:
        _collect_inline(tag, parts)


def _link(tag: Tag) -> str:
    text = inline_markdown(tag)
    page_url = _PAGE_URL.get()
    href = tag.get("href")
    if page_url is None or not isinstance(href, str) or not href.strip() or not text.strip():
        return text
    href = href.strip()
    if href.lower().startswith(_NOT_FOLLOWABLE) or (href.startswith("#") and _in_heading(tag)):
        return text  # older rustdoc wraps a heading's text in a link to itself, as "§" does now
    url = join_url(page_url, href)
    if text.strip() in (href, url):
        return text  # a bare URL written as such (`<https://…>`): Markdown renderers link it already
    # Keep surrounding spaces outside the brackets, as with emphasis.
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    return f"{lead}[{text.strip()}]({markdown_destination(url)}){trail}"


def _in_heading(tag: Tag) -> bool:
    return any(parent.name in _HEADINGS for parent in tag.parents)


def _wrap(text: str, marker: str) -> str:
    stripped = text.strip()
    if not stripped:
        return text
    # Keep surrounding spaces outside the markers, or markdown would not see them as emphasis.
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    return f"{lead}{marker}{stripped}{marker}{trail}"


def _backticks(code: str) -> str:
    if not code:
        return ""
    if "`" not in code:
        return f"`{code}`"
    return f"`` {code} ``"


def docblock_markdown(element: Tag, *, heading_shift: int = 0) -> str:
    """A rustdoc ``.docblock`` as markdown.

    rustdoc demotes the author's headings (``#`` becomes ``<h2>`` in top docs, ``<h5>`` in member docs);
    ``heading_shift`` undoes that so ``# Errors`` comes back as ``# Errors``.
    """
    blocks = _blocks(element, heading_shift)
    return _BLANK_LINES.sub("\n\n", "\n\n".join(block for block in blocks if block.strip())).strip()


def _blocks(element: Tag, shift: int) -> list[str]:
    blocks: list[str] = []
    inline: list[str] = []

    def flush() -> None:
        text = "".join(inline).strip()
        if text:
            blocks.append(text)
        inline.clear()

    for child in element.children:
        if isinstance(child, Tag):
            if child.name in _INLINE_TAGS:
                _inline_tag(child, inline)
                continue
            flush()
            if not _skipped(child):
                blocks.extend(_block(child, shift))
        elif isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
            inline.append(str(child))
    flush()
    return blocks


def _block(tag: Tag, shift: int) -> list[str]:
    name = tag.name
    if name == "p":
        text = inline_markdown(tag).strip()
        return [text] if text else []
    if name in _HEADINGS:
        text = one_line(inline_markdown(tag))
        level = min(6, max(1, _HEADINGS[name] - shift))
        return [f"{'#' * level} {text}"] if text else []
    if name == "pre":
        return [_fence(tag)]
    if name in ("ul", "ol"):
        text = _list(tag, shift)
        return [text] if text else []
    if name == "blockquote":
        inner = "\n\n".join(_blocks(tag, shift))
        return ["\n".join(f"> {line}" if line else ">" for line in inner.splitlines())] if inner else []
    if name == "table":
        text = _table(tag)
        return [text] if text else []
    if name == "hr":
        return ["---"]
    if name == "details":
        blocks = []
        summary = tag.find("summary", recursive=False)
        if summary is not None:
            text = one_line(inline_markdown(summary))
            if text:
                blocks.append(text)
        for child in tag.children:
            if isinstance(child, Tag) and child.name != "summary" and not _skipped(child):
                blocks.extend(_blocks(child, shift) if child.name not in _INLINE_TAGS else [inline_markdown(child)])
        return blocks
    if name == "dl":
        blocks = []
        for child in tag.find_all(("dt", "dd"), recursive=False):
            text = inline_markdown(child).strip()
            if text:
                blocks.append(f"**{one_line(text)}**" if child.name == "dt" else text)
        return blocks
    # div.example-wrap, div.warning, section, figure...: their content is block content.
    return _blocks(tag, shift)


def _fence(pre: Tag) -> str:
    classes = classes_of(pre)
    language = ""
    if "rust" in classes:
        language = "rust"
    else:
        for cls in classes:
            if cls.startswith("language-"):
                language = cls.removeprefix("language-")
                break
    code = code_text(pre).strip("\n")
    fence = "```"
    while fence in code:
        fence += "`"
    return f"{fence}{language}\n{code}\n{fence}"


def _list(tag: Tag, shift: int) -> str:
    ordered = tag.name == "ol"
    try:
        number = int(tag.get("start") or 1)
    except ValueError:
        number = 1
    lines: list[str] = []
    for item in tag.find_all("li", recursive=False):
        marker = f"{number}." if ordered else "-"
        number += 1
        body = "\n".join(_blocks(item, shift)).strip()
        indent = " " * (len(marker) + 1)
        body_lines = body.splitlines() or [""]
        lines.append(f"{marker} {body_lines[0]}".rstrip())
        lines.extend(f"{indent}{line}" if line else "" for line in body_lines[1:])
    return "\n".join(lines)


def _table(tag: Tag) -> str:
    rows: list[list[str]] = []
    for row in tag.find_all("tr"):
        cells = [one_line(inline_markdown(cell)).replace("|", "\\|") for cell in row.find_all(("th", "td"))]
        if cells:
            rows.append(cells)
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * width]
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    return "\n".join(lines)
