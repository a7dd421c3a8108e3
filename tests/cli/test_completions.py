"""completions/ holds scripts generated from the app; a stale one fails here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import xfer_cmd

ROOT = Path(__file__).resolve().parents[2]


def generate(instruction: str, **extra: str) -> str:
    env = {**os.environ, "_XFER_COMPLETE": instruction, **extra}
    return subprocess.run(xfer_cmd(), env=env, capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completions_are_current(shell):
    committed = (ROOT / "completions" / f"xfer.{shell}").read_text()
    assert generate(f"source_{shell}") == committed, (
        f"completions/xfer.{shell} is stale: regenerate with `_XFER_COMPLETE=source_{shell} xfer > completions/xfer.{shell}`"
    )


def test_completion_answers_with_commands_and_options():
    assert generate("complete_bash", COMP_WORDS="xfer re", COMP_CWORD="1").split() == ["receive"]
    options = generate("complete_bash", COMP_WORDS="xfer send --r", COMP_CWORD="2").split()
    assert {"--room", "--relay"} <= set(options)
