"""Manual check (not a test): parse every replica crate that has rustdoc JSON, zstd and gzip copies.

Reports documents by kind, parse time (best of 3, JSON decoding included) and the manifest's ``items``
(every local entry of the rustdoc index, impl blocks and trait-impl methods included, so it is larger than
the number of documents). Fails loudly if a crate does not parse, if the zstd and gzip copies disagree, or
if a (path, kind) pair repeats.

    .venv/bin/python bench/check_parse_json.py
"""

from __future__ import annotations

import collections
import gzip
import json
import sys
import time
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPLICA_ROOT
from crates.pipeline.parse_json import parse_rustdoc_json


def main() -> int:
    manifest = json.loads((REPLICA_ROOT / "manifest.json").read_text())
    failures = 0
    print(f"{'crate':12} {'version':9} {'fmt':>3} {'manifest':>8} {'docs':>5} {'parse s':>8} {'docs/s':>7}  kinds")
    for crate in manifest["crates"]:
        if not crate.get("json_available"):
            continue
        paths = crate["paths"]
        zst = zstandard.ZstdDecompressor().decompress(
            (REPLICA_ROOT / paths["json_zst"]).read_bytes(), max_output_size=1 << 30
        )
        gz = gzip.decompress((REPLICA_ROOT / paths["json_gz"]).read_bytes())
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            parsed = parse_rustdoc_json(zst)
            best = min(best, time.perf_counter() - started)
        problems = []
        if parse_rustdoc_json(gz).items != parsed.items:
            problems.append("zstd and gzip copies parse differently")
        keys = collections.Counter((item.path, item.kind) for item in parsed.items)
        repeated = [key for key, count in keys.items() if count > 1]
        if repeated:
            problems.append(f"repeated (path, kind): {repeated[:5]}")
        if any(not item.url.startswith(f"{parsed.crate_name}/") for item in parsed.items):
            problems.append("a URL outside the crate's docs")
        kinds = collections.Counter(item.kind for item in parsed.items)
        print(
            f"{crate['name']:12} {parsed.version:9} {parsed.format_version:>3} {crate.get('items', 0):>8} "
            f"{len(parsed.items):>5} {best:>8.3f} {len(parsed.items) / best:>7.0f}  "
            + ", ".join(f"{kind} {count}" for kind, count in kinds.most_common())
        )
        for problem in problems:
            failures += 1
            print(f"  PROBLEM: {problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
