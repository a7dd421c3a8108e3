"""`xfer send --text`: a line of text into a room, printed by `xfer receive` (and the page)."""

from __future__ import annotations

import subprocess
import time

from conftest import bounded, xfer_cmd


def _events_until(proc, event: str, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + bounded(timeout)
    while time.monotonic() < deadline:
        events = proc.events() if proc.stdout.endswith("\n") else []
        if any(e["event"] == event for e in events):
            return events
        time.sleep(0.05)
    raise AssertionError(f"no {event} event; stdout: {proc.stdout} stderr: {proc.stderr}")


def test_send_text_reaches_receive(tmp_path, procs, relay_process):
    relay = f"ws://127.0.0.1:{relay_process.port}"
    receiver = procs(["receive", "--relay", relay, "--yes", "--json", "--dir", "out"], tmp_path, "receive")
    code = receiver.first_event()["code"]
    hostile = "hi \x1b[31mred\x1b[0m [bold]x[/bold] ✓"
    sender = procs(["send", "--text", hostile, "--room", code, "--relay", relay, "--json"], tmp_path, "send")
    assert sender.wait(20) == 0, sender.stderr
    assert [e for e in sender.events() if e["event"] == "text-sent"][0]["to"][0]["role"] == "receiver"
    texts = [e for e in _events_until(receiver, "text") if e["event"] == "text"]
    assert texts[0]["text"] == hostile

    piped = subprocess.run(
        xfer_cmd() + ["send", "--text", "-", "--room", code, "--relay", relay],
        input="from stdin\n",
        capture_output=True,
        text=True,
        timeout=bounded(20),
        cwd=tmp_path,
    )
    assert piped.returncode == 0, piped.stderr
    assert "Sent the text to" in piped.stderr
    deadline = time.monotonic() + bounded(10)
    while time.monotonic() < deadline and "from stdin" not in receiver.stdout:
        time.sleep(0.05)
    assert any(e.get("text") == "from stdin" for e in receiver.events())


def test_send_text_usage_errors(tmp_path, relay_process):
    relay = f"ws://127.0.0.1:{relay_process.port}"
    for args, message in (
        (["send", "--relay", relay], "nothing to send"),
        (["send", "a.txt", "--text", "x", "--relay", relay], "not both"),
        (["send", "--text", "", "--relay", relay], "empty"),
    ):
        done = subprocess.run(
            xfer_cmd() + args,
            capture_output=True,
            text=True,
            timeout=bounded(20),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)


def test_send_text_into_a_room_nobody_opened(tmp_path, relay_process):
    relay = f"ws://127.0.0.1:{relay_process.port}"
    done = subprocess.run(
        xfer_cmd() + ["send", "--text", "x", "--room", "7-guitar-nebula", "--relay", relay],
        capture_output=True,
        text=True,
        timeout=bounded(20),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0 and "not open" in done.stderr
