"""The whole tree is formatted and linted by ruff as configured in pyproject.toml (one style, checked in CI)."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["format", "--check", "--diff"], ["check", "--no-fix"]])
def test_ruff(command):
  # ruff is a test dependency, pinned in pyproject.toml so that its formatting does not drift between versions.
  result = subprocess.run(
    [sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True, check=False
  )
  assert result.returncode == 0, f"`ruff {' '.join(command)} .` found:\n{result.stdout[-5000:]}{result.stderr[-2000:]}"
