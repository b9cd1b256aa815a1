"""Shared test setup: the real embedded PostgreSQL (or DATABASE_URL), never SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def fake_docsrs(httpserver, settings):
    """A fake docs.rs + crates.io (tests/fakes.py) with settings pointing at it: no rate limit, fast retries."""
    from tests.fakes import FakeDocsRs

    fake = FakeDocsRs(httpserver)
    fake.configure(settings)
    return fake


def pytest_configure(config) -> None:
    """What the servers' entry points make at start (config/wsgi.py): WhiteNoise wants the static root."""
    from django.conf import settings

    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
