"""completions/ holds scripts generated from the app; a stale one fails here."""

from __future__ import annotations

import os
import shlex
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


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_xfer_completion_prints_the_committed_script(shell):
    done = subprocess.run([*xfer_cmd(), "completion", shell], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (ROOT / "completions" / f"xfer.{shell}").read_text().strip()


def test_xfer_completion_of_an_unknown_shell_is_a_usage_error():
    done = subprocess.run([*xfer_cmd(), "completion", "tcsh"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == "xfer: no completion for 'tcsh': give one of bash, zsh, fish"


def test_install_completion_puts_the_script_where_bash_reads_it(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    # (typer finds the shell among the processes above: run it from bash, as a person would,
    # and keep bash there: `bash -c CMD` alone would replace itself with CMD)
    done = subprocess.run(
        ["bash", "-c", shlex.join([*xfer_cmd(), "--install-completion"]) + "; exit $?"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "xfer.sh"
    assert script.read_text().strip() == (ROOT / "completions" / "xfer.bash").read_text().strip()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize("command", [[], ["send"], ["receive"], ["serve"], ["config"], ["completion"]])
def test_dash_h_is_help(command):
    short = subprocess.run([*xfer_cmd(), *command, "-h"], capture_output=True, text=True, timeout=30)
    long = subprocess.run([*xfer_cmd(), *command, "--help"], capture_output=True, text=True, timeout=30)
    assert short.returncode == 0 and short.stdout == long.stdout and short.stdout.startswith("Usage: xfer")
