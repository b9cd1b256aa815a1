"""API key services and the create_api_key command."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from crates.apikeys import create_api_key, find_api_key, revoke_api_key, verify_api_key
from crates.errors import InvalidInput, NotFound
from crates.models import ApiKey

pytestmark = pytest.mark.django_db


def test_key_is_stored_only_as_its_sha256():
    key, raw = create_api_key(name="ci-bot")
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw.startswith("fdx_") and len(raw) > 40
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {stored.key_hash, stored.name} and stored.prefix == raw[:12]
    # Two keys never collide.
    assert create_api_key(name="ci-bot")[1] != raw


def test_verify_accepts_the_key_and_nothing_else():
    key, raw = create_api_key(name="agent")
    assert verify_api_key(raw=raw) == key
    for wrong in ["", raw[:-1], raw + "x", raw.upper(), "x" * 5000, raw + "\x00", key.key_hash]:
        assert verify_api_key(raw=wrong) is None


def test_revoked_key_is_refused_but_recognisable():
    key, raw = create_api_key(name="old")
    revoke_api_key(key_id=key.pk)
    assert verify_api_key(raw=raw) is None
    assert find_api_key(raw=raw) == key
    with pytest.raises(NotFound):
        revoke_api_key(key_id="not-a-uuid")


def test_last_used_is_recorded_at_most_once_a_minute():
    key, raw = create_api_key(name="busy")
    assert key.last_used_at is None
    verify_api_key(raw=raw)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    verify_api_key(raw=raw)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
    verify_api_key(raw=raw)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first - timedelta(minutes=1)


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_key_names_are_validated(name):
    with pytest.raises(InvalidInput):
        create_api_key(name=name)


def test_command_prints_the_key_once_and_it_works():
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "deploy", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert verify_api_key(raw=raw).name == "deploy"
    assert "cannot be shown again" in err.getvalue() and raw not in err.getvalue()
    with pytest.raises(CommandError):
        call_command("create_api_key", " ", stdout=io.StringIO(), stderr=io.StringIO())
