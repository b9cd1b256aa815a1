"""The two parsers give the same documents for the same crate where both formats carry the information.

Both inputs are real rustdoc 1.95 output for tests/fixtures/crates/ferro_fixture: the JSON
(tests/fixtures/rustdoc/ferro_fixture.json.zst) and the HTML pages (tests/fixtures/html/ferro_fixture/).

Documented normalisation, nothing else:
* signatures: whitespace runs collapsed to one space (both parsers already emit one-line declarations;
  macros keep their lines in both);
* docs: only the first paragraph is compared, after removing markdown syntax, because the JSON keeps the
  author's markdown (bare ```` ``` ```` fences, straight quotes) while the HTML gives what rustdoc rendered
  (```` ```rust ```` fences, typographic quotes and apostrophes);
* links in docs are compared on their own, and must be the same: the JSON parser resolves the author's
  intra-doc links (``[`Counter`]``) from the ``links`` map, the HTML parser reads the hrefs rustdoc wrote, and
  both make the URLs absolute under the same docs root.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import zstandard

from crates.pipeline.parse_html import parse_html_pages, read_doc_dir
from crates.pipeline.parse_json import parse_rustdoc_json
from crates.pipeline.types import ParsedCrate, ParsedItem

FIXTURES = Path(__file__).parent / "fixtures"
Key = tuple[str, str]


@pytest.fixture(scope="module")
def from_json() -> dict[Key, ParsedItem]:
    raw = zstandard.ZstdDecompressor().decompress(
        (FIXTURES / "rustdoc" / "ferro_fixture.json.zst").read_bytes(), max_output_size=64 << 20
    )
    return _by_key(parse_rustdoc_json(raw, version="0.3.1"))


@pytest.fixture(scope="module")
def from_html() -> dict[Key, ParsedItem]:
    return _by_key(parse_html_pages(read_doc_dir(FIXTURES / "html" / "ferro_fixture"), version="0.3.1"))


def _by_key(parsed: ParsedCrate) -> dict[Key, ParsedItem]:
    assert parsed.crate_name == "ferro_fixture"
    return {(item.path, item.kind): item for item in parsed.items}


def _spaces(text: str) -> str:
    return " ".join(text.split())


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def _first_paragraph(markdown: str) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", markdown.strip()) if p.strip()]
    text = paragraphs[0] if paragraphs else ""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](url)
    text = re.sub(r"\[([^\]]*)\](?:\[[^\]]*\])?", r"\1", text)  # [`Counter`], [text][ref]
    text = re.sub(r"^#+\s*", "", text)  # heading marker
    text = re.sub(r"[`*_~]", "", text)
    return _spaces(text.translate(_QUOTES))


def test_same_documents(from_json, from_html) -> None:
    assert sorted(from_html) == sorted(from_json)
    assert len(from_html) > 40  # the whole fixture crate, not an empty parse on both sides


def test_same_urls_parents_and_names(from_json, from_html) -> None:
    for key, item in from_json.items():
        other = from_html[key]
        assert (other.url, other.parent_path, other.name) == (item.url, item.parent_path, item.name), key


def test_same_deprecations(from_json, from_html) -> None:
    for key, item in from_json.items():
        other = from_html[key]
        assert (other.deprecated, other.deprecation_note) == (item.deprecated, item.deprecation_note), key
    assert sum(item.deprecated for item in from_json.values()) == 2


def test_same_signatures(from_json, from_html) -> None:
    for key, item in from_json.items():
        assert _spaces(from_html[key].signature) == _spaces(item.signature), key
    assert sum(bool(item.signature) for item in from_json.values()) > 35  # modules alone have none


def test_same_first_docs_paragraph(from_json, from_html) -> None:
    for key, item in from_json.items():
        assert _first_paragraph(from_html[key].docs) == _first_paragraph(item.docs), key
    assert all(_first_paragraph(item.docs) for item in from_json.values())  # every fixture item is documented


def test_same_trait_impls_and_aliases(from_json, from_html) -> None:
    for key, item in from_json.items():
        other = from_html[key]
        assert other.metadata.get("trait_impls") == item.metadata.get("trait_impls"), key
        assert other.metadata.get("aliases") == item.metadata.get("aliases"), key


DOCS_ROOT = "https://docs.rs/ferro_fixture/0.3.1/"
_LINK = re.compile(r"\[((?:[^\[\]]|\[[^\]]*\])*)\]\((\S+?)\)")


def test_same_links_in_docs() -> None:
    raw = zstandard.ZstdDecompressor().decompress(
        (FIXTURES / "rustdoc" / "ferro_fixture.json.zst").read_bytes(), max_output_size=64 << 20
    )
    from_json = _by_key(parse_rustdoc_json(raw, version="0.3.1", docs_root=DOCS_ROOT))
    from_html = _by_key(
        parse_html_pages(read_doc_dir(FIXTURES / "html" / "ferro_fixture"), version="0.3.1", docs_root=DOCS_ROOT)
    )
    found = 0
    for key, item in from_json.items():
        links = _LINK.findall(item.docs)
        assert _LINK.findall(from_html[key].docs) == links, key
        assert all(url.startswith(DOCS_ROOT) for _text, url in links), key
        found += len(links)
    assert found >= 9  # every intra-doc link of the fixture crate


def test_an_enum_with_hidden_variants_reads_the_same_from_both_and_as_rust() -> None:
    # rustdoc writes `// some variants omitted` on a line of its own. Put on one line, the JSON gave
    # 'pub enum E { A, // some variants omitted }' (the brace commented out), and the HTML parser dropped the
    # comment ('{ A }'), hiding that there are more variants; both now read '/* some variants omitted */'.
    import copy
    import json

    raw = zstandard.ZstdDecompressor().decompress(
        (FIXTURES / "rustdoc" / "ferro_fixture.json.zst").read_bytes(), max_output_size=64 << 20
    )
    doc = json.loads(raw)
    enum = next(v for v in doc["index"].values() if v.get("name") == "FixtureError" and "enum" in v["inner"])
    enum["inner"]["enum"]["has_stripped_variants"] = True
    from_json = _by_key(parse_rustdoc_json(copy.deepcopy(doc), version="0.3.1"))

    pages = read_doc_dir(FIXTURES / "html" / "ferro_fixture")
    key = "ferro_fixture/enum.FixtureError.html"
    closing = b"    },\n}</code></pre>"
    assert closing in pages[key]
    pages[key] = pages[key].replace(
        closing, b'    },\n    <span class="comment">// some variants omitted</span>\n}</code></pre>', 1
    )
    from_html = _by_key(parse_html_pages(pages, version="0.3.1"))
    key_enum = ("ferro_fixture::FixtureError", "enum")
    expected = (
        "pub enum FixtureError { Empty, Invalid(String), OutOfRange { value: i64, max: i64 }, "
        "/* some variants omitted */ }"
    )
    assert from_json[key_enum].signature == expected
    assert from_html[key_enum].signature == expected
