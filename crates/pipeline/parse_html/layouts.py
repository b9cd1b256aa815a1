"""Read one rustdoc HTML page into ParsedItems, for the page layouts rustdoc has used over the years.

Layouts handled (both served by docs.rs today, for releases built at different times):

* current (rustdoc 1.7x-1.95): ``<section id="main-content">``, ``<h1>`` with the kind word, ``pre.item-decl``,
  ``details.toggle.top-doc``, members as ``details > summary > section#method.x > h4.code-header``;
* older (rustdoc ~1.55-1.69): ``h1.fqn`` with the full path, ``div.docblock.item-decl > pre.rust``,
  ``details.rustdoc-toggle``, trait members as ``div#tymethod.x``, variants as ``h3#variant.X > code``,
  item-info after the ``summary`` instead of inside it.

Everything is keyed on what stayed stable across layouts: the page's file name (kind and name), the anchor ids
of members (``method.x``, ``tymethod.x``, ``structfield.x``, ``variant.X``, ``variant.X.field.y``,
``associatedtype.X``, ``associatedconstant.X``), the ``code-header`` / ``code`` of a member, and the
``docblock`` that follows it.

Speed: only the part of ``#main-content`` before the trait-implementation sections is given to
BeautifulSoup. Those sections (trait, auto-trait and blanket impls, implementors) are most of a big page and
only their impl headers are needed, which a regular expression reads from the raw bytes.
"""

from __future__ import annotations

import html
import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bs4 import BeautifulSoup, Tag

from crates.pipeline.doclinks import link_text_only
from crates.pipeline.parse_html.markdown import (
    classes_of,
    code_text,
    docblock_markdown,
    find_by_class,
    inline_markdown,
    links_relative_to,
    one_line,
)
from crates.pipeline.types import ParsedItem

# File-name prefix of an item page -> Document.Kind. attr/derive are proc macros; rustdoc JSON calls them macros.
PAGE_KINDS = {
    "struct": "struct",
    "enum": "enum",
    "union": "union",
    "trait": "trait",
    "traitalias": "trait_alias",
    "fn": "function",
    "macro": "macro",
    "attr": "macro",
    "derive": "macro",
    "constant": "constant",
    "static": "static",
    "type": "type_alias",
    "typedef": "type_alias",
    "primitive": "primitive",
    "keyword": "keyword",
}
AUTO_TRAITS = frozenset({"Send", "Sync", "Unpin", "Freeze", "UnwindSafe", "RefUnwindSafe", "UnsafeUnpin"})
_TYPES_WITH_IMPLS = frozenset({"struct", "enum", "union"})

_MAIN_START = re.compile(rb"<(?:section|div)\s+id=[\"'](?:main-content|main)[\"']")
# Sections after which nothing is a document of this page: impls of other traits, auto-trait and blanket impls,
# the implementors of a trait, methods reached through Deref, and the aliased type of a type alias.
_STOP_IDS = (
    r"trait-implementations|synthetic-implementations|blanket-implementations|foreign-impls|implementors"
    r"|dyn-compatibility|object-safety|aliased-type|deref-methods(?:-[^\"']*)?"
)
_STOP_SECTION = re.compile(rf"<h2\s+id=[\"'](?:{_STOP_IDS})[\"']".encode())
_SECTION_HEADER = re.compile(rb"<h2\s+id=[\"'][^\"']+[\"']\s+class=[\"'][^\"']*section-header")
_STOP_ID = re.compile(rf"^(?:{_STOP_IDS})$")
_TRAIT_IMPLS_START = re.compile(rb"<h2\s+id=[\"']trait-implementations[\"']")
_TRAIT_IMPLS_END = re.compile(rb"<h2\s+id=[\"'](?:synthetic-implementations|blanket-implementations)[\"']")
_IMPL_HEADER = re.compile(rb"<h3\b[^>]*class=[\"'][^\"']*\b(?:code-header|impl)\b[^>]*>(.*?)</h3>", re.S)
_TAGS = re.compile(r"<[^>]+>")

