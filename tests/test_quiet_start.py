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
