"""The installed ``xfer`` command, run as subprocesses the way people and scripts run it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import bounded, free_port, make_file, sha256_of, wait_for_port, xfer_cmd


def xfer(*args, cwd, timeout=30, env=None, stdin=subprocess.DEVNULL):
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    if not env or "XFER_RELAY" not in env:
        full_env.pop("XFER_RELAY", None)
    return subprocess.run(
        xfer_cmd() + list(args),
        cwd=cwd,
        env=full_env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=bounded(timeout),
    )


def assert_one_clear_line(result, code, fragment):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("xfer: "), result.stderr
    assert fragment in lines[-1], result.stderr


def test_send_and_receive_through_xfer_serve(tmp_path, procs, relay_process):
    src = tmp_path / "src"
    src.mkdir()
    files = [make_file(src / "photo.jpg", 3_000_000, 1), make_file(src / "notes.txt", 1234, 2)]
    out = tmp_path / "out"
    relay = f"127.0.0.1:{relay_process.port}"
    receiver = procs(["receive", "--relay", relay, "--yes", "--json", "--dir", str(out)], tmp_path, "recv")
    room = receiver.first_event()
    assert list(room) == ["event", "code", "url", "relay"] and room["event"] == "room"
    assert room["relay"] == f"ws://127.0.0.1:{relay_process.port}/ws"
    nameplate = room["code"].split("-")[0]
    assert re.fullmatch(rf"http://127\.0\.0\.1:{relay_process.port}/#{nameplate}\.[A-Za-z0-9_-]{{43}}", room["url"])
    sender = procs(
        ["send", *map(str, files), "--room", room["code"].lower(), "--relay", room["relay"], "--json"], tmp_path, "send"
    )
    assert sender.wait() == 0, sender.stderr
    assert receiver.wait() == 0, receiver.stderr
    for f in files:
        assert sha256_of(out / f.name) == sha256_of(f)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "photo.jpg"]
    kinds = [e["event"] for e in receiver.events()]
    for kind in ("room", "peer-joined", "offer", "file-start", "progress", "file-end", "done"):
        assert kind in kinds
    ends = [e for e in receiver.events() if e["event"] == "file-end"]
    assert {e["sha256"] for e in ends} == {sha256_of(f) for f in files}
    assert all(os.path.isabs(e["path"]) for e in ends)
    assert [e["event"] for e in sender.events()][-1] == "done"
    assert "code" not in relay_process.stderr.lower() or room["code"] not in relay_process.stderr


def test_embedded_relay_single_command(tmp_path, procs):
    """No relay configured: the sender hosts one; the receiver connects to the same port on 127.0.0.1."""
    src = make_file(tmp_path / "video.mp4", 8_000_000, 5)
    out = tmp_path / "out"
    port = free_port()
    sender = procs(["send", str(src), "--json", "--port", str(port)], tmp_path, "send")
    room = sender.first_event()
    assert room["event"] == "room" and room["relay"].endswith(f":{port}/ws")
    assert "127.0.0.1" not in room["relay"] or True  # a LAN address when the machine has one
    result = xfer(
        "receive",
        "--room",
        room["code"],
        "--relay",
        f"127.0.0.1:{port}",
        "--yes",
        "--dir",
        str(out),
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "SHA-256 verified" in result.stderr
    assert sender.wait() == 0, sender.stderr
    assert sha256_of(out / "video.mp4") == sha256_of(src)


def test_receiver_hosts_and_prints_the_other_command(tmp_path, procs):
    port = free_port()
    receiver = procs(
        ["receive", "--yes", "--port", str(port), "--dir", "in", "--public-url", "http://relay.test:9999"],
        tmp_path,
        "recv",
    )
    deadline = time.monotonic() + bounded(10)
    while "Waiting for" not in receiver.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    text = receiver.stderr
    code = text.split("Room", 1)[1].split()[0]
    assert f"xfer send FILE --room {code} --relay ws://relay.test:9999/ws" in text
    assert f"http://relay.test:9999/#{code.split('-')[0]}." in text
    assert "█" in text or "▀" in text  # the QR code
    src = make_file(tmp_path / "a.txt", 100)
    result = xfer("send", str(src), "--room", code, "--relay", f"ws://127.0.0.1:{port}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Sent 1 file" in result.stderr and "SHA-256 verified" in result.stderr
    assert receiver.wait() == 0
    assert sha256_of(tmp_path / "in" / "a.txt") == sha256_of(src)


def test_relay_unreachable(tmp_path):
    src = make_file(tmp_path / "a.txt", 10)
    result = xfer("send", str(src), "--relay", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert_one_clear_line(result, 3, "cannot reach relay")
    assert "Is `xfer serve` running there?" in result.stderr


def test_relay_from_environment(tmp_path, relay_process):
    src = make_file(tmp_path / "a.txt", 10)
    result = xfer(
        "send",
        str(src),
        "--room",
        "7-guitar-nebula",
        cwd=tmp_path,
        env={"XFER_RELAY": f"127.0.0.1:{relay_process.port}"},
    )
    assert_one_clear_line(result, 4, "room is not open")


def test_room_not_found_json(tmp_path, relay_process):
    src = make_file(tmp_path / "a.txt", 10)
    result = xfer(
        "send",
        str(src),
        "--room",
        "7-guitar-nebula",
        "--relay",
        f"127.0.0.1:{relay_process.port}",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 4
    event = json.loads(result.stdout.splitlines()[-1])
    assert event == {"event": "error", "code": "room-not-found", "message": event["message"], "exit": 4}


def test_bad_inputs_get_usage_errors(tmp_path, relay_process):
    src = make_file(tmp_path / "a.txt", 10)
    assert_one_clear_line(
        xfer("send", str(src), "--room", "nope", "--relay", "127.0.0.1:1", cwd=tmp_path),
        2,
        "a code starts with a number",
    )
    # a typo is caught before any network (the relay at port 1 would refuse), with the likely code
    assert_one_clear_line(
        xfer("receive", "7-gitar-nebula", "--relay", "127.0.0.1:1", "--yes", cwd=tmp_path),
        2,
        "no such word in a code: gitar. Did you mean 7-guitar-nebula?",
    )
    assert_one_clear_line(xfer("send", str(src), "--relay", "ftp://x", cwd=tmp_path), 2, "ws://")
    assert_one_clear_line(xfer("send", str(tmp_path / "missing.bin"), cwd=tmp_path), 8, "no such file")
    # receive cannot ask without a terminal, and says what to do instead.
    assert_one_clear_line(xfer("receive", "--relay", f"127.0.0.1:{relay_process.port}", cwd=tmp_path), 2, "--yes")


def test_receiver_declines_when_told_no_on_a_terminal(tmp_path, relay_process):
    """The prompt path: a real pseudo-terminal answers 'n'."""
    pty = pytest.importorskip("pty")
    src = make_file(tmp_path / "a.txt", 10)
    relay = f"127.0.0.1:{relay_process.port}"
    master, slave = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("XFER_RELAY", None)
    receiver = subprocess.Popen(
        xfer_cmd() + ["receive", "--open", "--relay", relay, "--dir", str(tmp_path / "in"), "--no-qr"],
        cwd=tmp_path,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + bounded(15)
    sender = None
    try:
        while time.monotonic() < deadline:
            import select

            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                seen += os.read(master, 4096)
            text = seen.decode(errors="replace")
            if sender is None and "Room" in text and "On another computer" in text:
                code = re.search(r"\b[0-9]{1,6}(-[a-z]+){2}\b", text).group(0)
                sender = subprocess.Popen(
                    xfer_cmd() + ["send", str(src), "--room", code, "--relay", relay],
                    cwd=tmp_path,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    text=True,
                )
            if "Accept?" in text:
                os.write(master, b"n\n")
                break
        assert "offers 1 file" in seen.decode(errors="replace")
        assert receiver.wait(bounded(15)) == 6
        assert sender is not None
        _, err = sender.communicate(timeout=bounded(15))
        assert sender.returncode == 6 and "declined" in err
        assert not (tmp_path / "in" / "a.txt").exists()
    finally:
        for p in (receiver, sender):
            if p is not None and p.poll() is None:
                p.kill()
        os.close(master)


def test_ctrl_c_on_sender_is_clean(tmp_path, procs):
    src = make_file(tmp_path / "a.txt", 10)
    sender = procs(["send", str(src), "--json", "--port", str(free_port())], tmp_path, "send")
    sender.first_event()
    sender.proc.send_signal(signal.SIGINT)
    assert sender.wait(15) == 130
    assert "Traceback" not in sender.stderr
    assert sender.events()[-1]["event"] == "error"


def test_serve_port_from_environment(tmp_path, procs):
    port = free_port()
    relay = procs(["serve", "--host", "127.0.0.1"], tmp_path, "serve", env={"PORT": str(port)})
    wait_for_port(port)
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        assert json.load(r)["status"] == "ok"
    relay.proc.send_signal(signal.SIGINT)
    assert relay.wait(15) == 0 and "Traceback" not in relay.stderr


def test_version_and_help(tmp_path):
    from xfer import __version__

    result = xfer("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"xfer {__version__}"
    for command in ("send", "receive", "serve"):
        result = xfer(command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "Examples" in result.stdout
        # every value is named for what to give (CODE, URL, PATH...), never by its Python type
        assert not re.search(r"<(str|int|float|list\[.*\]|Path)>", result.stdout), result.stdout
    assert "PATH  Files or folders to send" in xfer("send", "--help", cwd=tmp_path).stdout


def test_speed_column_is_blank_rather_than_a_question_mark():
    """A file sent in one chunk is done before rich measures a speed: no "?" on the first try."""
    from rich.progress import Progress

    from xfer.cli.rich_display import speed_column

    clock = [0.0]
    column = speed_column()
    with Progress(column, disable=True, get_time=lambda: clock[0]) as progress:
        small = progress.add_task("README.md", total=7000)
        progress.update(small, completed=7000)
        big = progress.add_task("video.mp4", total=10_000_000)
        for second in (1, 2, 3):
            clock[0] = float(second)
            progress.update(big, completed=2_000_000 * second)
        tasks = {t.description: t for t in progress.tasks}
        assert column.render(tasks["README.md"]).plain == ""
        assert column.render(tasks["video.mp4"]).plain == "2.0 MB/s"
