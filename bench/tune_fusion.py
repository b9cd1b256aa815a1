"""Grid search of the fusion constants on the TUNING half of bench/queries only (bench/queries/split.json).

    python bench/tune_fusion.py [--top 15]

Each tuning query's signal rankings are computed once (the real signals on the bench database that
bench/search_quality.py filled); every combination then re-runs only what follows them in
crates.search.engine.search (fusion, name weighing, twins) in memory. Prints the best combinations by
MRR@10 + Recall@5; the held-out half is never read here.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_database_url, print_table
from bench.search_quality import load_queries, split_of

GRID = {
    "RRF_K": [3, 5, 8],
    "vector": [0.8, 1.0, 1.3],
    "keyword": [0.8, 1.0, 1.3],
    "path": [0.7, 1.0, 1.4],
    "SIBLING_DAMPING": [0.7, 0.8, 0.9],
    "VERB_WANTED_BOOST": [1.0, 1.2, 1.4],
    "VERB_INVERSE_DAMPING": [0.4, 0.6, 1.0],
    "NAME_WORD_BOOST": [0.0, 0.3, 0.6, 1.0],
    "VARIANT_DAMPING": [0.6, 0.8, 1.0],
    "PARENT_NAMED_BOOST": [1.0, 1.2, 1.5],
    "CRATE_NAMED_BOOST": [1.0, 1.2, 1.5],
    "module": [0.3, 0.45, 0.6],  # KIND_DAMPING of modules
}
ENGINE_CONSTANTS = ("SIBLING_DAMPING", "VERB_WANTED_BOOST", "VERB_INVERSE_DAMPING", "NAME_WORD_BOOST",
                    "VARIANT_DAMPING", "PARENT_NAMED_BOOST", "CRATE_NAMED_BOOST")  # fmt: skip


def capture(queries: list[dict]) -> list[dict]:
    from crates.search import engine
    from crates.search.scope import search_scope

    captured = []
    for query in queries:
        scope = search_scope(crate=query.get("crate"), version=None, kinds=None)
        rankings = engine.rankings_for(query=query["query"], scope=scope, depth=30, signals=engine.SIGNALS)
        documents = {r.document_id: r.doc for ranking in rankings.values() for r in ranking if r.doc is not None}
        entries = [engine._Fused(document_id=pk) for pk in documents]
        texts = engine._snippet_texts(entries)
        snippets = {
            pk: engine._snippet(texts.get(pk) or "", path=doc.path, signature=doc.signature)
            for pk, doc in documents.items()
        }
        crates = {r.id: r.crate_name for r in scope.releases}
        captured.append(
            {"query": query, "rankings": rankings, "documents": documents, "snippets": snippets, "crates": crates}
        )
    return captured


def ranks(captured: list[dict], params: dict) -> list[int | None]:
    from crates.search import engine
    from crates.search.twins import group_twins
    from crates.textsearch import clean_query

    for name in ENGINE_CONSTANTS:
        setattr(engine, name, params[name])
    engine.SIGNAL_WEIGHTS.update({s: params[s] for s in ("vector", "keyword", "path")})
    engine.KIND_DAMPING["module"] = params["module"]
    out = []
    for item in captured:
        documents = item["documents"]
        info = {pk: (doc.kind, doc.parent_path) for pk, doc in documents.items()}
        fused = engine.fuse(item["rankings"], info=info, k=params["RRF_K"])
        text = clean_query(item["query"]["query"])
        fused = engine.weigh_names(fused[:30], documents=documents, text=text, crates=item["crates"])[:15]
        kept, twins = group_twins(
            [f.document_id for f in fused],
            key=lambda pk: (documents[pk].release_id, documents[pk].kind, documents[pk].path),
            text=item["snippets"].__getitem__,
        )
        answers = set(item["query"]["answers"])
        rank = None
        for position, pk in enumerate(kept[:10], start=1):
            if documents[pk].path in answers or answers.intersection(twins.get(pk, ())):
                rank = position
                break
        out.append(rank)
    return out


def score(found: list[int | None]) -> tuple[float, float]:
    n = len(found) or 1
    return (
        round(sum(1 for r in found if r is not None and r <= 5) / n, 3),
        round(sum(1 / r for r in found if r is not None and r <= 10) / n, 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="ferrodex_bench_search")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--captured", help="a file to keep the captured rankings in, and read them from")
    parser.add_argument("--fix", action="append", default=[], help="NAME=VALUE: hold one constant (repeatable)")
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = bench_database_url(args.database)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["EMBEDDING_PROVIDER"] = "local"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from crates.search import engine

    queries = load_queries()
    halves = split_of(queries)
    tuning = [q for q in queries if halves[q["id"]] == "tuning"]  # never the held-out half
    start = time.perf_counter()
    if args.captured and Path(args.captured).exists():
        captured = pickle.loads(Path(args.captured).read_bytes())
    else:
        captured = capture(tuning)
        if args.captured:
            Path(args.captured).write_bytes(pickle.dumps(captured))
    print(f"captured {len(captured)} tuning queries in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    current = {"RRF_K": engine.RRF_K, **engine.SIGNAL_WEIGHTS, **{n: getattr(engine, n) for n in ENGINE_CONSTANTS},
               "module": engine.KIND_DAMPING["module"]}  # fmt: skip
    for fixed in args.fix:
        name, _, value = fixed.partition("=")
        GRID[name] = [float(value) if "." in value else int(value)]
    results = []
    names = list(GRID)
    for values in itertools.product(*GRID.values()):
        params = dict(zip(names, values, strict=True))
        recall, mrr = score(ranks(captured, params))
        results.append({**params, "recall@5": recall, "mrr@10": mrr})
    recall, mrr = score(ranks(captured, current))
    print(f"current constants: recall@5 {recall} mrr@10 {mrr}  {current}")
    results.sort(key=lambda r: -(r["recall@5"] + r["mrr@10"]))
    print_table(results[: args.top], [*names, "recall@5", "mrr@10"])


if __name__ == "__main__":
    main()
