"""Embedding providers, the content-hash cache and the start-up dimension check.

The OpenAI provider talks to a local fake OpenAI-compatible server (pytest-httpserver) that answers
``POST /v1/embeddings`` in the real response shape.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from werkzeug import Request, Response

from crates.errors import EmbeddingDimensionMismatch, EmbeddingError, EmbeddingUnavailable
from crates.models import EmbeddingCache
from crates.pipeline.embed import check_embedder_dimension, embed_cached, get_embedder, reset_embedders
from crates.pipeline.embedders import HashEmbedder, LocalEmbedder, OpenAIEmbedder
from crates.pipeline.embedders.local import bundled_model_dir
from crates.pipeline.embedders.tokens import WordPieceCounter

BASE_DIR = Path(__file__).resolve().parent.parent
DIM = 384


def _norm(vector: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


class CountingEmbedder:
    """Wraps an embedder and records every text that reaches the model."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens
        self.sent: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.sent.extend(texts)
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


# --- local model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


def test_local_model_gives_unit_vectors_that_rank_by_meaning(local):
    assert (local.model_name, local.dimension, local.max_tokens) == ("all-MiniLM-L6-v2", DIM, 254)
    query, related, unrelated = local.embed(
        [
            "How do I wait for an asynchronous lock to become free?",
            "tokio::sync::Mutex::lock (method)\nLocks this mutex, causing the current task to yield until the lock "
            "has been acquired.",
            "serde_json::to_string (function)\nSerialize the given data structure as a String of JSON.",
        ]
    )
    for vector in (query, related, unrelated):
        assert len(vector) == DIM
        assert abs(_norm(vector) - 1.0) < 1e-4
        assert all(isinstance(x, float) for x in vector[:5])
    assert _cos(query, related) > _cos(query, unrelated) + 0.1
    assert local.embed([]) == []


def test_local_model_computes_what_sentence_transformers_does(local):
    """The plain-torch encoder (no transformers import at start-up) gives the vectors the embedding cache and
    every stored release hold: sentence-transformers' for the same weights, padding and truncation included."""
    from sentence_transformers import SentenceTransformer

    texts = [
        "x",
        "tokio::sync::Mutex (struct)\npub struct Mutex<T>\n\nAn asynchronous `Mutex`-like type.",
        "Serialize the given data structure as a String of JSON. " * 40,  # past the window: truncated alike
        "Ünïcödé façade — naïve café; 日本語のテキスト",
    ]
    reference = SentenceTransformer(str(local.model_dir), device="cpu", local_files_only=True)
    reference.max_seq_length = local.max_tokens + 2
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True).tolist()
    for mine, theirs in zip(local.embed(texts), expected, strict=True):
        assert max(abs(a - b) for a, b in zip(mine, theirs, strict=True)) < 1e-5


def test_local_model_is_not_truncated_at_the_chunk_budget(local):
    # A text of exactly max_tokens word pieces reaches the model whole: its last word changes the vector.
    words = ["alpha"] * (local.max_tokens - 1)
    a, b = local.embed([" ".join([*words, "volcano"]), " ".join([*words, "spreadsheet"])])
    assert local.count_tokens(" ".join([*words, "volcano"])) == local.max_tokens
    assert _cos(a, b) < 0.9999


def test_local_batches_cap_padded_positions_and_keep_every_text_once():
    embedder = LocalEmbedder(batch_size=64, batch_tokens=8192)
    long, short = "x" * 3000, "short text"
    texts = [short] * 100 + [long] * 40
    batches = embedder.batches(texts)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    # Full-length texts (256 positions) go 32 at a time; the short ones still 64.
    assert [len(b) for b in batches] == [32, 8 + 24, 64, 12]
    assert set(batches[0]) <= set(range(100, 140))
    assert [len(b) for b in LocalEmbedder(batch_size=64, batch_tokens=0).batches(texts)] == [64, 64, 12]


def test_local_vectors_come_back_in_input_order_whatever_the_batches(local):
    texts = ["a short one", "tokio::sync::Mutex::lock " * 40, "serde_json::to_string", "a b c " * 200]
    small = LocalEmbedder(batch_size=1, batch_tokens=0)
    small._model = local._load()  # the same weights, one text at a time
    for got, alone in zip(LocalEmbedder(batch_size=2, batch_tokens=300).embed(texts), small.embed(texts), strict=True):
        assert _cos(got, alone) > 0.9999


