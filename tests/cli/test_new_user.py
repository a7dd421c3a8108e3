"""The terminal as a new user meets it (issue 16): what people see when they pipe
--json, how a command ends, and ordinary stops that must not look like failures.
Each test runs the installed command, most in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time

import pytest
from test_terminal import terminals  # noqa: F401  (the fixture)

from conftest import bounded, make_file, sha256_of, tmpfs, wait_progress, xfer_cmd

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_json_into_a_pipe_still_shows_the_room_and_ctrl_c_exits_130(tmp_path, relay_process, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    make_file(tmp_path / "data.csv", 50_000, 1)
    send = shlex.join([*xfer_cmd(), "send", "data.csv", "--relay", relay, "--json"])
    line = f"{send} | cat > events.jsonl; exit ${{PIPESTATUS[0]}}"
    sender = terminals("send", ["bash", "-c", line], tmp_path)
    code = sender.wait_for(r"Room\s+([0-9]+-[a-z]+-[a-z]+)").group(1)
    sender.wait_for("On another computer:  xfer receive " + code)
    sender.wait_for("Waiting for a receiver")
    deadline = time.monotonic() + bounded(10)  # (`cat` writes what it reads a moment later)
    while time.monotonic() < deadline and "\n" not in (tmp_path / "events.jsonl").read_text():
        time.sleep(0.05)
    first = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert first["event"] == "room" and first["code"] == code  # the script gets its events too
    sender.keys("C-c")  # the whole pipeline: `cat` goes too, and with it stdout
    assert sender.exit_status() == 130, sender.screen()
    assert "xfer: " in sender.screen()


def test_json_on_the_terminal_itself_is_only_json(tmp_path, relay_process, procs, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    src = make_file(tmp_path / "a.bin", 20_000, 2)
    sender = terminals("send", [*xfer_cmd(), "send", "a.bin", "--relay", relay, "--json"], tmp_path)
    room = json.loads(sender.wait_for(r'\{"event":"room".*\}').group(0))
    receiver = procs(["receive", room["code"], "--relay", relay, "--yes", "--dir", "in"], tmp_path, "recv")
    assert receiver.wait() == 0, receiver.stderr
    assert sender.exit_status() == 0
    lines = [x for x in sender.screen().splitlines() if x.strip()]
    assert all(x.startswith("{") for x in lines), sender.screen()
    assert sha256_of(tmp_path / "in" / "a.bin") == sha256_of(src)


def test_a_text_from_a_sender_with_its_own_relay_ends_when_it_leaves(tmp_path, procs, terminals):
    sender = procs(["send", "--text", "see you at 5", "--host", "127.0.0.1", "--json"], tmp_path, "send")
    room = sender.first_event()
    started = time.monotonic()
    receiver = terminals("recv", [*xfer_cmd(), "receive", room["code"], "--relay", room["relay"]], tmp_path)
    receiver.wait_for(r"see you at 5")
    assert receiver.exit_status(timeout=10) == 0, receiver.screen()
    assert time.monotonic() - started < bounded(8)  # not a minute of reconnecting
    screen = receiver.screen()
    assert re.search(r"sent 1 text and left", screen), screen
    assert "Reconnecting" not in screen and "xfer:" not in screen
    assert sender.wait() == 0


def test_a_text_through_xfer_serve_ends_with_done_in_json(tmp_path, relay_process, procs):
    relay = f"127.0.0.1:{relay_process.port}"
    sender = procs(["send", "--text", "hello", "--relay", relay, "--json"], tmp_path, "send")
    room = sender.first_event()
    receiver = procs(["receive", room["code"], "--relay", relay, "--yes", "--json"], tmp_path, "recv")
    assert sender.wait() == 0, sender.stderr
    assert receiver.wait(bounded(10)) == 0, receiver.stderr
    events = receiver.events()
    assert [e["event"] for e in events][-1] == "done"
    assert events[-1]["texts"] == 1 and events[-1]["files"] == 0


def test_a_built_in_relay_gone_with_its_sender_is_named_as_such(tmp_path, procs):
    make_file(tmp_path / "big.bin", 8_000_000, 3)  # 8 s: the first progress (1 MiB) comes after 1
    args = ["send", "big.bin", "--host", "127.0.0.1", "--limit-rate", "1MB", "--json"]
    sender = procs(args, tmp_path, "send")
    room = sender.first_event()
    receiver = procs(
        ["receive", room["code"], "--relay", room["relay"], "--yes", "--json", "--dir", "in", "--peer-timeout", "4"],
        tmp_path,
        "recv",
    )
    wait_progress(receiver, 100_000)
    sender.proc.terminate()  # SIGTERM: the sender leaves the room, then its relay stops
    assert receiver.wait(bounded(20)) == 5, receiver.stderr
    error = receiver.events()[-1]
    assert error["event"] == "error" and error["code"] == "peer-left"
    assert "reconnecting" in [e["event"] for e in receiver.events()]  # its relay had gone too
    assert "the sender's xfer has quit" in error["message"], error
    assert "xfer serve" not in error["message"]


def test_ctrl_c_on_a_sender_nobody_joined_is_a_calm_stop(tmp_path, relay_process, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    make_file(tmp_path / "a.bin", 1000, 4)
    command = [*xfer_cmd(), "send", "a.bin", "--relay", relay, "--no-qr"]
    sender = terminals("send", command, tmp_path, {"NO_COLOR": "-", "TERM": "xterm-256color"})
    sender.wait_for("Waiting for a receiver")
    sender.keys("C-c")
    assert sender.exit_status() == 130
    assert "xfer: stopped; nobody had joined the room" in sender.screen()
    coloured = sender.screen(escapes=True)
    line = next(x for x in coloured.splitlines() if "nobody had joined" in x)
    assert "\x1b[31m" not in line and "\x1b[1;31m" not in line, repr(line)  # not red: nothing went wrong


def test_ctrl_c_at_accept_is_a_decline_both_sides_hear_at_once(tmp_path, relay_process, procs, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    make_file(tmp_path / "a.bin", 1000, 5)
    sender = procs(["send", "a.bin", "--relay", relay, "--json"], tmp_path, "send")
    room = sender.first_event()
    receiver = terminals("recv", [*xfer_cmd(), "receive", room["code"], "--relay", relay, "--dir", "in"], tmp_path)
    receiver.wait_for(r"Accept\?")
    started = time.monotonic()
    receiver.keys("C-c")
    assert receiver.exit_status() == 130, receiver.screen()
    assert "you declined the offer (Ctrl-C); the sender was told" in receiver.screen()
    assert sender.wait(bounded(10)) == 6, sender.stderr  # at once, not after a minute
    assert time.monotonic() - started < bounded(5)
    assert sender.events()[-1]["code"] == "declined"
    assert not (tmp_path / "in" / "a.bin").exists()


def test_a_failed_receiver_does_not_stop_a_keep_open_sender(tmp_path, relay_process, procs):
    disk = tmp_path / "small-disk"
    with tmpfs(disk, "size=4m"):
        relay = f"127.0.0.1:{relay_process.port}"
        src = make_file(tmp_path / "a.bin", 30_000, 6)
        sender = procs(["send", "a.bin", "--relay", relay, "--keep-open", "--json"], tmp_path, "send")
        code = sender.first_event()["code"]
        short = procs(["receive", code, "--relay", relay, "--yes", "--json", "--dir", str(disk)], tmp_path, "short")
        assert short.wait() == 8, short.stderr  # less free space than the margin xfer leaves
        assert short.events()[-1]["code"] == "no-space"
        time.sleep(0.3 * bounded(1))
        assert sender.proc.poll() is None, sender.stderr  # still serving
        warning = [e for e in sender.events() if e["event"] == "warning"]
        assert warning and "no room" in warning[-1]["message"], sender.events()
        fine = procs(["receive", code, "--relay", relay, "--yes", "--json", "--dir", "in"], tmp_path, "fine")
        assert fine.wait() == 0, fine.stderr
        assert sha256_of(tmp_path / "in" / "a.bin") == sha256_of(src)
        assert sender.proc.poll() is None


def _too_wide(screen: str, width: int) -> list[str]:
    """Lines wider than the terminal (capture-pane -J joins what the terminal wrapped), but
    the command and the link, which xfer never folds so that a copy gets one line."""
    return [x for x in screen.splitlines() if len(x) > width and not x.startswith(("  xfer receive", "  http"))]


@pytest.mark.parametrize("width", [40, 80, 200])
def test_the_screens_of_a_transfer_fit_the_terminal(width, tmp_path, relay_process, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    make_file(tmp_path / "a-rather-long-file-name-for-a-narrow-screen.bin", 999_999, 7)
    make_file(tmp_path / "note.txt", 6, 8)
    names = ["a-rather-long-file-name-for-a-narrow-screen.bin", "note.txt"]
    command = [*xfer_cmd(), "send", *names, "--relay", relay, "--no-qr", "--name", "laptop"]
    sender = terminals(f"send{width}", command, tmp_path, width=width)
    code = sender.wait_for(r"Room\s+([0-9]+-[a-z]+-[a-z]+)").group(1)
    receive = [*xfer_cmd(), "receive", code, "--relay", relay, "--yes", "--dir", "in", "--name", "desk"]
    receiver = terminals(f"recv{width}", receive, tmp_path, width=width)
    assert receiver.exit_status() == 0, receiver.screen()
    assert sender.exit_status() == 0, sender.screen()
    for screen in (sender.screen(), receiver.screen()):
        assert _too_wide(screen, width) == [], screen
        bars = [x for x in screen.splitlines() if "━" in x]
        assert len(bars) == 3, screen  # one line for each file and the total
        assert bars[-1].startswith("Total") and bars[1].startswith("note.txt")
    assert "(expires when everyone leaves)" in sender.screen()  # whole, never cut in two
    # sizes as the offer shows them, in the bars too; 999,999 bytes is 1.0 MB
    assert re.search(r"(?m)^  note\.txt +6 B$", receiver.screen()), receiver.screen()
    assert re.search(r"(?m)^  a-\S+ +1\.0 MB$", receiver.screen()), receiver.screen()
    assert "6/6 B" in sender.screen() and "1.0/1.0 MB" in sender.screen()
    assert "bytes" not in sender.screen() + receiver.screen() and "1000.0" not in sender.screen()


@pytest.mark.parametrize("command", [[], ["send"], ["receive"], ["serve"], ["config"], ["completion"]])
def test_help_fits_40_80_and_200_columns_without_cutting_words(command):
    def help_at(width: int) -> str:
        env = {**os.environ, "COLUMNS": str(width)}
        done = subprocess.run([*xfer_cmd(), *command, "--help"], capture_output=True, text=True, env=env, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def words(text: str) -> list[str]:  # (click may fold after a hyphen)
        return sorted(w for w in re.split(r"\s+|(?<=-)", text) if w)

    wide = words(help_at(200))
    for width in (40, 80, 200):
        text = help_at(width)
        assert [x for x in text.splitlines() if len(x) > width] == [], text
        if command:  # (the list of commands shortens each one's help at a word, with "...")
            assert words(text) == wide  # folded between words only


def run_xfer(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    variables = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([*xfer_cmd(), *args], cwd=cwd, capture_output=True, text=True, env=variables, timeout=30)


def test_a_rate_may_say_per_second(tmp_path):
    make_file(tmp_path / "a.bin", 10)
    done = run_xfer("send", "a.bin", "--limit-rate", "20MB/s", "--relay", "127.0.0.1:1", cwd=tmp_path)
    assert done.returncode == 3, done.stderr  # taken: on to the relay, which is not there
    assert "limit-rate" not in done.stderr


@pytest.mark.parametrize(
    "relay, message",
    [
        ("host:0", "the port is not a number from 1 to 65535"),
        ("ws:/h:1", "write it as ws://HOST:PORT (two slashes)"),
    ],
)
def test_relay_addresses_that_do_not_say_what_they_seem_are_refused(relay, message, tmp_path):
    done = run_xfer("receive", "--open", "--yes", "--relay", relay, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"xfer: cannot use relay address {relay!r}: {message}"


def test_a_read_only_file_system_is_named(tmp_path):
    folder = tmp_path / "ro"
    with tmpfs(folder, "ro,size=1m"):
        done = run_xfer("receive", "--open", "--yes", "--dir", str(folder), "--relay", "127.0.0.1:1", cwd=tmp_path)
    assert done.returncode == 8, done.stderr
    assert done.stderr.strip() == f"xfer: cannot write in {folder}: it is on a read-only file system"


def test_stdout_onto_the_terminal_is_refused(tmp_path, terminals):
    receiver = terminals("recv", [*xfer_cmd(), "receive", "--open", "--stdout", "--relay", "127.0.0.1:1"], tmp_path)
    assert receiver.exit_status() == 2, receiver.screen()
    assert "xfer: --stdout writes the file to standard output, which is this terminal" in receiver.screen()


def _file_started(proc, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + bounded(timeout)
    while not any(e["event"] == "file-start" and e["name"] == name for e in proc.events()):
        assert proc.proc.poll() is None, proc.stderr
        assert time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.05)


@pytest.mark.parametrize("during", ["the first file", "the second file"])
def test_ctrl_c_on_the_sender_leaves_no_hidden_files_at_the_receiver(during, tmp_path, relay_process, procs, terminals):
    """Wherever the sender stops, the receiver keeps what was whole and nothing hidden: no
    partial, and no state of a partial nor of a file already saved (once left behind)."""
    relay = f"127.0.0.1:{relay_process.port}"
    make_file(tmp_path / "big.bin", 3_000_000, 9)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    make_file(tmp_path / "d" / "sub" / "x.bin", 2_000_000, 10)  # 4 s at the rate: time for Ctrl-C
    receiver = procs(["receive", "--open", "--relay", relay, "--yes", "--json", "--dir", "out"], tmp_path, "recv")
    code = receiver.first_event()["code"]
    command = [*xfer_cmd(), "send", "big.bin", "d", "--room", code, "--relay", relay, "--limit-rate", "500KB"]
    sender = terminals("send", command, tmp_path)
    if during == "the first file":
        wait_progress(receiver, 500_000)
    else:
        _file_started(receiver, "d/sub/x.bin")
    sender.keys("C-c")
    assert sender.exit_status() == 130, sender.screen()
    assert receiver.wait(bounded(15)) == 5, receiver.stderr
    out = tmp_path / "out"
    hidden = [str(p.relative_to(out)) for p in out.rglob(".*")]
    assert hidden == [], hidden  # the partial file and every state: all gone
    if during == "the second file":
        assert sha256_of(out / "big.bin") == sha256_of(tmp_path / "big.bin")  # whole, and kept
        assert not (out / "d" / "sub" / "x.bin").exists()


def test_receivers_2_counts_the_receivers_as_they_join(tmp_path, relay_process, procs, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    src = make_file(tmp_path / "a.bin", 20_000, 11)
    command = [*xfer_cmd(), "send", "a.bin", "--relay", relay, "--receivers", "2", "--no-qr"]
    sender = terminals("send", command, tmp_path)
    code = sender.wait_for(r"Room\s+([0-9]+-[a-z]+-[a-z]+)").group(1)
    sender.wait_for("Waiting for 2 receivers")
    one = procs(["receive", code, "--relay", relay, "--yes", "--dir", "one", "--name", "r1"], tmp_path, "r1")
    sender.wait_for(r"✓ r1 \(xfer\) joined \(1 of 2\)")
    two = procs(["receive", code, "--relay", relay, "--yes", "--dir", "two", "--name", "r2"], tmp_path, "r2")
    sender.wait_for(r"✓ r2 \(xfer\) joined \(2 of 2\)")
    assert one.wait() == 0 and two.wait() == 0
    assert sender.exit_status() == 0, sender.screen()
    assert sha256_of(tmp_path / "two" / "a.bin") == sha256_of(src)


def test_the_sender_names_a_stream_from_stdin(tmp_path, relay_process, procs):
    relay = f"127.0.0.1:{relay_process.port}"
    (tmp_path / "in.txt").write_bytes(b"hello from a pipe\n")
    with open(tmp_path / "in.txt", "rb") as stdin:
        args = ["send", "-", "--stdin-name", "note.txt", "--relay", relay, "--json"]
        sender = procs(args, tmp_path, "send", stdin=stdin)
        code = sender.first_event()["code"]
    receiver = procs(["receive", code, "--relay", relay, "--yes", "--json", "--dir", "in"], tmp_path, "recv")
    assert receiver.wait() == 0, receiver.stderr
    assert sender.wait() == 0, sender.stderr
    assert (tmp_path / "in" / "note.txt").read_bytes() == b"hello from a pipe\n"
    assert not (tmp_path / "in" / "stdin").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-", "--stdin-name", "../x"], "--stdin-name takes a plain file name, like backup.tar (not '../x')"),
        (["a.bin", "--stdin-name", "x"], "--stdin-name names standard input: give - among the paths"),
    ],
)
def test_a_stdin_name_that_is_not_a_plain_name_is_a_usage_error(args, message, tmp_path):
    make_file(tmp_path / "a.bin", 10)
    done = run_xfer("send", *args, "--relay", "127.0.0.1:1", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"xfer: {message}"
