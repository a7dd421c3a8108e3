"""The relay's direct path for chunks (relay/wire.py): a real relay on loopback, real
WebSocket clients. Chunks skip the app only when the app would have done the same with
them; these tests hold the path to the app's checks, order, routing and back-pressure."""

from __future__ import annotations

import asyncio
import time

from test_redis import Relays, next_message
from websockets.asyncio.client import connect

from conftest import bounded, run_async
from peers import PROTOCOL_VERSION, Relay, closed_with, fresh_nameplate, recv_message
from xfer.protocol import (
    Accept,
    Error,
    FileInfo,
    Hello,
    Offer,
    PeerJoined,
    Text,
    parse_chunk,
    parse_message,
    serialize,
)
from xfer.protocol.closes import Close
from xfer.protocol.frames import MAX_BINARY_FRAME, Chunk, encode_chunk
from xfer.protocol.message_fields import MAX_CONTROL_FRAME
from xfer.protocol.messages import Subscribe
from xfer.relay import RelayLimits
from xfer.relay.local import open_local
from xfer.relay.wire import WireProtocol

MiB = 1024 * 1024
FLOOD = 48  # MiB a sender tries to push at a receiver that stopped reading


def chunks_routed_by_app(server, texts: bool = False) -> list:
    """Record each chunk (or with ``texts``, each text message) that reaches the app's
    ``route`` (the path that is not direct)."""
    relay = server.app.state.relay
    routed: list = []
    route = relay.route

    async def counting(conn, text, data):
        if (text if texts else data) is not None:
            routed.append(text if texts else data)
        return await route(conn, text, data)

    relay.route = counting
    return routed


def wires(server) -> list[WireProtocol]:
    return [c for c in server.server.server_state.connections if isinstance(c, WireProtocol)]


async def pair(relay: Relay, third: bool = False, **connect_options):
    room = fresh_nameplate()
    a, wa = await relay.join(room, create=True)
    b = await connect(relay.url, compression=None, max_size=MAX_BINARY_FRAME, **connect_options)
    await b.send(serialize(Hello(version=PROTOCOL_VERSION, room=room, role="peer", name="b")))
    wb = parse_message(await asyncio.wait_for(b.recv(), bounded(5)))
    assert isinstance(await recv_message(a), PeerJoined)
    peers = [(a, wa.peer_id), (b, wb.peer_id)]
    if third:
        c, wc = await relay.join(room)
        for ws, _ in peers:
            assert isinstance(await recv_message(ws), PeerJoined)
        peers.append((c, wc.peer_id))
    return peers


def test_chunks_skip_the_app_and_keep_their_order_among_a_peers_texts():
    async def main():
        async with Relay() as relay:
            routed = chunks_routed_by_app(relay.server)
            (a, ida), (b, idb) = await pair(relay)
            sent = []
            for i in range(30):  # texts and chunks mixed, sent without waiting: often one read holds both
                text = serialize(Text(to=idb, text=f"t{i}"))
                chunk = encode_chunk(ida, idb, 1, 0, i, bytes([i]) * (100 if i % 2 else 64 * 1024 + i))
                for frame in (text, chunk, chunk) if i % 3 else (text, chunk):
                    await a.send(frame)
                    sent.append(frame)
            for frame in sent:
                got = await asyncio.wait_for(b.recv(), bounded(5))
                if isinstance(frame, str):
                    assert parse_message(got) == Text(to=idb, text=parse_message(frame).text, sender=ida)
                else:
                    assert got == frame
            routed.clear()
            run = [encode_chunk(ida, idb, 1, 0, i, bytes([i]) * 300_000) for i in range(50)]
            for frame in run:  # once the app has handled everything, chunks go directly
                await a.send(frame)
            for frame in run:
                assert await asyncio.wait_for(b.recv(), bounded(5)) == frame
            assert routed == []
            await a.close()
            await b.close()

    run_async(main())


def test_a_chunk_with_another_peers_id_as_its_sender_is_refused_on_the_direct_path():
    async def main():
        async with Relay() as relay:
            (a, ida), (b, idb), (c, idc) = await pair(relay, third=True)
            await a.send(encode_chunk(ida, idb, 1, 0, 0, b"honest"))
            assert parse_chunk(await asyncio.wait_for(b.recv(), bounded(5))).sender == ida
            await a.send(encode_chunk(idc, idb, 1, 0, 0, b"forged"))  # "from" is c
            assert await closed_with(a) == Close.PROTOCOL
            left = parse_message(await asyncio.wait_for(b.recv(), bounded(5)))  # not the forged chunk
            assert left.type == "peer-left" and left.peer_id == ida
            await b.close()
            await c.close()

    run_async(main())