# Markup dropped before parsing because nothing reads it, and building it is most of the parse time:
# highlighting spans inside rendered examples (only the text is kept), decoration links with their text
# ("§" anchors, "Source" links, "ⓘ" tooltips), <wbr> hints, and the links of code headers, which rustdoc gives
# a class (``<a class="struct" …>``; their text is kept). Links in doc blocks have none and stay links.
_EXAMPLE_PRE = re.compile(rb"(<pre\s+class=[\"'][^\"']*\brust-example-rendered\b[^>]*>)(.*?)(</pre>)", re.S)
_ANY_TAG = re.compile(rb"<[^>]*>")
# A tooltip takes the space rustdoc writes before it (`-> Vec<u8> ⓘ;` must not become `-> Vec<u8> ;`).
_DECORATION_LINK = re.compile(
    rb"(?:(?<![ \t])[ \t]++(?=<a\s[^>]*class=[\"']tooltip\b))?"  # from a run's start, no backtracking
    rb"<a\s[^>]*class=[\"'](?:anchor|doc-anchor|src|srclink|tooltip)\b[^\"']*[\"'][^>]*>.*?</a>",
    re.S,
)
_CLASSED_LINK = re.compile(rb"<a\s[^>]*\bclass=[^>]*>(.*?)</a>", re.S)
_WBR_TAG = re.compile(rb"<wbr\s*/?>")
_LINK_ATTRS = re.compile(rb"<a\s[^>]*?\bhref=(\"[^\"]*\"|'[^']*')[^>]*>")

_REEXPORTS_START = re.compile(rb"<h2\s+id=[\"']reexports[\"'][^>]*>")
_CODE = re.compile(rb"<code>(.*?)</code>", re.S)
_HREF = re.compile(r"href=[\"']([^\"']+)[\"']")
_PUB_USE = re.compile(r"^pub use (?P<path>[^;]+?)(?: as (?P<alias>[A-Za-z_][A-Za-z0-9_]*))?;$")
_SOURCE_LINK = re.compile(rb"<a\s+class=[\"']src(?:link)?[\"']\s+href=[\"']([^\"']+)[\"']")

_MEMBER_ID = re.compile(
    r"^(?:(?P<fn>method|tymethod)\.(?P<fn_name>[^.]+)"
    r"|associatedtype\.(?P<type_name>[^.]+)"
    r"|associatedconstant\.(?P<const_name>[^.]+)"
    r"|structfield\.(?P<field_name>[^.]+)"
    r"|variant\.(?P<variant>[^.]+)(?:\.field\.(?P<variant_field>[^.]+))?)$"
)
_DUPLICATE_SUFFIX = re.compile(r"-\d+$")
_LINE_COMMENT = re.compile(r"//[^\n]*")
# What only the multi-line layout needs: the trailing comma of the last field/parameter and the line break after
# an opening bracket. `(u8,)` on one line is a 1-tuple and stays.
# A where clause ends with a comma before the body's `{` or at the end of a member's header.
_MULTILINE_TRAILING_COMMA = re.compile(r",[ \t\xa0]*\n\s*(?=[)}\]{])|,\s*$")
_MULTILINE_OPEN = re.compile(r"([(\[])[ \t\xa0]*\n\s*")
_MULTILINE_CLOSE = re.compile(r"\n\s*(?=[)\]])")
_DEPRECATED_PREFIX = re.compile(r"^\s*Deprecated\s*", re.I)

# rustdoc demotes headings in doc blocks: top docs by one level, member docs by four.
_TOP_DOC_SHIFT = 1
_MEMBER_DOC_SHIFT = 4


@dataclass(frozen=True, slots=True)
class PageRef:
    """Where a page sits in the tree, from its relative path: ``tokio/sync/struct.Mutex.html``."""

    url: str  # relative to the docs root
    module: tuple[str, ...]  # ("tokio", "sync")
    kind: str  # Document.Kind
    name: str  # "Mutex"; the module's own name for index.html

    @property
    def path(self) -> str:
        if self.kind == "module":
            return "::".join(self.module)
        return "::".join((*self.module, self.name))

    @property
    def parent_path(self) -> str:
        return "::".join(self.module[:-1]) if self.kind == "module" else "::".join(self.module)


