"""Every string a peer wrote (reasons, messages, names, texts, device names) reaches the
terminal through one escaping function, ``escape_hostile``, in both directions and in
``--json`` too: no control, bidi or other format character comes out raw (croc's
CVE-2023-43620: a peer's "reason" changed the window title, cleared the screen and drew a
fake "SHA-256 verified" line)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from conftest import bounded, make_file, run_async
from peers import next_of, secure
from xfer.protocol import Cancel, Error, FileInfo, Offer, PeerJoined, Reject
from xfer.protocol.words import parse_code
from xfer.transfer.connection import open_room

# ESC sequences (title, clear screen, cursor up), a C1 CSI, DEL, a bidi override and isolate,
# a zero-width joiner, a line separator and a tag character above U+FFFF
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[1A\x9b2J\x7f ✓ SHA-256 verified \u202egpj.exe\u2066x\u2069\u200d\u2028\U000e0041"
RAW = ["\x1b", "\x07", "\x9b", "\x7f", "\u202e", "\u2066", "\u2069", "\u200d", "\u2028", "\U000e0041"]


def _code(proc, timeout: float = 15):
    deadline = time.monotonic() + bounded(timeout)
    while time.monotonic() < deadline:
        for line in proc.stdout.splitlines():
            event = json.loads(line)
            if event["event"] == "room":
                return parse_code(event["code"])
        if proc.proc.poll() is not None:
            raise AssertionError(f"exited {proc.proc.returncode}: {proc.stderr}")
        time.sleep(0.05)
    raise AssertionError(f"no room event; stderr: {proc.stderr}")


async def _join(port: int, code, role: str):
    inner = await open_room(f"ws://127.0.0.1:{port}/ws", str(code.nameplate), role=role, name=HOSTILE, create=False)
    return await secure(inner, role, code, name=HOSTILE)


def _assert_escaped(proc, *, json_mode: bool) -> None:
    out = proc.out_path.read_bytes().decode("utf-8", "surrogatepass")
    err = proc.err_path.read_bytes().decode("utf-8", "surrogatepass")
    for stream in (out, err):
        assert not any(ch in stream for ch in RAW), repr(stream)
    if json_mode:  # a script still decodes exactly what the peer wrote
        assert any(HOSTILE in text for text in _strings([json.loads(line) for line in out.splitlines()]))
    else:
        assert "\\x1b]0;pwned" in err and "\\x9b2J" in err and "\\u202egpj.exe" in err, err


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [s for item in items for s in _strings(item)]


def _start(procs, tmp_path, port: int, args: list[str], json_mode: bool):
    """``xfer ARGS`` opening a room, and the code it printed (stdout with --json, else stderr)."""
    name = args[0] + ("-json" if json_mode else "")
    proc = procs([*args, "--relay", f"ws://127.0.0.1:{port}", *(["--json"] if json_mode else [])], tmp_path, name)
    deadline = time.monotonic() + bounded(15)
    while time.monotonic() < deadline:
        if json_mode:
            rooms = [e for e in map(json.loads, proc.stdout.splitlines()) if e["event"] == "room"]
            if rooms:
                return proc, parse_code(rooms[0]["code"])
        else:
            for line in proc.stderr.splitlines():
                if line.startswith("Room "):
                    return proc, parse_code(line.split()[1])
        if proc.proc.poll() is not None:
            raise AssertionError(f"exited {proc.proc.returncode}: {proc.stderr}")
        time.sleep(0.05)
    raise AssertionError(f"no code; stderr: {proc.stderr}")


@pytest.mark.parametrize("json_mode", [False, True])
def test_a_receivers_reason_reaches_the_sender_escaped(tmp_path, relay_process, procs, json_mode):
    src = make_file(tmp_path / "a.bin", 1000)
    sender, code = _start(procs, tmp_path, relay_process.port, ["send", str(src)], json_mode)

    async def main():
        r = await _join(relay_process.port, code, "receiver")
        offer = await next_of(r, Offer, timeout=bounded(15))
        await r.send(Reject(to=offer.sender, transfer=offer.transfer, reason=HOSTILE, code="declined"))
        await r.send(Error(to=offer.sender, code="protocol", message=HOSTILE, transfer=offer.transfer))
        await asyncio.sleep(0.5)
        await r.close()

    run_async(main())
    assert sender.wait(30) != 0
    _assert_escaped(sender, json_mode=json_mode)


@pytest.mark.parametrize("json_mode", [False, True])
def test_a_senders_reason_and_names_reach_the_receiver_escaped(tmp_path, relay_process, procs, json_mode):
    receiver, code = _start(
        procs, tmp_path, relay_process.port, ["receive", "--open", "--yes", "--dir", "in"], json_mode
    )

    async def main():
        s = await _join(relay_process.port, code, "sender")
        if not s.peers:
            await next_of(s, PeerJoined, timeout=bounded(15))
        to = next(iter(s.peers))
        await s.send(Offer(to=to, transfer=5, files=(FileInfo(name=HOSTILE, size=4),)))
        await asyncio.sleep(0.5)
        await s.send(Cancel(to=to, transfer=5, reason=HOSTILE))
        await s.send(Error(to=to, code="protocol", message=HOSTILE, transfer=5))
        await asyncio.sleep(0.5)
        await s.close()

    run_async(main())
    assert receiver.wait(30) != 0
    _assert_escaped(receiver, json_mode=json_mode)
