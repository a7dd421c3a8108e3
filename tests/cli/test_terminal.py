"""The installed ``xfer`` in a real terminal (tmux): the code prompt with Tab completion,
--verify's question on both sides, and wrong codes as the sender sees them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import bounded, make_file, sha256_of, xfer_cmd
from peers import hostile_home
from xfer.protocol.words import wordlist

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """One tmux session running one command; the screen is read with capture-pane."""

    def __init__(
        self, name: str, command: list[str], cwd: Path, env: dict[str, str] | None = None, *, width: int = 160
    ) -> None:
        """``env`` adds to (or replaces) NO_COLOR=1 and COLUMNS; a value of "-" unsets one."""
        self.name = f"xfer-{os.getpid()}-{name}"
        self.status = cwd / f"{name}.status"
        variables = {"NO_COLOR": "1", "COLUMNS": str(width), **(env or {})}
        unset = " ".join(f"-u {k}" for k, v in variables.items() if v == "-")
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in variables.items() if v != "-")
        line = f"cd {shlex.quote(str(cwd))} && env {unset} {exports} {shlex.join(command)}; echo $? > {self.status}; sleep 60"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", "50", line],
            check=True,
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )

    def screen(self, *, escapes: bool = False) -> str:
        """What the screen shows (``escapes``: with the colours, as escape sequences)."""
        flags = ["-p", "-J", "-S", "-200", *(["-e"] if escapes else [])]
        got = subprocess.run(["tmux", "capture-pane", *flags, "-t", self.name], capture_output=True, text=True)
        return "\n".join(line.rstrip() for line in got.stdout.splitlines())

    def wait_for(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        deadline = time.monotonic() + bounded(timeout)
        while time.monotonic() < deadline:
            found = re.search(pattern, self.screen())
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not on the screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def exit_status(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + bounded(timeout)
        while time.monotonic() < deadline:
            if self.status.exists() and self.status.read_text().strip():
                return int(self.status.read_text())
            time.sleep(0.1)
        raise AssertionError(f"still running:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def terminals():
    opened: list[Terminal] = []

    def open_terminal(*args, **kw) -> Terminal:
        t = Terminal(*args, **kw)
        opened.append(t)
        return t

    yield open_terminal
    for t in opened:
        t.close()


def sender_json(procs, tmp_path: Path, relay: str, *extra: str):
    src = make_file(tmp_path / "a.bin", 40_000, 4)
    sender = procs(["send", str(src), "--relay", relay, "--json", *extra], tmp_path, "send")
    return src, sender, sender.first_event()


def test_the_prompt_completes_the_words_with_tab(tmp_path, relay_process, procs, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    src, sender, room = sender_json(procs, tmp_path, relay)
    nameplate, first, second = room["code"].split("-")
    receiver = terminals("recv", [*xfer_cmd(), "receive", "--relay", relay, "--yes", "--dir", "in"], tmp_path)
    receiver.wait_for("(?m)^Enter the code:$")
    receiver.keys(f"{nameplate}-{first[:3]}", "Tab")
    receiver.wait_for(f"(?m)^Enter the code: {nameplate}-{first}-$")  # the whole word, and on to the next
    receiver.keys(second[:3], "Tab")
    receiver.wait_for(f"(?m)^Enter the code: {room['code']}-$")
    receiver.keys("Enter")
    assert receiver.exit_status() == 0, receiver.screen()
    assert sender.wait() == 0
    assert sha256_of(tmp_path / "in" / "a.bin") == sha256_of(src)


def test_verify_shows_the_same_words_on_both_sides_and_holds_the_offer(tmp_path, relay_process, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    src = make_file(tmp_path / "v.bin", 30_000, 6)
    sender = terminals("send", [*xfer_cmd(), "send", str(src), "--relay", relay, "--verify", "--no-qr"], tmp_path)
    code = sender.wait_for(r"Room\s+([0-9]+-[a-z]+-[a-z]+)").group(1)
    receiver = terminals("recv", [*xfer_cmd(), "receive", code, "--relay", relay, "--verify", "--dir", "in"], tmp_path)
    question = r"Verify: ([a-z]+ [a-z]+ [a-z]+) — do they match on the other side\?"
    theirs = receiver.wait_for(question).group(1)
    ours = sender.wait_for(question).group(1)
    assert theirs == ours
    receiver.keys("y", "Enter")  # the receiver confirms first: it reads what the sender sent so far
    time.sleep(0.5 * bounded(1))
    assert "offers" not in receiver.screen()  # the sender holds its offer until its own yes
    sender.keys("y", "Enter")
    receiver.wait_for("offers 1 file")
    receiver.wait_for(r"Accept\?")
    receiver.keys("y", "Enter")
    assert receiver.exit_status() == 0, receiver.screen()
    assert sender.exit_status() == 0, sender.screen()
    assert sha256_of(tmp_path / "in" / "v.bin") == sha256_of(src)


def test_a_no_to_the_words_ends_with_a_clear_message_and_nothing_sent(tmp_path, relay_process, terminals, procs):
    relay = f"127.0.0.1:{relay_process.port}"
    src = make_file(tmp_path / "n.bin", 30_000, 7)
    sender = terminals("send", [*xfer_cmd(), "send", str(src), "--relay", relay, "--verify", "--no-qr"], tmp_path)
    code = sender.wait_for(r"Room\s+([0-9]+-[a-z]+-[a-z]+)").group(1)
    receiver = procs(["receive", code, "--relay", relay, "--yes", "--json", "--dir", "in"], tmp_path, "recv")
    sender.wait_for("do they match on the other side")
    sender.keys("n", "Enter")
    assert sender.exit_status() == 10
    assert "xfer: the verification words did not match" in sender.screen()
    time.sleep(bounded(1))  # (a receiver with no offer waits on for a sender: it is stopped here)
    receiver.proc.terminate()
    receiver.wait(bounded(15))
    assert not (tmp_path / "in" / "n.bin").exists()
    assert "offer" not in [e["event"] for e in receiver.events()]


def test_wrong_codes_warn_the_sender_and_the_third_spends_the_code(tmp_path, relay_process, procs, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    src = make_file(tmp_path / "w.bin", 1000, 8)
    sender = terminals("send", [*xfer_cmd(), "send", str(src), "--relay", relay, "--no-qr"], tmp_path)
    code = sender.wait_for(r"Room\s+([0-9]+-[a-z]+-[a-z]+)").group(1)
    nameplate, first, second = code.split("-")
    other = next(w for w in wordlist() if w != second)
    wrong = f"{nameplate}-{first}-{other}"
    for attempt in (1, 2, 3):
        result = subprocess.run(
            [*xfer_cmd(), "receive", wrong, "--relay", relay, "--yes", "--json", "--dir", "in"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=bounded(30),
        )
        assert result.returncode == 10, result.stdout + result.stderr
        error = json.loads(result.stdout.splitlines()[-1])
        assert error == {
            "event": "error",
            "code": "wrong-code",
            "message": "the code did not match: check it with the sender",
            "exit": 10,
        }
        if attempt < 3:
            sender.wait_for(f"Someone tried a wrong code \\({attempt} of 3\\)")
    assert sender.exit_status() == 10
    assert "wrong codes were tried; the room is closed" in sender.screen()
    assert not (tmp_path / "in").exists() or not list((tmp_path / "in").iterdir())


def test_the_prompt_stays_off_stdout_when_stdout_is_json(tmp_path, relay_process, procs, terminals):
    relay = f"127.0.0.1:{relay_process.port}"
    src, sender, room = sender_json(procs, tmp_path, relay)
    out = tmp_path / "events.jsonl"
    command = f"{shlex.join([*xfer_cmd(), 'receive', '--relay', relay, '--yes', '--json', '--dir', 'in'])} > {out}"
    receiver = terminals("recv", ["sh", "-c", command], tmp_path)
    receiver.wait_for("(?m)^Enter the code:$")
    receiver.keys(room["code"], "Enter")
    assert receiver.exit_status() == 0, receiver.screen()
    events = [json.loads(line) for line in out.read_text().splitlines()]  # nothing but JSON
    assert events[0]["event"] == "joined" and events[-1]["event"] == "done"
    assert sender.wait() == 0
    assert sha256_of(tmp_path / "in" / "a.bin") == sha256_of(src)


@pytest.mark.parametrize("answer", ["Enter", "y"])
def test_the_question_lists_every_hidden_entry_and_defaults_to_no(tmp_path, relay_process, procs, terminals, answer):
    """25 photos fill the list's 20 lines; the dotfiles after them are still listed by name,
    and the question names them: Enter (no) saves nothing, y saves them all."""
    relay = f"127.0.0.1:{relay_process.port}"
    names = hostile_home(tmp_path)
    sender = procs(["send", *names, "--relay", relay, "--json"], tmp_path / "src", "send")
    code = sender.first_event()["code"]
    receiver = terminals("recv", [*xfer_cmd(), "receive", code, "--relay", relay, "--dir", "home"], tmp_path)
    receiver.wait_for(r"Accept, with the 4 hidden entries listed\? \[y/n\] \(n\)")
    screen = receiver.screen()
    assert "… and 5 more" in screen
    for name in (".bash_login", ".gitconfig", ".ssh ", ".ssh/authorized_keys"):
        assert f"\n  {name}" in screen, screen
    receiver.keys(answer) if answer == "Enter" else receiver.keys(answer, "Enter")
    if answer == "Enter":
        assert receiver.exit_status() == 6, receiver.screen()
        assert not (tmp_path / "home").exists() or list((tmp_path / "home").iterdir()) == []
    else:
        assert receiver.exit_status() == 0, receiver.screen()
        assert (tmp_path / "home" / ".ssh" / "authorized_keys").read_text() == "ssh-ed25519 AAAA evil\n"
