"""The commands run in this process through an ``Environment`` whose streams are real
files (or a pseudo-terminal), against a real relay on 127.0.0.1: what a person or a
script would see, without a subprocess per case."""

from __future__ import annotations

import io
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import bounded, free_port, make_file, sha256_of
from xfer.cli.app import run
from xfer.cli.context import Environment
from xfer.cli.display import JsonDisplay, QuietDisplay, UiEvent, choose_display
from xfer.cli.rich_display import RichDisplay
from xfer.cli.status import EXIT_BUG, EXIT_INTERRUPTED, failure, run_command
from xfer.errors import PeerProtocolError, RoomError, UsageError

ROOM = "7-guitar-nebula"  # a well-formed code of a room nobody opened
BASE_VARIABLES = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines()]


def xfer(tmp_path: Path, *args: str, variables: dict[str, str] | None = None, stdin: str = "") -> Result:
    """``xfer ARGS`` in-process; its standard streams are files in ``tmp_path``."""
    (tmp_path / "stdin").write_text(stdin)
    with (
        open(tmp_path / "stdin", encoding="utf-8") as i,
        open(tmp_path / "stdout", "w+", encoding="utf-8") as o,
        open(tmp_path / "stderr", "w+", encoding="utf-8") as e,
    ):
        env = Environment.of(i, o, e, {**BASE_VARIABLES, **(variables or {})})
        status = run(list(args), env)
    return Result(status, (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text())


def test_environment_of_files_is_not_a_terminal(tmp_path):
    with open(tmp_path / "out", "w") as f:
        env = Environment.of(f, f, f, {"COLUMNS": "123"})
    assert not (env.stdin_isatty or env.stdout_isatty or env.stderr_isatty)
    assert env.colour is False and env.width == 123
    assert env.get("XFER_RELAY") is None and env.get("COLUMNS") == "123"


def test_relay_unreachable_is_one_line_and_exit_3(tmp_path):
    src = make_file(tmp_path / "a.txt", 10)
    result = xfer(tmp_path, "send", str(src), "--relay", f"127.0.0.1:{free_port()}")
    assert result.status == 3
    assert result.stdout == ""
    assert len(result.lines()) == 1
    assert result.lines()[0].startswith("xfer: cannot reach relay ws://127.0.0.1:")
    assert result.lines()[0].endswith("Is `xfer serve` running there?")
    assert "\x1b[" not in result.stderr  # a file is no terminal: no colour


def test_debug_adds_the_traceback_after_the_line(tmp_path):
    result = xfer(tmp_path, "send", str(tmp_path / "missing.bin"), "--debug")
    assert result.status == 8
    assert result.lines()[0] == f"xfer: {tmp_path / 'missing.bin'}: no such file"
    assert "Traceback (most recent call last)" in result.stderr and "LocalFileError" in result.stderr


def test_json_errors_go_to_the_given_stdout(tmp_path, relay_process):
    src = make_file(tmp_path / "a.txt", 10)
    result = xfer(tmp_path, "send", str(src), "--room", ROOM, "--relay", f"127.0.0.1:{relay_process.port}", "--json")
    assert result.status == 4
    assert result.stderr == ""
    [event] = result.events()
    assert event == {"event": "error", "code": "room-not-found", "message": event["message"], "exit": 4}


def test_relay_comes_from_the_environment_object(tmp_path, relay_process):
    """XFER_RELAY is read from the Environment, not from this process's os.environ."""
    src = make_file(tmp_path / "a.txt", 10)
    variables = {"XFER_RELAY": f"127.0.0.1:{relay_process.port}"}
    result = xfer(tmp_path, "send", str(src), "--room", ROOM, variables=variables)
    assert result.status == 4 and result.lines() == [result.lines()[-1]]
    assert result.lines()[-1].startswith("xfer: room is not open")


def test_usage_errors_and_help_use_the_given_streams(tmp_path):
    result = xfer(tmp_path, "send", "--bogus")
    assert result.status == 2 and result.stdout == ""
    assert re.search(r"No such option:? '?--bogus", result.stderr)  # (click's wording varies by version)
    result = xfer(tmp_path, "send", "--help")
    assert result.status == 0 and result.stderr == ""
    assert "Usage: xfer send" in result.stdout and "XFER_RELAY" in result.stdout
    result = xfer(tmp_path, "receive", "--relay", "127.0.0.1:1")  # stdin is a file: no prompt possible
    assert result.status == 2 and result.lines() == [result.lines()[-1]] and "--yes" in result.stderr


def test_text_from_the_given_stdin_reaches_a_receiver(tmp_path, relay_process, procs):
    relay = f"127.0.0.1:{relay_process.port}"
    receiver = procs(["receive", "--relay", relay, "--yes", "--json", "--dir", "in"], tmp_path, "recv")
    room = receiver.first_event()
    result = xfer(tmp_path, "send", "--text", "-", "--room", room["code"], "--relay", relay, stdin="hello\x1b[31m")
    assert result.status == 0, result.stderr
    assert result.lines()[-1].startswith("Sent the text to ")
    deadline = time.monotonic() + bounded(10)  # the receiver prints it a moment after the relay took it
    while not (texts := [e for e in receiver.events() if e["event"] == "text"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert texts and texts[0]["text"] == "hello\x1b[31m"  # JSON carries it unescaped
    receiver.proc.terminate()


def test_a_transfer_in_process_with_json_on_a_file(tmp_path, relay_process, procs):
    src = make_file(tmp_path / "photo.jpg", 600_000, 3)
    relay = f"127.0.0.1:{relay_process.port}"
    receiver = procs(["receive", "--relay", relay, "--yes", "--json", "--dir", "in"], tmp_path, "recv")
    room = receiver.first_event()
    result = xfer(tmp_path, "send", str(src), "--room", room["code"], "--relay", relay, "--json")
    assert result.status == 0, result.stderr
    kinds = [e["event"] for e in result.events()]
    assert kinds[0] == "joined" and kinds[-1] == "done"
    assert {"offer", "accepted", "file-start", "file-end"} <= set(kinds)
    assert result.stderr == ""
    assert receiver.wait() == 0
    assert sha256_of(tmp_path / "in" / "photo.jpg") == sha256_of(src)


# -- the displays and the error mapping, on real streams ---------------------------------


def pty_environment(variables: dict[str, str]) -> tuple[Environment, int, io.TextIOWrapper]:
    """An environment whose stderr is a real terminal (the slave side of a pty)."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    stream = io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8", write_through=True)
    return Environment.of(io.StringIO(), io.StringIO(), stream, variables), master, stream


def read_all(master: int) -> str:
    import select

    data = b""
    while select.select([master], [], [], 0.2)[0]:
        chunk = os.read(master, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


@pytest.mark.parametrize(
    ("variables", "coloured"), [({"TERM": "xterm"}, True), ({"TERM": "xterm", "NO_COLOR": "1"}, False)]
)
def test_colour_on_a_terminal_unless_no_color(variables, coloured):
    env, master, stream = pty_environment(variables)
    try:
        assert env.stderr_isatty and env.colour is coloured
        display = choose_display(env, json_mode=False, quiet=False, role="send")
        assert isinstance(display, RichDisplay)
        display.error(failure(RoomError("room is not open"), "send"))
        text = read_all(master)
        assert "xfer:" in text and "room is not open" in text
        assert ("\x1b[31m" in text or "\x1b[1;31m" in text) is coloured
    finally:
        stream.close()
        os.close(master)


def test_a_peers_words_in_an_error_are_escaped_and_stay_one_line(tmp_path):
    with open(tmp_path / "err", "w+", encoding="utf-8") as err:
        env = Environment.of(io.StringIO(), io.StringIO(), err, {})
        RichDisplay(env).error(failure(PeerProtocolError("the sender says: [bold]hi[/bold]\n\x1b[2Jgone\u202e"), "x"))
    text = (tmp_path / "err").read_text()
    assert text.count("\n") == 1 and "\x1b" not in text and "\u202e" not in text
    assert text.startswith("xfer: the sender says: [bold]hi[/bold]\\x0a\\x1b[2Jgone\\u202e")


def test_quiet_shows_errors_and_the_room_code_only(tmp_path):
    with open(tmp_path / "err", "w+", encoding="utf-8") as err:
        env = Environment.of(io.StringIO(), io.StringIO(), err, {})
        display = choose_display(env, json_mode=False, quiet=True, role="receive")
        assert isinstance(display, QuietDisplay)
        display.emit("waiting", reason="offer")
        display.emit("warning", message="something")
        display.emit("offer", files=[{"index": 0, "name": "a", "size": 1}], total=1)
        display.error(failure(UsageError("bad option"), "receive"))
    assert (tmp_path / "err").read_text() == "xfer: bad option\n"


def test_json_display_writes_each_event_as_one_line():
    out = io.StringIO()
    display = JsonDisplay(out)
    display.emit("progress", index=0, bytes=5, total_bytes=5)
    display.show(UiEvent("warning", {"message": "ünïcode\nline"}))
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"event": "progress", "index": 0, "bytes": 5, "total_bytes": 5},
        {"event": "warning", "message": "ünïcode\nline"},
    ]


def test_run_command_maps_every_ending_to_a_status(tmp_path):
    env = Environment.of(io.StringIO(), io.StringIO(), io.StringIO(), {})
    seen = []

    class Record:
        def error(self, f):
            seen.append(f)

    def raises(exc):
        def body():
            raise exc

        return body

    assert run_command(lambda: None, Record(), env, role="send") == 0
    assert run_command(raises(RoomError("room is full", "room-full")), Record(), env, role="send") == 4
    assert run_command(raises(KeyboardInterrupt()), Record(), env, role="receive") == EXIT_INTERRUPTED
    assert run_command(raises(ZeroDivisionError("x")), Record(), env, role="send") == EXIT_BUG
    assert [(f.code, f.exit_status) for f in seen] == [("room-full", 4), ("interrupted", 130), ("error", 1)]
    assert "run the same command again to resume" in seen[1].message
    assert seen[2].message == "unexpected error: ZeroDivisionError: x (run with --debug for details)"
    assert env.stderr.getvalue() == ""  # no traceback without --debug
