"""Which releases a search or a lookup may see.

Only ``active`` releases of crates that are not soft-deleted are visible.
Without a version, each crate contributes its newest active release by SemVer
precedence (``crates.names.semver_key``), the same rule the store uses for
``Crate.latest_version``: re-ingesting an old version later must not make it
shadow a newer one, which ordering by ``ingested_at`` would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection

from crates.errors import CrateNotFound, InvalidInput, VersionNotFound
from crates.models import Crate, CrateRelease, Document
from crates.names import normalize_crate_name, semver_key, toolchain_crate_note

KINDS: frozenset[str] = frozenset(Document.Kind.values)


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    id: int
    crate_id: int
    crate_name: str
    version: str
    document_count: int
    chunk_count: int
    embedding_model: str
    # A first ingest searchable before its vectors are all in: embedding_count of chunk_count have one.
    embedding_count: int = 0
    embedding_pending: bool = False

    @property
    def semantic_note(self) -> str | None:
        """"312/807 chunks" while the semantic signal covers only part of the release, else None."""
        if not self.embedding_pending:
            return None
        return f"{min(self.embedding_count, self.chunk_count)}/{self.chunk_count} chunks"


def id_array(ids) -> str:
    """A bigint[] literal: one parameter instead of a thousand adapted integers per query."""
    return "{" + ",".join(str(int(i)) for i in ids) + "}"


@dataclass(frozen=True, slots=True)
class Scope:
    releases: tuple[ReleaseInfo, ...]
    kinds: tuple[str, ...] | None
    # The release ids as one bigint[] literal, built once: every signal's SQL takes it.
    release_array: str = field(default="", compare=False)
    # The catalog stamp the releases were read under (None: read from the database just now,
    # or not known); a search checks it in the same round trip as its signals.
    stamp: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.release_array:
            object.__setattr__(self, "release_array", id_array(r.id for r in self.releases))

    @property
    def release_ids(self) -> list[int]:
        return [r.id for r in self.releases]

    @property
    def document_count(self) -> int:
        return sum(r.document_count for r in self.releases)

    @property
    def chunk_count(self) -> int:
        return sum(r.chunk_count for r in self.releases)

    def by_id(self) -> dict[int, ReleaseInfo]:
        return {r.id: r for r in self.releases}


_RELEASES_SQL = (
    "SELECT r.id, r.crate_id, k.name, r.version, r.document_count, r.chunk_count, r.embedding_model,"
    " r.embedding_count, r.embedding_pending"
    " FROM crates_craterelease r JOIN crates_crate k ON k.id = r.crate_id"
    " WHERE r.state = %s AND k.deleted_at IS NULL"
)
STAMP_SQL = "SELECT stamp FROM ferrodex_catalog_stamp WHERE id = 1"


@dataclass(frozen=True, slots=True)
class Catalog:
    """The active releases of every visible crate, read under one catalog stamp (migration crates 0004)."""

    stamp: int | None
    releases: list[ReleaseInfo]
    by_crate: dict[str, list[ReleaseInfo]] = field(default_factory=dict)  # normalized crate name -> releases

    @classmethod
    def of(cls, stamp: int | None, releases: list[ReleaseInfo]) -> Catalog:
        by_crate: dict[str, list[ReleaseInfo]] = {}
        for release in releases:
            by_crate.setdefault(normalize_crate_name(release.crate_name), []).append(release)
        return cls(stamp=stamp, releases=releases, by_crate=by_crate)


# By database: the catalog, re-read only after the stamp moved.
_catalog_cache: dict[str, Catalog] = {}
# The default scope (newest release of every crate), by database, under the same stamp.
_newest_cache: dict[str, tuple[int | None, Scope]] = {}


def _active_releases(*, crate_id: int) -> list[ReleaseInfo]:
    # Raw SQL: every search reads this, and an ORM round of a thousand rows costs ~8 ms.
    with connection.cursor() as cursor:
        cursor.execute(_RELEASES_SQL + " AND r.crate_id = %s", [CrateRelease.State.ACTIVE.value, crate_id])
        return [ReleaseInfo(*row) for row in cursor.fetchall()]


def catalog(*, trust_cache: bool = False) -> Catalog:
    """The visible releases. ``trust_cache``: skip the stamp check; the caller checks ``STAMP_SQL`` itself."""
    key = str(connection.settings_dict.get("NAME"))
    cached = _catalog_cache.get(key)
    if trust_cache and cached is not None and cached.stamp is not None:
        return cached
    with connection.cursor() as cursor:
        cursor.execute(STAMP_SQL)
        row = cursor.fetchone()
        if row is not None and cached is not None and cached.stamp == row[0]:
            return cached
        # The stamp is read in the same statement (snapshot) as the rows it labels.
        cursor.execute(
            "SELECT s.stamp, v.* FROM (" + _RELEASES_SQL + ") v"
            " RIGHT JOIN ferrodex_catalog_stamp s ON true WHERE s.id = 1",
            [CrateRelease.State.ACTIVE.value],
        )
        rows = cursor.fetchall()
    if not rows:
        return Catalog(stamp=None, releases=[])
    fresh = _catalog_cache[key] = Catalog.of(rows[0][0], [ReleaseInfo(*r[1:]) for r in rows if r[1] is not None])
    return fresh


def forget_catalog() -> None:
    """Drop this process's cached catalogs (a search saw the stamp move)."""
    _catalog_cache.clear()
    _newest_cache.clear()


