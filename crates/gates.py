"""What an item needs to compile: its feature/platform gate in structure and in words, with the Cargo.toml line.

Documents carry ``metadata["cfg"]`` (crates.pipeline.parse_json.cfg / html_cfg); releases carry the crate's
``features`` table from the sparse index; a project saved with a manifest knows which features it enables.
These reads turn the three into what an agent acts on: "needs feature `net`: tokio = { version = .., features = .. }".
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from crates import cfgexpr
from crates.models import CrateRelease, ProjectPackage
from crates.names import normalize_crate_name


def _toml_line(*, crate: str, version: str, features: list[str], default_features: bool = True) -> str:
    listed = ", ".join(f'"{f}"' for f in features)
    # The line replaces the project's own: dropping its `default-features = false` would turn them back on.
    defaults = "" if default_features else "default-features = false, "
    return f'{crate} = {{ version = "{version}", {defaults}features = [{listed}] }}'


def describe(
    *, cfg: str | None, crate: str, version: str, features_table: dict | None = None,
    package: ProjectPackage | None = None,
) -> dict[str, Any] | None:
    """The gate of one document, None when it has none.

    ``needs_features`` is set only when the project's manifest is known (``package``): the features the gate
    needs that the project does not enable; the Cargo.toml line then keeps the features it already asks for.
    """
    tree = cfgexpr.parse(cfg) if cfg else None
    if tree is None:
        return None
    features = cfgexpr.features_in(tree)
    platforms = cfgexpr.platforms_in(tree)
    table = features_table or {}
    needs: list[str] | None = None
    asked: list[str] = []
    if package is not None:
        asked = list(package.features or [])
    # An empty table is a release stored before features were read from the index: what the asked features
    # turn on is unknown then, so nothing is claimed missing.
    if package is not None and table:
        enabled = cfgexpr.enabled_features(table, asked=asked, default=package.default_features)
        needs = cfgexpr.missing_features(tree, features=enabled)
    wanted = needs if needs is not None else cfgexpr.missing_features(tree, features=set())
    required_text = f"Available on {cfgexpr.words(tree)} only."
    info: dict[str, Any] = {
        "cfg": str(tree),
        "features": features,
        "platforms": platforms,
        "text": required_text,
        "needs_features": needs,
        "cargo_toml": None,
        "badge": _badge(features=features, platforms=platforms),
    }
    if wanted:
        line = _toml_line(crate=crate, version=version, features=list(dict.fromkeys([*asked, *wanted])),
                          default_features=package is None or package.default_features)
        info["cargo_toml"] = line
        info["text"] += f" Needs feature{'s' if len(wanted) > 1 else ''} {', '.join(wanted)}: add to Cargo.toml " \
                        f"{_table(package)}: {line}"
    if needs == [] and features:
        info["text"] += " The project enables what it needs."
    if platforms:
        info["text"] += f" Platform: {', '.join(platforms)}."
    return info


def _table(package: ProjectPackage | None) -> str:
    """Where the project declares the dependency: a dev- or build-only one is not added to [dependencies]."""
    kinds = set(package.dependency_kinds or []) if package is not None else set()
    if kinds == {"dev"}:
        return "[dev-dependencies]"
    return "[build-dependencies]" if kinds == {"build"} else "[dependencies]"


def _badge(*, features: list[str], platforms: list[str]) -> str:
    parts = [("feature " if len(features) == 1 else "features ") + ",".join(features)] if features else []
    parts += platforms[:2]
    return "; ".join(parts)[:60]


def release_features(*, crate: str, version: str) -> dict:
    row = (
        CrateRelease.objects.filter(
            crate__normalized_name=normalize_crate_name(crate), version=version, state=CrateRelease.State.ACTIVE
        )
        .values_list("features", flat=True)
        .first()
    )
    return row if isinstance(row, dict) else {}


def project_packages(*, project: str | None) -> dict[str, ProjectPackage]:
    """normalized name -> the project's package, when the project was saved with its manifest; {} otherwise."""
    if not project:
        return {}
    from crates.projects import project_and_locked

    found, locked = project_and_locked(name=project)
    if not found.has_manifest:
        return {}
    return {key: packages[0] for key, packages in locked.items() if packages[0].direct}


def annotate_hits(hits: list, *, project: str | None = None) -> list:
    """Fill ``hit.gate`` on search hits: one query for the gates and the crates' feature tables."""
    if not hits:
        return hits
    names = sorted({normalize_crate_name(h.crate) for h in hits})
    paths = sorted({h.path for h in hits})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT k.normalized_name, r.version, d.path, d.kind, d.metadata->>'cfg', r.features"
            " FROM crates_crate k JOIN crates_craterelease r ON r.crate_id = k.id AND r.state = 'active'"
            " JOIN crates_document d ON d.release_id = r.id AND d.path = ANY(%s)"
            " WHERE k.normalized_name = ANY(%s) AND d.metadata ? 'cfg'",
            [paths, names],
        )
        rows = {(n, v, p, k): (cfg, features) for n, v, p, k, cfg, features in cursor.fetchall()}
    if not rows:
        return hits
    packages = project_packages(project=project)
    for hit in hits:
        key = normalize_crate_name(hit.crate)
        found = rows.get((key, hit.version, hit.path, hit.kind))
        if found is None:
            continue
        cfg, features = found
        if isinstance(features, str):  # a driver without the jsonb loader
            import json

            features = json.loads(features)
        package = packages.get(key)
        hit.gate = describe(cfg=cfg, crate=hit.crate, version=hit.version, features_table=features,
                            package=package if package is not None and package.version == hit.version else None)
    return hits


def features_summary(table: dict | None) -> dict[str, Any]:
    """A release's features for display: each with what it enables, and the default set."""
    table = table if isinstance(table, dict) else {}
    return {
        "default": list(table.get("default") or []),
        "features": {name: list(enables) for name, enables in sorted(table.items()) if name != "default"},
    }