@dataclass(frozen=True, slots=True)
class Reexport:
    """A ``pub use`` listed (not inlined) on a module page: ``pub use task::spawn;``."""

    name: str  # the name it is visible under in the module ("spawn"; the `as` name when renamed)
    target: str  # URL of the re-exported page, relative to the docs root
    glob: bool  # `pub use shapes::*;`: target is the module's index page
    origin: str = ""  # another crate's item (`pub use bytes::Bytes;`, no page here): its path; target is ""


@dataclass(slots=True)
class ParsedPage:
    page: PageRef
    items: list[ParsedItem]  # the page's item first, then its members
    source: str  # "src/tokio/net/unix/datagram/socket.rs.html#93-95": where the item is defined, or ""
    reexports: list[Reexport] = field(default_factory=list)


def parse_page(data: bytes, page: PageRef, *, docs_root: str = "") -> ParsedPage:
    """All documents of one item or module page; no items when the page has no rustdoc main content.

    Links in docs get absolute URLs under ``docs_root`` (``https://docs.rs/log/0.4.17/``); empty, they stay
    relative to the docs root, as ``ParsedItem.url`` is.
    """
    with links_relative_to(docs_root + page.url):
        return _parse_page(data, page)


def _parse_page(data: bytes, page: PageRef) -> ParsedPage:
    start_match = _MAIN_START.search(data)
    if start_match is None:
        return ParsedPage(page, [], "")
    start = start_match.start()
    end = data.rfind(b"</main>")
    if end < start:
        end = data.rfind(b"</body>")
    if end < start:
        end = len(data)
    # A module page's own content ends where its item tables start; those only repeat the items' summaries.
    stop_match = (_SECTION_HEADER if page.kind == "module" else _STOP_SECTION).search(data, start, end)
    stop = stop_match.start() if stop_match else end
    soup = BeautifulSoup(_lighten(data[start:stop]).decode("utf-8", "replace"), "lxml", multi_valued_attributes=None)
    main = soup.body.find(True, recursive=False) if soup.body else None
    if not isinstance(main, Tag):
        return ParsedPage(page, [], "")
    reader = _PageReader(main, page)
    item = reader.item()
    if page.kind in _TYPES_WITH_IMPLS:
        item.metadata["trait_impls"] = trait_impl_names(data, stop, end)
        item.impls = [{"header": header} for header in trait_impl_headers(data, stop, end)]  # see html_types
    reexports = module_reexports(data, start, end, page) if page.kind == "module" else []
    return ParsedPage(page, [item, *reader.members()], _source_link(data, start, stop, page), reexports)


def module_reexports(data: bytes, start: int, end: int, page: PageRef) -> list[Reexport]:
    """The ``pub use`` lines of a module page's Re-exports section that point at pages of this docs tree."""
    section = _REEXPORTS_START.search(data, start, end)
    if section is None:
        return []
    next_section = data.find(b"<h2", section.end(), end)
    found = []
    for match in _CODE.finditer(data, section.end(), next_section if next_section != -1 else end):
        code = match.group(1).decode("utf-8", "replace")
        text = one_line(html.unescape(_TAGS.sub("", code)))
        use = _PUB_USE.match(text)
        href = _HREF.search(code)
        if use is None or href is None:
            continue  # a private re-export: nothing to point at
        glob = use["path"].endswith("::*")
        name = use["alias"] or use["path"].rsplit("::", 1)[-1]
        link = html.unescape(href.group(1))
        if "://" in link:
            if not glob and _names_another_crate(use["path"], link, crate=page.module[0]):
                found.append(Reexport(name=name, target="", glob=False, origin=use["path"]))
            continue  # an absolute link: no page of this tree to point at
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page.url), link))
        if not target.startswith(f"{page.module[0]}/"):  # a sibling crate's page in a local `cargo doc` tree
            if not glob and _names_another_crate(use["path"], link, crate=page.module[0]):
                found.append(Reexport(name=name, target="", glob=False, origin=use["path"]))
            continue
        found.append(Reexport(name="" if glob else name, target=target.split("#", 1)[0], glob=glob))
    return found


