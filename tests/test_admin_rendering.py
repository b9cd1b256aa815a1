"""Server-side rendering of crate docs for the portal: markdown, Rust highlighting, and safety.

Crate docs are third-party text shown to logged-in operators, so raw HTML and script links must
never come through.
"""

from __future__ import annotations

from crates.rendering import highlight_rust, pygments_css, render_docs
from crates.templatetags.portal import format_duration, progress_bar_html, status_badge_html

BASE = "https://docs.rs/ferro_fixture/0.3.1/ferro_fixture/struct.Counter.html"


def test_untagged_code_blocks_are_rust_and_hidden_lines_are_dropped():
    html = render_docs("Example:\n\n```\n# fn main() {\nlet n = 1;\n## not hidden\n# }\n```\n", base_url=BASE)
    assert '<div class="highlight"><pre>' in html
    assert '<span class="kd">let</span>' in html and '<span class="mi">1</span>' in html
    assert "main" not in html and '<span class="n">hidden</span>' in html


def test_rustdoc_attributes_still_mean_rust_and_other_languages_are_kept():
    assert '<span class="k">fn</span>' in render_docs("```no_run,edition2021\nfn f() {}\n```")
    assert '<span class="k">fn</span>' in render_docs("```rust,ignore\nfn f() {}\n```")
    text = render_docs("```text\nfn <b>not code</b>\n```")
    assert 'class="k"' not in text and "&lt;b&gt;not code&lt;/b&gt;" in text
    assert '<span class="s2">"1"</span>' in render_docs("```toml\n[dependencies]\nserde = \"1\"\n```")


def test_raw_html_is_escaped_not_rendered():
    html = render_docs('Text <script>alert(1)</script>\n\n<div onclick="steal()">block</div>\n\n<img src=x onerror=y>')
    assert "<script" not in html and "<div onclick" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;div onclick" in html


def test_links_are_limited_to_safe_schemes_and_relative_ones_go_to_docs_rs():
    html = render_docs(
        "[a](javascript:alert(1)) [b](data:text/html,x) [c](https://serde.rs) [d](struct.Other.html) "
        "[e](crate::Other) [f](#examples) ![i](javascript:x) [g](javascript:alert) [h](Vec::new())",
        base_url=BASE,
    )
    assert "javascript:" not in html and "data:text" not in html and "<img" not in html
    assert '<a href="https://serde.rs" rel="noopener noreferrer nofollow" target="_blank">c</a>' in html
    assert 'href="https://docs.rs/ferro_fixture/0.3.1/ferro_fixture/struct.Other.html"' in html
    assert '<span class="intra-doc-link" title="crate::Other">e</span>' in html
    assert '<a href="#examples">f</a>' in html
    assert '<span class="intra-doc-link" title="Vec::new()">h</span>' in html and "<span>g</span>" in html


def test_bare_intra_doc_links_show_as_code():
    html = render_docs("Use [`Counter::increment`] to add one; see [`Mutex`].")
    assert "<code>Counter::increment</code>" in html and "[" not in html


def test_markdown_structure_tables_and_headings():
    html = render_docs("# Errors\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n* one\n* two\n")
    assert "<h1>Errors</h1>" in html and "<table>" in html and "<li>one</li>" in html


def test_signature_highlighting_escapes():
    html = highlight_rust("pub fn get<'a>(map: &'a HashMap<K, V>) -> Option<&'a V>")
    assert html.startswith('<div class="highlight">') and "&lt;" in html and "<K" not in html
    assert highlight_rust("   ") == ""


def test_pygments_stylesheet_has_light_and_dark_rules_and_matches_the_committed_file():
    from pathlib import Path

    css = pygments_css()
    assert ".highlight .k " in css and 'html[data-theme="dark"] .highlight .k ' in css
    assert "@media (prefers-color-scheme: dark)" in css
    committed = (Path(__file__).resolve().parent.parent / "static" / "portal" / "pygments.css").read_text()
    assert css in committed, "static/portal/pygments.css is stale: regenerate it from crates.rendering.pygments_css()"


def test_badges_progress_and_durations():
    assert status_badge_html("running", job_id="abc", cancel_requested=True) == (
        '<span class="fx-badge fx-status-running" data-job-id="abc" data-job-field="status">Running (cancelling)</span>'
    )
    bar = progress_bar_html(140, status="running", message="<b>x</b>")
    assert 'aria-valuenow="100"' in bar and "&lt;b&gt;x&lt;/b&gt;" in bar
    assert [format_duration(s) for s in (None, 3.21, 42, 125, 7322, 200000)] == [
        "—", "3.2 s", "42 s", "2m 05s", "2h 02m", "2d 7h"]