def test_counting_tokens_and_importing_do_not_load_torch():
    script = (
        "import django, sys; django.setup()\n"
        "from crates.pipeline.embed import get_embedder\n"
        "import crates.pipeline.chunk\n"
        "e = get_embedder(provider='local')\n"
        "assert e.count_tokens('Hello, world!') == 4, e.count_tokens('Hello, world!')\n"
        "assert not e.loaded\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_fast_token_count_equals_the_real_tokenizer():
    counter = WordPieceCounter(bundled_model_dir() / "tokenizer.json")
    fixtures = Path(__file__).parent / "fixtures" / "chunk"
    texts = []
    for name in ("ferro_fixture_items.json", "tokio_items.json"):
        for item in json.loads((fixtures / name).read_text())["items"]:
            texts.extend([item["docs"], item["signature"], *item["docs"].split("\n\n")])
    texts += [
        "CamelCaseIdentifier::with_snake_case_and_123digits()",
        "tab\tand\r\nnewlines and     spaces",
        "x" * 150,  # longer than the tokenizer's 100-character word limit: one [UNK]
        "naïve café — “quotes” and 🦀 crabs and 中文",
        "control\x0bchars\x00here",
        "",
    ]
    # Random text over an alphabet of the tokenizer's edge cases: accents, CJK, Unicode spaces and
    # punctuation, zero-width and control characters, emoji.
    alphabet = list("abcXYZ019 _-.,;:!?()[]{}<>`'\"\n\t#&*/\\") + list(
        "éÅñ—\u2013“”\u2018\u2019…•→€中文字 \u3000\u200b\ufeff\u2028🦀\x0b\x1c\x85\u0301ß"
    )
    rng = random.Random(5)
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(2000)]
    assert len(texts) > 300
    mismatches = [t[:60] for t in texts if counter(t) != counter.exact(t)]
    assert not mismatches


# --- hash embedder ----------------------------------------------------------------------


def test_hash_embedder_is_deterministic_normalised_and_lexical():
    a, b = HashEmbedder(dimension=64), HashEmbedder(dimension=64)
    texts = ["tokio::sync::Mutex::lock", "MutexGuard lock_owned", "serde_json::from_str parse JSON", ""]
    vectors = a.embed(texts)
    assert vectors == b.embed(texts)
    for vector in vectors:
        assert len(vector) == 64
        assert abs(_norm(vector) - 1.0) < 1e-9
    # Identifier splitting: "MutexGuard lock_owned" shares "mutex" and "lock" with the Mutex path.
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2])
    assert HashEmbedder(dimension=64).embed(["Mutex"]) != HashEmbedder(dimension=64).embed(["Notify"])


def _hash_reference(text: str, dimension: int) -> list[float]:
    """The hash embedder's definition, one text and one word at a time (its first implementation)."""
    import re
    import zlib

    import numpy as np

    indices, signs = [], []
    for word in re.findall(r"[A-Za-z0-9_]+", text):
        tokens = [word.lower()]
        parts = [p.lower() for p in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", word)]
        if len(parts) > 1:
            tokens.extend(parts)
        for token in tokens:
            digest = zlib.crc32(token.encode())
            indices.append(digest % dimension)
            signs.append(1.0 if (digest >> 31) & 1 else -1.0)
    if not indices:
        vector = np.zeros(dimension)
        vector[0] = 1.0
        return vector.tolist()
    vector = np.bincount(indices, weights=signs, minlength=dimension)
    norm = np.linalg.norm(vector)
    if norm == 0.0:
        vector[indices[0]] = 1.0
        return vector.tolist()
    return (vector / norm).tolist()


def test_hash_embedder_batches_are_bit_identical_to_one_text_at_a_time(monkeypatch):
    """The numpy pass over many texts gives exactly the per-text vectors: no words, words that cancel
    out (dimension 2 makes collisions of opposite sign common), slices, a word cache that overflows."""
    from crates.pipeline.embedders import hashing

    monkeypatch.setattr(hashing, "_MAX_CACHED_WORDS", 50)
    texts = [f"tokio::sync::Mutex{i}::lock (method)\nLocks mutex {i}, HTTPServer read_to_end. " * (i % 7)
             for i in range(1100)]
    texts += ["", "  ::  ", "a b", "x", "Mutex Mutex Notify", "é ü 字"]
    for dimension in (2, 3, 384):
        expected = [_hash_reference(text, dimension) for text in texts]
        assert HashEmbedder(dimension=dimension).embed(texts) == expected
        embedder = HashEmbedder(dimension=dimension)  # one text per call: the same again
        assert [embedder.embed([text])[0] for text in texts[-40:]] == expected[-40:]


def test_hash_embedder_is_fast():
    import time

    embedder = HashEmbedder()
    texts = [f"tokio::sync::Mutex{i}::lock (method)\nLocks this mutex number {i}, waiting. " * 8 for i in range(2000)]
    started = time.perf_counter()
    embedder.embed(texts)
    assert time.perf_counter() - started < 5  # ~0.2 s here: far from the MiniLM's tens of chunks per second


# --- OpenAI-compatible provider --------------------------------------------------------------


def _openai_handler(dimension: int = DIM, scale: float = 3.0, shuffle: bool = False):
    """A fake /v1/embeddings that embeds with the hash embedder, unnormalised, in the real JSON shape."""
    inner = HashEmbedder(dimension=dimension)

    def handle(request: Request) -> Response:
        body = json.loads(request.data)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [x * scale for x in vector]}
            for i, vector in enumerate(inner.embed(inputs))
        ]
        if shuffle:
            data.reverse()
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
        }
        return Response(json.dumps(payload), content_type="application/json")

    return handle


