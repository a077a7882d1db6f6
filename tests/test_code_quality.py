"""The tooling habits of pyproject.toml, checked in `make test`: ruff's lint and format, and mypy's types."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess:
    # mypy's Django plugin imports the settings, which need MLOPS_ENV (test under `make test`).
    env = {**os.environ, "MLOPS_ENV": os.environ.get("MLOPS_ENV", "test")}
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )


def test_ruff_finds_nothing_to_report():
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tree_is_formatted():
    # `bin/format-tree` formats it
    result = _run("ruff", "format", "--no-cache", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_typed_modules_type_check():
    # the files and the strictness per module are in pyproject.toml's [tool.mypy]
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
