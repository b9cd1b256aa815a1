"""``manage.py migrate`` run twice at once on one fresh database (two ``scripts/up``, two containers
starting together): the second waits for the first and both succeed, instead of one failing with
'relation "django_admin_log" already exists'."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from django.db import connection

from tests.jobs_helpers import BASE_DIR
from tests.jobs_helpers import test_database_url as database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fresh_database_url():
    name = f"{connection.settings_dict['NAME']}_migrate"
    admin_url = database_url()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url().replace(f"/{connection.settings_dict['NAME']}", f"/{name}", 1)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_migrates_at_once_both_succeed(fresh_database_url):
    env = {**os.environ, "DATABASE_URL": fresh_database_url, "EMBEDDING_PROVIDER": "hash"}
    procs = [
        subprocess.Popen([sys.executable, "manage.py", "migrate", "--noinput"], cwd=BASE_DIR, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outcomes = [(proc.wait(timeout=300), proc.stdout.read(), proc.stderr.read()) for proc in procs]
    for returncode, _stdout, stderr in outcomes:
        assert returncode == 0, stderr[-3000:]
    assert sum("another migrate is running" in stderr for _rc, _out, stderr in outcomes) <= 1
    with psycopg.connect(fresh_database_url) as conn:
        applied = conn.execute("SELECT count(*) FROM django_migrations WHERE app = 'jobs'").fetchone()[0]
    assert applied >= 4