def _openai(httpserver, **kwargs) -> OpenAIEmbedder:
    options = {"base_url": httpserver.url_for("/v1"), "api_key": "test-key", "model": "fake-embed", "dimension": DIM}
    options.update(kwargs)
    return OpenAIEmbedder(**options)


def test_openai_embeds_in_batches_in_order_and_normalises(httpserver):
    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_handler(_openai_handler(shuffle=True))
    embedder = _openai(httpserver, batch_size=2)
    texts = ["tokio::sync::Mutex", "serde::Serialize", "anyhow::Error", "itoa::Buffer", ""]
    vectors = embedder.embed(texts)
    assert len(httpserver.log) == 3
    expected = HashEmbedder(dimension=DIM).embed([*texts[:4], " "])
    for got, want in zip(vectors, expected, strict=True):
        assert abs(_norm(got) - 1.0) < 1e-9
        assert max(abs(x - y) for x, y in zip(got, want, strict=True)) < 1e-9
    request = json.loads(httpserver.log[0][0].data)
    assert request == {"model": "fake-embed", "input": texts[:2], "encoding_format": "float"}
    assert httpserver.log[0][0].headers["Authorization"] == "Bearer test-key"
    assert embedder.count_tokens("hello world") >= 2


def test_openai_sends_dimensions_only_when_configured(httpserver):
    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_handler(_openai_handler())
    _openai(httpserver, send_dimensions=True).embed(["a"])
    _openai(httpserver).embed(["b"])
    first, second = (json.loads(entry[0].data) for entry in httpserver.log)
    assert first["dimensions"] == DIM
    assert "dimensions" not in second


