"""Wrong codes, through the installed ``xfer`` and a real relay: the right nameplate
with wrong words fails clearly on the receiver, the sender warns and keeps waiting, and
after three the code is spent: the sender exits and the room is gone, so that even the
right code then finds nothing to take."""

from __future__ import annotations

import json
import re
import time

from through import receive, send, tapped_relay, wait_event

from conftest import bounded, make_file, safe_events
from xfer.protocol.words import wordlist

WRONG_CODE_EXIT = 10  # a wrong or spent code (docs/cli.md)


def _wrong(code: str, attempt: int) -> str:
    """The same nameplate, other words."""
    nameplate, *words = code.split("-")
    others = [w for w in wordlist() if w not in words]
    return "-".join([nameplate, *others[attempt * len(words) : (attempt + 1) * len(words)]])


def test_wrong_words_fail_clearly_and_three_spend_the_code(tmp_path, procs):
    source = make_file(tmp_path / "secret.bin", 50_000, 5)
    tap = tapped_relay(procs, tmp_path)
    try:
        sender = send(procs, tmp_path, tap.url, str(source))
        code = sender.first_event()["code"]
        for attempt in range(3):
            out = tmp_path / f"out{attempt}"
            guesser = receive(procs, tmp_path, tap.url, _wrong(code, attempt), out, name=f"guess{attempt}")
            assert guesser.wait(30) == WRONG_CODE_EXIT, guesser.stderr
            error = safe_events(guesser)[-1]
            assert error["event"] == "error" and error["code"] == "wrong-code", error
            assert "code did not match" in error["message"]
            assert list(out.iterdir()) == []
            if attempt < 2:
                warned = [e for e in safe_events(sender) if e["event"] == "wrong-code"]
                assert len(warned) == attempt + 1 and warned[-1]["attempts"] == attempt + 1, sender.stdout
                assert sender.proc.poll() is None  # still waiting for the right one
        assert sender.wait(20) == WRONG_CODE_EXIT, sender.stderr
        spent = safe_events(sender)[-1]
        assert spent["event"] == "error" and spent["code"] == "code-spent", spent
        assert "3 wrong codes" in spent["message"] and "closed" in spent["message"]

        late = receive(procs, tmp_path, tap.url, code, tmp_path / "late", name="late")
        assert late.wait(30) == 4, late.stderr  # RoomError
        refused = safe_events(late)[-1]
        assert refused["event"] == "error" and "room" in refused["code"], refused
        assert refused["code"] == "room-not-found" and "room is not open" in refused["message"], refused
        assert not (tmp_path / "late" / "secret.bin").exists()
        frames = tap.seen()
    finally:
        tap.__exit__()
    # The sender never sent a byte of the file: no offer to anyone. Its sealed hi goes right
    # behind its tag, before it checks the guesser's (one per guesser, which no wrong code opens).
    assert [f for f in frames if f.kind == "chunk"] == []
    sealed_up = [f for f in frames if f.role == "sender" and f.direction == "up" and f.kind == "sealed"]
    to = [json.loads(f.data)["to"] for f in sealed_up]
    assert len(to) <= 3 and len(set(to)) == len(to), sealed_up


def test_the_right_code_after_a_wrong_one_still_gets_the_file(tmp_path, procs):
    source = make_file(tmp_path / "secret.bin", 50_000, 6)
    tap = tapped_relay(procs, tmp_path)
    try:
        sender = send(procs, tmp_path, tap.url, str(source))
        code = sender.first_event()["code"]
        guesser = receive(procs, tmp_path, tap.url, _wrong(code, 0), tmp_path / "guess", name="guess")
        assert guesser.wait(30) == WRONG_CODE_EXIT, guesser.stderr
        assert wait_event(sender, "wrong-code")["attempts"] == 1
        right = receive(procs, tmp_path, tap.url, code, tmp_path / "out")
        assert right.wait(30) == 0, right.stderr
        assert sender.wait(30) == 0, sender.stderr
    finally:
        tap.__exit__()
    assert (tmp_path / "out" / "secret.bin").read_bytes() == source.read_bytes()


def test_a_person_running_the_sender_is_told_of_a_wrong_code(tmp_path, procs):
    source = make_file(tmp_path / "secret.bin", 50_000, 7)
    tap = tapped_relay(procs, tmp_path)
    try:
        sender = procs(["send", str(source), "--relay", tap.url, "--no-qr", "--keepalive", "1"], tmp_path, "send")
        deadline = time.monotonic() + bounded(15)
        found = None
        while found is None and time.monotonic() < deadline:
            found = re.search(r"\b\d+-[a-z]+-[a-z]+\b", sender.stderr + sender.stdout)
            time.sleep(0.05)
        assert found, sender.stderr
        guesser = receive(procs, tmp_path, tap.url, _wrong(found.group(0), 0), tmp_path / "guess", name="guess")
        assert guesser.wait(30) == WRONG_CODE_EXIT, guesser.stderr
        deadline = time.monotonic() + bounded(5)
        while "wrong code" not in sender.stderr.lower() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sender.proc.poll() is None
    finally:
        tap.__exit__()
    assert "wrong code" in sender.stderr.lower(), sender.stderr
