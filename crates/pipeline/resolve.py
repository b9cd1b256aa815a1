"""Stage 1: validate the crate name and version, and resolve the version from the crates.io sparse index.

The sparse index (https://doc.rust-lang.org/cargo/reference/registry-index.html) is one file per crate with one
JSON object per published version. Metadata for humans (description, repository) comes from the crates.io API,
best-effort: a failure there never fails an ingest.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings

from crates.errors import CrateNotFound, FerrodexError, UpstreamRejected, VersionNotFound, VersionYanked
from crates.names import LATEST, is_prerelease, semver_key, validate_crate_name, validate_version
from crates.pipeline.http import HttpClient
from crates.pipeline.types import ResolvedRelease

logger = logging.getLogger(__name__)

# How many versions an error message lists; enough to spot the one meant, short enough to read.
VERSIONS_IN_MESSAGES = 10
# The crates.io API is only for display metadata: do not spend the whole retry budget on it.
METADATA_MAX_RETRIES = 2
INDEX_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class IndexVersion:
    name: str  # the crate's name as published (the canonical spelling)
    version: str
    yanked: bool
    features: dict | None = None  # [features] of this version: "features" and "features2" merged


def index_path(name: str) -> str:
    """The sparse-index path of a crate: ``1/x``, ``2/xy``, ``3/x/xyz``, ``ab/cd/abcd...`` (lower case)."""
    key = name.lower()
    if len(key) == 1:
        return f"1/{key}"
    if len(key) == 2:
        return f"2/{key}"
    if len(key) == 3:
        return f"3/{key[0]}/{key}"
    return f"{key[:2]}/{key[2:4]}/{key}"


def name_candidates(name: str) -> list[str]:
    """The spellings to try, given one first: crates.io treats ``-`` and ``_`` as the same crate, as cargo does."""
    candidates = [name, name.replace("-", "_"), name.replace("_", "-")]
    seen: set[str] = set()
    unique = []
    for candidate in candidates:
        if candidate.lower() not in seen:
            seen.add(candidate.lower())
            unique.append(candidate)
    return unique


def parse_index_file(text: str) -> list[IndexVersion]:
    """One JSON object per line; lines that are not a usable version entry are skipped.

    Only ``name`` and ``vers`` are required: cargo reads ``yanked`` as optional (absent = not yanked) and
    ignores fields it does not know (``features2``, ``rust_version``, ``v``...), so a registry may omit or add them.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
            entry = IndexVersion(
                name=str(record["name"]), version=str(record["vers"]), yanked=record.get("yanked") is True,
                features=_features(record),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("sparse index: skipping unreadable line %d", number)
            continue
        if semver_key(entry.version)[0] == (-1, -1, -1):
            logger.warning("sparse index: skipping non-SemVer version %r of %s", entry.version, entry.name)
            continue
        entries.append(entry)
    return entries


def _features(record: dict) -> dict[str, list[str]]:
    """A version's features (name -> what it enables); cargo splits new syntax into ``features2``."""
    merged: dict[str, list[str]] = {}
    for key in ("features", "features2"):
        table = record.get(key)
        if isinstance(table, dict):
            for feature, enables in table.items():
                if isinstance(feature, str) and isinstance(enables, list):
                    merged.setdefault(feature, []).extend(str(e) for e in enables)
    return merged


def fetch_index_entries(*, name: str, client: HttpClient) -> list[IndexVersion]:
    """All published versions of ``name`` (any ``-``/``_`` spelling); CrateNotFound if none exists."""
    unreadable: str | None = None
    for candidate in name_candidates(name):
        url = f"{settings.CRATES_INDEX_URL}/{index_path(candidate)}"
        response = client.get(url, allow_404=True, max_bytes=INDEX_MAX_BYTES)
        if response.status_code == 404:
            continue
        # The index is text/plain without a charset; it is UTF-8.
        entries = parse_index_file(response.content.decode("utf-8", "replace"))
        if entries:
            return entries
        unreadable = unreadable or url
    if unreadable is not None:
        # The crate exists: saying it does not would send the user hunting for a typo.
        raise UpstreamRejected(
            f"The crates.io index file of {name!r} ({unreadable}) exists but holds no version entry Ferrodex can "
            "read (each line needs a JSON object with 'name' and a SemVer 'vers'). Check CRATES_INDEX_URL "
            "points at a sparse index.",
            url=unreadable,
            name=name,
        )
    raise CrateNotFound(
        f"There is no crate named {name!r} on crates.io. Check the spelling (crates.io names look like 'serde_json').",
        name=name,
    )


def choose_version(
    *, name: str, version: str, entries: list[IndexVersion], allow_yanked: bool = False
) -> IndexVersion:
    """Pick the release: the newest stable non-yanked one for "latest", else the exact version if usable.

    ``allow_yanked``: an exact version may be yanked (a Cargo.lock keeps a yanked version it already locked)."""
    newest_first = sorted(entries, key=lambda e: semver_key(e.version), reverse=True)
    usable = [e for e in newest_first if not e.yanked]
    if version == LATEST:
        stable = [e for e in usable if not is_prerelease(e.version)]
        if stable or usable:
            return (stable or usable)[0]
        raise VersionYanked(
            f"Every published version of {name} has been yanked from crates.io, so there is no latest version.",
            name=name,
            yanked=[e.version for e in newest_first[:VERSIONS_IN_MESSAGES]],
        )
    match = _find_version(version, newest_first)
    if match is None:
        listed = _listing([e.version for e in usable] or [e.version for e in newest_first])
        raise VersionNotFound(
            f"{name} has no version {version} on crates.io. Available versions: {listed}.",
            name=name,
            version=version,
            available=[e.version for e in usable[:VERSIONS_IN_MESSAGES]],
        )
    if match.yanked and not allow_yanked:
        # Stable releases first: the advice should be what "latest" would take, not a newer release candidate.
        alternatives = sorted((e.version for e in usable), key=is_prerelease)
        hint = f"Use one of: {_listing(alternatives)}, or 'latest'." if alternatives else "All versions are yanked."
        raise VersionYanked(
            f"{name} {match.version} was yanked from crates.io. {hint}",
            name=name,
            version=match.version,
            available=alternatives[:VERSIONS_IN_MESSAGES],
        )
    return match


def fetch_crate_metadata(*, name: str, client: HttpClient) -> dict[str, str]:
    """description, repository and canonical name from the crates.io API; {} when that fails (never raises)."""
    url = f"{settings.CRATES_API_URL}/api/v1/crates/{quote(name, safe='')}"
    try:
        response = client.get(url, allow_404=True, max_retries=METADATA_MAX_RETRIES, max_bytes=16 * 1024 * 1024)
        if response.status_code != 200:
            raise UpstreamRejected(f"HTTP {response.status_code}")
        crate = response.json()["crate"]
    except (FerrodexError, ValueError, KeyError, TypeError) as exc:
        logger.warning("crates.io metadata for %s unavailable (%s); continuing without it", name, exc)
        return {}
    return {
        key: value.strip()
        for key in ("name", "description", "repository")
        if isinstance(value := crate.get(key), str) and value.strip()
    }


def resolve_release(
    *, name: str, version: str, client: HttpClient, metadata: bool = True, allow_yanked: bool = False
) -> ResolvedRelease:
    """Validate, then resolve ``version`` ("latest" or exact) of crate ``name`` against the sparse index.

    Raises InvalidCrateName / InvalidVersion before any request, CrateNotFound (with no docs.rs request),
    VersionNotFound or VersionYanked listing what exists. ``metadata=False`` leaves the crates.io API
    call to the caller (``describe_release``), e.g. for when a release is about to be made.
    """
    name = validate_crate_name(name)
    version = validate_version(version)
    entries = fetch_index_entries(name=name, client=client)
    chosen = choose_version(name=entries[-1].name, version=version, entries=entries, allow_yanked=allow_yanked)
    newest_first = sorted(entries, key=lambda e: semver_key(e.version), reverse=True)
    release = ResolvedRelease(
        name=chosen.name,
        version=chosen.version,
        available_versions=[e.version for e in newest_first if not e.yanked],
        features=chosen.features or {},
    )
    if metadata:
        release.name = describe_release(release=release, client=client).get("name", release.name)
    logger.info("resolved %s %s -> %s %s", name, version, release.name, release.version)
    return release


def describe_release(*, release: ResolvedRelease, client: HttpClient) -> dict[str, str]:
    """Fill ``release``'s description and repository from the crates.io API (when FETCH_CRATE_METADATA);
    return what the API said, {} when off or unavailable. Never raises."""
    if not getattr(settings, "FETCH_CRATE_METADATA", True):
        return {}
    metadata = fetch_crate_metadata(name=release.name, client=client)
    release.description = metadata.get("description", "")
    release.repository = metadata.get("repository", "")
    return metadata


def _find_version(version: str, entries: list[IndexVersion]) -> IndexVersion | None:
    for entry in entries:
        if entry.version == version:
            return entry
    # Build metadata does not distinguish versions (SemVer §10; crates.io refuses to publish both).
    core = version.split("+", 1)[0]
    for entry in entries:
        if entry.version.split("+", 1)[0] == core:
            return entry
    return None


def _listing(versions: list[str]) -> str:
    shown = ", ".join(versions[:VERSIONS_IN_MESSAGES])
    more = len(versions) - VERSIONS_IN_MESSAGES
    return f"{shown} (and {more} older)" if more > 0 else shown or "none"