def test_a_chunk_goes_to_its_to_alone_and_to_everyone_else_with_to_0():
    async def main():
        async with Relay() as relay:
            routed = chunks_routed_by_app(relay.server)
            (a, ida), (b, idb), (c, idc) = await pair(relay, third=True)
            to_b = encode_chunk(ida, idb, 1, 0, 0, b"b" * 100_000)
            await a.send(to_b)
            await a.send(serialize(Text(to=idc, text="after")))
            assert await asyncio.wait_for(b.recv(), bounded(5)) == to_b
            assert parse_message(await asyncio.wait_for(c.recv(), bounded(5))).text == "after"  # nothing before it
            to_all = encode_chunk(ida, 0, 2, 0, 0, b"*" * 100_000)
            await a.send(to_all)
            for ws in (b, c):
                assert await asyncio.wait_for(ws.recv(), bounded(5)) == to_all
            assert to_b not in routed
            for ws in (a, b, c):
                await ws.close()

    run_async(main())


def test_a_destination_that_stops_reading_stops_its_sources_reads_and_then_gets_everything():
    """Back-pressure on the direct path: the relay holds at most about one chunk beyond its
    write buffer's mark for a receiver that stopped reading, the sender's sends stall, and
    once the receiver reads again every chunk arrives, in order."""

    async def main():
        async with Relay() as relay:
            (a, ida), (b, idb) = await pair(relay, max_queue=2)
            b.transport.pause_reading()  # b stops reading
            payload = bytes(MiB)
            sent = 0

            async def flood():
                nonlocal sent
                for i in range(FLOOD):  # bounded
                    await a.send(encode_chunk(ida, idb, 1, 0, i * MiB, payload))
                    sent += 1

            flooding = asyncio.create_task(flood())
            await asyncio.sleep(1.0)
            stalled_at = sent
            to_b = [w for w in wires(relay.server) if w._peer is not None and w._peer.info.id == idb]
            held = to_b[0].transport.get_write_buffer_size()
            assert not flooding.done() and stalled_at < 32, (
                stalled_at
            )  # about 14 here: the kernels' and clients' buffers
            assert held <= 2 * MiB + 64 * 1024, held
            b.transport.resume_reading()
            for i in range(FLOOD):
                chunk = parse_chunk(await asyncio.wait_for(b.recv(), bounded(10)))
                assert chunk.offset == i * MiB
            await asyncio.wait_for(flooding, bounded(10))
            await a.close()
            await b.close()

    run_async(main(), timeout=60)


def test_the_direct_path_keeps_a_peers_byte_budget():
    async def main():
        async with Relay(RelayLimits(peer_bytes_per_second=4 * MiB)) as relay:
            routed = chunks_routed_by_app(relay.server)
            (a, ida), (b, idb) = await pair(relay)
            frames = [encode_chunk(ida, idb, 1, 0, i * MiB, bytes(MiB)) for i in range(10)]
            started = time.monotonic()
            for frame in frames:
                await a.send(frame)
            for frame in frames:
                assert await asyncio.wait_for(b.recv(), bounded(10)) == frame
            took = time.monotonic() - started
            # a burst of 4 MiB at once, then 6 MiB at 4 MiB/s
            assert took >= 1.2, took
            assert len(routed) < 3  # they went directly, slowed
            await a.close()
            await b.close()

    run_async(main())


def test_frames_the_direct_path_does_not_take_are_read_by_websockets_as_before():
    """A fragmented chunk is put together and passed on; an oversized frame closes with 1009."""

    async def main():
        async with Relay() as relay:
            (a, ida), (b, idb) = await pair(relay)
            frame = encode_chunk(ida, idb, 1, 0, 0, b"f" * 200_000)
            await a.send([frame[:100], frame[100:150_000], frame[150_000:]])  # three fragments
            assert await asyncio.wait_for(b.recv(), bounded(5)) == frame
            after = encode_chunk(ida, idb, 1, 0, 1, b"a" * 1000)
            await a.send(after)
            assert await asyncio.wait_for(b.recv(), bounded(5)) == after
            await a.send(encode_chunk(ida, idb, 1, 0, 2, b"x" * 1000) + bytes(MAX_BINARY_FRAME))
            assert await closed_with(a) == 1009
            await b.close()

    run_async(main())


