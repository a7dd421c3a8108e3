"""The relay, with real WebSocket clients against a relay on a loopback port 0."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import pytest
from websockets.asyncio.client import connect

from conftest import run_async
from peers import PROTOCOL_VERSION, Relay, closed_with, fresh_nameplate, recv_message
from xfer.protocol import (
    Error,
    Hello,
    PeerJoined,
    PeerLeft,
    Text,
    Welcome,
    encode_chunk,
    parse_chunk,
    parse_message,
    serialize,
)
from xfer.protocol.message_keys import Subscribe, Unsubscribe
from xfer.relay import RelayLimits


def test_membership_routing_and_from_stamping():
    async def main():
        async with Relay() as relay:
            a, wa = await relay.join("", "sender", "a", create=True)
            assert isinstance(wa, Welcome) and wa.peers == () and wa.room == "1"
            room = wa.room
            # Compression stays off even when a client offers it: chunks are binary, deflate costs more than it saves.
            offering = await connect(relay.url)  # websockets offers permessage-deflate by default
            assert "Sec-WebSocket-Extensions" not in offering.response.headers
            await offering.close()
            b, wb = await relay.join(room, "receiver", "b")
            assert [p.id for p in wb.peers] == [wa.peer_id] and wb.room == room
            joined = await recv_message(a)
            assert isinstance(joined, PeerJoined) and joined.peer.id == wb.peer_id and joined.peer.name == "b"
            c, wc = await relay.join(room, "receiver", "c")
            await recv_message(a), await recv_message(b)  # c joined

            # A message to one peer reaches only that peer, with "from" set by the relay (a lie is overwritten).
            await a.send(json.dumps({"type": "text", "text": "for b", "to": wb.peer_id, "from": wc.peer_id}))
            got = await recv_message(b)
            assert got == Text(text="for b", to=wb.peer_id, sender=wa.peer_id)
            # A message without "to" reaches everyone else.
            await a.send(serialize(Text(text="all")))
            assert (await recv_message(b)).text == "all" and (await recv_message(c)).text == "all"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(c.recv(), 0.3)  # c saw nothing of "for b" (it got "all" only)

            # Chunks are forwarded untouched to the named peer.
            frame = encode_chunk(wa.peer_id, wc.peer_id, 9, 0, 0, b"data")
            await a.send(frame)
            chunk = parse_chunk(await asyncio.wait_for(c.recv(), 5))
            assert (chunk.sender, bytes(chunk.payload)) == (wa.peer_id, b"data")

            # To a peer that is not in the room: an error back, the connection stays.
            await a.send(serialize(Text(text="x", to=12345)))
            err = await recv_message(a)
            assert isinstance(err, Error) and err.code == "no-such-peer"

            await b.close()
            left = await recv_message(a)
            assert left == PeerLeft(peer_id=wb.peer_id)
            assert relay.server.hub.peer_count == 2
            for ws in (a, c):
                await ws.close()
            await asyncio.sleep(0.2)
            assert relay.server.hub.rooms == {}

    run_async(main())


def test_room_not_found_and_room_full():
    async def main():
        async with Relay(RelayLimits(max_peers_per_room=2)) as relay:
            ws, reply = await relay.join(fresh_nameplate(), create=False)
            assert isinstance(reply, Error) and reply.code == "room-not-found"
            assert await closed_with(ws) == 4004
            room = fresh_nameplate()
            a, wa = await relay.join(room, create=True)
            assert isinstance(wa, Welcome) and wa.room == room  # the nameplate it named
            b, _ = await relay.join(room)
            c, reply = await relay.join(room)
            assert isinstance(reply, Error) and reply.code == "room-full"
            assert await closed_with(c) == 4009
            await a.close(), await b.close()

    run_async(main())


ONE_ZERO_HELLO = {"type": "hello", "version": "1.0", "room": "0123456789abcdef0123456789abcdef", "role": "receiver"}


def test_a_1x_xfer_is_told_to_update():
    """A 1.0 hello (its room an id of 32 hex digits, which 2.0 would refuse as broken) gets
    the ``version`` error that 1.0 shows as it is, and close 4001, not a protocol error."""

    async def main():
        async with Relay() as relay:
            ws = await relay.raw()
            await ws.send(json.dumps({**ONE_ZERO_HELLO, "name": "old laptop", "client": "xfer/0.9.0"}))
            wire = await asyncio.wait_for(ws.recv(), 5)
            assert await closed_with(ws) == 4001
            # What 1.0 reads: an error message of the fields it knows, code "version", whose
            # message its CLI prints (1.0's _join_error: PeerProtocolError(error.message)).
            assert set(json.loads(wire)) == {"type", "code", "message"}
            reply = parse_message(wire)
            assert isinstance(reply, Error) and reply.code == "version"
            assert reply.message == (
                "this relay speaks xfer protocol 2.0 and this xfer speaks 1.0: update xfer (pip install -U xfer)"
            )

    run_async(main())


@pytest.mark.parametrize(
    "hello, close, words",
    [
        ({**ONE_ZERO_HELLO, "version": "1.7", "name": "a", "create": True}, 4001, "update xfer"),
        ({**ONE_ZERO_HELLO, "version": "3.0", "room": "7", "name": ""}, 4001, "the relay is older"),
        ({**ONE_ZERO_HELLO, "version": "1", "name": "a"}, 4000, "version"),  # no version at all: broken
        ({**ONE_ZERO_HELLO, "version": PROTOCOL_VERSION, "name": "a"}, 4000, "nameplate"),  # 2.0 with a 1.0 room
    ],
)
def test_other_versions_and_broken_hellos(hello, close, words):
    async def main():
        async with Relay() as relay:
            ws = await relay.raw()
            await ws.send(json.dumps(hello))
            reply = await recv_message(ws)
            assert isinstance(reply, Error) and words in reply.message
            assert await closed_with(ws) == close

    run_async(main())


def test_rooms_opened_without_a_nameplate_get_the_smallest_free_one():
    async def main():
        async with Relay() as relay:
            one, w1 = await relay.join("", "sender", create=True)
            two, w2 = await relay.join("", "sender", create=True)
            assert (w1.room, w2.room) == ("1", "2") and w2.peers == ()  # two rooms, not one
            r, wr = await relay.join("1", "receiver")
            assert wr.room == "1" and [p.id for p in wr.peers] == [w1.peer_id]
            await recv_message(one)  # r joined
            await one.close(), await r.close()
            for _ in range(50):  # room 1 closes once both are gone
                if "1" not in relay.server.room.rooms:
                    break
                await asyncio.sleep(0.05)
            three, w3 = await relay.join("", "sender", create=True)
            assert w3.room == "1"  # given again
            four, w4 = await relay.join("", "sender", create=True)
            assert w4.room == "3"
            await two.close(), await three.close(), await four.close()

    run_async(main())


def test_subscribe_and_unsubscribe_drive_the_fan_out():
    """A chunk to everyone of a transfer reaches the receivers that subscribed to it (the
    relay reads no sealed accept), and nobody once they all unsubscribed."""

    async def main():
        async with Relay() as relay:
            s, ws_ = await relay.join("", "sender", create=True)
            room = ws_.room
            r1, w1 = await relay.join(room, "receiver")
            r2, w2 = await relay.join(room, "receiver")
            await recv_message(s), await recv_message(s), await recv_message(r1)  # joins

            async def nothing(ws):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.3)

            await r1.send(serialize(Subscribe(transfer=5, to=ws_.peer_id)))
            got = await recv_message(s)  # the sender sees it too (it is routed)
            assert got == Subscribe(transfer=5, to=ws_.peer_id, sender=w1.peer_id)
            await s.send(encode_chunk(ws_.peer_id, 0, 5, 0, 0, b"five"))
            assert bytes(parse_chunk(await asyncio.wait_for(r1.recv(), 5)).payload) == b"five"
            await nothing(r2)
            await s.send(encode_chunk(ws_.peer_id, 0, 6, 0, 0, b"six"))  # nobody subscribed: everyone
            for r in (r1, r2):
                assert bytes(parse_chunk(await asyncio.wait_for(r.recv(), 5)).payload) == b"six"
            await r2.send(serialize(Subscribe(transfer=5, to=ws_.peer_id)))
            await r1.send(serialize(Unsubscribe(transfer=5, to=ws_.peer_id)))
            await recv_message(s), await recv_message(s)
            await s.send(encode_chunk(ws_.peer_id, 0, 5, 0, 1, b"again"))
            assert bytes(parse_chunk(await asyncio.wait_for(r2.recv(), 5)).payload) == b"again"
            await nothing(r1)
            await r2.send(serialize(Unsubscribe(transfer=5, to=ws_.peer_id)))
            await recv_message(s)
            await s.send(encode_chunk(ws_.peer_id, 0, 5, 0, 2, b"late"))
            await nothing(r1), await nothing(r2)  # emptied: to nobody, not to everyone
            for ws in (s, r1, r2):
                await ws.close()

    run_async(main())


def test_scanning_nameplates_is_rate_limited():
    async def main():
        async with Relay(RelayLimits(missed_joins_per_minute=3)) as relay:
            owner, wo = await relay.join("", "sender", create=True)
            for nameplate in ("500", "501", "502"):
                ws, reply = await relay.join(nameplate, "receiver")
                assert reply.code == "room-not-found" and await closed_with(ws) == 4004
            ws, reply = await relay.join(wo.room, "receiver")  # the open room: refused too, nothing learnt
            assert isinstance(reply, Error) and reply.code == "rate-limited"
            assert "rooms that are not open" in reply.message
            assert await closed_with(ws) == 4029
            other, wx = await relay.join("", "sender", create=True)  # a room the relay names: no probe
            assert wx.room == "2"
            await owner.close(), await other.close()

    run_async(main())


def test_healthz_and_page():
    async def main():
        async with Relay() as relay:
            a, _ = await relay.join("", create=True)
            base = f"http://127.0.0.1:{relay.server.port}"

            def get(path):
                with urllib.request.urlopen(base + path, timeout=5) as r:
                    return r.status, r.headers.get("content-type"), r.read().decode()

            status, kind, body = await asyncio.to_thread(get, "/healthz")
            health = json.loads(body)
            assert status == 200 and kind.startswith("application/json")
            assert health["status"] == "ok" and health["rooms"] == 1 and health["peers"] == 1
            assert health["version"]
            status, kind, body = await asyncio.to_thread(get, "/")
            assert status == 200 and kind.startswith("text/html") and "xfer" in body
            await a.close()

    run_async(main())


def test_serve_sigterm_closes_peers_with_come_back_later(relay_process):
    async def main():
        url = f"ws://127.0.0.1:{relay_process.port}/ws"
        ws = await connect(url, compression=None)
        await ws.send(serialize(Hello(version=PROTOCOL_VERSION, room="", role="peer", name="", create=True)))
        assert isinstance(await recv_message(ws), Welcome)
        relay_process.proc.send_signal(signal.SIGTERM)
        assert await closed_with(ws, 10) == 1012

    run_async(main())
    assert relay_process.wait(15) == 0
    assert "Traceback" not in relay_process.stderr
    assert "stopped" in relay_process.stderr


def test_the_relay_holds_messages_to_its_own_limits():
    """A relay with shorter limits than the protocol's refuses what is over them (the parser takes its Limits)."""

    async def main():
        async with Relay(RelayLimits(max_peer_name_chars=5, max_text_chars=8)) as relay:
            room = fresh_nameplate()
            ws, reply = await relay.join(room, name="toolong", create=True)
            assert isinstance(reply, Error) and reply.code == "protocol"
            assert await closed_with(ws) == 4000
            a, _ = await relay.join(room, "sender", "a", create=True)
            b, wb = await relay.join(room, "receiver", "b")
            await recv_message(a)  # b joined
            await a.send(serialize(Text(text="12345678", to=wb.peer_id)))
            assert (await recv_message(b)).text == "12345678"
            await a.send(serialize(Text(text="123456789", to=wb.peer_id)))
            assert (await recv_message(a)).code == "protocol"
            await a.close(), await b.close()

    run_async(main())


def test_xfer_serve_freezes_what_its_start_up_made():
    """Full garbage collections in ``xfer serve`` skip the objects of its start-up (about 40,000:
    one collection of them took 50-75 ms, a pause of every room's frames, issue 17)."""
    import gc
    import io

    from rich.console import Console

    from xfer.cli.serve import _serve
    from xfer.relay import RelayServer, bind_socket

    async def main():
        server = RelayServer(bind_socket("127.0.0.1", 0))
        gc.unfreeze()  # an in-process command of another test may have frozen this process
        serving = asyncio.create_task(_serve(server, None, Console(file=io.StringIO())))
        try:
            for _ in range(100):  # bounded: 5 s
                if server.server.started:
                    break
                await asyncio.sleep(0.05)
            assert server.server.started
            assert gc.get_freeze_count() > 10_000
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            gc.unfreeze()

    run_async(main())
