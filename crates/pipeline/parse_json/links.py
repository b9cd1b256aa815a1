"""Intra-doc links: the URL of every item an item's ``links`` map names."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from crates.pipeline import doclinks
from crates.pipeline.parse_json.common import FOREIGN_KINDS, LOCAL_CRATE_ID, is_local
from crates.pipeline.rustdoc_shapes import note_unknown
from crates.pipeline.types import ParsedItem

logger = logging.getLogger(__name__)


class LinkTargets:
    """URLs for the items an item's ``links`` map names, and the docs rewritten with them (crates.pipeline.doclinks).

    A local item links to the page (and anchor) of the document made for it; another crate's item to its page
    under that crate's ``html_root_url``, named as rustdoc names pages. Another crate's method or variant is
    not in ``paths``: its owner is found there by the link's own path (``Option::take`` -> ``core::option::
    Option``), as rustdoc's HTML does.
    """

    def __init__(
        self,
        *,
        index: Mapping[str, Any],
        paths: Mapping[str, Any],
        external_crates: Mapping[str, Any],
        items: list[ParsedItem],
        docs_root: str,
    ) -> None:
        self.index = index
        self.paths = paths
        self.external_crates = external_crates
        self.items = items
        self.docs_root = docs_root
        self.local: dict[str, str] = {}
        for item in items:
            rustdoc_id = item.metadata.get("rustdoc_id")
            if rustdoc_id is not None and item.url:
                self.local.setdefault(str(rustdoc_id), item.url)
        self._by_name: dict[str, list[tuple[str, Mapping[str, Any]]]] | None = None
        self.resolved = self.unresolved = 0

    def apply(self) -> None:
        for item in self.items:
            if "[" not in item.docs:
                continue
            raw = self.index.get(str(item.metadata.get("rustdoc_id")))
            links = raw.get("links") if isinstance(raw, dict) else None
            links = links if isinstance(links, dict) else {}
            try:
                resolved = doclinks.resolve_links(
                    item.docs, resolve=lambda key, links=links: self.url(key, links), page_url=self.docs_root + item.url
                )
            except (AttributeError, TypeError, KeyError, ValueError, IndexError):
                note_unknown("link target shape", item.path)  # the docs keep their links as written
                continue
            item.chunk_docs, item.docs = item.docs, resolved
        if self.resolved or self.unresolved:
            logger.debug("intra-doc links", extra={"resolved": self.resolved, "unresolved": self.unresolved})

    def url(self, key: str, links: Mapping[str, Any]) -> str | None:
        target = links.get(key)
        if target is None:
            return None
        url = self._url_of(str(target), key)
        if url is None:
            self.unresolved += 1
            return None
        self.resolved += 1
        fragment = key.partition("#")[2]
        if fragment and "#" not in url:
            url = f"{url}#{fragment}"
        return url

    def _url_of(self, target: str, key: str) -> str | None:
        relative = self.local.get(target)
        if relative is not None:
            return self.docs_root + relative
        summary = self.paths.get(target)
        if isinstance(summary, dict):
            if summary.get("crate_id", LOCAL_CRATE_ID) == LOCAL_CRATE_ID:
                return None  # a local item without a page of its own (private, hidden)
            return self._external_page(summary)
        if target in self.index and is_local(self.index[target]):
            return None
        return self._external_member(key)

    def _external_page(self, summary: Mapping[str, Any]) -> str | None:
        root = self._html_root(summary.get("crate_id"))
        path = [str(segment) for segment in summary.get("path") or ()]
        kind = summary.get("kind")
        if root is None or not path:
            return None
        if kind == "module":
            return root + "/".join(path) + "/index.html"
        if kind == "variant" and len(path) >= 3:
            return root + "/".join(path[:-2]) + f"/enum.{path[-2]}.html#variant.{path[-1]}"
        if kind == "keyword":
            return root + "/".join(path[:-1]) + f"/keyword.{path[-1]}.html"
        prefix = FOREIGN_KINDS.get(kind, (None, None))[1]
        if prefix is None or len(path) < 2:
            return None
        return root + "/".join(path[:-1]) + f"/{prefix}.{path[-1]}.html"

    def _html_root(self, crate_id: Any) -> str | None:
        crate = self.external_crates.get(str(crate_id))
        root = crate.get("html_root_url") if isinstance(crate, dict) else None
        if not root:
            return None  # rustdoc makes no link to a crate whose docs it cannot locate either
        return root if root.endswith("/") else root + "/"

    def _external_member(self, key: str) -> str | None:
        """A method, associated item or variant of another crate's type, by the link's path."""
        written = key.strip().strip("`").partition("#")[0]
        written = written.split("@", 1)[-1].removesuffix("()").removesuffix("!")
        segments = [s for s in written.split("::") if s]
        if len(segments) < 2:
            return None
        owner = self._unique_owner(segments[:-1])
        if owner is None:
            return None
        page = self._external_page(owner)
        if page is None:
            return None
        name = segments[-1]
        if owner.get("kind") == "enum" and name[:1].isupper():
            anchor = f"variant.{name}"
        elif name.isupper():
            anchor = f"associatedconstant.{name}"
        elif owner.get("kind") == "trait":
            anchor = f"tymethod.{name}"
        else:
            anchor = f"method.{name}"
        return f"{page}#{anchor}"

    def _unique_owner(self, segments: list[str]) -> Mapping[str, Any] | None:
        if self._by_name is None:
            self._by_name = {}
            for summary in self.paths.values():
                if (
                    isinstance(summary, dict)
                    and summary.get("crate_id", LOCAL_CRATE_ID) != LOCAL_CRATE_ID
                    and summary.get("kind") in _OWNER_KINDS
                    and summary.get("path")
                ):
                    self._by_name.setdefault(str(summary["path"][-1]), []).append(summary)
        candidates = [
            summary
            for summary in self._by_name.get(segments[-1], ())
            if _written_path_matches(segments, [str(s) for s in summary["path"]])
        ]
        pages = {self._external_page(summary) for summary in candidates}
        return candidates[0] if len(pages) == 1 and None not in pages else None


_OWNER_KINDS = frozenset({"struct", "enum", "union", "trait", "primitive", "type_alias"})
# The standard library's crates re-export one another: `std::boxed::Box` is defined as `alloc::boxed::Box`.
_STD_CRATES = frozenset({"std", "core", "alloc"})


def _written_path_matches(written: list[str], defined: list[str]) -> bool:
    """Whether a path as written in docs (``std::io::BufRead``, ``Option``) can name the item ``paths`` defines
    at ``defined`` (``std::io::BufRead``, ``core::option::Option``): the same last name and the written
    segments in order (modules may be skipped by re-exports)."""
    if written[-1] != defined[-1]:
        return False
    rest = iter(defined[:-1])
    for position, segment in enumerate(written[:-1]):
        if position == 0 and segment in _STD_CRATES and defined[0] in _STD_CRATES:
            next(rest, None)
            continue
        if segment in ("crate", "self", "super", "Self"):
            return False
        if not any(segment == candidate for candidate in rest):
            return False
    return True
