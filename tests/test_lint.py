"""Types and lint are part of the work: mypy --strict on src/, ruff check and ruff format
on the whole tree, each as the project's pyproject.toml configures it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_strict_on_src():
    pytest.importorskip("mypy", reason="pip install -e '.[test]' brings mypy")
    result = run(sys.executable, "-m", "mypy", "--no-incremental")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.parametrize("check", [("check",), ("format", "--check")], ids=["check", "format"])
def test_ruff(check):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("pip install -e '.[test]' brings ruff")
    result = run(ruff, *check, "src", "tests", "bench")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
