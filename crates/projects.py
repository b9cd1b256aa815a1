"""Projects: a Cargo.lock turned into ingest jobs at the exact locked versions, saved under a name for search.

ONE service (``add_from_lockfile``) behind the MCP tool, the API and ``manage.py ingest_crate --lockfile``;
the reads (``list_projects``, ``project_releases``...) are what search and item lookups scope by.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from crates.errors import InvalidInput, NotFound, VersionNotFound
from crates.lockfiles import Lockfile, LockfileError, find_direct, parse_lockfile
from crates.models import CrateRelease, Project, ProjectPackage
from crates.names import normalize_crate_name, semver_key, toolchain_crate_note

logger = logging.getLogger(__name__)

_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SKIP_REASONS = {
    "path": "a path package of the workspace itself (not published: ingest it with ingest_crate --json-file)",
    "git": "a git dependency (docs.rs only builds crates.io releases)",
    "registry": "from another registry than crates.io",
    "already_active": "this exact version is already ingested and searchable",
    "not_direct": "not a direct dependency (direct_only)",
    "toolchain": "a crate of the Rust toolchain",
}


class ProjectNotFound(NotFound):
    code = "project_not_found"


@dataclass(slots=True)
class LockfileResult:
    project: str | None
    lockfile_version: int
    packages: int
    direct_from: str | None  # "manifest", "lockfile" or None (direct_only off and no manifest)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # {"crate", "version", "job", "deduplicated"}
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"crate", "version", "reason", "detail"}
    warnings: list[str] = field(default_factory=list)


def validate_project_name(name: object) -> str:
    if not isinstance(name, str) or not _PROJECT_NAME.match(name.strip()):
        shown = repr(name[:80]) if isinstance(name, str) else "it"
        raise InvalidInput(
            f"Invalid project name {shown}: 1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (e.g. 'my-service').",
            field="project",
        )
    return name.strip()


def read_lockfile(*, lockfile: str | bytes, manifest: str | bytes | None = None, direct_only: bool = False) -> Lockfile:
    """Parse and check the files; LockfileError names the line or package. No database access."""
    lock = parse_lockfile(lockfile)
    if manifest is not None or direct_only:
        lock = find_direct(lock, manifest=manifest)
    return lock


def add_from_lockfile(
    *,
    lockfile: str | bytes,
    manifest: str | bytes | None = None,
    direct_only: bool = False,
    project: str | None = None,
    requested_by: str,
) -> LockfileResult:
    """Queue one ingest per crates.io package at its locked version; save the project when named.

    Everything is checked before anything is written: a rejected file queues nothing. The jobs and the project
    are written in one transaction, so a failure half-way (the queue refusing a job) leaves nothing either.
    """
    from jobs import selectors as job_selectors
    from jobs import services as job_services

    name = validate_project_name(project) if project is not None else None
    lock = read_lockfile(lockfile=lockfile, manifest=manifest, direct_only=direct_only)
    active = _active_versions(lock)
    result = LockfileResult(project=name, lockfile_version=lock.format_version, packages=len(lock.packages),
                            direct_from=lock.direct_from or None, warnings=list(lock.warnings))  # fmt: skip
    wanted = []
    for package in lock.packages:
        reason = _skip_reason(package=package, lock=lock, direct_only=direct_only, active=active)
        if reason:
            result.skipped.append({"crate": package.name, "version": package.version, "reason": reason,
                                   "detail": SKIP_REASONS[reason]})  # fmt: skip
        else:
            wanted.append(package)
    with transaction.atomic():
        # One read for the jobs already under way: the same answer enqueue_ingest's dedupe gives (without force
        # an active job is joined as it is), without a failed insert and a look-up per package.
        running = _active_ingests(wanted)
        for package in wanted:
            job = running.get(package.key)
            if job is None:
                # cargo keeps a yanked version it already locked, and docs.rs keeps its docs
                queued = job_services.enqueue_ingest(name=package.name, version=package.version,
                                                     requested_by=requested_by, allow_yanked=True)  # fmt: skip
                job, deduplicated = queued.job, queued.deduplicated
            else:
                deduplicated = True
            how = (lock.direct or {}).get(package.key)
            result.jobs.append({"crate": package.name, "version": package.version, "deduplicated": deduplicated,
                                "job": job_selectors.job_as_dict(job),
                                "dependency_kinds": list(how.kinds) if how is not None else None})  # fmt: skip
        if name is not None:
            _save_project(name=name, lock=lock, direct_only=direct_only, has_manifest=manifest is not None)
    logger.info("lockfile (v%d, %d packages) project=%s: %d job(s), %d skipped", lock.format_version,
                len(lock.packages), name, len(result.jobs), len(result.skipped))  # fmt: skip
    return result


def _active_ingests(packages: list) -> dict[tuple[str, str], Any]:
    from jobs.models import CrateJob

    if not packages:
        return {}
    keys = {p.key for p in packages}
    jobs = CrateJob.objects.filter(
        operation=CrateJob.Operation.INGEST, status__in=CrateJob.ACTIVE_STATUSES,
        normalized_name__in={k[0] for k in keys}, requested_version__in={k[1] for k in keys},
    )  # fmt: skip
    found = {(j.normalized_name, j.requested_version): j for j in jobs}
    return {key: job for key, job in found.items() if key in keys}


def _active_versions(lock: Lockfile) -> set[tuple[str, str]]:
    names = {normalize_crate_name(p.name) for p in lock.packages if p.source == "crates.io"}
    rows = CrateRelease.objects.filter(
        crate__normalized_name__in=names, crate__deleted_at__isnull=True, state=CrateRelease.State.ACTIVE
    ).values_list("crate__normalized_name", "version")
    return set(rows)


def _skip_reason(*, package, lock: Lockfile, direct_only: bool, active: set[tuple[str, str]]) -> str | None:
    if package.source != "crates.io":
        return package.source
    if direct_only and lock.direct is not None and package.key not in lock.direct:
        return "not_direct"
    if toolchain_crate_note(package.name):
        return "toolchain"
    if package.key in active:
        return "already_active"
    return None


def _save_project(*, name: str, lock: Lockfile, direct_only: bool, has_manifest: bool) -> Project:
    found, _ = Project.objects.update_or_create(
        name=name,
        defaults={"lockfile_version": lock.format_version, "direct_only": direct_only, "has_manifest": has_manifest},
    )
    found.packages.all().delete()  # a new lockfile replaces the old set
    rows = {}
    for package in lock.packages:
        how = (lock.direct or {}).get(package.key)
        rows[package.key] = ProjectPackage(
            project=found, name=package.name, normalized_name=package.key[0], version=package.version,
            source=package.source, direct=how is not None,
            dependency_kinds=list(how.kinds) if how else [], features=list(how.features) if how else [],
            default_features=how.default_features if how else True,
        )  # fmt: skip
    ProjectPackage.objects.bulk_create(rows.values())
    return found


# --- reads -------------------------------------------------------------------------------------


def get_project(*, name: str) -> Project:
    found = Project.objects.filter(name=validate_project_name(name)).first()
    if found is None:
        known = list(Project.objects.order_by("name").values_list("name", flat=True)[:20])
        raise ProjectNotFound(
            f"No project named {name[:80]!r}; save one with add_rust_crates_from_lockfile(project=...) or "
            f"POST /api/v1/lockfiles. Projects: {', '.join(known) or 'none yet'}.",
            project=name[:80], available=known,
        )
    return found


def project_and_locked(*, name: str) -> tuple[Project, dict[str, list[ProjectPackage]]]:
    """The project and, by normalized crate name, its packages (a lockfile may hold two majors of one crate),
    the direct one first, then the newest. One query: every project-scoped search reads it."""
    packages = list(ProjectPackage.objects.filter(project__name=validate_project_name(name)).select_related("project"))
    found = packages[0].project if packages else get_project(name=name)
    by_crate: dict[str, list[ProjectPackage]] = {}
    for package in packages:
        by_crate.setdefault(package.normalized_name, []).append(package)
    for listed in by_crate.values():
        listed.sort(key=lambda p: (not p.direct, tuple(-x for x in semver_key(p.version)[0])))
    return found, by_crate


def locked_versions(*, name: str) -> dict[str, list[ProjectPackage]]:
    """normalized crate name -> the project's packages of it, the direct one first, then the newest."""
    return project_and_locked(name=name)[1]