def newest_per_crate(releases: list[ReleaseInfo]) -> list[ReleaseInfo]:
    by_crate: dict[int, list[ReleaseInfo]] = {}
    for release in releases:
        by_crate.setdefault(release.crate_id, []).append(release)
    # Most crates have one active release: SemVer parsing only where there is a choice.
    best = [
        group[0] if len(group) == 1 else max(group, key=lambda r: semver_key(r.version)) for group in by_crate.values()
    ]
    return sorted(best, key=lambda r: r.crate_name.lower())


def find_crate(*, name: str, include_deleted: bool = False) -> Crate:
    """The crate called ``name`` (any spelling crates.io accepts) or CrateNotFound."""
    if not isinstance(name, str) or not name.strip():
        raise CrateNotFound("A crate name is required.")
    crate = Crate.objects.filter(normalized_name=normalize_crate_name(name)[:64]).first()
    if crate is not None and crate.is_deleted and not include_deleted:
        # Its documents are all still there: telling the user to ingest it again would redo that work.
        raise CrateNotFound(
            f"Crate {crate.name!r} was soft-deleted, so it is hidden from search. Restore it "
            f"(restore_rust_crate over MCP, POST /api/v1/crates/{crate.name}/restore, or Restore in the admin)"
            " to search it again.",
            crate=crate.name,
            deleted=True,
        )
    if crate is None:
        shown = name.strip()[:80]
        if note := toolchain_crate_note(shown):
            raise CrateNotFound(f"Crate {shown!r} is not indexed. {note}", crate=shown)
        # Named for every front: this message reaches MCP agents, API clients and the admin alike.
        raise CrateNotFound(
            f"Crate {shown!r} is not indexed. Add it first (add_rust_crate over MCP, POST /api/v1/crates, "
            "or manage.py ingest_crate), or list the indexed crates.",
            crate=shown,
        )
    return crate


def release_for(*, crate: str, version: str | None) -> ReleaseInfo:
    """The active release of ``crate`` at ``version`` (newest active one when None/"latest")."""
    found = find_crate(name=crate)
    releases = _active_releases(crate_id=found.pk)
    if not releases:
        raise VersionNotFound(
            f"Crate {found.name!r} has no active release yet (an ingest may still be running).", crate=found.name
        )
    if version is None or not str(version).strip() or str(version).strip() == "latest":
        return newest_per_crate(releases)[0]
    wanted = str(version).strip()
    for release in releases:
        if release.version == wanted:
            return release
    available = sorted((r.version for r in releases), key=semver_key, reverse=True)
    raise VersionNotFound(
        f"Version {wanted[:80]!r} of {found.name!r} is not indexed; indexed versions: {', '.join(available)}.",
        crate=found.name,
        version=wanted[:80],
        available=available,
    )


def clean_kinds(kinds: list[str] | tuple[str, ...] | str | None) -> tuple[str, ...] | None:
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = [kinds]
    wanted = tuple(dict.fromkeys(str(k).strip().lower() for k in kinds if str(k).strip()))
    if not wanted:
        return None
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise InvalidInput(
            f"Unknown item kind(s): {', '.join(repr(k[:40]) for k in unknown)}. "
            f"Valid kinds: {', '.join(sorted(KINDS))}.",
            kinds=unknown,
        )
    return wanted


