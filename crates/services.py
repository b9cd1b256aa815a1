"""Writes on crates that are not part of the ingest pipeline: removal and restore."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from crates.errors import CrateNotFound, VersionNotFound
from crates.models import Chunk, Crate, CrateRelease, Document
from crates.names import semver_key, validate_crate_name, validate_version

logger = logging.getLogger(__name__)


def _get_crate(*, name: str, for_update: bool = False) -> Crate:
    name = validate_crate_name(name)
    qs = Crate.objects.by_name(name)
    if for_update:
        qs = qs.select_for_update()
    crate = qs.first()
    if crate is None:
        raise CrateNotFound(f"No crate named {name!r} has been added to Ferrodex.", name=name)
    return crate


def _counts(releases) -> dict:
    release_ids = list(releases.values_list("pk", flat=True))
    return {
        "releases": len(release_ids),
        "documents": Document.objects.filter(release_id__in=release_ids).count(),
        "chunks": Chunk.objects.filter(release_id__in=release_ids).count(),
    }


def removal_preview(*, name: str, version: str | None = None) -> dict:
    """What a hard delete would remove, for confirmation pages."""
    crate = _get_crate(name=name)
    releases = crate.releases.all()
    if version:
        releases = releases.filter(version=validate_version(version))
    return {"crate": crate.name, "version": version or None, **_counts(releases)}


def remove_crate(*, name: str, version: str | None = None, soft: bool = False) -> dict:
    """Hard delete (cascade, one transaction) or soft delete (hidden from list and search).

    With ``version``, a hard delete removes only that version's releases; a
    soft delete always hides the whole crate.
    """
    with transaction.atomic():
        crate = _get_crate(name=name, for_update=True)
        if soft:
            crate.deleted_at = crate.deleted_at or timezone.now()
            crate.save(update_fields=["deleted_at", "updated_at"])
            logger.info("soft-deleted crate %s", crate.name)
            return {"crate": crate.name, "soft": True, "version": None, "releases": 0, "documents": 0, "chunks": 0}
        if version:
            version = validate_version(version)
            releases = crate.releases.filter(version=version)
            if not releases.exists():
                raise VersionNotFound(f"{crate.name} {version} is not stored in Ferrodex.", name=crate.name)
            counts = _counts(releases)
            releases.delete()
            remaining = CrateRelease.objects.filter(crate=crate, state=CrateRelease.State.ACTIVE)
            crate.latest_version = max(
                remaining.values_list("version", flat=True), key=semver_key, default=""
            )
            crate.save(update_fields=["latest_version", "updated_at"])
        else:
            counts = _counts(crate.releases.all())
            crate.delete()
    logger.info("removed crate %s version=%s: %s", name, version, counts)
    return {"crate": crate.name, "soft": False, "version": version, **counts}


def restore_crate(*, name: str) -> Crate:
    """Undo a soft delete."""
    with transaction.atomic():
        crate = _get_crate(name=name, for_update=True)
        if crate.deleted_at is not None:
            crate.deleted_at = None
            crate.save(update_fields=["deleted_at", "updated_at"])
            logger.info("restored crate %s", crate.name)
    return crate
