"""A passive observer between each peer and a real relay (``xfer serve``) reads nothing
but the nameplate: no file name, no content, no text, no device name, no code word, in
any form it could decode (raw, JSON-escaped, base64)."""

from __future__ import annotations

import base64
import json

from through import RECEIVER_NAME, SENDER_NAME, receive, send, tapped_relay, wait_event
from wiretap import Frame, blocks_of, holds_a_block, readings

from conftest import make_file, sha256_of
from xfer.protocol.frames import DEFAULT_CHUNK_SIZE

FILE_NAME = "Quarterly-Merger-Plans-Xylophone.bin"
PHRASE = "the eagle lands at Pier 39 — bring the umbrella"


def _needles(code: str) -> list[str]:
    """What the relay may not read. The words count alone and together; the nameplate
    (what the relay routes on) is the one part of the code it may see."""
    nameplate, *words = code.split("-")
    return [FILE_NAME, FILE_NAME.rsplit(".", 1)[0], PHRASE, SENDER_NAME, RECEIVER_NAME, "-".join(words), *words]


def _leaks(frames, needles: list[str], blocks: set[bytes]) -> list[str]:
    found: dict[str, None] = {}  # in order, once each
    for n, frame in enumerate(frames):
        where = f"frame {n}, {frame.kind} ({frame.direction}, {frame.role})"
        binary = isinstance(frame.data, bytes)
        for reading in readings(frame.data):
            for needle in needles:
                # A short word turns up by chance in a megabyte of ciphertext (a 3-letter
                # one about once in 16 MB): in chunk frames only needles of 6 bytes or more.
                if binary and len(needle.encode()) < 6:
                    continue
                for form in {needle, json.dumps(needle)[1:-1]}:
                    if form.encode() in reading:
                        found[f"{needle!r} in {where}"] = None
            if holds_a_block(reading, blocks):
                found[f"file content in {where}"] = None
    return list(found)


def test_a_passive_relay_reads_no_name_content_text_or_code(tmp_path, procs):
    source = make_file(tmp_path / FILE_NAME, 2 * DEFAULT_CHUNK_SIZE + 500_000, 41)  # three chunks
    out, text_out = tmp_path / "out", tmp_path / "text-out"
    tap = tapped_relay(procs, tmp_path)
    try:
        sender = send(procs, tmp_path, tap.url, str(source))
        code = sender.first_event()["code"]
        receiver = receive(procs, tmp_path, tap.url, code, out)
        assert receiver.wait(60) == 0, receiver.stderr
        assert sender.wait(30) == 0, sender.stderr
        texter = send(procs, tmp_path, tap.url, name="send-text", extra=("--text", PHRASE))
        text_code = texter.first_event()["code"]
        reader = receive(procs, tmp_path, tap.url, text_code, text_out, name="recv-text")
        assert texter.wait(30) == 0, texter.stderr
        wait_event(reader, "text")  # it then waits for more, as 1.0 did: stopped at the end
        frames = tap.seen()
    finally:
        tap.__exit__()

    # Both arrived, and each side knew the other by name: the names did travel.
    assert sha256_of(out / FILE_NAME) == sha256_of(source)
    assert wait_event(reader, "text")["text"] == PHRASE
    assert SENDER_NAME in receiver.stdout and RECEIVER_NAME in sender.stdout
    kinds = [f.kind for f in frames]
    assert kinds.count("chunk") >= 2 * 3 and "sealed" in kinds  # it saw the transfer go by, both ways

    content = source.read_bytes()
    needles = _needles(code) + _needles(text_code)[-3:]
    assert _leaks(frames, needles, blocks_of(content)) == []
    # The observer is not blind: the same check finds each of them sent in clear.
    clear = [
        Frame(0, "sender", "up", json.dumps({"type": "offer", "name": FILE_NAME})),
        Frame(0, "sender", "up", json.dumps({"type": "text", "text": PHRASE})),  # JSON-escaped: \u2014
        Frame(0, "sender", "up", json.dumps({"box": base64.b64encode(b"x" + SENDER_NAME.encode()).decode()})),
        Frame(0, "sender", "up", b"\x01" + content[1001:1033]),
        Frame(0, "sender", "up", json.dumps({"box": base64.b64encode(content[7:80]).decode()})),
        Frame(0, "sender", "up", json.dumps({"box": base64.urlsafe_b64encode(content[9:90]).decode()})),
        Frame(0, "receiver", "up", json.dumps({"type": "hi", "name": RECEIVER_NAME, "code": code})),
    ]
    found = _leaks(clear, needles, blocks_of(content))
    for needle in (FILE_NAME, PHRASE, SENDER_NAME, RECEIVER_NAME, *code.split("-")[1:]):
        assert any(repr(needle) in f for f in found), (needle, found)
    assert sum("file content" in f for f in found) == 3, found
