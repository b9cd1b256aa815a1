"""Data passed between pipeline stages. Plain dataclasses: no Django, no I/O."""

from __future__ import annotations

import hashlib
import json
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


@dataclass(slots=True)
class ParsedCrate:
    crate_name: str  # the library name used in paths: "serde_json"
    version: str
    source: DocsSource
    items: list[ParsedItem]
    format_version: int | None = None
    generator: str = ""  # e.g. "rustdoc 1.95.0"
    target: str = ""


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
