"""Checking what the rustdoc JSON parser made of a file before it is trusted over the HTML bundle."""

from __future__ import annotations

from crates.pipeline.types import ParsedCrate

# Below 97% of public items understood, the loss is no longer one new item kind but a change of structure; the
# HTML bundle (every page docs.rs shows) costs one more request and is then the better source.
MIN_UNDERSTOOD_SHARE = 0.97


def validation_problems(parsed: ParsedCrate) -> list[str]:
    """Why the parsed crate should not be used (empty: use it): root module, public paths, understood share."""
    problems = []
    root = parsed.crate_name
    if not any(item.path == root and item.kind == "module" for item in parsed.items):
        problems.append(f"the root module `{root}` did not become a document")
    report = parsed.report
    if report.declared_public > 0 and not any(item.path.startswith(f"{root}::") for item in parsed.items):
        problems.append(f"none of the {report.declared_public} public items got a public path")
    if any(not (item.path == root or item.path.startswith(f"{root}::")) for item in parsed.items):
        problems.append("some documents have paths outside the crate")
    share = report.share_understood()
    # One lost item is a new item kind, not a new structure, even in a crate of five items.
    if share < MIN_UNDERSTOOD_SHARE and report.public_items - report.understood > 1:
        problems.append(
            f"only {report.understood} of {report.public_items} public items were understood "
            f"({share:.1%}, below {MIN_UNDERSTOOD_SHARE:.0%})"
        )
    return problems
