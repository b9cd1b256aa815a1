"""Check the search-quality queries against the crates' real documents, without running any search.

    python bench/queries/check.py                          # against var/replica-extra (bench/replica/build.py)
    python bench/queries/check.py --root ../shared/docsrs-replica

Every answer path must be the path of an item Ferrodex's own parsers produce for the replica's release
(rustdoc JSON when the release has it, else its HTML bundle), every query's answers must lie in crates of a
single half of ``split.json``, and no crate may be in both halves. Prints the counts per crate, style and
half. Exits 1 on any problem. It never ranks anything: the queries are written blind, and stay so.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

QUERIES = Path(__file__).resolve().parent
ROOT = QUERIES.parents[1]
STYLES = ("natural", "identifier", "task")


def load_queries() -> list[dict]:
    queries = []
    for path in sorted(QUERIES.glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                query = json.loads(line)
                query["_where"] = f"{path.name}:{number}"
                queries.append(query)
    return queries


def crate_of(path: str) -> str:
    return path.split("::", 1)[0]


def release_paths(root: Path, entry: dict) -> set[str]:
    """Public item paths of one replica release, as the ingest pipeline's parser stores them."""
    import zstandard

    from crates.pipeline.archive import read_zip_pages
    from crates.pipeline.parse_html import parse_html_pages
    from crates.pipeline.parse_json import parse_rustdoc_json

    if entry.get("json_available"):
        raw = zstandard.ZstdDecompressor().decompressobj().decompress((root / entry["paths"]["json_zst"]).read_bytes())
        parsed = parse_rustdoc_json(raw, version=entry["version"])
    else:
        data = (root / entry["paths"]["download_zip"]).read_bytes()
        parsed = parse_html_pages(read_zip_pages(data, max_total_bytes=1 << 30), version=entry["version"])
    return {item.path for item in parsed.items}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT / "var" / "replica-extra", help="a docs.rs replica root")
    args = ap.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    problems: list[str] = []

    queries = load_queries()
    split = json.loads((QUERIES / "split.json").read_text())
    half_of: dict[str, str] = {}
    for half in ("tuning", "held_out"):
        for crate in split[half]:
            if crate in half_of:
                problems.append(f"crate {crate} is in both halves")
            half_of[crate] = half

    manifest = json.loads((args.root / "manifest.json").read_text())
    by_lib = {entry["crate_name"]: entry for entry in manifest["crates"]}
    paths: dict[str, set[str]] = {}
    for lib in sorted({crate_of(a) for q in queries for a in q["answers"]}):
        if lib not in by_lib:
            problems.append(f"crate {lib} is not in {args.root / 'manifest.json'}")
            continue
        paths[lib] = release_paths(args.root, by_lib[lib])

    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    counts: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    for query in queries:
        where = f"{query['_where']} ({query.get('id')})"
        if query.get("id") in seen_ids:
            problems.append(f"{where}: duplicate id")
        seen_ids.add(query.get("id"))
        if query["query"] in seen_text:
            problems.append(f"{where}: duplicate query text")
        seen_text.add(query["query"])
        if query.get("kind") not in STYLES:
            problems.append(f"{where}: kind must be one of {STYLES}")
        if not query.get("answers"):
            problems.append(f"{where}: no answers")
            continue
        for answer in query["answers"]:
            if answer not in paths.get(crate_of(answer), set()):
                problems.append(f"{where}: answer {answer} is not an item path of {crate_of(answer)}")
        halves = {half_of.get(crate_of(a)) for a in query["answers"]}
        if None in halves:
            problems.append(f"{where}: crate of an answer is in neither half of split.json")
        elif len(halves) > 1:
            problems.append(f"{where}: answers span both halves")
        crate = crate_of(query["answers"][0])
        counts[(half_of.get(crate, "?"), crate)][query["kind"]] += 1

    print(f"{'half':9} {'crate':18} " + " ".join(f"{s:>10}" for s in STYLES) + f" {'total':>6}")
    for half in ("tuning", "held_out"):
        total: collections.Counter = collections.Counter()
        for (h, crate), counter in sorted(counts.items()):
            if h != half:
                continue
            total.update(counter)
            print(f"{h:9} {crate:18} " + " ".join(f"{counter[s]:>10}" for s in STYLES) + f" {sum(counter.values()):>6}")
        crates = sum(1 for (h, _c) in counts if h == half)
        print(
            f"{half:9} {f'= {crates} crates':18} "
            + " ".join(f"{total[s]:>10}" for s in STYLES)
            + f" {sum(total.values()):>6}"
        )
    print(f"all: {len(queries)} queries over {len({c for _h, c in counts})} crates")
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
