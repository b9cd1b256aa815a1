"""``manage.py ensure_admin`` run by two ``scripts/up`` at once: one admin, no traceback, the saved password works."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth import authenticate, get_user_model

from tests.jobs_helpers import BASE_DIR
from tests.jobs_helpers import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_three_ensure_admin_at_once_make_one_admin(tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url(), "FERRODEX_DATA_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "manage.py", "ensure_admin"], cwd=BASE_DIR, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    outcomes = [(proc.wait(timeout=120), proc.stderr.read()) for proc in procs]
    for returncode, stderr in outcomes:
        assert returncode == 0, stderr[-2000:]
        assert "admin login" in stderr
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    password = (tmp_path / "admin_password").read_text().strip()
    assert authenticate(username="admin", password=password) is not None
