"""Reading the rustdoc JSON document and checking its format version."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import orjson

from crates.errors import CorruptArtifact, UnsupportedFormat

logger = logging.getLogger(__name__)

# The oldest format read (docs.rs serves none older); there is no upper bound: newer ones are read tolerantly.
OLDEST_FORMAT_VERSION = 45
# The newest format the test fixtures hold (rustdoc 1.95.0); a newer one logs one warning per process.
NEWEST_TESTED_FORMAT_VERSION = 57
# Kept for callers that list what is known to work: the tested range.
SUPPORTED_FORMAT_VERSIONS = range(OLDEST_FORMAT_VERSION, NEWEST_TESTED_FORMAT_VERSION + 1)
_warned_newer = False
_warn_lock = threading.Lock()
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def load(data: bytes | bytearray | memoryview | str | dict) -> dict:
    if isinstance(data, dict):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if raw.startswith(ZSTD_MAGIC) or raw.startswith(GZIP_MAGIC):
            raise CorruptArtifact("The rustdoc JSON is still compressed (zstd/gzip); decompress it before parsing.")
    elif isinstance(data, str):
        raw = data
    else:
        raise CorruptArtifact(f"Expected rustdoc JSON as bytes or a dict, got {type(data).__name__}.")
    try:
        doc = decode(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptArtifact(
            f"The rustdoc JSON could not be read ({exc}); the download is probably truncated or corrupt."
        ) from exc
    if not isinstance(doc, dict):
        raise CorruptArtifact("The rustdoc JSON is not an object; this is not rustdoc output.")
    return doc


def decode(raw: bytes | str) -> Any:
    """orjson, much faster than the stdlib on multi-megabyte rustdoc output; anything it refuses (NaN, integers
    beyond 64 bits, nesting deeper than 1024) goes to the stdlib, so what loads and which errors are raised
    stay exactly the stdlib's."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def check_format_version(doc: Mapping[str, Any]) -> int:
    version = doc.get("format_version")
    if version is None:
        raise CorruptArtifact("The JSON has no 'format_version': it is not rustdoc JSON output.")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CorruptArtifact(f"The rustdoc JSON 'format_version' is not a number: {version!r}.")
    if version < OLDEST_FORMAT_VERSION:
        raise UnsupportedFormat(
            f"rustdoc JSON format version {version} is too old (Ferrodex reads {OLDEST_FORMAT_VERSION} and newer): "
            "rebuild the docs with a newer rustdoc, or ingest the HTML docs instead.",
            format_version=version,
            supported=[OLDEST_FORMAT_VERSION, None],
        )
    if version > NEWEST_TESTED_FORMAT_VERSION:
        warn_newer_format(version)
    return version


def warn_newer_format(version: int) -> None:
    """Once per process: operators learn an upgrade may read more of the newer format."""
    global _warned_newer
    with _warn_lock:
        if _warned_newer:
            return
        _warned_newer = True
    logger.warning(
        "rustdoc JSON format %d is newer than any Ferrodex was tested on (%d); it is read tolerantly "
        "(unknown parts are skipped and counted, and the HTML bundle is used if too much is lost). "
        "Upgrading Ferrodex may add detail.",
        version,
        NEWEST_TESTED_FORMAT_VERSION,
        extra={"format_version": version, "newest_tested": NEWEST_TESTED_FORMAT_VERSION},
    )
