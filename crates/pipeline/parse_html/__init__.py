"""Parse stage, rustdoc HTML: documents from a docs.rs download ZIP, crawled pages or a local ``target/doc``.

Used for releases docs.rs has no rustdoc JSON for (built before mid-2025) and for private crates documented
with ``cargo doc``. The documents follow the JSON parser's conventions (paths, kinds, URLs, signatures), so a
crate reads the same whichever source it came from:

* a page's location is its public path: rustdoc already writes the page of an item defined in a private module
  and re-exported elsewhere at the re-export (``ferro_fixture/struct.Counter.html``), and leaves a redirect stub
  at the private location, which is skipped;
* members (methods, fields, variants, associated items) come from the anchors of their type's page;
* methods of trait impls are not documents; the implemented traits are listed in ``metadata["trait_impls"]``.

Source views, settings/help/all-items pages, redirect stubs and every non-HTML file are skipped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path

from crates.errors import CorruptArtifact, InvalidInput
from crates.pipeline.html_cfg import apply_portability
from crates.pipeline.html_types import annotate_declaration_types
from crates.pipeline.parse_html.layouts import PAGE_KINDS, PageRef, ParsedPage, parse_page
from crates.pipeline.types import ParsedCrate, ParsedItem

logger = logging.getLogger(__name__)

# Directories and pages rustdoc writes next to the crate's own pages.
_NOT_CRATES = frozenset(
    {"src", "static.files", "search.index", "implementors", "trait.impl", "type.impl", "search.desc"}
)
_SKIPPED_PAGES = frozenset({"all.html", "settings.html", "help.html", "scrape-examples-help.html"})
_REDIRECT = re.compile(rb"<meta\s+http-equiv=[\"']?refresh|<title>Redirection</title>|Redirecting to\s*<a", re.I)
_REDIRECT_SCAN_BYTES = 2048
_ITEM_PAGE = re.compile(r"^(?P<prefix>[a-z]+)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*|r#[A-Za-z_][A-Za-z0-9_]*)\.html$")
_MODULE_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CRATE_BODY = re.compile(rb"<body\s+class=[\"'][^\"']*\bcrate\b")
_RUSTDOC_VERSION = re.compile(rb"data-rustdoc-version=[\"'](\d+\.\d+\.\d+[^\"' ]*)")
_GENERATOR_META = re.compile(rb"<meta\s+name=[\"']generator[\"']\s+content=[\"']rustdoc\s+(\d+\.\d+\.\d+[^\"' ]*)")
_SIDEBAR_VERSION = re.compile(
    rb"<(?:span|li)\s+class=[\"']version[\"']>\s*(?:Version\s+)?(\d+\.\d+\.\d+[0-9A-Za-z.+-]*)\s*<"
)


def parse_html_pages(
    pages: Mapping[str, bytes], *, version: str = "", crate_name: str | None = None, docs_root: str = ""
) -> ParsedCrate:
    """Documents of one crate from its rustdoc HTML pages (relative posix path -> bytes).

    ``docs_root``: where the pages are served (``https://docs.rs/log/0.4.17/``), for absolute link URLs in docs;
    empty, links are relative to the docs root like ``ParsedItem.url`` (a local ``cargo doc`` tree).

    ``crate_name`` is the library name the pages live under (``serde_json``); a package name with ``-`` is
    accepted. Without it the crate is the one whose ``<name>/index.html`` is a crate root page.
    Raises CorruptArtifact when no crate root page is found, InvalidInput when several crates are present and
    none was named.
    """
    started = time.perf_counter()
    crate = find_crate_name(pages, crate_name=crate_name)
    root_page = pages[f"{crate}/index.html"]
    results: list[ParsedPage] = []
    skipped_pages = 0
    for rel_path in sorted(pages):
        page = page_ref(rel_path, crate=crate)
        if page is None:
            continue
        data = pages[rel_path]
        if is_redirect(data):
            skipped_pages += 1
            continue
        results.append(parse_page(data, page, docs_root=docs_root))
    parsed_pages = len(results)
    results, by_url = merge_reexported_pages(results)
    add_reexport_aliases(results, by_url)
    items: list[ParsedItem] = []
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for result in results:
        for item in result.items:
            key = (item.path, item.kind)
            if key in seen:
                # Two impl blocks can define methods with the same name (`impl Foo<u8>` and `impl Foo<u16>`);
                # a document is keyed by path and kind, so the first one stands for both.
                duplicates += 1
                continue
            seen.add(key)
            items.append(item)
    apply_portability(items)  # "Available on crate feature X only." -> metadata["cfg"]
    annotate_declaration_types(items)
    parsed = ParsedCrate(
        crate_name=crate,
        version=version or _sidebar_version(root_page),
        source="html",
        items=items,
        generator=rustdoc_generator(root_page),
    )
    logger.info(
        "parsed rustdoc HTML",
        extra={
            "crate": crate,
            "version": parsed.version,
            "generator": parsed.generator,
            "pages": parsed_pages,
            "redirects": skipped_pages,
            "items": len(items),
            "duplicates": duplicates,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return parsed


def merge_reexported_pages(results: list[ParsedPage]) -> tuple[list[ParsedPage], dict[str, ParsedPage]]:
    """Keep one page per item that rustdoc rendered at several public paths (``#[doc(inline)]`` re-exports).

    Pages are the same item when they point at the same source lines and render the same kind, name,
    declaration and docs. Like the JSON parser, the canonical path is the defining one when there is a page
    there (the module is read from the source file: ``src/serde_json/error.rs`` -> ``serde_json::error``),
    otherwise the shortest path; the others go to ``metadata["aliases"]`` and their pages are dropped.
    Returns the pages kept and, for every page URL, the kept page that stands for it.
    """
    by_url = {result.page.url: result for result in results}
    groups: dict[tuple, list[ParsedPage]] = {}
    for result in results:
        if result.source and result.items:
            item = result.items[0]
            key = (result.source, item.kind, item.name, item.signature, item.docs)
            groups.setdefault(key, []).append(result)
    dropped: set[int] = set()
    for group in groups.values():
        if len(group) < 2:
            continue
        defining = _defining_module(group[0].source)
        canonical = min(
            group,
            key=lambda r: (r.page.module != defining, len(r.page.module), r.items[0].path),
        )
        aliases = sorted(r.items[0].path for r in group if r is not canonical)
        canonical.items[0].metadata["aliases"] = aliases
        for result in group:
            if result is not canonical:
                dropped.add(id(result))
                by_url[result.page.url] = canonical
    return [result for result in results if id(result) not in dropped], by_url


def add_reexport_aliases(results: list[ParsedPage], by_url: Mapping[str, ParsedPage]) -> None:
    """Record the paths that module pages list under "Re-exports" (not inlined) as aliases of their target.

    ``pub use task::spawn;`` on the crate page makes ``tokio::spawn`` an alias of ``tokio::task::spawn``;
    ``pub use shapes::*;`` does that for every item of ``shapes``.
    """
    children: dict[tuple[str, ...], list[ParsedPage]] = {}
    for result in results:
        if result.items:
            module = result.page.module[:-1] if result.page.kind == "module" else result.page.module
            if result.page.kind != "module" or module:
                children.setdefault(module, []).append(result)
    for result in results:
        for reexport in result.reexports:
            if reexport.origin and result.items:  # another crate's item: noted on the module for get_item
                result.items[0].metadata.setdefault("reexports", {})[reexport.name] = reexport.origin
                continue
            target = by_url.get(reexport.target)
            if target is None or not target.items:
                continue
            if not reexport.glob:
                _add_alias(target, f"{result.items[0].path}::{reexport.name}")
            elif target.page.kind == "module":
                for child in children.get(target.page.module, []):
                    _add_alias(child, f"{result.items[0].path}::{child.items[0].name}")


def _add_alias(result: ParsedPage, alias: str) -> None:
    item = result.items[0]
    if alias == item.path:
        return
    aliases = set(item.metadata.get("aliases", []))
    aliases.add(alias)
    item.metadata["aliases"] = sorted(aliases)


def _defining_module(source: str) -> tuple[str, ...]:
    """``src/tokio/sync/mutex.rs.html#10-20`` -> ("tokio", "sync", "mutex"); lib.rs and mod.rs name their dir."""
    parts = source.split("#", 1)[0].removesuffix(".html").removesuffix(".rs").split("/")
    if len(parts) < 3 or parts[0] != "src":
        return ()
    modules = parts[1:]
    if modules[-1] in ("lib", "mod", "main"):
        modules = modules[:-1]
    return tuple(modules)


def find_crate_name(pages: Mapping[str, bytes], *, crate_name: str | None = None) -> str:
    """The directory of the crate's pages: the named one, else the only crate root among the pages."""
    roots = sorted(
        path.split("/", 1)[0]
        for path in pages
        if path.count("/") == 1 and path.endswith("/index.html") and path.split("/", 1)[0] not in _NOT_CRATES
    )
    if crate_name:
        wanted = crate_name.strip().replace("-", "_")
        if wanted in roots:
            return wanted
        if len(roots) != 1:
            raise CorruptArtifact(
                f"The documentation has no pages for crate {crate_name!r} (no {wanted}/index.html); "
                f"it documents: {', '.join(roots) or 'nothing'}."
            )
        logger.info("crate name differs from its library name", extra={"crate": crate_name, "library": roots[0]})
        return roots[0]
    crates = [root for root in roots if _CRATE_BODY.search(pages[f"{root}/index.html"][:8192])] or roots
    if not crates:
        raise CorruptArtifact(
            "The documentation has no crate root page (<crate>/index.html): it is not rustdoc HTML output."
        )
    if len(crates) > 1:
        raise InvalidInput(f"The documentation holds several crates ({', '.join(crates)}); say which one to ingest.")
    return crates[0]


def page_ref(rel_path: str, *, crate: str) -> PageRef | None:
    """Where an item page sits, or None for anything that is not an item or module page of ``crate``."""
    parts = rel_path.split("/")
    if len(parts) < 2 or parts[0] != crate or parts[-1] in _SKIPPED_PAGES:
        return None
    modules = parts[:-1]
    if not all(_MODULE_SEGMENT.match(segment) for segment in modules):
        return None
    if parts[-1] == "index.html":
        return PageRef(url=rel_path, module=tuple(modules), kind="module", name=modules[-1])
    match = _ITEM_PAGE.match(parts[-1])
    if match is None or match["prefix"] not in PAGE_KINDS:
        return None
    return PageRef(url=rel_path, module=tuple(modules), kind=PAGE_KINDS[match["prefix"]], name=match["name"])


def is_redirect(data: bytes) -> bool:
    """rustdoc's stub pages for re-exports and old URLs only send the browser elsewhere."""
    return bool(_REDIRECT.search(data[:_REDIRECT_SCAN_BYTES]))


def rustdoc_generator(page: bytes) -> str:
    """``rustdoc 1.95.0`` from the page head (the generator meta tag or rustdoc-vars), or ``""``."""
    # rustdoc-vars sits in the head of current pages and at the end of the body of older ones.
    match = _GENERATOR_META.search(page[:16384]) or _RUSTDOC_VERSION.search(page)
    return f"rustdoc {match.group(1).decode()}" if match else ""


def _sidebar_version(page: bytes) -> str:
    match = _SIDEBAR_VERSION.search(page)
    return match.group(1).decode() if match else ""


def read_doc_dir(path: Path, *, crate_name: str | None = None) -> dict[str, bytes]:
    """The HTML pages of one crate from a local ``cargo doc`` output, keyed like a docs.rs download ZIP.

    ``path`` may be ``target/doc``, the crate's own directory in it, or ``target``. Files outside the tree
    (symlinks pointing elsewhere) are ignored. Raises InvalidInput when nothing usable is there.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a directory; give the 'target/doc' directory written by `cargo doc`.")
    if (root / "index.html").is_file() and _CRATE_BODY.search((root / "index.html").read_bytes()[:8192]):
        # Pointed at the crate's own directory: the docs root is its parent.
        crate_name = crate_name or root.name
        root = root.parent
    elif not _has_crate_dirs(root) and (root / "doc").is_dir():
        root = root / "doc"
    pages = {}
    for directory in sorted(child for child in root.iterdir() if child.is_dir() and child.name not in _NOT_CRATES):
        if (directory / "index.html").is_file():
            pages[f"{directory.name}/index.html"] = (directory / "index.html").read_bytes()
    if not pages:
        raise InvalidInput(f"No rustdoc HTML in {root}: expected <crate>/index.html (run `cargo doc` first).")
    crate = find_crate_name(pages, crate_name=crate_name)
    crate_dir = root / crate
    resolved_root = crate_dir.resolve()
    result: dict[str, bytes] = {}
    for file in sorted(crate_dir.rglob("*.html")):
        if not file.is_file() or not file.resolve().is_relative_to(resolved_root):
            continue
        result[file.relative_to(root).as_posix()] = file.read_bytes()
    _refuse_private_items(result, crate=crate, root=root)
    logger.info("read local rustdoc HTML", extra={"crate": crate, "directory": str(root), "pages": len(result)})
    return result


# rustdoc marks every non-public item it lists when built with --document-private-items.
_RESTRICTED_MARK = b'title="Restricted Visibility"'


def _refuse_private_items(pages: Mapping[str, bytes], *, crate: str, root: Path) -> None:
    """Pages built with ``--document-private-items`` document private modules instead of inlining the items
    they re-export, so those items have no page at their public path: stored, the crate would answer
    ``crate::Item`` with 'No item' and list private items as its API."""
    for page in pages.values():
        if _RESTRICTED_MARK in page:
            raise InvalidInput(
                f"The rustdoc HTML of {crate} in {root} was built with `cargo doc --document-private-items` (it "
                "lists private items, and items re-exported from private modules have no page at their public "
                "path). Run `cargo doc` without --document-private-items, or ingest its rustdoc JSON (--json-file), "
                "which keeps only the public API either way."
            )


def _has_crate_dirs(root: Path) -> bool:
    return any(
        child.is_dir() and child.name not in _NOT_CRATES and (child / "index.html").is_file()
        for child in root.iterdir()
    )
