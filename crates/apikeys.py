"""API keys: created once, shown once, stored only as a hash.

Keys are 256-bit random tokens, not passwords, so a single SHA-256 is enough: there is nothing to
brute-force that a slow hash would protect, and verification stays cheap on every request.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from uuid import UUID

from django.db.models import Q
from django.utils import timezone

from crates.errors import InvalidInput, NotFound
from crates.models import ApiKey

logger = logging.getLogger(__name__)

KEY_PREFIX = "fdx_"
# Shown in the admin and logs so a key can be recognised without revealing it.
DISPLAY_PREFIX_LENGTH = 12
MAX_NAME_LENGTH = 100
# Writing last_used_at on every request would turn each read into a write; once a minute is plenty.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Longer input cannot be one of our keys; refuse it before hashing attacker-sized strings.
MAX_RAW_KEY_LENGTH = 200


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def create_api_key(*, name: str) -> tuple[ApiKey, str]:
    """Create a key; return it with its plaintext, which is never stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("An API key needs a name that says who or what uses it.", field="name")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"API key names are at most {MAX_NAME_LENGTH} characters.", field="name")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(name=name, prefix=raw[:DISPLAY_PREFIX_LENGTH], key_hash=hash_api_key(raw))
    logger.info("Created API key %s (%s)", key.prefix, name)
    return key, raw


def verify_api_key(*, raw: str) -> ApiKey | None:
    """Return the active key matching ``raw``, or None. Records when the key was last used."""
    if not raw or len(raw) > MAX_RAW_KEY_LENGTH or "\x00" in raw:
        return None
    key = ApiKey.objects.filter(key_hash=hash_api_key(raw), is_active=True).first()
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional update: concurrent requests with the same key write at most once per window.
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key


def find_api_key(*, raw: str) -> ApiKey | None:
    """The key matching ``raw`` whether active or revoked (to tell "revoked" from "unknown")."""
    if not raw or len(raw) > MAX_RAW_KEY_LENGTH or "\x00" in raw:
        return None
    return ApiKey.objects.filter(key_hash=hash_api_key(raw)).first()


def revoke_api_key(*, key_id: UUID | str) -> ApiKey:
    try:
        key = ApiKey.objects.filter(pk=UUID(str(key_id))).first()
    except ValueError:
        key = None
    if key is None:
        raise NotFound(f"No API key with id {key_id}.")
    if key.is_active:
        key.is_active = False
        key.save(update_fields=["is_active"])
        logger.info("Revoked API key %s (%s)", key.prefix, key.name)
    return key
