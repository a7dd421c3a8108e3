"""What people and scripts see of a command: one ``Display``, chosen once.

The transfer layer reports what happens as ``emit("file-start", index=0, ...)``
(the names and fields of docs/cli.md). ``Display.emit`` is the one consumer of
those calls: it wraps each in an ``Event`` (a name and its fields) and hands it to
``show``. A typed event (a frozen dataclass with ``name`` and ``fields``) can later
take the place of ``UiEvent`` without any display changing: they read ``name`` and
``fields`` only.

Three displays:
- ``RichDisplay`` (``rich_display.py``): progress bars and short lines on stderr, for people;
- ``JsonDisplay``: one JSON object per event on stdout, for scripts (imports no rich);
- ``QuietDisplay``: errors, the room code and received texts only.

Anything a peer chose (names, texts, reasons) goes through ``escape_hostile`` before
any output: for people as ``\\x1b`` (``display_name``, rich markup escaped too); in JSON as
``\\u001b`` escapes, so a script decodes exactly what the peer wrote and no control,
bidi or format character reaches a terminal raw.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from .context import Environment
    from .status import Failure


class Event(Protocol):
    """What a display consumes: an event's name (docs/cli.md) and its fields."""

    @property
    def name(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class UiEvent:
    """An event as the transfer layer emits it today: a name and keyword fields."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoomOpened:
    """We opened a room: what the other side needs to join it."""

    code: str
    url: str  # the phone page for the room
    relay: str
    command: str  # the command to type on another computer
    qr: bool  # draw the page's URL as a QR code (people only)

    name = "room"

    @property
    def fields(self) -> Mapping[str, Any]:
        return {"code": self.code, "url": self.url, "relay": self.relay}


class Display(Protocol):
    def emit(self, event: str, **fields: Any) -> None:
        """The transfer layer's ``emit``: hands ``UiEvent(event, fields)`` to ``show``."""

    def show(self, event: Event) -> None: ...

    def error(self, failure: Failure) -> None:
        """The command failed: one line (or one ``error`` event)."""

    def close(self) -> None:
        """Stop drawing (progress bars) before the command returns."""


class _Emits:
    def emit(self, event: str, **fields: Any) -> None:
        self.show(UiEvent(event, fields))

    def show(self, event: Event) -> None:
        raise NotImplementedError


class JsonDisplay(_Emits):
    """One JSON object per line on ``stream``, each with an "event" key, flushed at once."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False  # the reader of stdout went away (``| jq`` stopped by Ctrl-C)

    def show(self, event: Event) -> None:
        if self.gone:
            return
        from ..protocol.names import escape_hostile

        line = json.dumps({"event": event.name, **event.fields}, ensure_ascii=False, separators=(",", ":"))
        try:
            # json.dumps writes C0 controls as \u escapes but C1 controls, bidi and other format
            # characters raw: the same escaping as for people, in JSON's spelling (decodes unchanged)
            self.stream.write(escape_hostile(line, json=True) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # a closed pipe (or stream): nobody reads events any more
            self.gone = True
            _silence(self.stream)

    def error(self, failure: Failure) -> None:
        self.emit("error", code=failure.code, message=failure.message, exit=failure.exit_status)

    def close(self) -> None:
        pass


class QuietDisplay(_Emits):
    """``--quiet``: errors, and only what the command is for (the room code, a received text)."""

    def __init__(self, env: Environment) -> None:
        from .rich_display import console

        self.console = console(env)

    def show(self, event: Event) -> None:
        from ..transfer.names import display_name, display_text

        f = event.fields
        if isinstance(event, RoomOpened):  # enough for the other side to join
            self.console.print(f"Room {event.code}  {event.command}")
        elif event.name == "text":
            who = display_name(f.get("from", "peer"), 60)
            self.console.print(f"[bold]{who}:[/bold] {display_text(f['text'])}")

    def error(self, failure: Failure) -> None:
        from .rich_display import error_line

        self.console.print(error_line(failure))

    def close(self) -> None:
        pass


class BothDisplays(_Emits):
    """``--json`` into a pipe while a person watches stderr: events for the script, and
    the room, the QR code and the bars for the person."""

    def __init__(self, *displays: Display) -> None:
        self.displays = displays

    def show(self, event: Event) -> None:
        for display in self.displays:
            display.show(event)

    def error(self, failure: Failure) -> None:
        for display in self.displays:
            display.error(failure)

    def close(self) -> None:
        for display in self.displays:
            display.close()


def _silence(stream: TextIO) -> None:
    """Point a stream whose pipe closed at /dev/null, so that the flush at exit does not fail."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def choose_display(env: Environment, *, json_mode: bool, quiet: bool, role: str) -> Display:
    """The display for these options (``--json`` wins over ``--quiet``). ``--json`` to
    something other than the terminal, with stderr on one, shows people their side too."""
    if json_mode:
        if quiet or env.stdout_isatty or not env.stderr_isatty:
            return JsonDisplay(env.stdout)
        from .rich_display import RichDisplay

        return BothDisplays(JsonDisplay(env.stdout), RichDisplay(env, role=role))
    if quiet:
        return QuietDisplay(env)
    from .rich_display import RichDisplay

    return RichDisplay(env, role=role)
