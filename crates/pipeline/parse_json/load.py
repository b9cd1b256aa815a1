"""Reading the rustdoc JSON document and checking its format version."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from crates.errors import CorruptArtifact, UnsupportedFormat

SUPPORTED_FORMAT_VERSIONS = range(45, 59)  # 45..58 inclusive
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
    """orjson, 3-4x faster than the stdlib on multi-megabyte rustdoc output; anything it refuses (NaN, integers
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
    low, high = SUPPORTED_FORMAT_VERSIONS[0], SUPPORTED_FORMAT_VERSIONS[-1]
    if version not in SUPPORTED_FORMAT_VERSIONS:
        advice = (
            "It is newer than this Ferrodex understands; upgrade Ferrodex or ingest the HTML docs instead."
            if version > high
            else "It is older than Ferrodex reads; rebuild the docs with a newer rustdoc or ingest the HTML docs."
        )
        raise UnsupportedFormat(
            f"rustdoc JSON format version {version} is not supported (supported: {low} to {high}). {advice}",
            format_version=version,
            supported=[low, high],
        )
    return version