def test_idle_connections_hold_no_read_buffer():
    async def main():
        async with Relay() as relay:
            (a, ida), (b, idb), _ = await pair(relay, third=True)
            for i in range(3):
                await a.send(encode_chunk(ida, idb, 1, 0, i, bytes(256 * 1024)))
                await b.recv()
            await a.send(serialize(Text(to=idb, text="done")))
            await b.recv()
            assert [w._buf for w in wires(relay.server)] == [None, None, None]
            await a.close()
            await b.close()

    run_async(main())


def test_a_room_shared_through_redis_forwards_chunks_to_both_relays(redis):
    """Peers of the same relay get chunks directly; one on another relay through Redis."""

    async def main():
        async with Relays(redis.url, 2) as relays:
            room = fresh_nameplate()
            a, wa = await relays.join(0, room, role="sender", create=True)
            b, wb = await relays.join(0, room)
            c, wc = await relays.join(1, room)
            await next_message(a, PeerJoined)
            await next_message(a, PeerJoined)
            await next_message(b, PeerJoined)
            routed = chunks_routed_by_app(relays.servers[0])
            to_all = encode_chunk(wa.peer_id, 0, 1, 0, 0, b"r" * 200_000)
            await a.send(to_all)
            for ws in (b, c):
                assert await asyncio.wait_for(ws.recv(), bounded(5)) == to_all
            to_b = encode_chunk(wa.peer_id, wb.peer_id, 1, 0, 1, b"l" * 200_000)
            await a.send(to_b)
            assert await asyncio.wait_for(b.recv(), bounded(5)) == to_b
            assert routed == [to_all]  # through the bus by the app; the local one directly
            for ws in (a, b, c):
                await ws.close()

    run_async(main())


def test_chunks_to_a_peer_in_the_relays_own_process_go_directly_and_wait_for_room_in_its_queue():
    """The embedded relay: a WebSocket sender's chunks go straight into the local peer's
    queue; with the queue full the sender's socket is not read until the peer takes one."""

    async def main():
        async with Relay() as relay:
            app_relay = relay.server.app.state.relay
            routed = chunks_routed_by_app(relay.server)
            room = fresh_nameplate()
            local = await open_local(app_relay, room, role="receiver", name="here", create=True)
            a, wa = await relay.join(room)
            frames = [encode_chunk(wa.peer_id, local.peer_id, 1, 0, i, bytes([i]) * 65536) for i in range(48)]
            for frame in frames:
                await a.send(frame)
            await asyncio.sleep(0.5)
            (source,) = [w for w in wires(relay.server) if w._peer is not None]
            assert local.peer.queue.full() and source._held
            got = []
            while len(got) < len(frames):
                message = await asyncio.wait_for(local.recv(), bounded(5))
                if isinstance(message, Chunk):
                    got.append((message.offset, bytes(message.payload)))
            assert got == [(i, bytes([i]) * 65536) for i in range(48)]
            assert routed == []
            await a.close()
            await local.close()

    run_async(main())


def test_texts_between_peers_skip_the_app_with_their_sender_set_by_the_relay():
    """A peer's text messages go from its socket to their receivers' without the app (the
    round trip of issue 17), checked as the app checks them: a ``from`` the peer wrote is
    replaced by its own id, a message to everyone reaches every other peer."""

    async def main():
        async with Relay() as relay:
            routed = chunks_routed_by_app(relay.server, texts=True)
            (a, ida), (b, idb), (c, idc) = await pair(relay, third=True)
            for i in range(20):
                await a.send(serialize(Text(to=idb, text=f"to b {i}", sender=idc)))  # a forged "from"
                assert await recv_message(b) == Text(to=idb, text=f"to b {i}", sender=ida)
            await a.send(serialize(Text(text="to all")))
            for ws in (b, c):
                assert await recv_message(ws) == Text(text="to all", sender=ida)
            await b.send(serialize(Text(to=ida, text="ünïcode ✓")))
            assert await recv_message(a) == Text(to=ida, text="ünïcode ✓", sender=idb)
            assert routed == []
            for ws in (a, b, c):
                await ws.close()

    run_async(main())


