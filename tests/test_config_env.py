"""Settings read from the environment: typos are errors naming the variable; DATABASE_URL via dj-database-url."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.dburl import DatabaseUrlError, parse_database_url
from config.env import env_bool, env_float, env_int, env_list
from tests.jobs_helpers import BASE_DIR


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), (" on ", True), ("no", False), ("0", False)]
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("FERRODEX_T_FLAG", raw)
    assert env_bool("FERRODEX_T_FLAG", not expected) is expected


def test_env_bool_typo_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("FERRODEX_T_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match=r"FERRODEX_T_FLAG='ture' is not a boolean"):
        env_bool("FERRODEX_T_FLAG", False)


def test_unset_or_blank_reads_the_default(monkeypatch):
    monkeypatch.delenv("FERRODEX_T_NUM", raising=False)
    assert env_int("FERRODEX_T_NUM", 7) == 7
    monkeypatch.setenv("FERRODEX_T_NUM", "  ")
    assert env_float("FERRODEX_T_NUM", 1.5) == 1.5
    assert env_list("FERRODEX_T_NUM", ["a"]) == ["a"]


@pytest.mark.parametrize(
    ("reader", "raw", "words"), [(env_int, "3.5", "a whole number"), (env_float, "fast", "a number")]
)
def test_numbers_that_do_not_parse_name_the_variable(monkeypatch, reader, raw, words):
    monkeypatch.setenv("FERRODEX_T_NUM", raw)
    with pytest.raises(ImproperlyConfigured, match=f"FERRODEX_T_NUM={raw!r} is not {words}"):
        reader("FERRODEX_T_NUM", 1)


def test_database_url_with_socket_directory_and_options():
    db = parse_database_url("postgresql://me:p%40ss@/ferrodex?host=/tmp/sock%20dir&sslmode=disable")
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["NAME"]) == ("me", "p@ss", "ferrodex")
    assert db["HOST"] == "/tmp/sock dir"
    assert db["OPTIONS"] == {"sslmode": "disable"}


def test_database_url_with_host_and_port():
    db = parse_database_url("postgres://u@db.internal:5433/docs")
    assert (db["HOST"], db["PORT"], db["NAME"]) == ("db.internal", "5433", "docs")


def test_database_url_of_another_engine_is_refused():
    with pytest.raises(DatabaseUrlError, match="must be a postgresql:// URL"):
        parse_database_url("sqlite:///db.sqlite3")


def test_a_settings_typo_stops_start_up_with_the_variable_named():
    env = {**os.environ, "DEBUG": "ture"}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "DEBUG='ture' is not a boolean" in done.stderr
