"""Reading a project's Cargo.lock (formats v1-v4) and, optionally, its Cargo.toml: pure parsing, no database.

What comes out is the list of locked packages with where each comes from (crates.io, another registry, git,
a path in the workspace), which of them are the project's direct dependencies (and how: normal, dev, build),
and the features the manifest asks for. ``crates.projects`` turns that into ingest jobs and a saved project.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

from crates.errors import InvalidCrateName, InvalidInput
from crates.names import LATEST, normalize_crate_name, validate_crate_name, validate_version

MAX_LOCKFILE_BYTES = 5 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_PACKAGES = 2000
# crates.io's index as Cargo.lock names it: the git index, and the sparse one cargo >= 1.68 may write.
CRATES_IO_SOURCES = frozenset({
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
})  # fmt: skip
DEPENDENCY_TABLES = {"dependencies": "normal", "dev-dependencies": "dev", "build-dependencies": "build"}
_ALT_TABLES = {"dev_dependencies": "dev", "build_dependencies": "build"}  # old spellings cargo still reads
_PACKAGE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*package[ \t]*\]\]", re.MULTILINE)
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


class LockfileError(InvalidInput):
    code = "invalid_lockfile"


@dataclass(slots=True)
class LockedPackage:
    name: str
    version: str
    source: str  # "crates.io", "registry", "git", "path"
    source_url: str = ""
    line: int = 0  # of its [[package]] header
    dependencies: list[str] = field(default_factory=list)  # raw entries: "name", "name version", "name version (src)"

    @property
    def key(self) -> tuple[str, str]:
        return normalize_crate_name(self.name), self.version


@dataclass(slots=True)
class DirectDependency:
    """How the manifest asks for a package: its kinds and the features it enables."""

    kinds: list[str] = field(default_factory=list)  # "normal", "dev", "build"
    features: list[str] = field(default_factory=list)
    default_features: bool = True


@dataclass(slots=True)
class Lockfile:
    format_version: int
    packages: list[LockedPackage]
    # (normalized name, version) of each direct dependency -> how it is asked for; None without direct info.
    direct: dict[tuple[str, str], DirectDependency] | None = None
    direct_from: str = ""  # "manifest" or "lockfile" (the workspace packages' dependency lists)
    warnings: list[str] = field(default_factory=list)


def _text(raw: str | bytes, *, what: str, limit: int) -> str:
    size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
    if size > limit:
        raise LockfileError(
            f"The {what} is {size:,} bytes; the most Ferrodex reads is {limit:,} bytes ({limit // 1024 // 1024} MB).",
            field=what_field(what), size=size, limit=limit,
        )
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LockfileError(f"The {what} is not UTF-8 text (byte {exc.start}).", field=what_field(what)) from None
    return raw


def what_field(what: str) -> str:
    return "manifest" if "Cargo.toml" in what else "lockfile"


def _toml(text: str, *, what: str) -> dict:
    if not text.strip():
        raise LockfileError(f"The {what} is empty.", field=what_field(what))
    try:
        return tomllib.loads(text)
    except RecursionError:  # tomllib recurses per nesting level; cargo never writes more than a few
        raise LockfileError(
            f"The {what} is nested too deeply (arrays or tables inside each other) to be a Cargo file.",
            field=what_field(what),
        ) from None
    except tomllib.TOMLDecodeError as exc:
        where = _TOML_POSITION.search(str(exc))
        line = int(where.group(1)) if where else None
        quoted = ""
        if line is not None:
            lines = text.splitlines()
            quoted = f": {lines[line - 1].strip()[:120]!r}" if 0 < line <= len(lines) else ""
        at = f" at line {line}{quoted}" if line else ""
        raise LockfileError(
            f"The {what} is not valid TOML{at} ({_TOML_POSITION.sub('', str(exc)).strip()}).",
            field=what_field(what), line=line,
        ) from None


def _source_kind(source: object, *, where: str) -> tuple[str, str]:
    if source is None:
        return "path", ""
    if not isinstance(source, str):
        raise LockfileError(f"{where}: 'source' must be a string.", field="lockfile")
    if source in CRATES_IO_SOURCES or source.rstrip("/") in {s.rstrip("/") for s in CRATES_IO_SOURCES}:
        return "crates.io", source
    if source.startswith("git+"):
        return "git", source
    if source.startswith(("registry+", "sparse+")):
        return "registry", source
    raise LockfileError(f"{where}: unknown source {source[:120]!r}.", field="lockfile")


def parse_lockfile(raw: str | bytes) -> Lockfile:
    """Validate and read a Cargo.lock; LockfileError (an InvalidInput) names the line or package at fault."""
    text = _text(raw, what="lockfile (Cargo.lock)", limit=MAX_LOCKFILE_BYTES)
    data = _toml(text, what="lockfile (Cargo.lock)")
    packages = data.get("package")
    if not isinstance(packages, list) or not packages:
        raise LockfileError(
            "This is not a Cargo.lock: it has no [[package]] entries (give the lockfile, not the Cargo.toml).",
            field="lockfile",
        )
    version = data.get("version")
    if version is None:
        # v1 kept checksums in a [metadata] table; v2 moved them into each package and wrote no version key.
        version = 1 if isinstance(data.get("metadata"), dict) else 2
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 4:
        raise LockfileError(
            f"Cargo.lock format version {version!r} is not supported; Ferrodex reads versions 1 to 4.",
            field="lockfile",
        )
    if len(packages) > MAX_PACKAGES:
        raise LockfileError(
            f"The lockfile has {len(packages):,} packages; the most Ferrodex takes at once is {MAX_PACKAGES:,}.",
            field="lockfile", packages=len(packages), limit=MAX_PACKAGES,
        )
    lines, line, at = [], 1, 0
    for match in _PACKAGE_HEADER.finditer(text):  # counted as it goes: from the start each time was quadratic
        line += text.count("\n", at, match.start())
        at = match.start()
        lines.append(line)
    parsed = []
    for index, entry in enumerate(packages):
        line = lines[index] if len(lines) == len(packages) else 0
        parsed.append(_package(entry, index=index, line=line))
    return Lockfile(format_version=version, packages=parsed)


def _package(entry: object, *, index: int, line: int) -> LockedPackage:
    where = f"[[package]] #{index + 1}" + (f" (line {line})" if line else "")
    if not isinstance(entry, dict):
        raise LockfileError(f"{where} is not a table.", field="lockfile", line=line or None)
    name, version = entry.get("name"), entry.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise LockfileError(f"{where} needs a string 'name' and 'version'.", field="lockfile", line=line or None)
    where = f"package {name[:80]!r} {version[:40]!r} at line {line}" if line else f"package {name[:80]!r}"
    try:
        validate_crate_name(name)
        if validate_version(version) == LATEST:
            raise InvalidInput("")
    except InvalidCrateName as exc:
        raise LockfileError(f"In the lockfile, {where}: {exc.message}", field="lockfile", line=line or None,
                            package=name[:80]) from None  # fmt: skip
    except InvalidInput:
        raise LockfileError(
            f"In the lockfile, {where}: {version[:40]!r} is not an exact SemVer version such as '1.0.3' (cargo "
            "locks every package at one).",
            field="lockfile", line=line or None, package=name[:80],
        ) from None
    source, url = _source_kind(entry.get("source"), where=f"In the lockfile, {where}")
    deps = entry.get("dependencies") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise LockfileError(f"In the lockfile, {where}: 'dependencies' must be a list of strings.", field="lockfile")
    return LockedPackage(name=name.strip(), version=version.strip(), source=source, source_url=url, line=line,
                         dependencies=list(deps))  # fmt: skip


def _dependency_targets(entry: str, packages: list[LockedPackage]) -> list[LockedPackage]:
    """The package a lockfile dependency entry means: 'name', 'name version' or 'name version (source)'."""
    parts = entry.split(" ", 2)
    key = normalize_crate_name(parts[0])
    found = [p for p in packages if normalize_crate_name(p.name) == key]
    if len(parts) >= 2:
        found = [p for p in found if p.version == parts[1]] or found
    return found[:1] if len(found) > 1 and len(parts) >= 2 else found


def _manifest_dependencies(manifest: dict) -> tuple[dict[str, DirectDependency], bool]:
    """Package name -> how the manifest (and, for a workspace, its [workspace.dependencies]) asks for it."""
    declared: dict[str, DirectDependency] = {}
    workspace = manifest.get("workspace") if isinstance(manifest.get("workspace"), dict) else None
    inherited = (workspace or {}).get("dependencies") or {}
    declarations: dict[str, int] = {}

    def add(table: object, kind: str) -> None:
        if not isinstance(table, dict):
            return
        for key, spec in table.items():
            if isinstance(spec, dict) and spec.get("workspace") is True and isinstance(inherited.get(key), dict):
                base = inherited[key]
                spec = {**base, **spec, "features": [*(base.get("features") or []), *(spec.get("features") or [])]}
            package = spec.get("package", key) if isinstance(spec, dict) else key
            if not isinstance(package, str):
                continue
            entry_key = normalize_crate_name(package)
            entry = declared.setdefault(entry_key, DirectDependency())
            if kind not in entry.kinds:
                entry.kinds.append(kind)
            keeps = not (isinstance(spec, dict) and spec.get("default-features", spec.get("default_features")) is False)
            # cargo unifies the declarations: the defaults are off only when every one of them turns them off
            entry.default_features = keeps or (declarations.get(entry_key, 0) > 0 and entry.default_features)
            declarations[entry_key] = declarations.get(entry_key, 0) + 1
            if isinstance(spec, dict):
                features = spec.get("features") or []
                entry.features += [f for f in features if isinstance(f, str) and f not in entry.features]

    for table, kind in {**DEPENDENCY_TABLES, **_ALT_TABLES}.items():
        add(manifest.get(table), kind)
    targets = manifest.get("target")
    if isinstance(targets, dict):
        for spec in targets.values():
            if isinstance(spec, dict):
                for table, kind in {**DEPENDENCY_TABLES, **_ALT_TABLES}.items():
                    add(spec.get(table), kind)
    if workspace is not None:  # members' own manifests are not given: what the workspace declares is direct
        for key, spec in inherited.items():
            package = spec.get("package", key) if isinstance(spec, dict) else key
            if isinstance(package, str) and normalize_crate_name(package) not in declared:
                declared[normalize_crate_name(package)] = DirectDependency(
                    features=[f for f in (spec.get("features") or []) if isinstance(f, str)]
                    if isinstance(spec, dict) else [],
                    default_features=not (isinstance(spec, dict) and spec.get("default-features") is False),
                )  # fmt: skip
    return declared, workspace is not None


def find_direct(lock: Lockfile, *, manifest: str | bytes | None) -> Lockfile:
    """Mark the direct dependencies: the registry/git packages the workspace's own (path) packages depend on.

    With a manifest, its dependency tables say which kinds (normal, dev, build) and which features; without
    one the lockfile alone says which packages are direct (kinds unknown).
    """
    roots = [p for p in lock.packages if p.source == "path"]
    declared: dict[str, DirectDependency] = {}
    if manifest is not None:
        data = _toml(_text(manifest, what="manifest (Cargo.toml)", limit=MAX_MANIFEST_BYTES),
                     what="manifest (Cargo.toml)")  # fmt: skip
        package = data.get("package") if isinstance(data.get("package"), dict) else None
        if package is None and not isinstance(data.get("workspace"), dict):
            raise LockfileError(
                "The manifest has neither a [package] nor a [workspace] table: give the project's Cargo.toml.",
                field="manifest",
            )
        declared, is_workspace = _manifest_dependencies(data)
        own = normalize_crate_name(package["name"]) if package and isinstance(package.get("name"), str) else None
        if own and not is_workspace:
            mine = [p for p in roots if normalize_crate_name(p.name) == own]
            if not mine:
                raise LockfileError(
                    f"The manifest's package {package['name'][:80]!r} is not in the lockfile: give the Cargo.lock "
                    "of the same project.",
                    field="manifest", package=package["name"][:80],
                )
            roots = mine
        lock.direct_from = "manifest"
    else:
        lock.direct_from = "lockfile"
    direct: dict[tuple[str, str], DirectDependency] = {}
    for root in roots:
        for entry in root.dependencies:
            for target in _dependency_targets(entry, lock.packages):
                if target.source == "path":
                    continue
                how = declared.get(normalize_crate_name(target.name))
                direct.setdefault(target.key, how or DirectDependency())
    if manifest is not None:
        locked = {normalize_crate_name(p.name) for p in lock.packages}
        missing = sorted(name for name in declared if name not in locked)
        if missing:
            lock.warnings.append(
                "In the manifest but not in the lockfile (optional, or the lockfile is older than the manifest): "
                + ", ".join(missing[:20])
            )
        for key, how in declared.items():  # a workspace manifest: direct even when no path root lists it
            for target in (p for p in lock.packages if normalize_crate_name(p.name) == key and p.source != "path"):
                if not roots or len(roots) > 1:
                    direct.setdefault(target.key, how)
    lock.direct = direct
    return lock
