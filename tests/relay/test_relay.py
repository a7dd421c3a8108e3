"""The relay, with real WebSocket clients against a relay on a loopback port 0."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request

import pytest
from websockets.asyncio.client import connect

from conftest import run_async
from peers import Relay, closed_with, recv_message
from xfer.protocol import (
    Error,
    Hello,
    PeerJoined,
    PeerLeft,
    Text,
    Welcome,
    encode_chunk,
    new_code,
    parse_chunk,
    room_id,
    serialize,
)
from xfer.relay import RelayLimits


def test_membership_routing_and_from_stamping():
    async def main():
        room = room_id(new_code())
        async with Relay() as relay:
            a, wa = await relay.join(room, "sender", "a", create=True)
            assert isinstance(wa, Welcome) and wa.peers == ()
            # Compression stays off even when a client offers it: chunks are binary, deflate costs more than it saves.
            offering = await connect(relay.url)  # websockets offers permessage-deflate by default
            assert "Sec-WebSocket-Extensions" not in offering.response.headers
            await offering.close()
            b, wb = await relay.join(room, "receiver", "b")
            assert [p.id for p in wb.peers] == [wa.peer_id]
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
            ws, reply = await relay.join(room_id(new_code()), create=False)
            assert isinstance(reply, Error) and reply.code == "room-not-found"
            assert await closed_with(ws) == 4004
            room = room_id(new_code())
            a, _ = await relay.join(room, create=True)
            b, _ = await relay.join(room)
            c, reply = await relay.join(room)
            assert isinstance(reply, Error) and reply.code == "room-full"
            assert await closed_with(c) == 4009
            await a.close(), await b.close()

    run_async(main())


def test_version_mismatch_gets_a_clear_error_not_a_hang():
    async def main():
        async with Relay() as relay:
            ws = await relay.raw()
            await ws.send(
                json.dumps(
                    {"type": "hello", "version": "2.0", "room": room_id(new_code()), "role": "peer", "name": "future"}
                )
            )
            reply = await recv_message(ws)
            assert isinstance(reply, Error) and reply.code == "version" and "2.0" in reply.message
            assert await closed_with(ws) == 4001

    run_async(main())


def test_healthz_and_page():
    async def main():
        async with Relay() as relay:
            room = room_id(new_code())
            a, _ = await relay.join(room, create=True)
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
        await ws.send(serialize(Hello(version="1.0", room=room_id(new_code()), role="peer", name="a", create=True)))
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
            room = room_id(new_code())
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
