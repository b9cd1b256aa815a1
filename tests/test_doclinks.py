"""Links in item docs (crates.pipeline.doclinks): intra-doc links made into URLs, and chunk text without URLs."""

from __future__ import annotations

from crates.pipeline.doclinks import join_url, link_text_only, resolve_links

LINKS = {
    "`MutexGuard`": "https://docs.rs/t/1/t/struct.MutexGuard.html",
    "Self::lock": "https://docs.rs/t/1/t/struct.Mutex.html#method.lock",
    "crate::sync::Mutex": "https://docs.rs/t/1/t/struct.Mutex.html",
    "struct@Mutex": "https://docs.rs/t/1/t/struct.Mutex.html",
    "std::sync::Mutex": "https://doc.rust-lang.org/std/sync/struct.Mutex.html",
}
PAGE = "https://docs.rs/t/1/t/sync/struct.Mutex.html"


def _resolve(markdown: str) -> str:
    return resolve_links(markdown, resolve=LINKS.get, page_url=PAGE)


def test_shortcut_inline_and_full_links_get_the_url() -> None:
    assert _resolve("Returns a [`MutexGuard`], see [`lock`](Self::lock) and [the type](crate::sync::Mutex).") == (
        f"Returns a [`MutexGuard`]({LINKS['`MutexGuard`']}), see [`lock`]({LINKS['Self::lock']}) "
        f"and [the type]({LINKS['crate::sync::Mutex']})."
    )


def test_reference_definitions_are_inlined_and_dropped() -> None:
    markdown = "Like [`Mutex`] and [std's][std] or [`Mutex`][].\n\n[`Mutex`]: struct@Mutex\n[std]: std::sync::Mutex"
    url, std = LINKS["struct@Mutex"], LINKS["std::sync::Mutex"]
    assert _resolve(markdown) == f"Like [`Mutex`]({url}) and [std's]({std}) or [`Mutex`]({url})."


def test_newer_rustdoc_keys_without_backticks_are_found() -> None:
    assert _resolve("[`std::sync::Mutex`]") == f"[`std::sync::Mutex`]({LINKS['std::sync::Mutex']})"


def test_unresolved_intra_doc_links_keep_their_text_without_brackets() -> None:
    markdown = "A [`Missing`] and [gone](crate::Gone) and [`ref`].\n\n[`ref`]: crate::Nowhere"
    assert _resolve(markdown) == "A `Missing` and gone and `ref`."


def test_prose_in_brackets_ordinary_links_and_images_stay() -> None:
    markdown = "An [optional] v[i] [1] and [the site](https://tokio.rs) ![logo](https://x/y.png) [site][s]\n\n[s]: https://s"
    assert _resolve(markdown) == markdown


def test_relative_links_are_made_absolute_against_the_page() -> None:
    markdown = "See [tasks](../task/index.html#what-are-tasks), [this](#method.new) and [io].\n\n[io]: ../io/index.html"
    assert _resolve(markdown) == (
        "See [tasks](https://docs.rs/t/1/t/task/index.html#what-are-tasks), "
        "[this](https://docs.rs/t/1/t/sync/struct.Mutex.html#method.new) and [io].\n\n"
        "[io]: https://docs.rs/t/1/t/io/index.html"
    )


def test_code_blocks_and_code_spans_are_left_alone() -> None:
    markdown = (
        "Write `[`MutexGuard`]` or ``[x](Self::lock)``.\n\n```rust\nlet a = [`MutexGuard`];\n```\n\n"
        "~~~\n[x](Self::lock)\n~~~"
    )
    assert _resolve(markdown) == markdown
    assert link_text_only(markdown) == markdown


def test_link_text_only_keeps_the_text_of_every_link() -> None:
    markdown = (
        "A [`MutexGuard`](https://docs.rs/x) and [`lock`](Self::lock), [ref][r], [`Short`] and [`Collapsed`][].\n\n"
        "[r]: https://example.com\n[`Short`]: crate::Short\n[`Collapsed`]: crate::Collapsed"
    )
    assert link_text_only(markdown) == "A `MutexGuard` and `lock`, ref, `Short` and `Collapsed`."


def test_urls_with_parentheses_or_spaces_do_not_end_the_link_early() -> None:
    assert resolve_links("[`f`]", resolve={"`f`": "https://x/a b(c).html"}.get) == "[`f`](https://x/a%20b%28c%29.html)"


def test_join_url_keeps_a_local_docs_tree_relative() -> None:
    assert join_url("tokio/sync/struct.Mutex.html", "../task/index.html") == "tokio/task/index.html"
    assert join_url("tokio/sync/struct.Mutex.html", "#method.lock") == "tokio/sync/struct.Mutex.html#method.lock"
    assert join_url("tokio/index.html", "https://docs.rs/x") == "https://docs.rs/x"
    assert join_url("https://docs.rs/t/1/t/index.html", "sync/index.html") == "https://docs.rs/t/1/t/sync/index.html"