def _names_another_crate(use_path: str, link: str, *, crate: str) -> bool:
    """Whether a listed ``pub use`` is of another crate's item (its docs are elsewhere), not of this crate's."""
    if use_path.split("::", 1)[0] in ("crate", "self", "super", crate):
        return False
    return f"/{crate}/" not in f"/{urlsplit(link).path}"


def _source_link(data: bytes, start: int, stop: int, page: PageRef) -> str:
    """The item's "Source" link (the first one in the heading), relative to the docs root."""
    match = _SOURCE_LINK.search(data, start, stop)
    if match is None:
        return ""
    href = html.unescape(match.group(1).decode("utf-8", "replace"))
    if "://" in href:
        return href
    return posixpath.normpath(posixpath.join(posixpath.dirname(page.url), href))


def _lighten(fragment: bytes) -> bytes:
    fragment = _EXAMPLE_PRE.sub(lambda m: m.group(1) + _ANY_TAG.sub(b"", m.group(2)) + m.group(3), fragment)
    fragment = _DECORATION_LINK.sub(b"", fragment)
    fragment = _CLASSED_LINK.sub(rb"\1", fragment)
    fragment = _LINK_ATTRS.sub(rb"<a href=\1>", fragment)  # the title is not read
    return _WBR_TAG.sub(b"", fragment)


class _PageReader:
    def __init__(self, main: Tag, page: PageRef) -> None:
        self.main = main
        self.page = page
        self.children = [child for child in main.children if isinstance(child, Tag)]

    def item(self) -> ParsedItem:
        header = self._header_children()
        deprecated, note, portability = _item_info(header)
        docblock = self._top_docblock(header)
        metadata = {"portability": portability} if portability else {}
        return ParsedItem(
            path=self.page.path,
            name=self.page.name,
            kind=self.page.kind,
            parent_path=self.page.parent_path,
            signature=self._declaration(header),
            docs=docblock_markdown(docblock, heading_shift=_TOP_DOC_SHIFT) if docblock is not None else "",
            url=self.page.url,
            deprecated=deprecated,
            deprecation_note=note,
            metadata=metadata,
        )

    def _header_children(self) -> list[Tag]:
        """Children before the first section heading: heading, declaration, item-info, top docs."""
        header = []
        for child in self.children:
            if child.name == "h2":
                break
            header.append(child)
        return header

    def _declaration(self, header: list[Tag]) -> str:
        if self.page.kind == "module":
            return ""
        for child in header:
            classes = classes_of(child)
            if "item-decl" in classes or "type-decl" in classes:  # type-decl: rustdoc before ~1.55
                code = child if child.name == "pre" else child.find("pre")
                return declaration_text(code_text(code or child), kind=self.page.kind)
            if child.name == "pre" and "rust" in classes:  # layouts before the item-decl class
                return declaration_text(code_text(child), kind=self.page.kind)
        return ""

    @staticmethod
    def _top_docblock(header: list[Tag]) -> Tag | None:
        for child in header:
            if child.name == "details" and "top-doc" in classes_of(child):
                return find_by_class(child, "docblock", name="div", recursive=False)
        for child in header:  # layouts without the collapsible top-doc
            classes = classes_of(child)
            if "docblock" in classes and "item-decl" not in classes and "type-decl" not in classes:
                return child
        return None

    def members(self) -> list[ParsedItem]:
        items: list[ParsedItem] = []
        for element in self._member_elements():
            item = self._member(element)
            if item is not None:
                items.append(item)
        _complete_struct_variants(items)
        return items

    def _member_elements(self) -> list[Tag]:
        found: list[Tag] = []
        in_body = False
        for child in self.children:
            if child.name == "h2":
                if _STOP_ID.match(child.get("id") or ""):
                    break  # the byte-level cut missed a layout variant; the DOM says where to stop
                in_body = True
            if not in_body:
                continue
            if _MEMBER_ID.match(child.get("id") or ""):
                found.append(child)
            found.extend(
                tag
                for tag in child.descendants
                if isinstance(tag, Tag) and "id" in tag.attrs and _MEMBER_ID.match(tag["id"])
            )
        return found

    def _member(self, element: Tag) -> ParsedItem | None:
        match = _MEMBER_ID.match(element["id"])
        if match is None:
            return None
        page_path = self.page.path
        if match["fn"]:
            kind, name, parent = "method", match["fn_name"], page_path
        elif match["type_name"]:
            kind, name, parent = "assoc_type", match["type_name"], page_path
        elif match["const_name"]:
            kind, name, parent = "assoc_const", match["const_name"], page_path
        elif match["field_name"]:
            kind, name, parent = "field", match["field_name"], page_path
        elif match["variant_field"]:
            if match["variant_field"].isdigit():
                return None  # tuple-variant fields are positional and documented with the variant
            variant = _DUPLICATE_SUFFIX.sub("", match["variant"])
            kind, name, parent = "field", match["variant_field"], f"{page_path}::{variant}"
        else:
            kind, name, parent = "variant", match["variant"], page_path
        name = _DUPLICATE_SUFFIX.sub("", name)
        docblock, info = _member_docs(element)
        deprecated, note, portability = _item_info(info)
        return ParsedItem(
            path=f"{parent}::{name}",
            name=name,
            kind=kind,
            parent_path=parent,
            signature=_member_signature(element, kind, in_variant=bool(match["variant_field"])),
            docs=docblock_markdown(docblock, heading_shift=_MEMBER_DOC_SHIFT) if docblock is not None else "",
            url=f"{self.page.url}#{element['id']}",
            deprecated=deprecated,
            deprecation_note=note,
            metadata={"portability": portability} if portability else {},
        )


