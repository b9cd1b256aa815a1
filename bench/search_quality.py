"""Search quality on the docs.rs replica crates: Recall@5 and MRR@10 per signal and fused.

    python bench/search_quality.py            # ingest what is missing, then evaluate
    python bench/search_quality.py --no-ingest --show-misses

Ingests the replica crates (anyhow, serde, serde_json, tokio, itoa, semver, log, once_cell)
with the real local MiniLM into a database of its own (``ferrodex_bench_search``), through the
real pipeline against ``../shared/tools/docsrs_replica.py``. The queries are data in
``bench/queries/*.jsonl``: ``{"id", "kind", "query", "answers": [item paths], "crate"?}``; a
query counts as answered at the first hit whose path is one of ``answers``. Every query searches
all crates unless it names one. Results go to ``bench/results/search_quality.json``.
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
    replica_crates,
    replica_env,
    replica_server,
    write_results,
)

QUERIES = ROOT / "bench" / "queries"
CONFIGS = {
    "vector": ("vector",),
    "keyword": ("keyword",),
    "path": ("path",),
    "fused": ("vector", "keyword", "path"),
}
TARGETS = {"recall@5": 0.90, "mrr@10": 0.80}


def load_queries(names: list[str] | None = None) -> list[dict]:
    queries = []
    for path in sorted(QUERIES.glob("*.jsonl")):
        if path.name == "types.jsonl":  # type queries have their own benchmark: bench/type_search.py
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                query = json.loads(line)
                query.setdefault("id", f"{path.stem}:{number}")
                queries.append(query)
    if names:
        queries = [q for q in queries if q["id"] in names]
    return queries


class _Quiet:
    def stage(self, name, message, percent):
        print(f"    {name}: {message}", file=sys.stderr)

    def update(self, *, percent=None, message=None, **counters):
        pass

    def check_cancelled(self):
        pass


def ingest_missing(crates: list[dict]) -> list[dict]:
    """Ingest each replica crate unless its release is already active with the local model."""
    from crates.models import CrateRelease
    from crates.pipeline.embed import get_embedder
    from crates.pipeline.ingest import run_ingest

    model = get_embedder().model_name
    report = []
    for crate in crates:
        have = CrateRelease.objects.filter(
            crate__normalized_name=crate["name"].replace("-", "_"),
            version=crate["version"],
            state="active",
            embedding_model=model,
        ).first()
        if have is not None:
            report.append(
                {
                    "crate": crate["name"],
                    "version": crate["version"],
                    "status": "present",
                    "documents": have.document_count,
                    "chunks": have.chunk_count,
                }
            )
            continue
        print(f"  ingesting {crate['name']} {crate['version']} ...", file=sys.stderr)
        start = time.perf_counter()
        try:
            result = run_ingest(name=crate["name"], version=crate["version"], force=True, progress=_Quiet())
        except Exception as exc:  # report and go on: one crate must not sink the benchmark
            print(f"  ! {crate['name']}: {type(exc).__name__}: {exc}", file=sys.stderr)
            report.append({"crate": crate["name"], "version": crate["version"], "status": f"failed: {exc}"})
            continue
        report.append(
            {
                "crate": crate["name"],
                "version": crate["version"],
                "status": "ingested",
                "documents": result.documents,
                "chunks": result.chunks,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    return report


def first_rank(hits, answers: set[str]) -> int | None:
    for rank, hit in enumerate(hits, start=1):
        if hit.path in answers:
            return rank
    return None


def evaluate(queries: list[dict], *, show_misses: bool = False) -> dict:
    from crates.errors import FerrodexError
    from crates.selectors import search_docs

    results: dict[str, dict] = {}
    per_query: dict[str, dict] = {q["id"]: {"query": q["query"], "kind": q["kind"]} for q in queries}
    for config, signals in CONFIGS.items():
        ranks: list[int | None] = []
        by_kind: dict[str, list[int | None]] = {}
        latencies = []
        for query in queries:
            start = time.perf_counter()
            try:
                hits = search_docs(query=query["query"], crate=query.get("crate"), limit=10, signals=signals)
            except FerrodexError as exc:
                print(f"  ! {query['id']}: {exc}", file=sys.stderr)
                hits = []
            latencies.append((time.perf_counter() - start) * 1000)
            rank = first_rank(hits, set(query["answers"]))
            ranks.append(rank)
            by_kind.setdefault(query["kind"], []).append(rank)
            per_query[query["id"]][config] = rank
            if show_misses and config == "fused" and (rank is None or rank > 3):
                print(f"  miss {query['id']} [{rank}] {query['query']!r} want {query['answers'][0]}", file=sys.stderr)
                for hit in hits[:5]:
                    print(f"        {hit.score:.4f} {hit.path} {hit.signals}", file=sys.stderr)
        results[config] = {
            **_metrics(ranks),
            "by_kind": {k: _metrics(v) for k, v in sorted(by_kind.items())},
            "mean_ms": round(sum(latencies) / len(latencies), 1),
        }
    return {"configs": results, "per_query": per_query}


def _metrics(ranks: list[int | None]) -> dict:
    n = len(ranks) or 1
    return {
        "queries": len(ranks),
        "recall@5": round(sum(1 for r in ranks if r is not None and r <= 5) / n, 3),
        "mrr@10": round(sum(1 / r for r in ranks if r is not None and r <= 10) / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-ingest", action="store_true", help="evaluate what is in the bench database")
    parser.add_argument("--ingest-only", action="store_true")
    parser.add_argument("--show-misses", action="store_true", help="print fused misses (rank > 3) with the top hits")
    parser.add_argument("--query", action="append", help="only this query id (repeatable)")
    parser.add_argument("--database", default="ferrodex_bench_search")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = bench_database_url(args.database)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["EMBEDDING_PROVIDER"] = "local"
    with replica_server() if not args.no_ingest else contextlib.nullcontext(None) as base:
        if base:
            os.environ.update(replica_env(base))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        corpus = ingest_missing(replica_crates()) if not args.no_ingest else []
    if args.ingest_only:
        print(json.dumps(corpus, indent=2))
        return
    queries = load_queries(args.query)
    report = evaluate(queries, show_misses=args.show_misses)
    rows = [
        {"signals": name, **{k: v for k, v in m.items() if k != "by_kind"}} for name, m in report["configs"].items()
    ]
    print_table(rows, ["signals", "queries", "recall@5", "mrr@10", "mean_ms"])
    kinds = sorted(report["configs"]["fused"]["by_kind"])
    kind_rows = [
        {
            "signals": name,
            **{f"{k} R@5/MRR": f"{m['by_kind'][k]['recall@5']:.2f}/{m['by_kind'][k]['mrr@10']:.2f}" for k in kinds},
        }
        for name, m in report["configs"].items()
    ]
    print()
    print_table(kind_rows, ["signals", *[f"{k} R@5/MRR" for k in kinds]])
    fused = report["configs"]["fused"]
    checks = {
        "fused_recall@5>=0.90": fused["recall@5"] >= TARGETS["recall@5"],
        "fused_mrr@10>=0.80": fused["mrr@10"] >= TARGETS["mrr@10"],
        "fused_beats_each_signal": all(
            fused["recall@5"] >= report["configs"][s]["recall@5"] and fused["mrr@10"] > report["configs"][s]["mrr@10"]
            for s in ("vector", "keyword", "path")
        ),
    }
    print("\n" + "  ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()))
    write_results("search_quality", {"corpus": corpus, "targets": TARGETS, "checks": checks, **report})


if __name__ == "__main__":
    main()
