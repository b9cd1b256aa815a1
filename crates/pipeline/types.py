"""Data passed between pipeline stages. Plain dataclasses: no Django, no I/O."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

DocsSource = Literal["rustdoc-json", "html"]
ArtifactKind = Literal["json", "zip", "pages"]


@dataclass(slots=True)
class ParsedItem:
    """One documented public item, as both parsers produce it."""

    path: str  # full public path: "tokio::sync::Mutex::lock"
    name: str  # last segment: "lock"
    kind: str  # crates.models.Document.Kind value
    parent_path: str = ""  # "tokio::sync::Mutex" for a method, "tokio::sync" for a struct
    signature: str = ""  # readable declaration
    docs: str = ""  # markdown
    url: str = ""  # relative to the crate's docs root: "tokio/sync/struct.Mutex.html#method.lock"
    deprecated: bool = False
    deprecation_note: str = ""
    metadata: dict = field(default_factory=dict)
    # The docs as chunks see them when they differ from ``docs``: rustdoc JSON's markdown as the author wrote it,
    # before its intra-doc links became URLs (see crates.pipeline.chunk._body_markdown).
    chunk_docs: str | None = None
    # Type search and the trait graph (crates.typesig): a function's or method's {"i": inputs, "o": output}, and
    # the trait impls this document owns (its type's, or its trait's for types documented elsewhere).
    type_sig: dict | None = None
    impls: list[dict] = field(default_factory=list)

    def content_hash(self) -> str:
        payload = json.dumps(
            [self.path, self.kind, self.signature, self.docs, self.deprecated, self.deprecation_note],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


_COUNTED_NOUN = re.compile(r"\b(item|shape|form)\b")


def _plural(what: str, count: int) -> str:
    """"item of unknown kind `x`" -> "items of unknown kind `x`" when there are several."""
    return what if count == 1 else _COUNTED_NOUN.sub(lambda m: m.group(1) + "s", what, count=1)


@dataclass(slots=True)
class ParseReport:
    """What a parser could not understand, counted (never raised), and what the source stage decided."""

    # what was skipped -> how many: "item of unknown kind `attribute_macro_v2`", "type shape `pattern_v2`"...
    skipped: dict[str, int] = field(default_factory=dict)
    public_items: int = 0  # public items met (top level, members, trait and impl items)
    understood: int = 0  # of those, the ones that became documents
    declared_public: int = 0  # public items of the crate below its root in the file, reachable or not
    notes: list[str] = field(default_factory=list)  # "fell back to the HTML bundle: ..."

    def skip(self, what: str, count: int = 1) -> None:
        self.skipped[what] = self.skipped.get(what, 0) + count

    def item_skipped(self, what: str) -> None:
        """A public item that did not become a document."""
        self.skip(what)
        self.public_items += 1

    def item_understood(self) -> None:
        self.understood += 1
        self.public_items += 1

    def share_understood(self) -> float:
        return self.understood / self.public_items if self.public_items else 1.0

    def lines(self, *, label: str = "") -> list[str]:
        """Human lines: ``rustdoc JSON v63: 1 item of unknown kind `attribute_macro_v2` skipped``."""
        head = f"{label}: " if label else ""
        skipped = [f"{count} {_plural(what, count)} skipped" for what, count in sorted(self.skipped.items())]
        return [f"{head}{line}" for line in [*self.notes, *skipped]]


@dataclass(slots=True)
class ParsedCrate:
    crate_name: str  # the library name used in paths: "serde_json"
    version: str
    source: DocsSource
    items: list[ParsedItem]
    format_version: int | None = None
    generator: str = ""  # e.g. "rustdoc 1.95.0"
    target: str = ""
    report: ParseReport = field(default_factory=ParseReport)
    # `pub use other_crate::*` the JSON cannot list (module public path, source as written): their items are
    # only in the HTML bundle.
    foreign_globs: list[tuple[str, str]] = field(default_factory=list)

    def source_label(self) -> str:
        """``rustdoc JSON v63`` or ``HTML bundle``: where the documents came from."""
        if self.source == "rustdoc-json":
            return f"rustdoc JSON v{self.format_version}" if self.format_version else "rustdoc JSON"
        return "HTML bundle"

    def provenance_notes(self) -> list[str]:
        return self.report.lines(label=self.source_label())


@dataclass(slots=True)
class ChunkData:
    ordinal: int
    text: str  # starts with the item's path, kind and signature so it stands alone
    token_count: int
    content_hash: str


@dataclass(slots=True)
class ResolvedRelease:
    name: str  # canonical crates.io spelling
    version: str
    available_versions: list[str] = field(default_factory=list)
    description: str = ""
    repository: str = ""
    features: dict = field(default_factory=dict)  # the sparse index's [features] of this version


@dataclass(slots=True)
class Artifact:
    """What fetch hands to parse."""

    kind: ArtifactKind
    url: str
    body: bytes = b""  # decompressed rustdoc JSON, or the ZIP bytes
    download: bytes = b""  # rustdoc JSON as it came over the wire (often zstd/gzip); kept to cache it as is
    pages: dict[str, bytes] = field(default_factory=dict)  # relative path -> HTML, for kind="pages"
    etag: str = ""
    sha256: str = ""
    not_modified: bool = False  # a conditional request answered 304
    requests: int = 0  # HTTP requests this fetch made


class Progress(Protocol):
    """What the pipeline reports through; the job runner and the CLI implement it."""

    def stage(self, name: str, message: str, percent: float) -> None: ...

    def update(self, *, percent: float | None = None, message: str | None = None, **counters: int) -> None: ...

    def check_cancelled(self) -> None:
        """Raise crates.errors.Cancelled if the job was asked to stop."""
        ...


class NullProgress:
    """Progress that reports nothing and is never cancelled."""

    def stage(self, name: str, message: str, percent: float) -> None:
        pass

    def update(self, *, percent: float | None = None, message: str | None = None, **counters: int) -> None:
        pass

    def check_cancelled(self) -> None:
        pass
