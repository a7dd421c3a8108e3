"""Whoever knows only the nameplate (the relay, Redis, a LAN observer of plain ``ws://``)
can join the room but gets nothing: a raw client joins it as a receiver beside a real
``xfer send`` that waits, and records everything that comes for a few seconds."""

from __future__ import annotations

import asyncio
import json
import time

from through import SENDER_NAME, receive, send
from websockets.asyncio.client import connect

from conftest import bounded, free_port, make_file, run_async, safe_events, serve
from xfer.protocol import MAX_BINARY_FRAME, PROTOCOL_VERSION, Hello, serialize

FILE_NAME = "Payroll-Nameplate-Only.bin"


async def _listen(ws, seconds: float) -> list[str | bytes]:
    got: list[str | bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bounded(seconds)
    while (left := deadline - loop.time()) > 0:
        try:
            got.append(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
    return got


async def _intrude(url: str, nameplate: str) -> tuple[list[str | bytes], list[str | bytes]]:
    """Join as a receiver knowing only the nameplate; listen; then ask in clear, as a
    1.0 receiver would, for what a receiver gets, and listen again."""
    async with connect(url, compression=None, max_size=MAX_BINARY_FRAME) as ws:
        hello = Hello(version=PROTOCOL_VERSION, room=nameplate, role="receiver", name="", create=False)
        await ws.send(serialize(hello))
        first = await _listen(ws, 3)
        welcome = json.loads(first[0])
        assert welcome["type"] == "welcome", welcome
        senders = [p["id"] for p in welcome["peers"] if p["role"] == "sender"]
        assert len(senders) == 1
        to = senders[0]
        for message in (
            {"type": "hi", "to": to, "name": "intruder"},
            {"type": "accept", "to": to, "transfer": 1},
            {"type": "subscribe", "to": to, "transfer": 1},
        ):
            await ws.send(json.dumps(message))
        return first, await _listen(ws, 2)


def test_a_nameplate_only_join_gets_no_offer_no_name_no_chunk(tmp_path, procs):
    source = make_file(tmp_path / FILE_NAME, 200_000, 9)
    port = free_port()
    serve(procs, tmp_path, port)
    url = f"ws://127.0.0.1:{port}/ws"
    sender = send(procs, tmp_path, url, str(source))
    code = sender.first_event()["code"]
    nameplate = code.split("-")[0]

    first, second = run_async(_intrude(url, nameplate), timeout=30)

    got = first + second
    assert all(isinstance(frame, str) for frame in got)  # not one chunk
    kinds = [json.loads(frame)["type"] for frame in got]
    assert kinds[0] == "welcome" and set(kinds[1:]) <= {"pake", "peer-left", "error"}, kinds
    assert kinds.count("pake") == 1  # the sender offered a key exchange, and that is all
    text = "".join(got)
    for secret in (FILE_NAME, SENDER_NAME, *code.split("-")[1:]):
        assert secret not in text
    assert "offer" not in kinds and "sealed" not in kinds


def test_the_sender_outlives_an_intruder_and_the_right_receiver_still_gets_the_file(tmp_path, procs):
    """Clear messages from a peer that never made keys are that peer's fault: the sender
    ignores them (or drops that peer) and keeps waiting for the code's owner."""
    source = make_file(tmp_path / FILE_NAME, 200_000, 10)
    port = free_port()
    serve(procs, tmp_path, port)
    url = f"ws://127.0.0.1:{port}/ws"
    sender = send(procs, tmp_path, url, str(source))
    code = sender.first_event()["code"]
    run_async(_intrude(url, code.split("-")[0]), timeout=30)
    time.sleep(0.3)
    assert sender.proc.poll() is None, safe_events(sender)[-1:]
    receiver = receive(procs, tmp_path, url, code, tmp_path / "out")
    assert receiver.wait(30) == 0, receiver.stderr
    assert sender.wait(30) == 0, sender.stderr
    assert (tmp_path / "out" / FILE_NAME).read_bytes() == source.read_bytes()
