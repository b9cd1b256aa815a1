"""A first start says what it does once, without other tools' noise: scripts/up's install, its schedules line,
the model load in runmcp and ingest_crate."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import pytest

from tests.jobs_helpers import BASE_DIR


def test_the_editable_install_is_a_plain_path_entry_without_setuptools_warning_block():
    # setuptools prints its "Editable installation ... Please be careful with folders" block for the import-finder
    # strategy; a project whose packages all sit in one root it names gets a plain .pth file, silently.
    from setuptools import find_packages
    from setuptools.command.editable_wheel import _simple_layout

    config = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = config.get("package-dir", {})
    packages = find_packages(str(BASE_DIR), include=config["packages"]["find"]["include"])
    assert set(package_dir) == {""}, "setuptools would pick its import finder and print its warning block"
    assert _simple_layout(packages, package_dir, str(BASE_DIR))


@pytest.mark.django_db(transaction=True)
def test_ensure_schedules_reports_each_schedule_once():
    from django_q.models import Schedule

    from tests.jobs_helpers import test_database_url

    Schedule.objects.all().delete()  # a first run: every schedule is created
    env = {**os.environ, "DATABASE_URL": test_database_url(), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "manage.py", "ensure_schedules"], cwd=BASE_DIR, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("purge finished jobs", "recover stale jobs", "index staged embeddings"):
        assert (run.stdout + run.stderr).count(name) == 1, run.stdout + run.stderr


def test_loading_the_local_model_draws_no_progress_bar():
    code = ("import django; django.setup(); from crates.pipeline.embed import get_embedder; "
            "print(len(get_embedder(provider='local').embed(['x'])[0]))")  # fmt: skip
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("384")
    assert "Loading weights" not in run.stderr and "it/s]" not in run.stderr, run.stderr[-2000:]