def _cached_release(found: Catalog, *, crate: str, version: str | None) -> ReleaseInfo | None:
    """``release_for`` answered from the catalog; None when only the database can say (or raise)."""
    releases = found.by_crate.get(normalize_crate_name(crate)[:64]) if crate.strip() else None
    if not releases:
        return None
    if version is None or not version or version == "latest":
        return newest_per_crate(releases)[0]
    return next((r for r in releases if r.version == version), None)


def project_scope(
    *, project: str, crate: str | None, version: str | None, kinds: tuple[str, ...] | None, trust_cache: bool
) -> Scope:
    """The active releases at exactly the versions ``project`` locks (never a newer one), optionally one crate's."""
    from crates.projects import scoped_release_keys

    keys = scoped_release_keys(project=project, crate=crate if crate and str(crate).strip() else None)
    if version and version != "latest" and not (crate and any(v == version for _, v in keys)):
        locked = f"{crate} {', '.join(sorted(v for _, v in keys))}" if crate else "its own versions"
        raise InvalidInput(
            f"Project {project!r} locks {locked[:200]}, not {version[:80]!r}: leave the version out (the project "
            "decides it), or search without the project.",
            field="version",
        )
    def locked(found: Catalog) -> tuple[ReleaseInfo, ...]:
        return tuple(r for r in found.releases if (normalize_crate_name(r.crate_name), r.version) in keys
                     and (not version or version == "latest" or r.version == version))  # fmt: skip

    found = catalog(trust_cache=trust_cache)
    releases = locked(found)
    if crate and str(crate).strip() and not releases and trust_cache:
        found = catalog()  # the cache may predate the ingest: the database decides before saying "not ingested"
        releases = locked(found)
    if crate and str(crate).strip() and not releases:
        locked = ", ".join(sorted(v for _, v in keys))
        raise VersionNotFound(
            f"Project {project!r} locks {crate} {locked}, which is not ingested yet: add it (add_rust_crate with "
            "that version, or add_rust_crates_from_lockfile again) and wait for its job.",
            crate=str(crate), version=locked,
        )  # fmt: skip
    return Scope(releases=tuple(sorted(releases, key=lambda r: r.crate_name.lower())), kinds=kinds, stamp=found.stamp)


def search_scope(
    *, crate: str | None, version: str | None, kinds: list[str] | None, trust_cache: bool = False,
    project: str | None = None,
) -> Scope:
    """Releases and kinds a search covers. Unknown crate/version raise, so a typo is not an empty page.

    ``trust_cache``: use the cached catalog without checking its stamp; the scope carries the stamp
    so the caller can check it (crates.search.engine does, in the same round trip as the signals).
    ``project``: only the versions that project's Cargo.lock locks (crates.projects).
    """
    cleaned_kinds = clean_kinds(kinds)
    version = version.strip() if isinstance(version, str) else version
    if project:
        return project_scope(project=project, crate=crate, version=version, kinds=cleaned_kinds,
                             trust_cache=trust_cache)  # fmt: skip
    if crate is not None and str(crate).strip():
        found = catalog(trust_cache=trust_cache)
        release = _cached_release(found, crate=str(crate), version=version)
        if release is None:  # not visible in the cache: the database decides, and explains a miss
            return Scope(releases=(release_for(crate=str(crate), version=version),), kinds=cleaned_kinds)
        return Scope(releases=(release,), kinds=cleaned_kinds, stamp=found.stamp)
    found = catalog(trust_cache=trust_cache)
    if version and version != "latest":
        return Scope(releases=tuple(r for r in found.releases if r.version == version), kinds=cleaned_kinds,
                     stamp=found.stamp)  # fmt: skip
    key = str(connection.settings_dict.get("NAME"))
    cached = _newest_cache.get(key)
    if cached is None or cached[0] != found.stamp or found.stamp is None:
        cached = (found.stamp, Scope(releases=tuple(newest_per_crate(found.releases)), kinds=None, stamp=found.stamp))
        _newest_cache[key] = cached
    scope = cached[1]
    return scope if cleaned_kinds is None else Scope(scope.releases, cleaned_kinds, scope.release_array, scope.stamp)
