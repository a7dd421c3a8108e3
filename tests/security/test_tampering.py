"""An active relay in the middle (the wiretap, rewriting what the sender sends): every
change, drop, replay, reorder or moved chunk makes the transfer fail loudly, and no file
gets its final name in the receiver's folder.

Two files go, so that the sender's sealed frames are, in order: 0 ``hi``, 1 ``offer``,
2 ``file-start`` of a.bin, (its chunks), 3 ``file-end`` of a.bin, 4 ``file-start`` of
b.bin, (its chunks), 5 ``file-end`` of b.bin. Most attacks land on a.bin's end, so
that a whole file's bytes have arrived and only its seal can keep it from being saved
(a replay of that end would come after a.bin was rightly saved: the replay is of its
start instead).
"""

from __future__ import annotations

import base64
import json
import struct

import pytest
from through import receive, send, tapped_relay
from wiretap import UP, Frame

from conftest import leftovers, make_file

HELD = 3  # the sealed file-end of a.bin


def _flip_box(data: str) -> str:
    obj = json.loads(data)
    box = bytearray(base64.b64decode(obj["box"]))
    box[len(box) // 2] ^= 0x10
    obj["box"] = base64.b64encode(bytes(box)).decode()
    return json.dumps(obj, separators=(",", ":"))


def _flip_payload(data: bytes) -> bytes:
    frame = bytearray(data)
    frame[28 + 1000] ^= 0x01
    return bytes(frame)


def _move(data: bytes) -> bytes:
    frame = bytearray(data)
    (offset,) = struct.unpack_from("!Q", frame, 20)
    struct.pack_into("!Q", frame, 20, offset + 16)  # the same bytes, claimed 16 bytes further on
    return bytes(frame)


class Attack:
    """Rewrites the sender's outgoing frames: ``sealed[n]`` / ``chunks[n]`` say which."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sealed = 0
        self.chunks = 0
        self.held: list[str | bytes] = []
        self.landed = False  # the attack was made (a test that it failed for this reason)

    def __call__(self, frame: Frame) -> list[str | bytes]:
        if frame.role != "sender" or frame.direction != UP or frame.kind not in ("sealed", "chunk"):
            return [frame.data]
        if frame.kind == "chunk":
            n, self.chunks = self.chunks, self.chunks + 1
            if n == 1 and self.name in ("flip-chunk", "move-chunk"):
                self.landed = True
                assert isinstance(frame.data, bytes)
                return [_flip_payload(frame.data) if self.name == "flip-chunk" else _move(frame.data)]
            return [frame.data]
        n, self.sealed = self.sealed, self.sealed + 1
        data = frame.data
        assert isinstance(data, str)
        out = self._sealed(n, data)
        self.landed = self.landed or out != [data]
        return out

    def _sealed(self, n: int, data: str) -> list[str | bytes]:
        if self.name == "flip-box" and n == HELD:
            return [_flip_box(data)]
        if self.name == "replay" and n == HELD - 1:  # a.bin's file-start, twice: a.bin is not whole yet
            return [data, data]
        if self.name == "drop" and n == HELD:
            return []
        if self.name == "swap" and n == HELD:
            self.held.append(data)
            return []
        if self.name == "swap" and n == HELD + 1:
            return [data, *self.held]
        return [data]


@pytest.mark.parametrize("attack", ["flip-box", "flip-chunk", "replay", "drop", "swap", "move-chunk"])
def test_a_relay_that_tampers_gets_a_loud_failure_and_no_file(tmp_path, procs, attack):
    a = make_file(tmp_path / "a.bin", 2_500_000, 1)  # three chunks: the second one is tampered with
    b = make_file(tmp_path / "b.bin", 300_000, 2)
    out = tmp_path / "out"
    tamper = Attack(attack)
    tap = tapped_relay(procs, tmp_path, tamper)
    try:
        sender = send(procs, tmp_path, tap.url, str(a), str(b), extra=("--peer-timeout", "3"))
        code = sender.first_event()["code"]
        receiver = receive(procs, tmp_path, tap.url, code, out, extra=("--peer-timeout", "3"))
        status = receiver.wait(60)
        sent = sender.wait(60)
    finally:
        tap.__exit__()
    assert status == 9, (status, receiver.stderr, receiver.stdout[-1500:])
    error = receiver.events()[-1]
    assert error["event"] == "error" and error["code"] == "tampered", error
    assert "changed on the way" in error["message"]
    assert sent != 0, sender.stdout[-1500:]
    assert not (out / "a.bin").exists() and not (out / "b.bin").exists()
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []  # hidden partials only
    assert all(name.startswith(".") for name in leftovers(out))
    assert tamper.landed
