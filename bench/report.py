"""Print the README's benchmark tables from bench/results/*.json (markdown)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine(data: dict) -> str:
    m = data["machine"]
    return f"_{m['cpus']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}; run {data['at']}_"


def ingest() -> str:
    data = load("ingest")
    rows = [
        [r["crate"], r["source"], r["provider"], r["items"], r["chunks"], r["requests"], r["seconds"],
         r["items_per_s"], r.get("rustdoc_items_per_s"), r.get("model_only_s"), r.get("overhead"), r["peak_rss_mb"],
         r.get("background_index_s")]
        for r in data["rows"]
    ]
    return machine(data) + "\n\n" + table(
        ["crate", "source", "embedder", "documents", "chunks", "HTTP requests", "seconds", "documents/s",
         "rustdoc items/s", "model alone (s)", "total / model", "peak RSS (MB)", "background HNSW indexing (s)"],
        rows)


def jobs() -> str:
    data = load("jobs")
    rows = [[r["metric"], r["mode"], r["n"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r.get("steal_pct"),
             r.get("target_p95_ms")] for r in data["rows"]]
    return machine(data) + f", {data['jobs_in_table']:,} jobs in the table\n\n" + table(
        ["metric", "mode", "n", "p50 ms", "p95 ms", "p99 ms", "CPU steal %", "target p95 ms"], rows)


def api() -> str:
    data = load("api")
    rows = [[r["endpoint"], r["clients"], r["requests"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["req_per_s"],
             r["errors"]] for r in data["rows"]]
    return machine(data) + f", {data['server']}\n\n" + table(
        ["endpoint", "clients", "requests", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors"], rows)


def search_quality() -> str:
    data = load("search_quality")
    rows = [[name, c["queries"], c["recall@5"], c["mrr@10"], c["mean_ms"]] for name, c in data["configs"].items()]
    return machine(data) + "\n\n" + table(["signals", "queries", "Recall@5", "MRR@10", "mean ms"], rows)


def search_latency() -> str:
    data = load("search_latency")
    rows, builds = [], []
    for size, v in data["sizes"].items():
        for r in v.get("runs", []):
            rows.append([f"{int(size):,}", "yes" if r["crate_filter"] else "no", r["clients"], r["p50"], r["p95"],
                         r["p99"], r["qps"], v.get("p95_target_ms")])
        builds.append([f"{int(size):,}", v["index_build_seconds"]["chunk_embedding_hnsw"],
                       v["index_build_seconds"]["chunk_search_vector_gin"], v["chunk_table_total_mib"],
                       v["hnsw_index_mib"]])
    return (machine(data) + "\n\n" + table(
        ["chunks", "crate filter", "clients", "p50 ms", "p95 ms", "p99 ms", "queries/s", "target p95 ms"], rows)
        + "\n\n" + table(["chunks", "HNSW build s", "GIN build s", "chunk table MiB", "HNSW MiB"], builds))


def type_search() -> str:
    data = load("type_search")
    rows = [[name, c["queries"], c["top1"], c["top3"], c["mrr@10"], c["mean_ms"]]
            for name, c in data["configs"].items()]
    return machine(data) + "\n\n" + table(["signals", "queries", "top-1", "top-3", "MRR@10", "mean ms"], rows)


SECTIONS = {"ingest": ingest, "jobs": jobs, "api": api, "search_quality": search_quality,
            "search_latency": search_latency, "type_search": type_search}

if __name__ == "__main__":
    for name in sys.argv[1:] or SECTIONS:
        print(f"### {name}\n\n{SECTIONS[name]()}\n")
