"""Type search quality on the docs.rs replica crates: share of type queries with an expected item in the top 3.

    python bench/type_search.py                          # ingest what is missing (replica on a free port), evaluate
    python bench/type_search.py --replica http://127.0.0.1:8871 --show-misses
    python bench/type_search.py --no-ingest

The queries are ``bench/queries/types.jsonl`` (rustdoc syntax: ``Duration -> Sleep``, ``&str -> Value``), written
from the crates' docs before any result was seen. Same database and ingest as bench/search_quality.py
(``ferrodex_bench_search``, the real local MiniLM). Configurations: the type signal alone, and fused (all four
signals, as the API answers). Results go to ``bench/results/type_search.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    bench_database_url,
    print_table,
    replica_server,
    write_results,
)

QUERIES = ROOT / "bench" / "queries" / "types.jsonl"
CONFIGS = {"type": ("type",), "fused": ("vector", "keyword", "path", "type")}
TARGET_TOP3 = 0.95


def evaluate(queries: list[dict], *, show_misses: bool) -> dict:
    from crates.errors import FerrodexError
    from crates.selectors import search_docs

    configs, per_query = {}, {q["id"]: {"query": q["query"]} for q in queries}
    for config, signals in CONFIGS.items():
        ranks, latencies = [], []
        for query in queries:
            start = time.perf_counter()
            try:
                hits = search_docs(query=query["query"], crate=query.get("crate"), limit=10, signals=signals)
            except FerrodexError as exc:
                print(f"  ! {query['id']}: {exc}", file=sys.stderr)
                hits = []
            latencies.append((time.perf_counter() - start) * 1000)
            rank = next((n for n, hit in enumerate(hits, 1) if hit.path in set(query["answers"])), None)
            ranks.append(rank)
            per_query[query["id"]][config] = rank
            if rank is not None and config == "fused":
                per_query[query["id"]]["explanation"] = hits[rank - 1].type_match
            if show_misses and config == "fused" and (rank is None or rank > 3):
                print(f"  miss {query['id']} [{rank}] {query['query']!r} want {query['answers'][0]}", file=sys.stderr)
                for hit in hits[:5]:
                    print(f"        {hit.score:.4f} {hit.path} {hit.signals} {hit.type_match}", file=sys.stderr)
        n = len(ranks) or 1
        configs[config] = {
            "queries": len(ranks),
            "top1": round(sum(1 for r in ranks if r == 1) / n, 3),
            "top3": round(sum(1 for r in ranks if r is not None and r <= 3) / n, 3),
            "mrr@10": round(sum(1 / r for r in ranks if r is not None and r <= 10) / n, 3),
            "mean_ms": round(sum(latencies) / n, 1),
        }
    return {"configs": configs, "per_query": per_query}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-ingest", action="store_true", help="evaluate what is in the bench database")
    parser.add_argument("--replica", help="base URL of a running replica server (else one is started)")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--database", default="ferrodex_bench_search")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = bench_database_url(args.database)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["EMBEDDING_PROVIDER"] = "local"
    if args.no_ingest:
        server = contextlib.nullcontext(None)
    elif args.replica:
        server = contextlib.nullcontext(args.replica)
    else:
        server = replica_server()
    with server as base:
        from bench.search_quality import prepare_corpus

        corpus = prepare_corpus(base, ingest=not args.no_ingest)
    queries = [json.loads(line) for line in QUERIES.read_text().splitlines() if line.strip()]
    report = evaluate(queries, show_misses=args.show_misses)
    print_table([{"signals": k, **v} for k, v in report["configs"].items()],
                ["signals", "queries", "top1", "top3", "mrr@10", "mean_ms"])
    checks = {f"fused_top3>={TARGET_TOP3}": report["configs"]["fused"]["top3"] >= TARGET_TOP3}
    print("\n" + "  ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    write_results("type_search", {"corpus": corpus, "checks": checks, **report})


if __name__ == "__main__":
    main()