def project_summary(project: Project) -> dict[str, Any]:
    packages = list(project.packages.all())
    keys = {(p.normalized_name, p.version) for p in packages}
    active = set(
        CrateRelease.objects.filter(
            crate__normalized_name__in={k[0] for k in keys}, state=CrateRelease.State.ACTIVE
        ).values_list("crate__normalized_name", "version")
    ) & keys
    return {
        "name": project.name,
        "lockfile_version": project.lockfile_version,
        "direct_only": project.direct_only,
        "has_manifest": project.has_manifest,
        "packages": len(packages),
        "ingested": len(active),
        "created_at": project.created_at,
        "updated_at": project.updated_at,
    }


def project_detail(*, name: str) -> dict[str, Any]:
    found = get_project(name=name)
    summary = project_summary(found)
    active = set(
        CrateRelease.objects.filter(
            crate__normalized_name__in=found.packages.values("normalized_name"), state=CrateRelease.State.ACTIVE
        ).values_list("crate__normalized_name", "version")
    )
    summary["crates"] = [
        {"crate": p.name, "version": p.version, "source": p.source, "direct": p.direct,
         "dependency_kinds": p.dependency_kinds, "features": p.features, "default_features": p.default_features,
         "ingested": (p.normalized_name, p.version) in active}
        for p in found.packages.order_by("normalized_name", "version")
    ]  # fmt: skip
    return summary