def test_texts_the_direct_path_does_not_pass_get_the_apps_answer():
    """To nobody: the app's no-such-peer; not a message between peers, not JSON, not UTF-8:
    the connection is closed as before."""

    async def main():
        async with Relay() as relay:
            routed = chunks_routed_by_app(relay.server, texts=True)
            (a, ida), (b, idb) = await pair(relay)
            await a.send(serialize(Text(to=99, text="nobody")))
            error = await recv_message(a)
            assert isinstance(error, Error) and error.code == "no-such-peer"
            await a.send(serialize(Text(to=ida, text="myself")))
            assert (await recv_message(a)).code == "no-such-peer"
            await a.send(serialize(Hello(version=PROTOCOL_VERSION, room="1", role="peer", name="again")))
            assert await closed_with(a) == Close.PROTOCOL
            assert len(routed) == 3
            too_long = '{"type":"text","text":"' + "x" * MAX_CONTROL_FRAME + '"}'  # under the frame limit
            for hostile, code in ((b"{not json", Close.PROTOCOL), (b"\xff\xfe", 1007), (too_long, Close.PROTOCOL)):
                (c, idc), (d, idd) = await pair(relay)
                if isinstance(hostile, bytes):
                    c.transport.write(bytes((0x81, 0x80 | len(hostile))) + bytes(4) + hostile)  # a mask of zeros
                else:
                    await c.send(hostile)
                assert await closed_with(c) == code
                assert (await recv_message(d)).type == "peer-left"  # and nothing before it
                await d.close()
            await b.close()

    run_async(main())


def test_an_offer_to_a_page_and_its_download_accept_still_reach_the_download_bridge():
    async def main():
        async with Relay() as relay:
            bridge = relay.server.app.state.relay.downloads
            room = fresh_nameplate()
            laptop, w_laptop = await relay.join(room, role="sender", create=True, name="laptop")
            page = await connect(relay.url, compression=None)
            await page.send(
                serialize(Hello(version=PROTOCOL_VERSION, room=room, role="peer", name="phone", client="xfer-web/1"))
            )
            w_page = await recv_message(page)
            assert isinstance(await recv_message(laptop), PeerJoined)
            offer = Offer(to=w_page.peer_id, transfer=5, window=MiB, files=(FileInfo(name="a.bin", size=10),))
            await laptop.send(serialize(offer))
            assert isinstance(await recv_message(page), Offer)
            assert (room, w_page.peer_id) in bridge.offers
            await page.send(serialize(Accept(to=w_laptop.peer_id, transfer=5, download="ab" * 16)))
            assert isinstance(await recv_message(laptop), Accept)
            assert (room, w_page.peer_id) in bridge.by_page
            await laptop.close()
            await page.close()

    run_async(main())


def test_texts_to_a_peer_in_the_relays_own_process_go_directly_and_change_its_fan_out():
    async def main():
        async with Relay() as relay:
            app_relay = relay.server.app.state.relay
            routed = chunks_routed_by_app(relay.server, texts=True)
            room = fresh_nameplate()
            local = await open_local(app_relay, room, role="sender", name="here", create=True)
            a, wa = await relay.join(room)
            assert isinstance(await asyncio.wait_for(local.recv(), bounded(5)), PeerJoined)
            await a.send(serialize(Subscribe(to=local.peer_id, transfer=7)))
            assert await asyncio.wait_for(local.recv(), bounded(5)) == Subscribe(
                to=local.peer_id, transfer=7, sender=wa.peer_id
            )
            assert app_relay.room.targets(room, local.peer_id, None, 7) == [
                app_relay.room.member(room, wa.peer_id).handle
            ]
            assert routed == []
            await a.close()
            await local.close()

    run_async(main())


def test_the_direct_path_keeps_a_peers_message_budget():
    """Texts over the budget wait in the app for their turn, in order, as before."""

    async def main():
        async with Relay(RelayLimits(control_messages_per_second=40)) as relay:
            (a, ida), (b, idb) = await pair(relay)
            started = time.monotonic()
            for i in range(80):
                await a.send(serialize(Text(to=idb, text=f"t{i}")))
            for i in range(80):
                assert (await recv_message(b)).text == f"t{i}"
            took = time.monotonic() - started
            assert took >= 0.9, took  # a burst of 40 at once, then 40 at 40 a second
            await a.close()
            await b.close()

    run_async(main())
