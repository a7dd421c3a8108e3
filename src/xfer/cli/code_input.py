"""Where the code of a room to join comes from, and reading it as a person typed it.

In order: the command line (``xfer receive CODE``, or ``--room CODE``), ``XFER_CODE``
from the environment, then a prompt on the terminal with Tab completion of the words
(as magic-wormhole does). A code on the command line is visible to every user of the
machine (``ps``); the prompt and ``XFER_CODE`` are not.

Every code is parsed here, before any network: a typo is a usage error with the code
as it was probably meant, never a failed handshake later.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..protocol.words import MAX_CODE_CHARS, CodeError, SpokenCode, complete, parse_code

if TYPE_CHECKING:
    from .context import Environment

PROMPT = "Enter the code: "
OPEN_HINT = "(Tab completes the words; Enter alone opens a room instead, for a phone to scan)\n"
CODE_VARIABLE = "XFER_CODE"


def parse(text: str) -> SpokenCode:
    """A code as typed, or a ``UsageError`` that says what is wrong (and the likely code)."""
    try:
        return parse_code(text)
    except CodeError as exc:
        raise UsageError(str(exc)) from None


def given_code(positional: str | None, room: str | None) -> str | None:
    """The code given on the command line: as an argument or as ``--room`` (not both, unless equal)."""
    if positional is not None and room is not None and positional != room:
        raise UsageError("give the code once: as an argument or with --room, not both")
    return positional if positional is not None else room


def code_to_join(positional: str | None, room: str | None, env: Environment, *, ask: bool) -> SpokenCode | None:
    """The code of the room to join, or None to open one.

    ``--room -`` asks for it on the terminal. ``ask``: with no code given anywhere and
    stdin a terminal, ask for it (``xfer receive``); an empty answer opens a room.
    """
    text = given_code(positional, room)
    if text == "-":
        if not env.stdin_isatty:
            raise UsageError("--room - asks for the code, but stdin is not a terminal; set XFER_CODE instead")
        text = prompt_code(env)
    elif text is None:
        text = env.get(CODE_VARIABLE)
        if text is None and ask and env.stdin_isatty:
            env.stderr.write(OPEN_HINT)
            text = prompt_code(env, empty_opens=True) or None
    return parse(text) if text is not None else None


def prompt_code(env: Environment, read: Callable[[str], str] | None = None, *, empty_opens: bool = False) -> str:
    """Ask for the code on the terminal; Tab completes its words where readline is there.
    An empty answer is "" with ``empty_opens`` (open a room instead), else a usage error."""
    if read is None:
        read = _reader(env)
    try:
        text = read(PROMPT)
    except (EOFError, KeyboardInterrupt):
        raise UsageError("no code given") from None
    if not text.strip():
        if empty_opens:
            return ""
        raise UsageError("no code given")
    return text[: MAX_CODE_CHARS + 1]


def _reader(env: Environment) -> Callable[[str], str]:
    """``input`` with readline's Tab completion on this process's own terminal; else a
    line from ``env.stdin`` (a test's pseudo-terminal), prompting on stderr.

    ``input`` uses readline only when stdout is a terminal too, and otherwise writes its
    prompt to stdout: with ``--json`` or ``--stdout`` piped, the prompt goes to stderr
    and the line is read without Tab (the terminal still edits it)."""
    if env.stdin is sys.stdin and env.stdout_isatty:
        _complete_with_readline()

        def read_stdin(prompt: str) -> str:
            env.stderr.flush()
            return input(prompt)

        return read_stdin

    def read_stream(prompt: str) -> str:
        env.stderr.write(prompt)
        env.stderr.flush()
        line = env.stdin.readline(MAX_CODE_CHARS + 2)
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    return read_stream


class Completer:
    """readline's completer: the state-th completion of the whole line typed so far.

    The completion delimiters are cleared, so that readline hands over (and replaces)
    the whole line: a completion is the code so far with the next word.
    """

    def __init__(self) -> None:
        self.text = ""
        self.matches: list[str] = []

    def __call__(self, text: str, state: int) -> str | None:
        if state == 0 or text != self.text:
            self.text = text
            self.matches = complete(text)
            if len(self.matches) == 1:
                self.matches = [self.matches[0] + "-"]  # on to the next word
        return self.matches[state] if state < len(self.matches) else None


def _complete_with_readline() -> None:
    try:
        import readline
    except ImportError:  # Windows without pyreadline: the prompt still works, without Tab
        return
    readline.set_completer(Completer())
    readline.set_completer_delims("")
    if "libedit" in (readline.__doc__ or ""):  # macOS's Python
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
