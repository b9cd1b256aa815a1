"""Server-side rendering of rustdoc markdown and Rust signatures for the operator portal.

Crate docs are third-party text, so raw HTML in them is shown as text and links are
limited to safe schemes: a crate author must not be able to run script in the admin.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import urljoin, urlsplit

import markdown
from django.utils.safestring import SafeString, mark_safe
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from markdown.treeprocessors import Treeprocessor
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import RustLexer, TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

CSS_CLASS = "highlight"
_SAFE_SCHEMES = {"http", "https", "mailto"}
_FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
# rustdoc code-block attributes: any of these (or nothing) means the block is Rust.
_RUST_ATTRS = {
    "", "rust", "ignore", "no_run", "should_panic", "compile_fail", "test_harness", "allow_fail",
    "standalone_crate", "edition2015", "edition2018", "edition2021", "edition2024",
}
# `[`Foo`]` with no link target: rustdoc resolves these itself; we show the code span.
_SHORT_INTRA_LINK_RE = re.compile(r"\[(`[^`\n]+`)\](?![(\[:])")
# An intra-doc link target: `Foo`, `crate::foo::Bar`, `Vec::new()`, `vec!`, `struct@Foo`.
_RUST_PATH_RE = re.compile(r"^(?:[a-z]+@)?[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*(?:!|\(\))?$")


def highlight_rust(code: str) -> SafeString:
    """A Rust signature (or any Rust snippet) as highlighted HTML."""
    if not code.strip():
        return mark_safe("")
    return mark_safe(highlight(code, RustLexer(), HtmlFormatter(cssclass=CSS_CLASS)))  # pygments escapes the code


def render_docs(text: str, *, base_url: str = "") -> SafeString:
    """rustdoc markdown as HTML: code blocks highlighted, raw HTML escaped, links made safe.

    ``base_url`` is the docs.rs page of the item; relative links (``struct.Foo.html``) resolve against it.
    """
    if not text.strip():
        return mark_safe("")
    md = markdown.Markdown(
        extensions=["tables", "sane_lists", _RustdocExtension(base_url=base_url)],
        output_format="html",
    )
    # Without these two, raw HTML in the docs is escaped instead of passed through.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return mark_safe(md.convert(text))  # raw HTML is disabled above


class _RustdocFences(Preprocessor):
    """Highlight code fences the way rustdoc reads them (no language = Rust, `# ` lines hidden)."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(lines):
            match = _FENCE_RE.match(lines[i])
            if not match:
                out.append(_SHORT_INTRA_LINK_RE.sub(r"\1", lines[i]))
                i += 1
                continue
            fence, info = match.group("fence"), match.group("info").strip()
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end of the text)
            out.extend(["", self.md.htmlStash.store(_code_block_html(body, info=info)), ""])
        return out


def _code_block_html(body: list[str], *, info: str) -> str:
    attrs = {a.strip() for a in re.split(r"[,\s]+", info) if a.strip()}
    is_rust = attrs <= _RUST_ATTRS or "rust" in attrs
    if is_rust:
        body = _without_hidden_lines(body)
        lexer = RustLexer()
    else:
        lexer = _lexer_for(sorted(attrs)[0] if attrs else "text")
    return highlight("\n".join(body), lexer, HtmlFormatter(cssclass=CSS_CLASS))


def _lexer_for(name: str):
    try:
        return get_lexer_by_name(name)
    except ClassNotFound:
        return TextLexer()


def _without_hidden_lines(body: list[str]) -> list[str]:
    """rustdoc hides `# ` lines in examples (setup code); `##` shows a literal `#`."""
    shown: list[str] = []
    for line in body:
        stripped = line.lstrip()
        if stripped == "#" or stripped.startswith("# "):
            continue
        shown.append(line.replace("##", "#", 1) if stripped.startswith("##") else line)
    return shown


class _SafeLinks(Treeprocessor):
    def __init__(self, md: markdown.Markdown, base_url: str) -> None:
        super().__init__(md)
        self.base_url = base_url

    def run(self, root: ET.Element) -> None:
        for parent in list(root.iter()):
            for index, child in enumerate(list(parent)):
                if child.tag == "a":
                    self._fix_link(parent, index, child)
                elif child.tag == "img":
                    src = self._safe_url(child.get("src", ""))
                    if src:
                        child.set("src", src)
                        child.set("loading", "lazy")
                    else:
                        parent.remove(child)

    def _fix_link(self, parent: ET.Element, index: int, link: ET.Element) -> None:
        href = link.get("href", "")
        url = self._safe_url(href)
        if url:
            link.set("href", url)
            if not url.startswith("#"):
                link.set("rel", "noopener noreferrer nofollow")
                link.set("target", "_blank")
            return
        # An intra-doc path (`crate::Foo`) or an unsafe scheme: keep the text, drop the link.
        link.tag = "span"
        link.attrib.clear()
        if _RUST_PATH_RE.match(href.strip()):
            link.set("class", "intra-doc-link")
            link.set("title", href.strip()[:200])

    def _safe_url(self, href: str) -> str:
        href = href.strip()
        if not href:
            return ""
        if href.startswith("#"):
            return href
        if _RUST_PATH_RE.match(href):
            return ""
        parts = urlsplit(href)
        if parts.scheme:
            return href if parts.scheme.lower() in _SAFE_SCHEMES else ""
        if self.base_url:
            return urljoin(self.base_url, href)
        return ""


class _RustdocExtension(Extension):
    def __init__(self, *, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        md.preprocessors.register(_RustdocFences(md), "rustdoc_fences", 25)
        md.treeprocessors.register(_SafeLinks(md, self.base_url), "ferrodex_safe_links", 1)


def pygments_css() -> str:
    """The stylesheet for highlighted code (light, and dark under the admin's dark theme)."""
    light = HtmlFormatter(style="default").get_style_defs(f".{CSS_CLASS}")
    dark_rules = HtmlFormatter(style="monokai").get_style_defs(f".{CSS_CLASS}")
    dark_forced = _scope(dark_rules, 'html[data-theme="dark"]')
    dark_auto = _scope(dark_rules, 'html:not([data-theme="light"])')
    return f"{light}\n{dark_forced}\n@media (prefers-color-scheme: dark) {{\n{dark_auto}\n}}\n"


def _scope(css: str, prefix: str) -> str:
    return "\n".join(f"{prefix} {line}" if line.startswith(".") else line for line in css.splitlines())