def test_openai_retries_429_then_succeeds(httpserver):
    httpserver.expect_ordered_request("/v1/embeddings", method="POST").respond_with_json(
        {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
        status=429,
        headers={"retry-after-ms": "50"},
    )
    httpserver.expect_ordered_request("/v1/embeddings", method="POST").respond_with_handler(_openai_handler())
    vectors = _openai(httpserver, max_retries=2).embed(["tokio::spawn"])
    assert len(vectors) == 1 and len(vectors[0]) == DIM
    assert [entry[1].status_code for entry in httpserver.log] == [429, 200]


def test_openai_rate_limit_beyond_the_retry_budget_is_transient(httpserver):
    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_json(
        {"error": {"message": "Rate limit reached"}}, status=429, headers={"retry-after-ms": "10"}
    )
    with pytest.raises(EmbeddingUnavailable) as caught:
        _openai(httpserver, max_retries=2).embed(["x"])
    assert caught.value.transient
    assert "429" in str(caught.value)
    assert len(httpserver.log) == 3  # the first try and two retries


def test_openai_bad_key_is_a_permanent_error(httpserver):
    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_json(
        {"error": {"message": "Incorrect API key provided"}}, status=401
    )
    with pytest.raises(EmbeddingError) as caught:
        _openai(httpserver, max_retries=2).embed(["x"])
    assert not caught.value.transient
    assert "OPENAI_API_KEY" in str(caught.value)
    assert len(httpserver.log) == 1


def test_openai_wrong_dimension_is_a_mismatch(httpserver):
    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_handler(_openai_handler(dimension=256))
    embedder = _openai(httpserver)
    with pytest.raises(EmbeddingDimensionMismatch) as caught:
        embedder.embed(["tokio::spawn"])
    assert "256" in str(caught.value) and "EMBEDDING_DIMENSION" in str(caught.value)


@pytest.mark.django_db
def test_dimension_check_probes_the_remote_model_once_at_start(httpserver):
    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_handler(_openai_handler(dimension=256))
    with pytest.raises(EmbeddingDimensionMismatch):
        check_embedder_dimension(embedder=_openai(httpserver))
    assert len(httpserver.log) == 1

    httpserver.clear()
    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_handler(_openai_handler())
    good = _openai(httpserver)
    check_embedder_dimension(embedder=good)
    check_embedder_dimension(embedder=good)
    assert len(httpserver.log) == 1


# --- registry, dimension check, cache ------------------------------------------------------------


def test_get_embedder_caches_per_provider_and_rejects_unknown_names():
    reset_embedders()
    assert get_embedder(provider="hash") is get_embedder(provider="hash")
    assert isinstance(get_embedder(provider="hash"), HashEmbedder)
    assert get_embedder(provider="hash").max_tokens == get_embedder(provider="local").max_tokens
    with pytest.raises(EmbeddingError) as caught:
        get_embedder(provider="word2vec")
    assert "local, openai, hash" in str(caught.value)


@pytest.mark.django_db
def test_dimension_check_accepts_a_matching_embedder_and_explains_a_mismatch(settings):
    check_embedder_dimension(embedder=HashEmbedder(dimension=DIM))
    check_embedder_dimension(embedder=LocalEmbedder())

    with pytest.raises(EmbeddingDimensionMismatch) as caught:
        check_embedder_dimension(embedder=HashEmbedder(dimension=768))
    assert "EMBEDDING_DIMENSION" in str(caught.value) and "768" in str(caught.value)

    # Settings changed after migrating: the database column still holds 384-dimensional vectors.
    settings.EMBEDDING_DIMENSION = 768
    with pytest.raises(EmbeddingDimensionMismatch) as caught:
        check_embedder_dimension(embedder=HashEmbedder(dimension=768))
    assert "database stores 384-dimensional" in str(caught.value)
    assert caught.value.context == {"expected": 384, "actual": 768}


@pytest.mark.django_db
def test_embed_cached_sends_each_text_to_the_model_once():
    embedder = CountingEmbedder(HashEmbedder(dimension=DIM))
    texts = {f"hash-{i}": f"tokio::item{i} (function)\nDoes thing {i}." for i in range(5)}

    vectors, sent = embed_cached(embedder=embedder, texts=texts)
    assert sent == 5 and len(embedder.sent) == 5
    assert set(vectors) == set(texts)
    assert EmbeddingCache.objects.filter(model=embedder.model_name, content_hash__in=texts).count() == 5

    again, sent_again = embed_cached(embedder=embedder, texts=texts)
    assert sent_again == 0 and len(embedder.sent) == 5
    for key, vector in again.items():
        assert isinstance(vector, list) and isinstance(vector[0], float)
        assert max(abs(x - y) for x, y in zip(vector, vectors[key], strict=True)) < 1e-6  # float32 storage

    more = {**texts, "hash-new": "anyhow::Error (struct)"}
    _, sent_more = embed_cached(embedder=embedder, texts=more)
    assert sent_more == 1 and embedder.sent[-1] == "anyhow::Error (struct)"
    assert embed_cached(embedder=embedder, texts={}) == ({}, 0)


@pytest.mark.django_db
def test_embed_cached_is_per_model():
    texts = {"same-hash": "tokio::spawn (function)"}
    _, first = embed_cached(embedder=CountingEmbedder(HashEmbedder(dimension=DIM)), texts=texts)

    class OtherModel(HashEmbedder):
        pass

    other = OtherModel(dimension=DIM)
    other.model_name = "another-model"
    _, second = embed_cached(embedder=CountingEmbedder(other), texts=texts)
    assert (first, second) == (1, 1)
    assert EmbeddingCache.objects.filter(content_hash="same-hash").count() == 2


@pytest.mark.django_db
def test_embed_cached_refuses_vectors_of_the_wrong_dimension():
    class Broken(HashEmbedder):
        def embed(self, texts):
            return [vector[:100] for vector in super().embed(texts)]

    with pytest.raises(EmbeddingDimensionMismatch):
        embed_cached(embedder=Broken(dimension=DIM), texts={"h": "text"})
    assert not EmbeddingCache.objects.filter(content_hash="h").exists()


@pytest.mark.django_db
def test_cache_writes_keep_float32_bits_and_never_overwrite_an_existing_row():
    from crates.pipeline.embed import store_in_cache

    first = HashEmbedder(dimension=DIM).embed(["tokio::spawn (function)"])[0]
    store_in_cache(model="m", vectors={"h-old": first})
    # A concurrent worker stored "h-old" first: its row stays; the new rows (more than one INSERT's worth) go in.
    other = [1.0] + [0.0] * (DIM - 1)
    fresh = {f"h-{i:05d}": HashEmbedder(dimension=DIM).embed([f"text {i}"])[0] for i in range(1005)}
    store_in_cache(model="m", vectors={"h-old": other, **fresh})
    rows = dict(EmbeddingCache.objects.filter(model="m").values_list("content_hash", "embedding"))
    assert len(rows) == 1006
    assert np.array_equal(np.asarray(rows["h-old"], dtype=np.float32), np.asarray(first, dtype=np.float32))
    assert np.array_equal(np.asarray(rows["h-01004"], dtype=np.float32), np.asarray(fresh["h-01004"], dtype=np.float32))
