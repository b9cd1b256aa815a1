"""Search latency on synthetic corpora of 100k and 1M chunks.

    python bench/search_latency.py                     # 100k then 1M (long: run it with nohup)
    python bench/search_latency.py --sizes 100000 --queries 150

Loads synthetic chunks (random unit vectors, generated text with Rust-like identifiers) with
binary COPY into a database of its own (``ferrodex_bench_latency``), rebuilds the HNSW / GIN
indexes and times the build, then measures ``crates.search.engine.search`` p50/p95/p99 without
and with a crate filter, with 1 and 8 concurrent clients (processes, like web workers).
Each size's figures are written to ``bench/results/search_latency.json`` as soon as they exist.

Query embeddings come from the deterministic ``hash`` provider so the figures are the search
itself (SQL + fusion); the local MiniLM's cost for one query is measured and reported separately
(search caches query vectors per process, so repeated queries do not pay it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, bench_database_url, print_table, write_results

TARGETS_P95_MS = {100_000: 50.0, 1_000_000: 150.0}
CHUNKS_PER_CRATE = 1000
CHUNKS_PER_DOCUMENT = 2
DIM = 384
SEED = 20261121
KINDS = ["method", "method", "method", "function", "struct", "trait", "enum", "macro", "constant", "field"]
INDEXES = {
    "chunk_embedding_hnsw": "CREATE INDEX chunk_embedding_hnsw ON crates_chunk USING hnsw (embedding vector_cosine_ops)"
    " WITH (m = 16, ef_construction = 64)",
    "chunk_search_vector_gin": "CREATE INDEX chunk_search_vector_gin ON crates_chunk USING gin (search_vector)",
    "chunk_release_idx": "CREATE INDEX chunk_release_idx ON crates_chunk (release_id)",
}


def percentiles(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    if not ordered:
        return {}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)

    return {"n": len(ordered), "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99),
            "mean": round(statistics.fmean(ordered), 2), "max": round(ordered[-1], 2)}  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- synthetic corpus ---------------------------------------------------------------------------


class Words:
    """A Zipf-distributed vocabulary of pronounceable words plus CamelCase/snake_case identifiers."""

    def __init__(self, rng, size: int = 20_000) -> None:
        import numpy as np

        onsets = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr", "pl"]
        vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
        seen: dict[str, None] = {}
        while len(seen) < size:
            word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
            seen.setdefault(word, None)
        self.words = np.array(list(seen))
        ranks = np.arange(1, size + 1)
        self.p = (1 / ranks**1.07) / (1 / ranks**1.07).sum()
        self.np_rng = np.random.default_rng(SEED)
        self.types = [w.capitalize() + rng.choice(["Map", "Set", "Error", "Builder", "Reader", "Handle", "Guard"])
                      for w in self.words[:3000]]  # fmt: skip
        self.methods = [f"{a}_{b}" for a, b in zip(self.words[:2000], self.words[2000:4000], strict=True)]

    def sample(self, n: int):
        return self.words[self.np_rng.choice(len(self.words), size=n, p=self.p)]


def generate(*, start_crate: int, crates: int, words: Words, rng):
    """Yield (crate name, [(path, name, kind, parent, signature, [chunk texts])]) per crate."""
    from crates.textsearch import search_text_for  # noqa: F401  (imported by the loader)

    docs_per_crate = CHUNKS_PER_CRATE // CHUNKS_PER_DOCUMENT
    for c in range(start_crate, start_crate + crates):
        crate = f"synth_{c:05d}"
        docs = []
        body = words.sample(docs_per_crate * CHUNKS_PER_DOCUMENT * 70)
        pos = 0
        for d in range(docs_per_crate):
            type_name = rng.choice(words.types)
            kind = KINDS[d % len(KINDS)]
            name = rng.choice(words.methods) if kind in ("method", "function", "field") else type_name
            module = words.words[(c * 7 + d) % 500]
            parent = f"{crate}::{module}::{type_name}" if kind in ("method", "field") else f"{crate}::{module}"
            path = f"{parent}::{name}"
            signature = f"pub fn {name}(&self, {rng.choice(words.methods)}: {rng.choice(words.types)}) -> {type_name}"
            texts = []
            for ordinal in range(CHUNKS_PER_DOCUMENT):
                prose = " ".join(body[pos : pos + 70])
                pos += 70
                mention = f"See {rng.choice(words.types)}::{rng.choice(words.methods)} and {rng.choice(words.types)}."
                header = f"{path} ({kind})\n{signature}\n\n" if ordinal == 0 else f"{path} ({kind})\n\n"
                texts.append(f"{header}{prose.capitalize()}. {mention}")
            docs.append((path, name, kind, parent, signature, texts))
        yield crate, docs


def load(conn, *, start_crate: int, crates: int, model_name: str) -> dict:
    """COPY ``crates`` synthetic crates (CHUNKS_PER_CRATE chunks each) into the database."""
    import numpy as np

    from crates.textsearch import search_text_for

    rng = random.Random(SEED + start_crate)
    words = Words(random.Random(SEED))
    vec_rng = np.random.default_rng(SEED + start_crate)
    started = time.perf_counter()
    cur = conn.cursor()
    next_doc = cur.execute("SELECT coalesce(max(id), 0) + 1 FROM crates_document").fetchone()[0]
    chunks = 0
    for crate, docs in generate(start_crate=start_crate, crates=crates, words=words, rng=rng):
        crate_id = cur.execute(
            "INSERT INTO crates_crate (name, normalized_name, description, repository, latest_version, created_at,"
            " updated_at) VALUES (%s, %s, 'synthetic', '', '1.0.0', now(), now()) RETURNING id",
            [crate, crate],
        ).fetchone()[0]
        n_chunks = sum(len(d[5]) for d in docs)
        release_id = cur.execute(
            "INSERT INTO crates_craterelease (crate_id, version, docs_source, generator, target, state, item_count,"
            " document_count, chunk_count, embedding_count, embedding_model, embedding_dimension, etag,"
            " artifact_sha256, created_at, ingested_at) VALUES (%s, '1.0.0', 'rustdoc-json', '', '', 'active',"
            " %s, %s, %s, %s, %s, %s, '', '', now(), now()) RETURNING id",
            [crate_id, len(docs), len(docs), n_chunks, n_chunks, model_name, DIM],
        ).fetchone()[0]
        vectors = vec_rng.standard_normal((n_chunks, DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with cur.copy(
            "COPY crates_document (id, release_id, path, name, kind, parent_path, signature, docs, url, deprecated,"
            " deprecation_note, content_hash, metadata) FROM STDIN"
        ) as copy:
            for offset, (path, name, kind, parent, signature, texts) in enumerate(docs):
                copy.write_row([next_doc + offset, release_id, path, name, kind, parent, signature, texts[0],
                                f"https://docs.rs/{crate}/1.0.0/{path.replace('::', '/')}.html", False, "",
                                "0" * 64, "{}"])  # fmt: skip
        with cur.copy(
            "COPY crates_chunk (document_id, release_id, ordinal, text, search_text, token_count, content_hash,"
            " embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "int4", "text", "text", "int4", "varchar", "vector"])
            v = 0
            for offset, (*_meta, texts) in enumerate(docs):
                for ordinal, text in enumerate(texts):
                    copy.write_row([next_doc + offset, release_id, ordinal, text, search_text_for(text),
                                    len(text) // 4, "0" * 64, vectors[v]])  # fmt: skip
                    v += 1
        next_doc += len(docs)
        chunks += n_chunks
        conn.commit()
        if (crate_id % 50) == 0:
            log(f"  loaded {crate} ({chunks} chunks this step, {time.perf_counter() - started:.0f}s)")
    cur.execute("SELECT setval(pg_get_serial_sequence('crates_document', 'id'), (SELECT max(id) FROM crates_document))")
    conn.commit()
    return {"chunks_loaded": chunks, "load_seconds": round(time.perf_counter() - started, 1)}


def backfill_types(conn) -> dict:
    """Type signatures (type search's table) of the synthetic methods and functions, read from their declarations
    as for an HTML-only release; those that have none yet (also a corpus loaded before type search existed)."""
    from psycopg.types.json import Jsonb

    from crates.typesig import signature_from_declaration, terms

    started = time.perf_counter()
    rows = conn.execute(
        "SELECT id, release_id, signature, parent_path FROM crates_document d WHERE kind IN ('method', 'function')"
        " AND NOT EXISTS (SELECT 1 FROM crates_typesignature t WHERE t.document_id = d.id)"
    ).fetchall()
    if not rows:
        return {}
    written = 0
    with conn.cursor().copy(
        "COPY crates_typesignature (document_id, release_id, terms, signature) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "int8", "text[]", "jsonb"])
        for doc_id, release_id, declaration, parent in rows:
            sig = signature_from_declaration(declaration, self_node=[parent.rsplit("::", 1)[-1], []])
            if sig:
                copy.write_row([doc_id, release_id, terms(sig), Jsonb(sig)])
                written += 1
    conn.execute("ANALYZE crates_typesignature")
    conn.commit()
    return {"type_signatures_loaded": written, "type_signatures_seconds": round(time.perf_counter() - started, 1)}


def drop_indexes(conn) -> None:
    for name in INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    conn.commit()


def build_indexes(conn) -> dict:
    conn.execute("SET maintenance_work_mem = '6GB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    times = {}
    for name, sql in INDEXES.items():
        if conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name]).fetchone():
            continue
        log(f"  building {name} ...")
        start = time.perf_counter()
        conn.execute(sql)
        conn.commit()
        times[name] = round(time.perf_counter() - start, 1)
        log(f"  built {name} in {times[name]}s")
    conn.execute("ANALYZE crates_chunk")
    conn.execute("ANALYZE crates_document")
    conn.commit()
    return times


def sizes(conn) -> dict:
    row = conn.execute(
        "SELECT pg_total_relation_size('crates_chunk'), pg_relation_size('crates_chunk'),"
        " pg_relation_size('chunk_embedding_hnsw'), pg_relation_size('chunk_search_vector_gin'),"
        " pg_total_relation_size('crates_document')"
    ).fetchone()
    mib = [round(x / 1024 / 1024, 1) for x in row]
    return {"chunk_table_total_mib": mib[0], "chunk_heap_mib": mib[1], "hnsw_index_mib": mib[2],
            "gin_index_mib": mib[3], "document_table_total_mib": mib[4]}  # fmt: skip


# --- measuring ------------------------------------------------------------------------------------


def make_queries(conn, count: int) -> list[dict]:
    """A mix like agents send: identifiers/paths, short keyword queries, natural sentences and (every fifth)
    type queries in rustdoc syntax (``Type -> Other``, ``-> Other``) built from stored signatures."""
    rng = random.Random(SEED)
    words = Words(random.Random(SEED))
    rows = conn.execute(
        "SELECT d.path, c.name, d.signature FROM crates_document d JOIN crates_craterelease r ON r.id = d.release_id"
        " JOIN crates_crate c ON c.id = r.crate_id ORDER BY d.id DESC LIMIT 5000"
    ).fetchall()
    crates = sorted({r[1] for r in rows})
    typed = [r[2] for r in rows if r[2].startswith("pub fn ")]
    queries = []
    for i in range(count):
        path, _crate, _signature = rng.choice(rows)
        if i % 5 == 4 and typed:
            # "pub fn name(&self, arg: Input) -> Output": both sides, or the output alone
            inputs, output = rng.choice(typed).split(": ", 1)[1].split(") -> ")
            text = f"{inputs} -> {output}" if i % 10 == 4 else f"-> {output}"
            queries.append({"query": text, "crate": rng.choice(crates)})
            continue
        mode = i % 4
        if mode == 0:
            text = "::".join(path.split("::")[-2:])
        elif mode == 1:
            text = " ".join(words.sample(2))
        elif mode == 2:
            text = "how do I " + " ".join(words.sample(6))
        else:
            text = path.rsplit("::", 1)[-1]
        queries.append({"query": f"{text} {i}" if mode in (1, 2) else text, "crate": rng.choice(crates)})
    return queries


def _worker_init(url: str, warm_queries: list[dict] | None = None) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["EMBEDDING_PROVIDER"] = "hash"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    if warm_queries:
        # Every client process warms itself, as a web worker does at start (EMBEDDING_PRELOAD): its
        # query embedder, its connection, its prepared statements. A warm-up sent through pool.map could all
        # land on the first processes to start, leaving others to pay it during the timed run: ~0.3 s each
        # (numpy imported and the embedder built by the first search), 1 search in 100 -- the whole p99.
        from crates.search.engine import search

        for q in warm_queries:
            search(query=q["query"], crate=q["crate"], limit=10)
            search(query=q["query"], crate=None, limit=10)


def _started(_: int) -> int:
    return os.getpid()


def _run(args: tuple[list[dict], bool]) -> list[float]:
    from crates.search.engine import search

    queries, with_crate = args
    latencies = []
    for q in queries:
        start = time.perf_counter()
        search(query=q["query"], crate=q["crate"] if with_crate else None, limit=10)
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def measure(url: str, queries: list[dict], *, clients: int, with_crate: bool) -> dict:
    from django.db import connections

    connections.close_all()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=clients, mp_context=context, initializer=_worker_init, initargs=(url, queries[:5])
    ) as pool:
        # Start every client (each warms itself in its initializer) before the clock starts.
        list(pool.map(_started, range(clients * 4)))
        shares = [(queries[i::clients], with_crate) for i in range(clients)]
        start = time.perf_counter()
        results = list(pool.map(_run, shares))
        wall = time.perf_counter() - start
    samples = [x for r in results for x in r]
    return {**percentiles(samples), "qps": round(len(samples) / wall, 1)}


def minilm_query_ms() -> dict:
    from crates.pipeline.embed import get_embedder

    embedder = get_embedder(provider="local")
    embedder.embed(["warm up"])
    samples = []
    for i in range(30):
        start = time.perf_counter()
        embedder.embed([f"how do I run a future to completion from synchronous code {i}"])
        samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200, help="queries per measurement")
    parser.add_argument("--database", default="ferrodex_bench_latency")
    parser.add_argument("--reset", action="store_true", help="drop the synthetic corpus first")
    args = parser.parse_args()

    url = bench_database_url(args.database)
    _worker_init(url)
    import psycopg
    from django.core.management import call_command
    from pgvector.psycopg import register_vector

    from crates.pipeline.embed import get_embedder

    call_command("migrate", verbosity=0, interactive=False)
    model_name = get_embedder().model_name
    conn = psycopg.connect(url)
    register_vector(conn)
    if args.reset:
        conn.execute("TRUNCATE crates_chunk, crates_typesignature, crates_traitimpl, crates_document,"
                     " crates_craterelease, crates_crate CASCADE")
        conn.commit()
    report: dict = {"targets_p95_ms": {str(k): v for k, v in TARGETS_P95_MS.items()},
                    "minilm_query_embedding_ms": minilm_query_ms(), "sizes": {}}  # fmt: skip
    previous = RESULTS / "search_latency.json"
    if previous.exists():
        import json

        report["sizes"] = json.loads(previous.read_text()).get("sizes", {})
    for size in [int(s) for s in args.sizes.split(",")]:
        have = conn.execute("SELECT count(*) FROM crates_chunk").fetchone()[0]
        entry: dict = {"chunks": size}
        if have < size:
            crates_have = conn.execute("SELECT count(*) FROM crates_crate").fetchone()[0]
            log(f"size {size}: loading {size - have} chunks (dropping indexes first)")
            drop_indexes(conn)
            entry.update(load(conn, start_crate=crates_have, crates=(size - have) // CHUNKS_PER_CRATE,
                              model_name=model_name))  # fmt: skip
        elif have > size:
            log(f"size {size}: the database already has {have} chunks; use --reset to measure a smaller size")
            continue
        entry["index_build_seconds"] = build_indexes(conn)
        earlier = report["sizes"].get(str(size), {})
        if not entry["index_build_seconds"] and earlier.get("index_build_seconds"):
            # Indexes were already there: keep the figures of the run that built them.
            entry["index_build_seconds"] = earlier["index_build_seconds"]
            entry["index_build_note"] = "measured when these indexes were built by an earlier run"
        # What the background indexer does after every ingest (crates.services.index_staged_chunks): the
        # documents were loaded with their GIN index in place, so their rows wait in its pending list.
        from crates.services import flush_text_index_pending_lists

        entry["gin_pending_pages_merged"] = flush_text_index_pending_lists()
        entry.update(backfill_types(conn))
        entry.update(sizes(conn))
        entry["chunks"] = conn.execute("SELECT count(*) FROM crates_chunk").fetchone()[0]
        queries = make_queries(conn, args.queries)
        runs = []
        for with_crate in (False, True):
            for clients in (1, 8):
                log(f"size {size}: measuring clients={clients} crate_filter={with_crate}")
                load_before = round(os.getloadavg()[0], 2)
                row = {
                    "crate_filter": with_crate,
                    "clients": clients,
                    **measure(url, queries, clients=clients, with_crate=with_crate),
                    # Other work on this machine skews the figures: record how busy it was.
                    "loadavg_1m_before": load_before,
                    "loadavg_1m_after": round(os.getloadavg()[0], 2),
                }
                runs.append(row)
        entry["runs"] = runs
        entry["p95_target_ms"] = TARGETS_P95_MS.get(size)
        entry["meets_target"] = all(r["p95"] <= TARGETS_P95_MS.get(size, 1e9) for r in runs)
        report["sizes"][str(size)] = entry
        print(f"\n{size} chunks: build {entry['index_build_seconds']}  sizes {sizes(conn)}")
        print_table(
            runs, ["crate_filter", "clients", "n", "p50", "p95", "p99", "mean", "max", "qps", "loadavg_1m_before"]
        )
        write_results("search_latency", report)
    conn.close()


if __name__ == "__main__":
    main()
