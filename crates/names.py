"""crates.io naming rules and version strings."""

from __future__ import annotations

import re

from crates.errors import InvalidCrateName, InvalidVersion

MAX_CRATE_NAME_LENGTH = 64
_CRATE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# SemVer 2.0.0 (https://semver.org), as cargo accepts it.
# ASCII digits only: Python's \d also takes other scripts' digits (Arabic-Indic '1.0.0'), which cargo does not.
_SEMVER_CORE = (
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-((?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_SEMVER_RE = re.compile(f"^{_SEMVER_CORE}$")
MAX_VERSION_LENGTH = 128
# The same rules as JSON Schema patterns, for the OpenAPI schema (ECMA-262 and Python read them alike).
# Surrounding whitespace is allowed because the validators strip it.
CRATE_NAME_PATTERN = rf"^\s*[A-Za-z][A-Za-z0-9_-]{{0,{MAX_CRATE_NAME_LENGTH - 1}}}\s*$"
VERSION_PATTERN = r"^\s*(?:latest|" + re.sub(r"\((?!\?)", "(?:", _SEMVER_CORE) + r")?\s*$"
# A removal's version: an exact one, or empty for the whole crate.
EXACT_VERSION_PATTERN = r"^(?:|\s*" + re.sub(r"\((?!\?)", "(?:", _SEMVER_CORE) + r"\s*)$"
LATEST = "latest"


def normalize_crate_name(name: str) -> str:
    """The lookup key: crates.io treats case and ``-``/``_`` as the same crate."""
    return name.strip().lower().replace("-", "_")


def validate_crate_name(name: object, *, field: str = "name") -> str:
    """Return the stripped name or raise InvalidCrateName saying what is wrong (and which request ``field``).

    Called once, where a request enters the services and selectors; the fronts map the error.
    """
    try:
        return _valid_crate_name(name)
    except InvalidCrateName as exc:
        exc.context.setdefault("field", field)
        raise


def _valid_crate_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidCrateName("A crate name is required.")
    name = name.strip()
    if len(name) > MAX_CRATE_NAME_LENGTH:
        raise InvalidCrateName(
            f"Crate names are at most {MAX_CRATE_NAME_LENGTH} characters; this one has {len(name)}."
        )
    if not name[0].isascii() or not name[0].isalpha():
        raise InvalidCrateName(f"Invalid crate name {name[:80]!r}: it must start with an ASCII letter.")
    if not _CRATE_NAME_RE.match(name):
        raise InvalidCrateName(
            f"Invalid crate name {name[:80]!r}: only ASCII letters, digits, '-' and '_' are allowed."
            + _split_hint(name)
        )
    return name


# A name written with its version or as a page's address: 'serde_json@1.0.87', 'serde_json 1.0.87',
# 'serde_json = "1.0.87"' (Cargo.toml), https://crates.io/crates/serde_json, https://docs.rs/tokio/1.24.2/tokio/.
_NAME_WITH_VERSION = re.compile(r"^([A-Za-z][\w-]*)\s*(?:@|=|\s)\s*\"?v?([0-9][\w.+-]*)\"?$")
_PAGE_URL = re.compile(
    r"^(?:https?://)?(?:www\.)?(?:crates\.io/crates|docs\.rs(?:/crate)?|lib\.rs/crates)/([A-Za-z][\w-]*)"
    r"(?:/([0-9][\w.+-]*))?"
)


def _split_hint(text: str) -> str:
    match = _NAME_WITH_VERSION.match(text) or _PAGE_URL.match(text)
    if match is None:
        return ""
    name, version = match.group(1), match.group(2)
    if version and _SEMVER_RE.match(version):
        return f" Give the name {name!r} and version {version!r} separately."
    return f" Give the name {name!r} alone."


# Crates of the Rust toolchain: crates.io reserves their names and docs.rs does not build them.
TOOLCHAIN_CRATES = frozenset({"std", "core", "alloc", "proc_macro", "test"})


def toolchain_crate_note(name: str) -> str | None:
    """What to do instead when ``name`` is a toolchain crate (None for any other name)."""
    key = normalize_crate_name(name)
    if key not in TOOLCHAIN_CRATES:
        return None
    return (
        f"{key!r} is part of the Rust toolchain, not published on crates.io or docs.rs, so it cannot be fetched "
        f"from there (its docs: https://doc.rust-lang.org/{key}/). An operator can ingest its rustdoc JSON "
        f"(rustup component add rust-docs-json) with 'manage.py ingest_crate {key} --json-file <path>'."
    )


def validate_version(version: object, *, field: str = "version") -> str:
    """Return ``"latest"`` or a SemVer string; raise InvalidVersion otherwise (naming the request ``field``)."""
    try:
        return _valid_version(version)
    except InvalidVersion as exc:
        exc.context.setdefault("field", field)
        raise


def optional_version(version: object, *, field: str = "version") -> str | None:
    """None for no version or "latest" (the newest release), else a valid SemVer string."""
    checked = validate_version(version, field=field)
    return None if checked == LATEST else checked


def _valid_version(version: object) -> str:
    if version is None or (isinstance(version, str) and version.strip() in {"", LATEST}):
        return LATEST
    if not isinstance(version, str):
        raise InvalidVersion("The version must be a string such as '1.0.3' or 'latest'.")
    version = version.strip()
    if len(version) > MAX_VERSION_LENGTH or not _SEMVER_RE.match(version):
        raise InvalidVersion(
            f"Invalid version {version[:80]!r}: use an exact SemVer version such as '1.0.3', or 'latest'."
            + _version_hint(version[:128])
        )
    return version


_PARTIAL_VERSION_RE = re.compile(r"^(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?$")


def _version_hint(version: str) -> str:
    """What a near-miss means: a git tag, a Cargo.toml requirement, or a version without all three numbers."""
    if version[:1] in ("v", "V") and _SEMVER_RE.match(version[1:]):
        return f" Write it without the 'v': {version[1:]!r}."
    bare = version.lstrip("=^~ ")
    if bare != version and _SEMVER_RE.match(bare):
        return f" {version[:80]!r} is a version requirement. Give the version itself: {bare!r}."
    partial = _PARTIAL_VERSION_RE.match(version)
    if partial:
        major, minor = partial.group(1), partial.group(2) or "0"
        return f" A version has all three numbers, e.g. '{major}.{minor}.0'."
    if any(c in version for c in "^~<>=*,"):
        return " That is a version requirement (Cargo.toml syntax): give one exact version that is published."
    return ""


def semver_key(version: str) -> tuple:
    """Sort key following SemVer precedence (build metadata ignored)."""
    match = _SEMVER_RE.match(version)
    if not match:
        return ((-1, -1, -1), 0, ())
    major, minor, patch, pre, _build = match.groups()
    core = (int(major), int(minor), int(patch))
    if not pre:
        return (core, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (core, 0, parts)


def is_prerelease(version: str) -> bool:
    match = _SEMVER_RE.match(version)
    return bool(match and match.group(4))