def _member_signature(element: Tag, kind: str, *, in_variant: bool) -> str:
    header = find_by_class(element, "code-header")
    if header is None:
        header = element.find("code") or element
    signature = code_line(code_text(header))
    if kind == "field" and not in_variant and not signature.startswith("pub"):
        # Only public fields are documented; rustdoc prints them without the `pub` the declaration has.
        signature = f"pub {signature}"
    return signature


def _member_docs(element: Tag) -> tuple[Tag | None, list[Tag]]:
    """The doc block of a member and the elements that may hold its item-info (deprecation, portability)."""
    parent = element.parent
    if isinstance(parent, Tag) and parent.name == "summary" and isinstance(parent.parent, Tag):
        details = parent.parent
        docblock = find_by_class(details, "docblock", name="div", recursive=False)
        info = [child for child in parent.children if isinstance(child, Tag) and child is not element]
        info += [child for child in details.children if isinstance(child, Tag) and "item-info" in classes_of(child)]
        return docblock, info
    info: list[Tag] = []
    for sibling in element.next_siblings:
        if not isinstance(sibling, Tag):
            continue
        classes = classes_of(sibling)
        if "item-info" in classes or "stability" in classes:
            info.append(sibling)
            continue
        if "docblock" in classes:
            return sibling, info
        break
    return None, info


def _item_info(elements: list[Tag]) -> tuple[bool, str, str]:
    """(deprecated, deprecation note, portability note) from item-info blocks, never from the docs."""
    deprecated, note, portability = False, "", ""
    for element in elements:
        if "docblock" in classes_of(element) or "top-doc" in classes_of(element):
            continue
        for stab in (tag for tag in element.descendants if isinstance(tag, Tag) and "stab" in classes_of(tag)):
            classes = classes_of(stab)
            if "deprecated" in classes and not deprecated:
                deprecated = True
                note = _deprecation_note(_plain(stab))
            elif "portability" in classes and not portability:
                portability = _plain(stab)
        if "stab" in classes_of(element) and "deprecated" in classes_of(element) and not deprecated:
            deprecated, note = True, _deprecation_note(_plain(element))
    return deprecated, note, portability


def _plain(element: Tag) -> str:
    """An item-info note as one line of text: notes are plain text in rustdoc JSON too."""
    return one_line(link_text_only(inline_markdown(element)))


def _deprecation_note(text: str) -> str:
    """``Deprecated since 0.3.0: use x`` -> ``since 0.3.0: use x`` (the JSON parser's wording)."""
    text = _DEPRECATED_PREFIX.sub("", text).strip()
    if text.startswith(":"):
        text = text[1:].strip()
    return text