def list_projects() -> list[dict[str, Any]]:
    return [project_summary(p) for p in Project.objects.order_by("name")]


def delete_project(*, name: str) -> dict[str, Any]:
    """Forget a project (its crates' documentation stays: other projects or searches may use it)."""
    with transaction.atomic():
        found = get_project(name=name)
        count = found.packages.count()
        found.delete()
    logger.info("deleted project %s (%d packages)", name, count)
    return {"project": name, "deleted": True, "packages": count}


def scoped_release_keys(*, project: str, crate: str | None = None) -> set[tuple[str, str]]:
    """(normalized crate, version) pairs a search in ``project`` may read; with ``crate``, only that crate's."""
    by_crate = locked_versions(name=project)
    if crate is None:
        return {(key, p.version) for key, packages in by_crate.items() for p in packages}
    key = normalize_crate_name(crate)
    if key not in by_crate:
        raise InvalidInput(
            f"Project {project!r} does not lock {crate!r}: its Cargo.lock has no such package. Search without "
            "the project, or give the lockfile again if it changed.",
            field="crate",
        )
    return {(key, p.version) for p in by_crate[key]}


def project_release(*, project: str, crate: str, version: str | None = None) -> tuple[Any, ProjectPackage | None]:
    """The active release of ``crate`` at the version ``project`` locks, and the project's package of it when the
    project's manifest says which features it enables (else None)."""
    from crates.search.scope import release_for

    found, locked = project_and_locked(name=project)
    packages = locked.get(normalize_crate_name(crate))
    if not packages:
        raise InvalidInput(
            f"Project {project!r} does not lock {crate!r}: its Cargo.lock has no such package. Look it up without "
            "the project.",
            field="crate",
        )
    package = packages[0]
    if version and version != "latest":
        package = next((p for p in packages if p.version == version), None)
        if package is None:
            raise InvalidInput(
                f"Project {project!r} locks {crate} {', '.join(p.version for p in packages)}, not {version[:80]!r}: "
                "leave the version out (the project decides it).",
                field="version",
            )
    try:
        release = release_for(crate=crate, version=package.version)
    except NotFound as exc:
        raise VersionNotFound(
            f"Project {project!r} locks {package.name} {package.version}, which is not ingested yet ({exc.message}) "
            f"Add it (add_rust_crate name={package.name!r} version={package.version!r}) and wait for its job; "
            "Ferrodex never answers from another version for a project.",
            crate=package.name, version=package.version,
        ) from None
    return release, (package if found.has_manifest and package.direct else None)


__all__ = ["LockfileError", "LockfileResult", "ProjectNotFound", "add_from_lockfile", "delete_project",
           "get_project", "list_projects", "locked_versions", "project_detail",
           "project_release", "read_lockfile", "scoped_release_keys", "validate_project_name"]  # fmt: skip
