"""Chunking: item-aware, within the MiniLM budget (checked with the real tokenizer), deterministic.

Fixtures in tests/fixtures/chunk/ are ParsedItems produced by crates.pipeline.parse_json from real rustdoc
JSON: the ferro_fixture crate, and a selection of tokio 1.24.2 items (its longest docs, a random sample and
its longest signatures).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from crates.pipeline.chunk import CachedCounter, chunk_item, chunk_items
from crates.pipeline.embedders.hashing import HashEmbedder
from crates.pipeline.embedders.local import LocalEmbedder, bundled_model_dir
from crates.pipeline.embedders.tokens import WordPieceCounter, approx_token_count
from crates.pipeline.types import ParsedItem

CHUNK_FIXTURES = Path(__file__).parent / "fixtures" / "chunk"
MODEL_WINDOW = 256  # all-MiniLM-L6-v2 truncates here, [CLS] and [SEP] included


@pytest.fixture(scope="module")
def counter() -> WordPieceCounter:
    return WordPieceCounter(bundled_model_dir() / "tokenizer.json")


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@pytest.fixture(scope="module")
def budget() -> int:
    return LocalEmbedder(max_tokens=MODEL_WINDOW).max_tokens


def _load(name: str) -> list[ParsedItem]:
    data = json.loads((CHUNK_FIXTURES / name).read_text())
    return [ParsedItem(**item) for item in data["items"]]


@pytest.fixture(scope="module")
def real_items() -> list[ParsedItem]:
    return _load("ferro_fixture_items.json") + _load("tokio_items.json")


def _para(words: int, seed: str) -> str:
    return " ".join(f"{seed}{i}" for i in range(words)) + "."


def synthetic_docs() -> str:
    """Headings, paragraphs, a code block larger than any budget, one giant sentence, a giant word."""
    code_lines = [f"    let value_{i} = compute_something(&input, {i}); // step {i}" for i in range(120)]
    giant_sentence = " ".join(f"word{i}" for i in range(700))
    return "\n\n".join(
        [
            "Short summary of the item. It does useful things.",
            "# Overview",
            " ".join(f"Sentence number {i} explains a detail of the overview." for i in range(60)),
            "## Small example",
            "```rust\n# use hidden::Setup;\nlet small = Example::new();\nassert!(small.works());\n```",
            "# Big code",
            "```rust\nfn main() {\n" + "\n".join(code_lines) + "\n}\n```",
            "# Giant sentence",
            giant_sentence,
            "A paragraph after the giant sentence with [`Link`] text.",
            "Giant word: " + "x" * 3000 + " and an emoji run " + "🦀" * 400,
            "[`Link`]: crate::Link",
        ]
    )


def _item(path: str = "demo::Thing", *, docs: str = "", signature: str = "pub struct Thing", kind: str = "struct"):
    return ParsedItem(path=path, name=path.rsplit("::", 1)[-1], kind=kind, signature=signature, docs=docs)


def _body(text: str) -> str:
    return text.split("\n\n", 1)[1] if "\n\n" in text else ""


def test_chunking_is_deterministic(real_items, counter, budget):
    items = [*real_items, _item(docs=synthetic_docs())]
    first = [chunk_item(item, max_tokens=budget, count_tokens=counter) for item in items]
    # A fresh counter and a shared cache must not change anything.
    fresh = WordPieceCounter(bundled_model_dir() / "tokenizer.json")
    second = [chunk_item(item, max_tokens=budget, count_tokens=CachedCounter(fresh)) for item in items]
    assert first == second
    assert sum(len(chunks) for chunks in first) > len(items)  # long docs really were split


def test_every_chunk_starts_with_the_item_header(real_items, counter, budget):
    for item in real_items:
        chunks = chunk_item(item, max_tokens=budget, count_tokens=counter)
        assert [c.ordinal for c in chunks] == list(range(len(chunks)))
        kind = {"assoc_type": "associated type", "assoc_const": "associated constant", "type_alias": "type alias"}
        label = f"{item.path} ({kind.get(item.kind, item.kind)})"
        for chunk in chunks:
            assert chunk.text.startswith(label + ("\n" if item.signature else "")), chunk.text[:200]
            assert chunk.content_hash == hashlib.sha256(chunk.text.encode()).hexdigest()
            assert chunk.token_count == counter.exact(chunk.text)


def test_example_header_format(counter, budget):
    item = _item(
        "ferro_fixture::Counter::with_capacity",
        kind="method",
        signature="pub fn with_capacity(capacity: usize) -> Self",
        docs="Creates an empty counter with room for at least `capacity` names\nwithout reallocating.",
    )
    (chunk,) = chunk_item(item, max_tokens=budget, count_tokens=counter)
    assert chunk.text == (
        "ferro_fixture::Counter::with_capacity (method)\npub fn with_capacity(capacity: usize) -> Self\n\n"
        "Creates an empty counter with room for at least `capacity` names\nwithout reallocating."
    )


@pytest.mark.parametrize("window", [MODEL_WINDOW, 128, 64])
def test_no_chunk_exceeds_the_model_window_with_the_real_tokenizer(real_items, counter, tokenizer, window):
    max_tokens = LocalEmbedder(max_tokens=window).max_tokens
    items = [*real_items, _item(docs=synthetic_docs())]
    worst = 0
    for item in items:
        for chunk in chunk_item(item, max_tokens=max_tokens, count_tokens=counter):
            # What the model sees: word pieces plus [CLS] and [SEP]; nothing may be truncated away.
            worst = max(worst, len(tokenizer.encode(chunk.text).ids))
    assert worst <= window
    assert worst >= window - 16  # the packer fills chunks, it does not play it safe by halving them


def test_synthetic_long_doc_loses_nothing_and_keeps_fences_balanced(counter, budget):
    docs = synthetic_docs()
    chunks = chunk_item(_item(docs=docs), max_tokens=budget, count_tokens=counter)
    assert len(chunks) > 10
    bodies = [_body(c.text) for c in chunks]
    for body in bodies:
        assert body.count("```") % 2 == 0, body  # a cut code block is re-fenced on both sides
        assert not re.search(r"(?m)^#+ [^\n]*\Z", body.rstrip()), "a chunk must not end with a heading"
        # Code cut at line boundaries keeps its indentation, also at the start of a piece.
        assert all(line.startswith("    let value_") for line in body.split("\n") if "let value_" in line)
    assert sum("```rust\n    let value_" in body for body in bodies) >= 2

    def words(text: str) -> list[str]:
        text = re.sub(r"```\w*", " ", text)
        return re.findall(r"[^\s]+", text)

    # Chunks carry a link's text, not its brackets or destination.
    expected = words(
        docs.replace("# use hidden::Setup;\n", "").replace("[`Link`]: crate::Link", "").replace("[`Link`]", "`Link`")
    )
    assert [w for body in bodies for w in words(body)] == expected


def test_a_code_block_that_fits_is_never_cut(counter, budget):
    code = "```rust\n" + "\n".join(f"let step_{i} = run({i});" for i in range(12)) + "\n```"
    assert 80 < counter(code) < budget - 40
    docs = "\n\n".join([_para(90, "intro"), code, _para(60, "outro"), code.replace("step", "again")])
    chunks = chunk_item(_item(docs=docs), max_tokens=budget, count_tokens=counter)
    assert len(chunks) >= 3
    assert sum(code in c.text for c in chunks) == 1
    assert sum(code.replace("step", "again") in c.text for c in chunks) == 1
    for chunk in chunks:
        assert _body(chunk.text).count("```") % 2 == 0


def test_real_code_blocks_that_fit_stay_whole(real_items, counter, budget):
    fence = re.compile(r"(?ms)^```[^\n]*\n.*?^```$")
    checked = 0
    for item in real_items:
        chunks = chunk_item(item, max_tokens=budget, count_tokens=counter)
        for block in fence.findall(item.docs):
            if "\n# " in block or counter(block) > budget // 2:
                continue  # hidden doctest lines are dropped; huge blocks may legitimately be cut
            assert any(block in c.text for c in chunks), (item.path, block[:80])
            checked += 1
    assert checked >= 15


def test_items_are_never_mixed(counter, budget):
    items = [_item(f"demo::Item{i}", docs="\n\n".join(_para(120, f"item{i}x") for _ in range(4))) for i in range(5)]
    embedder = HashEmbedder(max_tokens=budget, count_tokens=counter)
    results = list(chunk_items(items, embedder=embedder))
    assert [item for item, _ in results] == items
    for i, (_, chunks) in enumerate(results):
        assert len(chunks) >= 4
        for chunk in chunks:
            assert chunk.text.startswith(f"demo::Item{i} (struct)\n")
            others = set(re.findall(r"item(\d+)x", chunk.text)) - {str(i)}
            assert not others, f"chunk of item {i} contains text of items {others}"
            assert "demo::Item" not in chunk.text[len(f"demo::Item{i}") :]


def test_item_without_docs_gets_one_header_only_chunk(counter, budget):
    (chunk,) = chunk_item(
        _item(signature="pub const MAX: u64 = 5;", kind="constant"), max_tokens=budget, count_tokens=counter
    )
    assert chunk.text == "demo::Thing (constant)\npub const MAX: u64 = 5;"
    (bare,) = chunk_item(_item(signature=""), max_tokens=budget, count_tokens=counter)
    assert bare.text == "demo::Thing (struct)"


def test_deprecation_is_part_of_the_first_chunk(counter, budget):
    item = _item(docs="Old way.")
    item.deprecated, item.deprecation_note = True, "use `New` instead"
    (chunk,) = chunk_item(item, max_tokens=budget, count_tokens=counter)
    assert "Deprecated: use `New` instead\n\nOld way." in chunk.text


def test_long_signature_is_full_in_the_first_chunk_and_cut_in_continuations(counter, budget):
    signature = "pub fn configure(" + ", ".join(f"option_{i}: Option<Setting{i}>" for i in range(8)) + ") -> Config"
    assert budget // 4 < counter(signature) < budget // 2
    item = _item(
        "demo::configure", kind="function", signature=signature, docs="\n\n".join(_para(80, "p") for _ in range(6))
    )
    chunks = chunk_item(item, max_tokens=budget, count_tokens=counter)
    assert len(chunks) >= 3
    assert chunks[0].text.startswith(f"demo::configure (function)\n{signature}\n\n")
    for chunk in chunks[1:]:
        header = chunk.text.split("\n\n", 1)[0]
        assert header.endswith(" …") and signature.startswith(header.split("\n", 1)[1][:-2])
        assert counter(header) <= budget // 4
        assert chunk.token_count <= budget


def test_signature_longer_than_the_budget_is_truncated_everywhere(real_items, counter, budget):
    huge = max(real_items, key=lambda item: len(item.signature))
    assert counter(huge.signature) > budget
    chunks = chunk_item(huge, max_tokens=budget, count_tokens=counter)
    assert all(c.token_count <= budget for c in chunks)
    assert chunks[0].text.split("\n\n", 1)[0].endswith(" …")
    first_sentence = huge.docs.split("\n", 1)[0]
    assert _body(chunks[0].text).startswith(first_sentence)  # the first chunk still carries docs


def test_headings_start_chunks_when_their_section_does_not_fit(counter, budget):
    docs = "\n\n".join(
        [_para(80, "intro"), "# Examples", _para(100, "example"), "# Panics", _para(10, "panic"), _para(10, "more")]
    )
    chunks = chunk_item(_item(docs=docs), max_tokens=budget, count_tokens=counter)
    bodies = [_body(c.text) for c in chunks]
    assert bodies[0].startswith("intro0") and "# Examples" not in bodies[0]
    assert bodies[1].startswith("# Examples\n\nexample0")
    assert any(b.startswith("# Panics\n\npanic0") and "more0" in b for b in bodies)


def test_rustdoc_hidden_lines_and_link_definitions_are_left_out(counter, budget):
    docs = (
        "Example:\n\n```\n# fn main() {\nlet x = 1;\n## not hidden\n# }\n```\n\n"
        "```text\n# kept in text blocks\n```\n\n[`Foo`]: crate::Foo"
    )
    (chunk,) = chunk_item(_item(docs=docs), max_tokens=budget, count_tokens=counter)
    assert "```\nlet x = 1;\n# not hidden\n```" in chunk.text
    assert "# kept in text blocks" in chunk.text
    assert "crate::Foo" not in chunk.text and "fn main" not in chunk.text


def test_a_non_additive_counter_still_never_exceeds_the_budget():
    def lumpy(text: str) -> int:
        # Charges for every paragraph break, so the sum of the parts underestimates the whole.
        return approx_token_count(text) + 3 * text.count("\n\n")

    chunks = chunk_item(_item(docs=synthetic_docs()), max_tokens=100, count_tokens=lumpy)
    assert chunks and all(lumpy(c.text) <= 100 for c in chunks)


def test_tokens_are_counted_once_per_piece_not_per_attempt(real_items, counter, budget):
    seen = {"calls": 0, "chars": 0}

    def counting(text: str) -> int:
        seen["calls"] += 1
        seen["chars"] += len(text)
        return counter(text)

    items = [item for item in real_items if len(item.docs) > 2000]
    doc_chars = sum(len(item.docs) + len(item.signature) for item in items)
    started = time.perf_counter()
    for item in items:
        chunk_item(item, max_tokens=budget, count_tokens=counting)
    elapsed = time.perf_counter() - started
    # Pieces once, each finished chunk once more, headers a few times: about three passes at most.
    assert seen["chars"] < 3.5 * doc_chars, seen
    assert elapsed < 5, f"chunking {doc_chars} characters took {elapsed:.2f}s"


def test_budget_too_small_is_refused(counter):
    with pytest.raises(ValueError):
        chunk_item(_item(docs="x"), max_tokens=4, count_tokens=counter)


def test_chunk_counts_summed_from_parts_equal_counting_each_chunk_whole(real_items, counter, tokenizer):
    # An additive counter lets the chunker add up the counts of a chunk's parts instead of counting the
    # chunk again; chunks and token counts must be exactly those of counting every chunk whole.
    class Opaque:  # the same counts, but not known to be additive
        def __call__(self, text: str) -> int:
            return counter(text)

    odd = _item(docs="Alpha\x1cbeta.\n\nGamma\u00a0delta\u2003epsilon.\n\n" + "Ünïcödé wörds, " * 40 + "x" * 900)
    items = [*real_items, _item(docs=synthetic_docs()), odd]
    for max_tokens in (254, 40, 12):
        for additive_counter, opaque in ((counter, Opaque()), (approx_token_count, lambda t: approx_token_count(t))):
            assert CachedCounter(additive_counter).additive and not CachedCounter(opaque).additive
            summed = [chunk_item(item, max_tokens=max_tokens, count_tokens=additive_counter) for item in items]
            whole = [chunk_item(item, max_tokens=max_tokens, count_tokens=opaque) for item in items]
            assert summed == whole
    for chunks in summed:
        for chunk in chunks:
            assert chunk.token_count == approx_token_count(chunk.text)
    for item in items:
        for chunk in chunk_item(item, max_tokens=254, count_tokens=counter):
            assert chunk.token_count == len(tokenizer.encode(chunk.text, add_special_tokens=False).ids)


def test_chunks_carry_link_text_not_urls(counter, budget):
    docs = (
        "Returns a [`MutexGuard`](https://docs.rs/tokio/1.24.2/tokio/sync/struct.MutexGuard.html) once "
        "[`lock`](https://docs.rs/tokio/1.24.2/tokio/sync/struct.Mutex.html#method.lock) succeeds; see [docs][d].\n\n"
        "```rust\nlet v = [`Kept`](in::code);\n```\n\n[d]: https://example.com/docs"
    )
    (chunk,) = chunk_item(_item(docs=docs), max_tokens=budget, count_tokens=counter)
    assert _body(chunk.text) == (
        "Returns a `MutexGuard` once `lock` succeeds; see docs.\n\n```rust\nlet v = [`Kept`](in::code);\n```"
    )
    # The same text whatever the URLs: a release ingested from another mirror embeds identically.
    moved = docs.replace("https://docs.rs/", "http://127.0.0.1:8893/")
    assert chunk_item(_item(docs=moved), max_tokens=budget, count_tokens=counter) == [chunk]