def declaration_text(text: str, *, kind: str) -> str:
    """A declaration on one line, without the ``// Required method`` style comments rustdoc adds.

    Macros keep their lines: a macro_rules! body is a list of rules and reads badly on one line.
    """
    if kind == "macro":
        return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).replace("\xa0", " ")
    # rustdoc's own note on a line of its own; on one line it must not comment out what follows.
    text = text.replace("// some variants omitted", "/* some variants omitted */")
    return code_line(_strip_line_comments(text))


def code_line(text: str) -> str:
    """Rust code laid out on several lines, on one line as it would be written there."""
    text = _MULTILINE_TRAILING_COMMA.sub("\n", text)
    text = _MULTILINE_OPEN.sub(r"\1", text)
    text = _MULTILINE_CLOSE.sub("", text)
    return one_line(text)


def _strip_line_comments(text: str) -> str:
    lines = []
    for line in text.splitlines():
        for match in _LINE_COMMENT.finditer(line):
            if line.count('"', 0, match.start()) % 2 == 0:  # not inside a string literal
                line = line[: match.start()]
                break
        lines.append(line)
    return "\n".join(lines)


def _complete_struct_variants(items: list[ParsedItem]) -> None:
    """Struct variants show only their name in the header; add the fields listed under them."""
    fields: dict[str, list[str]] = {}
    for item in items:
        if item.kind == "field":
            fields.setdefault(item.parent_path, []).append(item.signature)
    for item in items:
        if item.kind == "variant" and item.path in fields and not any(c in item.signature for c in "({"):
            item.signature = f"{item.signature} {{ {', '.join(fields[item.path])} }}"


def trait_impl_names(data: bytes, start: int, end: int) -> list[str]:
    """Sorted names of the traits implemented in the page's "Trait Implementations" section."""
    names = set()
    for header in trait_impl_headers(data, start, end):
        name = impl_trait_name(header)
        if name and name not in AUTO_TRAITS:
            names.add(name)
    return sorted(names)


def trait_impl_headers(data: bytes, start: int, end: int) -> list[str]:
    """The impl headers of the "Trait Implementations" section, as text: ``impl<T> Debug for Mutex<T> where ...``."""
    section = _TRAIT_IMPLS_START.search(data, start, end)
    if section is None:
        return []
    stop = _TRAIT_IMPLS_END.search(data, section.end(), end)
    return [
        one_line(html.unescape(_TAGS.sub("", match.group(1).decode("utf-8", "replace"))))
        for match in _IMPL_HEADER.finditer(data, section.end(), stop.start() if stop else end)
    ]


def impl_trait_name(header: str) -> str:
    """``impl<T: Into<f64>> Shape for Rect<T>`` -> ``Shape``; ``""`` for inherent and negative impls."""
    text = header.strip()
    for prefix in ("unsafe ", "default "):
        text = text.removeprefix(prefix)
    if not text.startswith("impl"):
        return ""
    text = text[4:]
    if text.startswith("<"):
        text = text[_matching_angle(text) + 1 :]
    text = text.strip()
    text = text.removeprefix("const ").strip()
    if text.startswith("!"):
        return ""
    trait = _before_for(text)
    if trait is None:
        return ""
    trait = _strip_generics(trait).strip()
    if trait.startswith("?"):
        return ""
    return trait.rsplit("::", 1)[-1].strip()


def _matching_angle(text: str) -> int:
    depth = 0
    for index, char in enumerate(text):
        if char == "<":
            depth += 1
        elif char == ">" and index > 0 and text[index - 1] != "-":
            depth -= 1
            if depth == 0:
                return index
    return len(text) - 1


def _before_for(text: str) -> str | None:
    depth = 0
    for index, char in enumerate(text):
        if char in "<([":
            depth += 1
        elif char in ")]" or (char == ">" and text[index - 1] != "-"):
            depth -= 1
        elif depth == 0 and text.startswith(" for ", index):
            return text[:index]
    return None


def _strip_generics(text: str) -> str:
    out, depth = [], 0
    for index, char in enumerate(text):
        if char == "<":
            depth += 1
        elif char == ">" and (index == 0 or text[index - 1] != "-"):
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)
