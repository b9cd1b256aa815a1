"""Decompression-bomb benchmark: peak RSS of refusing hostile artifacts that inflate to 2.5 GiB.

Builds each bomb on disk (a zstd frame with and without its content size, a gzip member, a ZIP whose one HTML
entry inflates to 2.5 GiB), then runs the fetch stage's decoder on it in a fresh process at the default
MAX_DECOMPRESSED_BYTES (1 GiB) and reports that process's peak RSS and its growth while refusing. The target
is <= 300 MB per job for any hostile artifact (MAX_CONCURRENT_JOBS jobs may refuse one at once).

    .venv/bin/python bench/bomb_memory.py [--gib 2.5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, print_table, write_results

TARGET_MB = 300
BLOCK = b"{" + b" " * ((1 << 20) - 1)

MEASURE = """
import resource, sys, time
import django
django.setup()
from django.conf import settings
from crates.errors import ArtifactError
from crates.pipeline.archive import read_zip_pages
from crates.pipeline.fetch import decode_json_body
data = open(sys.argv[2], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    if sys.argv[1] == "zip":
        read_zip_pages(data, max_total_bytes=settings.MAX_DECOMPRESSED_BYTES)
    else:
        decode_json_body(data, max_bytes=settings.MAX_DECOMPRESSED_BYTES)
    verdict = "ACCEPTED"
except ArtifactError as exc:
    verdict = type(exc).__name__
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(verdict, before * 1024, peak * 1024, time.perf_counter() - started)
"""


def build(kind: str, path: Path, blocks: int) -> None:
    if kind.startswith("zstd"):
        import zstandard

        with_size = kind == "zstd"
        compressor = zstandard.ZstdCompressor(level=3, write_content_size=with_size)
        with open(path, "wb") as out, compressor.stream_writer(out, size=blocks << 20 if with_size else -1) as writer:
            for _ in range(blocks):
                writer.write(BLOCK)
    elif kind == "gzip":
        deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        with open(path, "wb") as out:
            for _ in range(blocks):
                out.write(deflate.compress(BLOCK))
            out.write(deflate.flush())
    else:
        with (
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
            archive.open("bomb/index.html", "w", force_zip64=True) as entry,
        ):
            for _ in range(blocks):
                entry.write(BLOCK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.5)
    args = parser.parse_args()
    blocks = int(args.gib * 1024)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("MAX_DECOMPRESSED_BYTES", None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("zstd", "zstd-no-size", "gzip", "zip"):
            path = Path(tmp) / kind
            build(kind, path, blocks)
            run = subprocess.run(
                [sys.executable, "-c", MEASURE, "zip" if kind == "zip" else "json", str(path)],
                cwd=ROOT, env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            verdict, before, peak, seconds = run.stdout.split()[-4:]
            rows.append({
                "bomb": kind, "compressed_kb": round(path.stat().st_size / 1024), "inflates_gib": args.gib,
                "verdict": verdict, "peak_rss_mb": round(int(peak) / 1e6),
                "growth_mb": round((int(peak) - int(before)) / 1e6),
                "refuse_s": round(float(seconds), 2), "target_mb": TARGET_MB,
            })  # fmt: skip
    print_table(rows, list(rows[0]))
    write_results("bomb_memory", {"rows": rows})
    if any(row["peak_rss_mb"] > TARGET_MB or row["verdict"] == "ACCEPTED" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
