"""What a command may know of the world it runs in, built once and passed down.

As httpie's ``context.Environment``: the standard streams, whether each is a
terminal, colour, width, and the environment variables xfer reads. Commands take
everything from here instead of ``sys`` and ``os.environ``, so that a test can run
one in-process with real files or pipes as its streams (``Environment.of``).

Two things still bypass it, both in the transfer layer: ``send -`` reads file
descriptor 0 and ``receive --stdout`` writes file descriptor 1, unbuffered.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

# The variables read from ``variables``: XFER_RELAY, PORT and XFER_REDIS (option defaults,
# through ``options.Command``), NO_COLOR, TERM and COLUMNS (here, and by rich's console).
DEFAULT_WIDTH = 80


@dataclass(frozen=True)
class Environment:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    stdin_isatty: bool
    stdout_isatty: bool
    stderr_isatty: bool
    colour: bool  # for what goes to stderr: a terminal, and no NO_COLOR
    width: int  # columns of stderr's terminal (or COLUMNS, or 80)
    variables: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        variables: Mapping[str, str] | None = None,
    ) -> Environment:
        """The environment these streams and variables make (``os.environ`` by default)."""
        env = dict(os.environ if variables is None else variables)
        stderr_isatty = _isatty(stderr)
        return cls(
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            stdin_isatty=_isatty(stdin),
            stdout_isatty=_isatty(stdout),
            stderr_isatty=stderr_isatty,
            # https://no-color.org: present and not empty turns colour off
            colour=stderr_isatty and not env.get("NO_COLOR") and env.get("TERM") != "dumb",
            width=_width(stderr, env) if stderr_isatty else _columns(env),
            variables=env,
        )

    @classmethod
    def from_process(cls) -> Environment:
        return cls.of(sys.stdin, sys.stdout, sys.stderr)

    def get(self, name: str) -> str | None:
        """An environment variable, None when unset or empty (as click reads them)."""
        return self.variables.get(name) or None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


def _columns(env: Mapping[str, str]) -> int:
    text = env.get("COLUMNS", "")
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_WIDTH


def _width(stream: TextIO, env: Mapping[str, str]) -> int:
    if env.get("COLUMNS", "").isdigit():
        return _columns(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (AttributeError, ValueError, OSError):
        return DEFAULT_WIDTH
