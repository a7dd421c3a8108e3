"""Hostile clients and peers, speaking the protocol directly.

The relay must survive garbage, oversize frames, floods, silent and stalled
clients, and keep serving other rooms; a receiver must write nothing outside its
folder, change nothing that exists, give no unverified file a final name, and keep
memory bounded, whatever a sender claims.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from conftest import make_file, run_async
from peers import (
    Events,
    HostileSender,
    Relay,
    Room,
    _sha,
    closed_with,
    fresh_nameplate,
    listing,
    next_of,
    recv_message,
)
from xfer.errors import IntegrityFailure, LocalFileError, PeerProtocolError
from xfer.protocol import (
    MAX_BINARY_FRAME,
    Accept,
    Ack,
    Error,
    FileEnd,
    FileStart,
    Offer,
    PeerLeft,
    Reject,
    Text,
    Verified,
    Welcome,
    encode_chunk,
    serialize,
)
from xfer.relay import RelayLimits
from xfer.transfer.sender import Sender, check_sources

# -- the relay ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        b"\x00\x01binary garbage",
        "not json",
        '{"type":"text","text":"no hello"}',
        "{}",
        '{"type":"hello","version":"2.0","room":"7KQ2-M9XD-41TR-PZ8H","role":"peer","name":"x"}',
    ],
)
def test_bad_first_message_closes_with_protocol_error(first):
    async def main():
        async with Relay() as relay:
            ws = await relay.raw()
            await ws.send(first)
            reply = await recv_message(ws)
            assert isinstance(reply, Error)
            assert await closed_with(ws) == 4000
            # The relay still serves others.
            other, welcome = await relay.join(fresh_nameplate(), create=True)
            assert isinstance(welcome, Welcome)
            await other.close()

    run_async(main())


def test_peer_breaking_the_protocol_is_dropped_others_go_on():
    async def main():
        room = fresh_nameplate()
        async with Relay() as relay:
            a, wa = await relay.join(room, create=True)
            b, wb = await relay.join(room)
            await recv_message(a)
            # A chunk claiming to come from another peer.
            await b.send(encode_chunk(wa.peer_id, 0, 1, 0, 0, b"spoof"))
            assert await closed_with(b) == 4000
            assert isinstance(await recv_message(a), PeerLeft)
            # A relay-only message type from a peer.
            c, wc = await relay.join(room)
            await recv_message(a)
            await c.send(serialize(Welcome(version="1.0", peer_id=1)))
            assert await closed_with(c) == 4000
            await a.close()

    run_async(main())


def test_oversize_frames_are_refused():
    async def main():
        room = fresh_nameplate()
        async with Relay() as relay:
            a, wa = await relay.join(room, create=True)
            b, _ = await relay.join(room)
            await a.send(json.dumps({"type": "text", "text": "x" * 300_000}))
            assert await closed_with(a) in (1009, 4000)
            await b.send(b"\x01" + b"\x00" * (MAX_BINARY_FRAME + 10))
            assert await closed_with(b) == 1009

    run_async(main())


def test_hello_timeout_and_join_rate_limit():
    async def main():
        async with Relay(RelayLimits(hello_timeout=0.3, joins_per_minute=3)) as relay:
            silent = await relay.raw()
            assert await closed_with(silent) == 4008
            codes = []
            for _ in range(5):
                ws, reply = await relay.join(fresh_nameplate(), create=True)
                codes.append(reply.code if isinstance(reply, Error) else "ok")
                await ws.close()
            assert codes[:3] == ["ok"] * 3 and codes[3:] == ["rate-limited"] * 2

    run_async(main())


def test_rooms_per_address_cap():
    async def main():
        async with Relay(RelayLimits(max_rooms_per_address=2)) as relay:
            held = []
            for _ in range(2):
                ws, reply = await relay.join(fresh_nameplate(), create=True)
                assert isinstance(reply, Welcome)
                held.append(ws)
            ws, reply = await relay.join(fresh_nameplate(), create=True)
            assert isinstance(reply, Error) and reply.code == "too-many-rooms"
            await held[0].close()
            await asyncio.sleep(0.2)
            ws, reply = await relay.join(fresh_nameplate(), create=True)
            assert isinstance(reply, Welcome)  # the closed room freed its place

    run_async(main())


def test_unknown_message_type_after_hello_drops_only_that_peer():
    async def main():
        room = fresh_nameplate()
        async with Relay() as relay:
            a, _ = await relay.join(room, create=True)
            b, _ = await relay.join(room)
            await recv_message(a)
            await b.send('{"type":"format-disk","to":1}')
            reply = await recv_message(b)
            assert isinstance(reply, Error) and reply.code == "unknown-type"
            assert await closed_with(b) == 4000
            assert isinstance(await recv_message(a), PeerLeft)
            await a.close()

    run_async(main())


def test_peers_cannot_reach_other_rooms():
    async def main():
        async with Relay() as relay:
            a, wa = await relay.join(fresh_nameplate(), create=True)
            b, wb = await relay.join(fresh_nameplate(), create=True)
            await b.send(serialize(Text(text="psst", to=wa.peer_id)))
            reply = await recv_message(b)
            assert isinstance(reply, Error) and reply.code == "no-such-peer"
            await b.send(encode_chunk(wb.peer_id, wa.peer_id, 1, 0, 0, b"data"))
            assert isinstance(await recv_message(b), Error)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(a.recv(), 0.5)  # nothing crossed over
            await a.close(), await b.close()

    run_async(main())


@pytest.mark.parametrize("files", [10_001, 100_000])
def test_offer_of_too_many_files_is_refused_by_the_relay(files):
    async def main():
        room = fresh_nameplate()
        async with Relay() as relay:
            a, _ = await relay.join(room, create=True)
            b, wb = await relay.join(room)
            await recv_message(a)
            offer = {
                "type": "offer",
                "transfer": 1,
                "to": wb.peer_id,
                "files": [{"name": f"f{i}", "size": 1} for i in range(files)],
            }
            await a.send(json.dumps(offer))
            assert await closed_with(a) in (4000, 1009)  # refused by the protocol, or as a frame too large
            assert isinstance(await recv_message(b), PeerLeft)  # the receiver saw no offer, only the sender go
            await b.close()

    run_async(main())


def test_connections_that_never_finish_the_handshake_are_closed():
    async def main():
        async with Relay(RelayLimits(handshake_timeout=0.5)) as relay:
            port = relay.server.port
            silent = await asyncio.open_connection("127.0.0.1", port)
            slow = await asyncio.open_connection("127.0.0.1", port)
            slow[1].write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # headers that never end
            for reader, _ in (silent, slow):
                assert await asyncio.wait_for(reader.read(100), 5) == b""  # closed by the relay
            assert len(relay.server.server.server_state.connections) == 0
            ws, welcome = await relay.join(fresh_nameplate(), create=True)
            assert isinstance(welcome, Welcome)
            await ws.close()

    run_async(main())


def test_a_peer_that_stops_reading_is_dropped_and_others_go_on():
    """A receiver that stops reading fills its buffers; the relay drops it after the
    send timeout, the sender is told, and another room never notices."""

    async def main():
        async with Relay(RelayLimits(send_timeout=1.0)) as relay:
            room = fresh_nameplate()
            sender, ws_ = await relay.join(room, create=True)
            stuck, w_stuck = await relay.join(room)  # never reads again
            await recv_message(sender)
            other_room = fresh_nameplate()
            x, _ = await relay.join(other_room, create=True)
            y, wy = await relay.join(other_room)
            await recv_message(x)

            async def flood():
                payload = b"\0" * (1 << 20)
                for offset in range(0, 512 << 20, 1 << 20):  # bounded: 512 MiB at most
                    await sender.send(encode_chunk(ws_.peer_id, w_stuck.peer_id, 1, 0, offset, payload))

            flooding = asyncio.create_task(flood())
            loop = asyncio.get_running_loop()
            worst = 0.0
            for _ in range(20):  # the other room keeps its pace during the stall
                started = loop.time()
                await x.send(serialize(Text(text="ping", to=wy.peer_id)))
                await recv_message(y)
                worst = max(worst, loop.time() - started)
                await asyncio.sleep(0.1)
            left = None
            while left is None:
                message = await recv_message(sender, timeout=10)
                left = message if isinstance(message, PeerLeft) else None
            assert left.peer_id == w_stuck.peer_id
            assert worst < 0.5
            flooding.cancel()
            # the flooder and the stuck peer are cut (a closing handshake behind megabytes of
            # unread frames waits out websockets' 10 s); the other room closes cleanly
            for ws in (sender, stuck):
                ws.transport.abort()
            for ws in (x, y):
                await ws.close()

    run_async(main(), timeout=60)


# -- a receiver facing a hostile sender -------------------------------------------------------


def test_hash_mismatch_leaves_no_file(tmp_path):
    async def main():
        async with Room() as room:
            h = HostileSender(room)
            assert isinstance(await h.offer([("report.pdf", 5)], tmp_path), Accept)
            await h.start(0)
            await h.chunk(0, 0, b"hello")
            await h.end(0, 5, _sha(b"HELLO"))
            error = await next_of(h.conn, Error)
            return error, await h.outcome()

    error, result = run_async(main())
    assert error.code == "hash-mismatch"
    assert isinstance(result, IntegrityFailure) and "report.pdf" in str(result)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "case",
    [
        "more-than-offered",
        "gap",
        "overlap",
        "unknown-file",
        "fewer-than-offered",
        "chunk-before-start",
        "file-start-at-an-offset-never-offered",
    ],
)
def test_lying_sizes_and_offsets_are_refused(tmp_path, case):
    async def main():
        async with Room() as room:
            h = HostileSender(room)
            await h.offer([("a.bin", 8)], tmp_path)
            if case == "file-start-at-an-offset-never-offered":
                await h.conn.send(FileStart(to=h.to, transfer=77, index=0, offset=4))
            elif case != "chunk-before-start":
                await h.start(0)
            if case == "more-than-offered":
                await h.chunk(0, 0, b"x" * 9)
            elif case == "gap":
                await h.chunk(0, 4, b"xxxx")
            elif case == "overlap":
                await h.chunk(0, 0, b"xxxx")
                await h.chunk(0, 2, b"xxxx")
            elif case == "unknown-file":
                await h.chunk(3, 0, b"xxxx")
            elif case == "fewer-than-offered":
                await h.chunk(0, 0, b"xxxx")
                await h.end(0, 8, _sha(b"xxxx"))
            elif case == "chunk-before-start":
                await h.chunk(0, 0, b"xxxx")
            error = await next_of(h.conn, Error)
            return error, await h.outcome()

    error, result = run_async(main())
    assert error.code == "protocol"
    assert isinstance(result, PeerProtocolError)
    assert listing(tmp_path) == []


HOSTILE_NAMES = [
    "../../escape.txt",
    "/etc/passwd",
    "C:\\Windows\\evil.dll",
    "\\\\server\\share\\unc.txt",
    "\x1b]8;;http://x\x07link\x1b]8;;\x07.txt",
    "CON",
    "trailing. . ",
    "a\x00b.txt",
    "..",
    "sub/../../up",
]


def test_hostile_names_stay_inside_the_folder(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    os.symlink(outside / "keep", folder / "escape.txt")  # planted symlinks where names would land
    os.symlink(outside, folder / "etc")

    async def main():
        async with Room() as room:
            h = HostileSender(room)
            await h.offer([(n, 3) for n in HOSTILE_NAMES], folder, overwrite=True)
            for i in range(len(HOSTILE_NAMES)):
                await h.start(i)
                await h.chunk(i, 0, b"bad")
                await h.end(i, 3, _sha(b"bad"))
                await next_of(h.conn, Verified)
            return await h.outcome()

    summary = run_async(main())
    assert summary["files"] == len(HOSTILE_NAMES)
    assert (outside / "keep").read_text() == "keep" and listing(outside) == ["keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox", "outside"]
    for entry in summary["saved"]:
        path = Path(entry["path"])
        assert folder.resolve() in path.parents and path.read_bytes() == b"bad"
        assert not any(c in part for part in path.relative_to(folder.resolve()).parts for c in "\\\x00\x1b\x07")
        assert not any(p.is_symlink() for p in path.parents)
    # overwrite replaced the planted file symlink itself, never what it points to; the folder symlink was not entered
    assert not (folder / "escape.txt").is_symlink() and (folder / "escape.txt").read_bytes() == b"bad"
    assert os.readlink(folder / "etc") == str(outside) and (folder / "etc (1)" / "passwd").read_bytes() == b"bad"


def test_offer_larger_than_free_space_is_refused(tmp_path):
    async def main():
        async with Room() as room:
            h = HostileSender(room)
            answer = await h.offer([("huge.iso", 2**52)], tmp_path)
            return answer, await h.outcome()

    answer, result = run_async(main())
    assert isinstance(answer, Reject) and answer.code == "no-space"
    assert isinstance(result, LocalFileError) and "not enough space" in str(result)
    assert listing(tmp_path) == []


def test_chunks_from_a_third_peer_or_of_an_unoffered_transfer_are_ignored(tmp_path):
    """Only the peer whose offer was accepted may write into the receiver's files, and
    only chunks of a transfer it offered (protocol 2.0: no content key, nothing opens)."""

    async def main():
        async with Room() as room:
            h = HostileSender(room)
            await h.offer([("a.txt", 4)], tmp_path)
            await h.start(0)
            intruder = await room.join("sender")
            # in clear, as no sealed chunk of its own could be: no key of 77 is its
            await intruder.inner.send_frame(encode_chunk(intruder.peer_id, h.to, 77, 0, 0, b"EVIL"))
            # and the sender's own link, for a transfer never offered: no key to open it
            await h.conn.inner.send_frame(encode_chunk(h.conn.peer_id, h.to, 78, 0, 0, b"EVIL"))
            await asyncio.sleep(0.2)
            await h.chunk(0, 0, b"good")
            await h.end(0, 4, _sha(b"good"))
            return await h.outcome()

    summary = run_async(main())
    assert (tmp_path / "a.txt").read_bytes() == b"good" and summary["files"] == 1


# -- hostile or unlucky receivers: the sender ends with the right error --------------------------


async def _sender_against(room, src, reply):
    """A real sender; a raw receiver that accepts, takes the data, then answers with ``reply``."""
    s = await room.join("sender")
    r = await room.join("receiver")
    task = asyncio.create_task(Sender(s, check_sources([src]), Events()).run())
    offer = await next_of(r, Offer)
    await reply(r, offer)
    try:
        return await asyncio.wait_for(task, 10)
    except Exception as exc:
        return exc


def test_sender_reports_a_hash_mismatch(tmp_path):
    src = make_file(tmp_path / "a.bin", 1000)

    async def reply(r, offer):
        await r.send(Accept(to=offer.sender, transfer=offer.transfer))
        await next_of(r, FileEnd)
        await r.send(Error(to=offer.sender, code="hash-mismatch", message="no", transfer=offer.transfer, index=0))

    async def main():
        async with Room() as room:
            return await _sender_against(room, src, reply)

    result = run_async(main())
    assert isinstance(result, IntegrityFailure) and "a.bin" in str(result) and result.exit_code == 7


def test_sender_refuses_a_verification_with_the_wrong_hash(tmp_path):
    src = make_file(tmp_path / "a.bin", 1000)

    async def reply(r, offer):
        await r.send(Accept(to=offer.sender, transfer=offer.transfer))
        await next_of(r, FileEnd)
        await r.send(Ack(to=offer.sender, transfer=offer.transfer, bytes=1000))
        await r.send(Verified(to=offer.sender, transfer=offer.transfer, index=0, sha256="0" * 64))

    async def main():
        async with Room() as room:
            return await _sender_against(room, src, reply)

    assert isinstance(run_async(main()), IntegrityFailure)


def test_sender_hears_that_the_receiver_has_no_space(tmp_path):
    src = make_file(tmp_path / "a.bin", 1000)

    async def reply(r, offer):
        await r.send(Reject(to=offer.sender, transfer=offer.transfer, code="no-space", reason="needs 1 kB, 0 B free"))

    async def main():
        async with Room() as room:
            return await _sender_against(room, src, reply)

    result = run_async(main())
    assert isinstance(result, LocalFileError) and result.code == "no-space" and "0 B free" in str(result)


def test_thousands_of_resume_points_for_one_file_end_that_receiver_at_once(tmp_path):
    """Issue 13: 9,000 resume points in one accept made the sender hash its file's prefixes
    for minutes. An accept names each file once at most: the sender refuses this one as a
    broken protocol before it reads a byte of its file. (5,000: sealed, 9,000 no longer fit
    in one control frame, which the relay refuses by itself.)"""
    import time

    from xfer.protocol import ResumePoint

    src = make_file(tmp_path / "a.bin", 64_000_000, 3)
    points = tuple(ResumePoint(index=0, offset=n * 7_000, sha256="a" * 64) for n in range(1, 5_001))

    async def reply(r, offer):
        accept = Accept(to=offer.sender, transfer=offer.transfer)
        object.__setattr__(accept, "resume", points)  # past the checks of our own messages
        await r.send(accept)

    async def main():
        async with Room() as room:
            started = time.monotonic()
            result = await _sender_against(room, src, reply)
            return result, time.monotonic() - started

    result, seconds = run_async(main())
    assert isinstance(result, PeerProtocolError), result
    assert "accept.resume: more than 1 point(s) for file 0" in str(result)
    assert seconds < 5


def test_sender_rejects_acks_for_bytes_never_sent(tmp_path):
    src = make_file(tmp_path / "a.bin", 10)

    async def reply(r, offer):
        await r.send(Accept(to=offer.sender, transfer=offer.transfer))
        await r.send(Ack(to=offer.sender, transfer=offer.transfer, bytes=10**9))

    async def main():
        async with Room() as room:
            return await _sender_against(room, src, reply)

    assert isinstance(run_async(main()), PeerProtocolError)


def test_a_peer_closed_by_the_relay_hears_why_and_does_not_reconnect():
    async def main():
        async with Room() as room:
            conn = await room.join("sender")
            await conn.inner.ws.send("this is not JSON")
            with pytest.raises(PeerProtocolError, match="the relay closed the connection"):
                while True:
                    await asyncio.wait_for(conn.recv(), 5)

    run_async(main())
