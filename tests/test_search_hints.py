"""Which crates a search query names (crates.search.hints): pure text, no database."""

from __future__ import annotations

import pytest

from crates.search.hints import _named, missing_crate_hint


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("uuid v4 random", ["uuid"]),
        ("uuid::Uuid::new_v4", ["uuid"]),
        ("parse a date with chrono", ["chrono"]),
        ("serde-json from_str", ["serde_json"]),
        ("how do I use the foo_bar crate", ["foo_bar"]),
        ("crate frobnicate: how to frob", ["frobnicate"]),
        ("log messages with the log crate", ["log"]),  # an everyday word, said to be a crate
        ("log in with a password", []),  # an everyday word only
        ("what is the time now", []),
        ("join two futures and wait for both", []),
        ("futures::join! two futures", ["futures"]),
        ("time::Duration from seconds", []),  # std's module as often as the time crate
        ("sync::Mutex lock across await", []),  # a module path, not a crate
        ("io::Read for a file", []),
        ("std::collections::HashMap", []),  # the toolchain is never 'missing'
        ("add a dependency to the current crate", []),
        ("Mutex::lock", []),
    ],
)
def test_crates_named_by_a_query(query, names):
    assert _named(query) == names


def test_the_hint_names_every_front():
    hint = missing_crate_hint(["uuid"])
    assert "'uuid'" in hint and "add_rust_crate" in hint and "POST /api/v1/crates" in hint and "admin" in hint
    assert missing_crate_hint([]) == ""
