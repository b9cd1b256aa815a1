"""Loading the embedding model in the background when a process starts, so no search or ingest pays for it.

Web workers (config/wsgi.py, config/asgi.py), ``runmcp`` and qcluster workers call ``start_background_load``
at start-up (settings.EMBEDDING_PRELOAD). A search or an embedding pass that arrives during the load waits
only for the rest of it: the embedder's own lock serialises the load. ``status()`` is what /health and
check_rust_status report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

WARM_UP_TEXT = "warm up the embedding model"
# How often a caller waiting for the model checks whether its job was cancelled.
WAIT_POLL_SECONDS = 0.1

_lock = threading.Lock()
_state: dict[str, Any] = {"state": "not started"}
_thread: threading.Thread | None = None


def start_background_load(*, reason: str = "start-up", force: bool = False) -> bool:
    """Start loading the configured embedder's model on a daemon thread (once per process); False when
    preloading is off (unless ``force``) or a load was already started."""
    global _thread
    if not force and not getattr(settings, "EMBEDDING_PRELOAD", True):
        return False
    with _lock:
        if _thread is not None:
            return False
        _state.update(state="loading", started=time.time(), reason=reason)
        _thread = threading.Thread(target=_load, name="ferrodex-model-load", daemon=True)
        _thread.start()
    return True


def _load() -> None:
    started = time.monotonic()
    try:
        from crates.pipeline.embed import get_embedder

        embedder = get_embedder()
        load = getattr(embedder, "load", None)
        if load is not None:
            load()
            # The first forward pass allocates and tunes what later ones reuse: pay it here, not in a search.
            embedder.embed([WARM_UP_TEXT])
        else:
            embedder.count_tokens(WARM_UP_TEXT)
    except Exception as exc:  # the search degrades to keyword + path; health says why
        logger.warning("loading the embedding model in the background failed: %s", exc)
        with _lock:
            _state.update(state="failed", error=str(exc)[:300])
        return
    seconds = round(time.monotonic() - started, 2)
    with _lock:
        _state.update(state="ready", load_seconds=seconds)
    logger.info("embedding model ready in %.2f s (loaded in the background)", seconds)


def status() -> dict[str, Any]:
    """``state``: "not started" (no preload in this process), "loading", "ready" or "failed"."""
    with _lock:
        report = dict(_state)
    if report["state"] == "loading":
        report["loading_for_s"] = round(time.time() - report["started"], 1)
    report.pop("started", None)
    return report


def wait_until_loaded(embedder, *, check_cancelled: Callable[[], None]) -> None:
    """Return once ``embedder``'s model is loaded, checking ``check_cancelled`` meanwhile: a job cancelled
    while the model loads stops at once instead of after the load."""
    if getattr(embedder, "loaded", True) or getattr(embedder, "load", None) is None:
        return
    start_background_load(reason="embedding pass", force=True)
    while not embedder.loaded:
        check_cancelled()
        if status()["state"] == "failed":
            embedder.load()  # raises the load's error in this thread, as a first embed would
            return
        time.sleep(WAIT_POLL_SECONDS)
