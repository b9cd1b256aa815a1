"""Stage 2: download a release's documentation from docs.rs, cheapest usable form first.

Order, chosen to keep the request budget (a JSON release costs 1 docs.rs request, an HTML-only one 2):

1. ``/crate/{name}/{version}/json`` — rustdoc JSON, zstd (or gzip) body without Content-Encoding.
2. on 404: ``/crate/{name}/{version}/download`` — the whole HTML tree as one ZIP.
3. on 404 again: ``/crate/{name}/{version}/status.json`` tells a release without docs (build failed or never
   built: NoDocumentation) from one whose docs exist without a download archive; only then
4. crawl the HTML pages one by one, bounded by ``HTML_CRAWL_PAGE_LIMIT``.

Asking status.json only after the download 404s gives the same answers as asking it first (a release without
docs has no download either) and saves one request per HTML-only crate.

With an ``etag`` from the previous fetch, the JSON and download requests are conditional; a 304 returns
``Artifact(not_modified=True)`` and nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from urllib.parse import quote, urldefrag, urljoin

import zstandard
from bs4 import BeautifulSoup
from django.conf import settings
from django.utils import timezone

from crates.errors import ArtifactError, ArtifactTooLarge, CorruptArtifact, NoDocumentation
from crates.models import FetchedArtifact
from crates.names import normalize_crate_name
from crates.pipeline import pgcopy
from crates.pipeline.archive import read_zip_pages
from crates.pipeline.http import HttpClient
from crates.pipeline.types import Artifact, Progress

logger = logging.getLogger(__name__)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
# Compressed input fed to the decompressor per step, adapted to aim at ~1 MiB of output: zstd can expand
# ~32,000:1, so a fixed 4 KiB step let one step of a bomb produce 128 MB before the size guard saw it.
INFLATE_STEP_RANGE = (64, 256 * 1024)
INFLATE_TARGET_BYTES = 1024 * 1024
GZIP_OUTPUT_STEP_BYTES = 1024 * 1024
STATUS_MAX_BYTES = 1024 * 1024


def fetch_docs(*, name: str, version: str, client: HttpClient, etag: str = "", progress: Progress) -> Artifact:
    """Download the documentation of ``name`` ``version`` (an exact, resolved version, canonical name)."""
    first_request = client.request_count
    crate_url = f"{settings.DOCSRS_BASE_URL}/crate/{quote(name, safe='')}/{quote(version, safe='')}"
    conditional = {"If-None-Match": etag} if etag else {}

    progress.check_cancelled()
    progress.update(message=f"Downloading rustdoc JSON of {name} {version}")
    json_url = f"{crate_url}/json"
    response = client.get(json_url, headers=conditional, allow_404=True)
    if response.status_code != 404:
        artifact = _json_artifact(response, url=json_url, etag=etag)
        artifact.requests = client.request_count - first_request
        return artifact

    progress.check_cancelled()
    progress.update(message=f"No rustdoc JSON; downloading the HTML archive of {name} {version}")
    zip_url = f"{crate_url}/download"
    response = client.get(zip_url, headers=conditional, allow_404=True)
    if response.status_code != 404:
        artifact = _zip_artifact(response, url=zip_url, etag=etag)
        artifact.requests = client.request_count - first_request
        return artifact

    progress.check_cancelled()
    _require_docs(name=name, version=version, crate_url=crate_url, client=client)
    start_url, pages = crawl_pages(name=name, version=version, client=client, progress=progress)
    return Artifact(
        kind="pages",
        url=start_url,
        pages=pages,
        sha256=pages_sha256(pages),
        requests=client.request_count - first_request,
    )


def fetch_html_bundle(*, name: str, version: str, client: HttpClient, progress: Progress) -> Artifact | None:
    """The HTML bundle (``/download``) alone, or None when docs.rs has none: what a release whose rustdoc JSON
    cannot be used, or lacks items, falls back to (one request)."""
    first_request = client.request_count
    progress.check_cancelled()
    progress.update(message=f"Downloading the HTML archive of {name} {version}")
    url = f"{settings.DOCSRS_BASE_URL}/crate/{quote(name, safe='')}/{quote(version, safe='')}/download"
    response = client.get(url, allow_404=True)
    if response.status_code == 404:
        return None
    artifact = _zip_artifact(response, url=url, etag="")
    artifact.requests = client.request_count - first_request
    return artifact


def decode_json_body(data: bytes, *, max_bytes: int, url: str = "") -> bytes:
    """rustdoc JSON from a docs.rs body: zstd or gzip (by magic bytes) or plain JSON, at most ``max_bytes``."""
    where = f" from {url}" if url else ""
    if data.startswith(ZSTD_MAGIC):
        declared = _zstd_declared_size(data)
        if declared is not None and declared > max_bytes:
            raise _decompressed_too_large(max_bytes=max_bytes, where=where)
        return _inflate_limited(lambda: _inflate_zstd(data, where=where), max_bytes=max_bytes, where=where)
    if data.startswith(GZIP_MAGIC):
        return _inflate_limited(lambda: _inflate_gzip(data, where=where), max_bytes=max_bytes, where=where)
    if data[:64].lstrip().startswith(b"{"):
        if len(data) > max_bytes:
            raise _decompressed_too_large(max_bytes=max_bytes, where=where)
        return data
    raise CorruptArtifact(
        f"The rustdoc JSON{where} is neither zstd, gzip nor a JSON object (it starts with {data[:16]!r}).", url=url
    )


def crawl_pages(*, name: str, version: str, client: HttpClient, progress: Progress) -> tuple[str, dict[str, bytes]]:
    """Last resort: fetch the crate's HTML pages one by one, following links that stay inside the crate.

    Returns the start URL and the pages keyed by their path below ``/{name}/{version}/`` (``lib/index.html``).
    """
    limit = settings.HTML_CRAWL_PAGE_LIMIT
    root = f"{settings.DOCSRS_BASE_URL}/{quote(name, safe='')}/{quote(version, safe='')}/"
    start = f"{root}{name.replace('-', '_')}/index.html"
    response = client.get(start, allow_404=True)
    if response.status_code == 404:
        # The library may be named differently from the package; docs.rs redirects the version root to it.
        response = client.get(root, allow_404=True)
        if response.status_code == 404 or not response.url.startswith(root):
            raise NoDocumentation(
                f"docs.rs lists documentation for {name} {version} but serves no rustdoc JSON, "
                "no download archive and no HTML pages for it.",
                name=name,
                version=version,
            )
        start = _page_url(response.url)
    lib = start[len(root) :].split("/", 1)[0]
    scope = f"{root}{lib}/"
    pages: dict[str, bytes] = {}
    queue: deque[str] = deque()
    seen = {start}
    current: str | None = start
    while current is not None:
        if response.status_code == 200 and _is_html(response):
            pages[current[len(root) :]] = response.content
            for link in _in_crate_links(response.content, page_url=current, scope=scope):
                if link not in seen:
                    seen.add(link)
                    queue.append(link)
        if len(pages) >= limit:
            logger.warning("crawl of %s %s stopped at the page limit of %d pages", name, version, limit)
            break
        if not queue:
            break
        progress.check_cancelled()
        if len(pages) % 25 == 0:
            progress.update(message=f"Crawled {len(pages)} HTML pages of {name} {version}")
        current = queue.popleft()
        response = client.get(current, allow_404=True)
    if not pages:
        raise NoDocumentation(f"docs.rs serves no readable HTML page for {name} {version}.", name=name, version=version)
    return start, pages


def pages_sha256(pages: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(pages):
        digest.update(path.encode() + b"\0" + hashlib.sha256(pages[path]).digest())
    return digest.hexdigest()


# -- cache of downloaded artifacts --------------------------------------------------------------------------


def save_artifact(*, name: str, version: str, artifact: Artifact) -> None:
    """Keep the download (upsert), so a resumed or retried job does not fetch it again."""
    if artifact.not_modified:
        return
    if artifact.kind == "json" and artifact.download.startswith((ZSTD_MAGIC, GZIP_MAGIC)):
        # Already compressed as docs.rs sent it (decoded by its magic bytes on load): compressing the
        # decoded JSON again cost more than the rest of the fetch stage.
        stored = artifact.download
    elif artifact.kind == "json":
        # Stored compressed: rustdoc JSON shrinks ~10x, and load decodes it by its magic bytes.
        stored = zstandard.ZstdCompressor(level=3).compress(artifact.body)
    elif artifact.kind == "zip":
        stored = artifact.body
    else:
        stored = _pack_pages(artifact.pages)
    # One INSERT ... ON CONFLICT in plain SQL: it is on every ingest's path, and the ORM's bulk_create is slower.
    with pgcopy.replayable_write() as cursor:
        cursor.execute(
            f'INSERT INTO "{FetchedArtifact._meta.db_table}"'
            " (crate_name, version, kind, url, etag, sha256, size, body, fetched_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (crate_name, version, kind) DO UPDATE SET url = EXCLUDED.url, etag = EXCLUDED.etag,"
            " sha256 = EXCLUDED.sha256, size = EXCLUDED.size, body = EXCLUDED.body, fetched_at = EXCLUDED.fetched_at",
            [normalize_crate_name(name), version, artifact.kind, artifact.url[:1000], artifact.etag[:200],
             artifact.sha256, len(stored), stored, timezone.now()],
        )


def load_cached_artifact(*, name: str, version: str) -> Artifact | None:
    """The newest saved download of this release, or None (also when the saved copy is damaged)."""
    row = (
        FetchedArtifact.objects.filter(crate_name=normalize_crate_name(name), version=version)
        .order_by("-fetched_at")
        .first()
    )
    if row is None:
        return None
    stored = bytes(row.body)
    artifact = Artifact(kind=row.kind, url=row.url, etag=row.etag, sha256=row.sha256)
    try:
        if row.kind == "json":
            artifact.body = decode_json_body(stored, max_bytes=settings.MAX_DECOMPRESSED_BYTES)
            actual = hashlib.sha256(artifact.body).hexdigest()
        else:
            artifact.pages = read_zip_pages(stored, max_total_bytes=settings.MAX_DECOMPRESSED_BYTES)
            if row.kind == "zip":
                artifact.body = stored
                actual = hashlib.sha256(stored).hexdigest()
            else:
                actual = pages_sha256(artifact.pages)
    except ArtifactError as exc:
        logger.warning("cached %s of %s %s is unusable (%s); it will be downloaded again", row.kind, name, version, exc)
        return None
    if actual != row.sha256:
        logger.warning("cached %s of %s %s fails its checksum; it will be downloaded again", row.kind, name, version)
        return None
    return artifact


def delete_cached_artifacts(*, name: str, version: str) -> int:
    """Drop the saved downloads of a release (after a successful ingest they only take space)."""
    deleted, _ = FetchedArtifact.objects.filter(crate_name=normalize_crate_name(name), version=version).delete()
    return deleted


# -- helpers ------------------------------------------------------------------------------------------------


def _json_artifact(response, *, url: str, etag: str) -> Artifact:
    if response.status_code == 304:
        return Artifact(kind="json", url=url, etag=etag, not_modified=True)
    body = decode_json_body(response.content, max_bytes=settings.MAX_DECOMPRESSED_BYTES, url=url)
    return Artifact(
        kind="json",
        url=url,
        body=body,
        download=response.content,
        etag=response.headers.get("ETag", ""),
        sha256=hashlib.sha256(body).hexdigest(),
    )


def _zip_artifact(response, *, url: str, etag: str) -> Artifact:
    if response.status_code == 304:
        return Artifact(kind="zip", url=url, etag=etag, not_modified=True)
    body = response.content
    # Validate now (unsafe or broken archives fail the fetch stage) and hand the pages on, so parse need not
    # inflate the archive a second time.
    pages = read_zip_pages(body, max_total_bytes=settings.MAX_DECOMPRESSED_BYTES)
    if not pages:
        raise CorruptArtifact(f"The documentation archive {url} holds no HTML page.", url=url)
    return Artifact(
        kind="zip",
        url=url,
        body=body,
        pages=pages,
        etag=response.headers.get("ETag", ""),
        sha256=hashlib.sha256(body).hexdigest(),
    )


def _require_docs(*, name: str, version: str, crate_url: str, client: HttpClient) -> None:
    response = client.get(f"{crate_url}/status.json", allow_404=True, max_bytes=STATUS_MAX_BYTES)
    doc_status = None
    if response.status_code == 200:
        try:
            doc_status = response.json().get("doc_status")
        except (ValueError, AttributeError):
            logger.warning("docs.rs status.json of %s %s is unreadable; trying the HTML pages", name, version)
    if response.status_code == 404 or doc_status is False:
        raise NoDocumentation(
            f"docs.rs has no documentation for {name} {version}: its build failed or it was never built.",
            name=name,
            version=version,
        )


def _inflate_zstd(data: bytes, *, where: str) -> Iterator[bytes]:
    view = memoryview(data)
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    low, high = INFLATE_STEP_RANGE
    offset, carry, step = 0, b"", low
    try:
        while offset < len(view) or carry:
            if carry:
                piece, carry = carry, b""
            else:
                piece, offset = view[offset : offset + step], offset + step
            if out := decompressor.decompress(piece):
                yield out
            step = min(high, max(low, len(piece) * INFLATE_TARGET_BYTES // max(1, len(out))))
            if decompressor.eof:
                # Concatenated frames are valid zstd: start the next one with what is left.
                carry = decompressor.unused_data
                if carry or offset < len(view):
                    decompressor = zstandard.ZstdDecompressor().decompressobj()
    except zstandard.ZstdError as exc:
        raise CorruptArtifact(f"The zstd stream of the rustdoc JSON{where} is damaged ({exc}).") from exc
    if not decompressor.eof:
        raise CorruptArtifact(f"The zstd stream of the rustdoc JSON{where} is truncated.")


def _inflate_gzip(data: bytes, *, where: str) -> Iterator[bytes]:
    view = memoryview(data)
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pending: bytes | memoryview = view
    try:
        while pending:
            out = decompressor.decompress(pending, GZIP_OUTPUT_STEP_BYTES)
            if out:
                yield out
            if decompressor.eof:
                pending = decompressor.unused_data
                if pending:  # gzip allows several members back to back
                    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            else:
                pending = decompressor.unconsumed_tail
        while not decompressor.eof and (out := decompressor.decompress(b"", GZIP_OUTPUT_STEP_BYTES)):
            yield out
    except zlib.error as exc:
        raise CorruptArtifact(f"The gzip stream of the rustdoc JSON{where} is damaged ({exc}).") from exc
    if not decompressor.eof:
        raise CorruptArtifact(f"The gzip stream of the rustdoc JSON{where} is truncated.")


def _zstd_declared_size(data: bytes) -> int | None:
    """The size the first zstd frame announces, if it does (a bomb that tells the truth costs nothing)."""
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        return None
    return size if size >= 0 else None


def _inflate_limited(stream: Callable[[], Iterator[bytes]], *, max_bytes: int, where: str) -> bytes:
    """Inflate twice: count first, keeping nothing, then keep. A bomb is refused having cost one step's output,
    not MAX_DECOMPRESSED_BYTES of kept chunks (three jobs at once needed ~3.5 GB)."""
    total = 0
    for chunk in stream():
        total += len(chunk)
        if total > max_bytes:
            raise _decompressed_too_large(max_bytes=max_bytes, where=where)
    buffer = io.BytesIO()
    for chunk in stream():
        buffer.write(chunk)
    return buffer.getvalue()


def _decompressed_too_large(*, max_bytes: int, where: str) -> ArtifactTooLarge:
    return ArtifactTooLarge(
        f"The rustdoc JSON{where} inflates to more than {max_bytes:,} bytes. "
        "Raise MAX_DECOMPRESSED_BYTES if this crate really is that big.",
        limit=max_bytes,
    )


def _is_html(response) -> bool:
    content_type = response.headers.get("Content-Type", "text/html")
    return "html" in content_type.lower()


def _page_url(url: str) -> str:
    return f"{url}index.html" if url.endswith("/") else url


def _in_crate_links(html: bytes, *, page_url: str, scope: str) -> Iterator[str]:
    for anchor in BeautifulSoup(html, "lxml").find_all("a", href=True):
        target = urldefrag(urljoin(page_url, anchor["href"])).url.split("?", 1)[0]
        if target.startswith(scope) and (target.endswith(".html") or target.endswith("/")):
            yield _page_url(target)


def _pack_pages(pages: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(pages):
            archive.writestr(path, pages[path])
    return buffer.getvalue()
