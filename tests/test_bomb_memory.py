"""A hostile artifact that inflates far past MAX_DECOMPRESSED_BYTES is refused without holding what it inflated:
measured as the peak RSS of a fresh process (several jobs run at once; each must stay small)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
import zstandard

from tests.jobs_helpers import BASE_DIR

LIMIT = 256 << 20  # the refusal must not cost anything near this
INFLATED = 768 << 20
MAX_GROWTH = 64 << 20

MEASURE = """
import os, resource, sys
import django
django.setup()
from crates.errors import ArtifactTooLarge
from crates.pipeline.archive import read_zip_pages
from crates.pipeline.fetch import decode_json_body
data = open(sys.argv[2], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if sys.argv[1] == "zip":
        read_zip_pages(data, max_total_bytes=int(sys.argv[3]))
    else:
        decode_json_body(data, max_bytes=int(sys.argv[3]))
except ArtifactTooLarge:
    print("refused", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def _zstd_bomb(path, *, content_size: bool) -> None:
    compressor = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    block = b"{" + b" " * ((1 << 20) - 1)
    with open(path, "wb") as out, compressor.stream_writer(out, size=INFLATED if content_size else -1) as writer:
        for _ in range(INFLATED >> 20):
            writer.write(block)


def _zip_bomb(path) -> None:
    """One HTML entry of INFLATED bytes (a header that lies is caught by zipfile's own size and CRC checks)."""
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("ferro/index.html", "w", force_zip64=True) as entry,
    ):
        for _ in range(INFLATED >> 20):
            entry.write(b" " * (1 << 20))


@pytest.mark.parametrize("kind", ["zstd-with-size", "zstd-without-size", "zip"])
def test_a_refused_bomb_costs_little_memory(tmp_path, kind):
    path = tmp_path / "bomb"
    if kind == "zip":
        _zip_bomb(path)
    else:
        _zstd_bomb(path, content_size=kind == "zstd-with-size")
    assert path.stat().st_size < 4 << 20
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, "zip" if kind == "zip" else "json", str(path), str(LIMIT)],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    verdict, growth = run.stdout.split()[-2:]
    assert verdict == "refused"
    assert int(growth) < MAX_GROWTH, f"refusing the {kind} bomb grew the peak RSS by {int(growth) >> 20} MiB"
