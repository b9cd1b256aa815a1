"""Reading the docs.rs HTML download ZIP safely.

The archive comes from the network, so every entry name is checked before anything is used: no absolute paths,
no ``..``, no backslashes or drive letters, no symlinks. Sizes are checked twice: the declared sizes up front and
the bytes actually inflated while reading, because a crafted archive can lie in its headers.
"""

from __future__ import annotations

import io
import posixpath
import stat
import zipfile
import zlib

from crates.errors import ArtifactTooLarge, CorruptArtifact, UnsafeArchive

READ_CHUNK_BYTES = 1024 * 1024
# Far above any real crate (tokio's tree has ~800 files), low enough that a crafted central directory with
# millions of entries is refused before it costs memory.
MAX_ENTRIES = 200_000
# Files rustdoc writes at the root of its output directory; they tell a doc root from a wrapper directory.
DOC_ROOT_MARKERS = ("crates.js", "help.html", "settings.html", "search-index.js", "search.index", "static.files")


def read_zip_pages(data: bytes, *, max_total_bytes: int) -> dict[str, bytes]:
    """The ``.html`` files of a rustdoc ZIP, keyed by their path relative to the doc root.

    UnsafeArchive for a dangerous entry anywhere in the archive, ArtifactTooLarge when the HTML inflates to
    more than ``max_total_bytes``, CorruptArtifact when it is not a readable ZIP.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise CorruptArtifact(f"The documentation download is not a readable ZIP archive ({exc}).") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise UnsafeArchive(f"The documentation ZIP has {len(infos):,} entries (limit {MAX_ENTRIES:,}).")
        names = [_checked_name(info) for info in infos]
        prefix = _wrapper_prefix([n for n in names if n])
        pages_infos = [
            (name[len(prefix) :], info)
            for name, info in zip(names, infos, strict=True)
            if name and not info.is_dir() and name.lower().endswith(".html")
        ]
        declared = sum(info.file_size for _, info in pages_infos)
        if declared > max_total_bytes:
            raise _too_large(declared, max_total_bytes)
        pages: dict[str, bytes] = {}
        total = 0
        for name, info in pages_infos:
            if name in pages:
                continue
            body, total = _read_entry(archive, info, total=total, max_total_bytes=max_total_bytes)
            pages[name] = body
    return pages


def _checked_name(info: zipfile.ZipInfo) -> str:
    """The entry's normalised relative path ('' for a directory), or UnsafeArchive."""
    for raw in {info.filename, info.orig_filename}:
        if "\\" in raw or "\x00" in raw:
            raise UnsafeArchive(f"Refusing the documentation ZIP: entry {raw[:200]!r} has a backslash or NUL byte.")
        if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
            raise UnsafeArchive(f"Refusing the documentation ZIP: entry {raw[:200]!r} is an absolute path.")
        if ".." in raw.split("/"):
            raise UnsafeArchive(f"Refusing the documentation ZIP: entry {raw[:200]!r} climbs out with '..'.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchive(f"Refusing the documentation ZIP: entry {info.filename[:200]!r} is a symbolic link.")
    name = posixpath.normpath(info.filename)
    if info.is_dir() or name in {".", ""}:
        return ""
    return name


def _wrapper_prefix(names: list[str]) -> str:
    """``"top/"`` when the whole tree sits in one directory that is not itself a rustdoc root, else ``""``.

    A rustdoc tree's root holds crates.js, help.html, static.files/... next to ``<crate>/``; a ZIP of just
    ``<crate>/...`` must keep that directory, since page paths start with the crate name.
    """
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) != 1 or all("/" not in name for name in names):
        return ""
    top = tops.pop()
    children = {name.split("/")[1] for name in names if name.count("/") >= 1}
    has_root_markers = any(marker in children for marker in DOC_ROOT_MARKERS)
    holds_crate_dirs = any(name.count("/") >= 2 and name.endswith("/index.html") for name in names)
    if has_root_markers or (holds_crate_dirs and f"{top}/index.html" not in names):
        return f"{top}/"
    return ""


def _read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, total: int, max_total_bytes: int
) -> tuple[bytes, int]:
    chunks = []
    try:
        with archive.open(info) as handle:
            while chunk := handle.read(READ_CHUNK_BYTES):
                total += len(chunk)
                if total > max_total_bytes:
                    raise _too_large(total, max_total_bytes)
                chunks.append(chunk)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        ValueError,
        OSError,
        EOFError,
        NotImplementedError,
    ) as exc:
        raise CorruptArtifact(f"Entry {info.filename[:200]!r} of the documentation ZIP is damaged ({exc}).") from exc
    except RuntimeError as exc:  # encrypted entries
        raise CorruptArtifact(
            f"Entry {info.filename[:200]!r} of the documentation ZIP cannot be read ({exc})."
        ) from exc
    return b"".join(chunks), total


def _too_large(size: int, limit: int) -> ArtifactTooLarge:
    return ArtifactTooLarge(
        f"The documentation ZIP inflates to more than {limit:,} bytes of HTML ({size:,} so far). "
        "Raise MAX_DECOMPRESSED_BYTES if this crate really is that big.",
        size=size,
        limit=limit,
    )
