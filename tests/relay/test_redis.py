"""Relays that share rooms through Redis: a real ``redis-server`` on a loopback port,
relays in this process and as ``xfer serve --redis`` subprocesses, real peers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import replace

import httpx2
import pytest
from websockets.asyncio.client import connect

from conftest import (
    bounded,
    free_port,
    make_file,
    run_async,
    sha256_of,
    wait_for_port,
    wait_progress,
    xfer_cmd,
)
from peers import PROTOCOL_VERSION, closed_with, fresh_nameplate, recv_message
from xfer.protocol import Error, Hello, PeerJoined, PeerLeft, Text, Welcome, serialize
from xfer.relay import RelayLimits, RelayServer, bind_socket
from xfer.relay.bus import RedisBus

EXPIRY = 1.0  # seconds: relays in these tests beat every 0.25 s and are dead after 1 s of silence


class Relays:
    """Relays in this process that share rooms through one Redis."""

    def __init__(self, url: str, count: int, limits: RelayLimits | None = None) -> None:
        limits = replace(limits or RelayLimits(), redis_expiry=EXPIRY)
        self.servers = [
            RelayServer(bind_socket("127.0.0.1", 0), limits=limits, bus=RedisBus(url)) for _ in range(count)
        ]

    def url(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.servers[index].port}/ws"

    async def __aenter__(self):
        for server in self.servers:
            await server.start()
        return self

    async def __aexit__(self, *exc):
        for server in self.servers:
            await server.stop()

    async def join(
        self,
        index: int,
        room: str,
        role: str = "receiver",
        create: bool = False,
        name: str = "p",
        session: str | None = None,
    ):
        ws = await connect(self.url(index), compression=None)
        await ws.send(
            serialize(Hello(version=PROTOCOL_VERSION, room=room, role=role, name=name, create=create, session=session))
        )
        return ws, await recv_message(ws)


async def next_message(ws, kind, timeout: float = 5):
    """The next message of ``kind`` on a raw WebSocket, skipping others; bounded."""
    deadline = asyncio.get_running_loop().time() + bounded(timeout)
    while True:
        message = await recv_message(ws, max(0.01, deadline - asyncio.get_running_loop().time()))
        if isinstance(message, kind):
            return message


async def until(predicate, timeout: float = 5) -> None:
    deadline = time.monotonic() + bounded(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# -- membership and routing across relays --------------------------------------------------


def test_peers_on_two_relays_see_each_other_and_exchange_messages(redis):
    async def main():
        async with Relays(redis.url, 2) as relays:
            room = fresh_nameplate()
            a, welcome_a = await relays.join(0, room, role="sender", create=True, name="alice")
            assert isinstance(welcome_a, Welcome) and welcome_a.peers == ()
            b, welcome_b = await relays.join(1, room, name="bob")
            assert isinstance(welcome_b, Welcome)
            assert [(p.id, p.name) for p in welcome_b.peers] == [(welcome_a.peer_id, "alice")]
            joined = await next_message(a, PeerJoined)
            assert (joined.peer.id, joined.peer.name) == (welcome_b.peer_id, "bob")
            # to one peer, and to everyone; the relay sets "from"
            await a.send(serialize(Text(to=welcome_b.peer_id, text="to bob")))
            got = await next_message(b, Text)
            assert (got.text, got.sender) == ("to bob", welcome_a.peer_id)
            await b.send(serialize(Text(text="to all")))
            got = await next_message(a, Text)
            assert (got.text, got.sender) == ("to all", welcome_b.peer_id)
            # a chunk crosses too, unchanged
            from xfer.protocol.frames import encode_chunk

            frame = encode_chunk(welcome_a.peer_id, welcome_b.peer_id, 7, 0, 0, b"x" * 300_000)
            await a.send(frame)
            assert await asyncio.wait_for(b.recv(), bounded(5)) == frame
            # a third peer on the first relay sees both
            c, welcome_c = await relays.join(0, room, name="carol")
            assert sorted(p.name for p in welcome_c.peers) == ["alice", "bob"]
            assert (await next_message(b, PeerJoined)).peer.name == "carol"
            await b.close()
            for ws in (a, c):
                assert (await next_message(ws, PeerLeft)).peer_id == welcome_b.peer_id
            await a.close()
            await c.close()
            await until(lambda: all(not s.hub.rooms for s in relays.servers))
        assert int(redis.info("keyspace").get("db0", "keys=0").split(",")[0].split("=")[1]) >= 0

    run_async(main())


def test_concurrent_joins_on_two_relays_every_peer_hears_of_every_other(redis):
    """Joins racing on two relays: each peer learns of every other, by welcome or peer-joined, once."""

    async def main():
        async with Relays(redis.url, 2, RelayLimits(joins_per_minute=1000)) as relays:
            room = fresh_nameplate()
            first, welcome = await relays.join(0, room, role="sender", create=True)
            joined = await asyncio.gather(*(relays.join(i % 2, room) for i in range(15)))
            peers = [(first, welcome), *joined]
            assert all(isinstance(w, Welcome) for _, w in peers)
            everyone = {w.peer_id for _, w in peers}
            heard = [{p.id for p in w.peers} for _, w in peers]

            async def listen(ws, known: set[int], me: int) -> None:
                while known != everyone - {me}:
                    message = await recv_message(ws, bounded(5))
                    if isinstance(message, PeerJoined):
                        assert message.peer.id not in known, "told twice"
                        known.add(message.peer.id)

            await asyncio.gather(*(listen(ws, known, w.peer_id) for (ws, w), known in zip(peers, heard)))
            # nothing more (no duplicate news) arrives
            for ws, _ in peers:
                with pytest.raises(asyncio.TimeoutError):
                    await recv_message(ws, 0.2)

    run_async(main(), timeout=60)


def test_a_burst_of_joins_and_leaves_is_not_taken_for_a_lost_redis(redis):
    """More joins at once than the relay keeps connections to Redis: they wait, none is refused."""

    async def main():
        limits = RelayLimits(joins_per_minute=100_000, max_rooms_per_address=1000)
        async with Relays(redis.url, 1, limits) as relays:
            joined = await asyncio.gather(*(relays.join(0, "", create=True) for _ in range(150)))
            assert all(isinstance(reply, Welcome) for _, reply in joined), [
                r for _, r in joined if not isinstance(r, Welcome)
            ][:1]
            assert sorted(int(reply.room) for _, reply in joined) == list(range(1, 151))
            await asyncio.gather(*(ws.close() for ws, _ in joined))
            await until(lambda: not relays.servers[0].hub.rooms)
            assert relays.servers[0].bus.up

    run_async(main(), timeout=60)


def test_a_full_pool_is_busy_and_a_refused_connection_is_lost_told_apart_by_type(redis):
    """The bus tells a busy pool (slow: joins wait) from Redis gone by exception type, not text."""
    import redis.asyncio as aioredis
    from redis.exceptions import MaxConnectionsError

    from xfer.relay.redis_core import _Pool, busy, why

    async def main():
        pool = _Pool.from_url(redis.url, max_connections=1, timeout=0.2)
        client = aioredis.Redis(connection_pool=pool)
        held = await pool.get_connection()
        with pytest.raises(MaxConnectionsError) as caught:
            await client.ping()
        assert busy(caught.value)
        await pool.release(held)
        assert await client.ping()
        await client.aclose()

        nobody = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)
        with pytest.raises(Exception) as caught:
            await nobody.ping()
        assert not busy(caught.value) and why(caught.value) == "connection refused"
        await nobody.aclose()

    run_async(main())


def test_a_broken_message_on_a_relays_channel_is_dropped_and_the_channel_goes_on(redis):
    """Relays parse what comes on their channel like a peer's frames: junk is logged and dropped."""
    import redis.asyncio as aioredis

    async def main():
        async with Relays(redis.url, 2) as relays:
            room = fresh_nameplate()
            a, welcome_a = await relays.join(0, room, role="sender", create=True, name="alice")
            b, welcome_b = await relays.join(1, room, name="bob")
            await next_message(a, PeerJoined)
            client = aioredis.Redis.from_url(redis.url)
            channel = relays.servers[1].bus.channel
            for junk in (b"", b"D", b"D" + b"a" * 32 + b"\xff\xff", b"J{", b"Lnot json", b"Y", b"G{}", b"?" * 100):
                await client.publish(channel, junk)
            await client.aclose()
            await a.send(serialize(Text(to=welcome_b.peer_id, text="still here")))
            got = await next_message(b, Text)
            assert (got.text, got.sender) == ("still here", welcome_a.peer_id)
            await a.close()
            await b.close()

    run_async(main())


def test_a_room_is_found_only_while_open_and_is_gone_from_redis_after(redis):
    async def main():
        async with Relays(redis.url, 2) as relays:
            room = fresh_nameplate()
            ws, reply = await relays.join(1, room)
            assert isinstance(reply, Error) and reply.code == "room-not-found"
            assert await closed_with(ws) == 4004
            a, _ = await relays.join(0, room, create=True)
            b, reply = await relays.join(1, room)
            assert isinstance(reply, Welcome)
            await a.close()
            await b.close()
            await until(lambda: not any(s.hub.rooms for s in relays.servers))
            await until(lambda: redis.info("keyspace").get("db0", "keys=0").find(f"room:{room}") < 0)
            ws, reply = await relays.join(1, room)
            assert isinstance(reply, Error) and reply.code == "room-not-found"

    run_async(main())


def test_the_bus_takes_its_limits_from_the_relay(redis):
    """The Redis bus has no limits of its own: the relay's Limits size its connections, say
    how long a silent relay lives, and how long a download's owner stays in Redis."""
    limits = RelayLimits(redis_connections=7, redis_expiry=EXPIRY, redis_download_key=30.0)

    async def main():
        server = RelayServer(bind_socket("127.0.0.1", 0), limits=limits, bus=RedisBus(redis.url))
        bus = server.bus
        assert isinstance(bus, RedisBus)
        assert bus.redis.connection_pool.max_connections == 7 and bus.expiry == EXPIRY
        await server.start()
        try:
            await bus.own_download("a" * 32)
            assert 0 < await bus.redis.pttl("xfer:dl:" + "a" * 32) <= 30_000
        finally:
            await server.stop()
        # an expiry given to the bus (xfer serve --redis-expiry) wins over the Limits
        given = RelayServer(bind_socket("127.0.0.1", 0), limits=limits, bus=RedisBus(redis.url, expiry=3.0))
        assert given.bus.expiry == 3.0
        await given.stop()

    run_async(main(), 20)


def test_limits_hold_across_relays(redis):
    """Rooms per address, peers per room and the join rate are counted in Redis, not per relay."""

    async def main():
        limits = RelayLimits(max_rooms_per_address=2, max_peers_per_room=3, joins_per_minute=8)
        async with Relays(redis.url, 2, limits) as relays:
            rooms = [fresh_nameplate() for _ in range(3)]
            first, _ = await relays.join(0, rooms[0], create=True)
            second, _ = await relays.join(1, rooms[1], create=True)
            ws, reply = await relays.join(1, rooms[2], create=True)  # a third room, on either relay
            assert isinstance(reply, Error) and reply.code == "too-many-rooms"
            joined = [await relays.join(i % 2, rooms[0]) for i in range(2)]  # the room is full at 3
            assert all(isinstance(reply, Welcome) for _, reply in joined)
            ws, reply = await relays.join(1, rooms[0])
            assert isinstance(reply, Error) and reply.code == "room-full"
            # 6 joins so far from 127.0.0.1 (refused ones count): two more, then the bucket is empty everywhere
            for index in (0, 1):
                _, reply = await relays.join(index, rooms[1])
                assert isinstance(reply, Welcome)
            ws, reply = await relays.join(1, rooms[1])
            assert isinstance(reply, Error) and reply.code == "rate-limited"
            assert await closed_with(ws) == 4029

    run_async(main())


def test_two_relays_opening_rooms_at_once_never_hand_out_one_nameplate(redis):
    """Nameplates are picked in Redis's join script: 2 relays x 60 rooms opened at the same
    time get 120 different nameplates, the smallest free ones."""

    async def main():
        limits = RelayLimits(joins_per_minute=100_000, max_rooms_per_address=1000)
        async with Relays(redis.url, 2, limits) as relays:
            joined = await asyncio.gather(*(relays.join(i % 2, "", role="sender", create=True) for i in range(120)))
            rooms = [reply.room for _, reply in joined if isinstance(reply, Welcome)]
            assert len(rooms) == 120, [r for _, r in joined if not isinstance(r, Welcome)][:1]
            assert sorted(int(r) for r in rooms) == list(range(1, 121))
            assert all(reply.peers == () for _, reply in joined)  # each opened a room of its own
            # each relay's view holds its own rooms; together, all of them, once
            views = [set(server.room.rooms) for server in relays.servers]
            assert not views[0] & views[1] and views[0] | views[1] == set(rooms)
            await asyncio.gather(*(ws.close() for ws, _ in joined))

    run_async(main(), timeout=60)


def test_a_nameplate_is_given_again_once_its_room_closed_on_any_relay(redis):
    async def main():
        async with Relays(redis.url, 2) as relays:
            one, w1 = await relays.join(0, "", role="sender", create=True)
            two, w2 = await relays.join(1, "", role="sender", create=True)
            assert (w1.room, w2.room) == ("1", "2")
            r, wr = await relays.join(1, "1")  # room 1 from the other relay: the same room
            assert wr.room == "1" and [p.id for p in wr.peers] == [w1.peer_id]
            await one.close()
            three, w3 = await relays.join(1, "", role="sender", create=True)
            assert w3.room == "3"  # room 1 is still open: r is in it
            await r.close()
            await until(lambda: redis.info("keyspace").get("db0", "keys=0").find("room:1") < 0)
            await until(lambda: not any("1" in server.room.rooms for server in relays.servers))
            four, w4 = await relays.join(0, "", role="sender", create=True)
            assert w4.room == "1" and w4.peers == ()
            for ws in (two, three, four):
                await ws.close()

    run_async(main())


def test_past_the_nameplates_in_order_the_relay_draws_them(redis):
    async def main():
        limits = RelayLimits(nameplates_in_order=3, nameplate_draws=8)
        async with Relays(redis.url, 2, limits) as relays:
            joined = [await relays.join(i % 2, "", role="sender", create=True) for i in range(6)]
            rooms = [reply.room for _, reply in joined]
            assert rooms[:3] == ["1", "2", "3"]
            assert len(set(rooms)) == 6 and all(3 < int(r) <= 999_999 for r in rooms[3:])
            ws, reply = await relays.join(1, rooms[4])  # a drawn nameplate is a room like any other
            assert isinstance(reply, Welcome) and reply.room == rooms[4]
            for ws, _ in joined:
                await ws.close()

    run_async(main())


def test_scanning_nameplates_is_limited_across_relays(redis):
    """The missed joins of an address are counted in Redis: a scan spread over relays runs
    out as fast, and then even the open room is refused."""

    async def main():
        async with Relays(redis.url, 2, RelayLimits(missed_joins_per_minute=4)) as relays:
            owner, wo = await relays.join(0, "", role="sender", create=True)
            for i, nameplate in enumerate(("500", "501", "502", "503")):
                ws, reply = await relays.join(i % 2, nameplate)
                assert isinstance(reply, Error) and reply.code == "room-not-found"
            for index in (0, 1):
                ws, reply = await relays.join(index, wo.room)
                assert isinstance(reply, Error) and reply.code == "rate-limited"
                assert "rooms that are not open" in reply.message
                assert await closed_with(ws) == 4029
            other, wx = await relays.join(1, "", role="sender", create=True)  # the relay names it: allowed
            assert isinstance(wx, Welcome) and wx.room == "2"
            await owner.close(), await other.close()

    run_async(main())


def test_a_peer_that_reconnects_through_another_relay_replaces_its_old_connection(redis):
    async def main():
        async with Relays(redis.url, 2) as relays:
            room = fresh_nameplate()
            a, _ = await relays.join(0, room, role="sender", create=True)
            old, welcome_old = await relays.join(0, room, session="5e" * 16)
            await next_message(a, PeerJoined)
            new, welcome_new = await relays.join(1, room, session="5e" * 16)
            assert isinstance(welcome_new, Welcome)
            assert [p.id for p in welcome_new.peers] == [next(iter(welcome_old.peers)).id]
            assert await closed_with(old) == 4010
            left = await next_message(a, PeerLeft)
            assert left.peer_id == welcome_old.peer_id
            assert (await next_message(a, PeerJoined)).peer.id == welcome_new.peer_id

    run_async(main())


TOKEN = "ab" * 16  # the page's download token in these tests
BROWSER = "bc" * 16  # the cookie the relay set in the page's browser (download_http.browser_of)
CHUNK = 256 * 1024


async def _offer_to_page(relays, page_relay: int, laptop_relay: int, size: int, browser: str | None = None):
    """A laptop offers one file of ``size`` bytes to a page (client ``xfer-web/``), which accepts
    it as a download with ``TOKEN``. Returns the raw sockets and the two welcomes. ``browser``:
    the page's WebSocket carries that cookie, as a page the relay served does."""
    from xfer.protocol import Accept, FileInfo, Offer

    room = fresh_nameplate()
    laptop, w_laptop = await relays.join(laptop_relay, room, role="sender", create=True, name="laptop")
    cookie = {"Cookie": f"xfer-browser={browser}"} if browser else None
    page = await connect(relays.url(page_relay), compression=None, additional_headers=cookie)
    await page.send(
        serialize(Hello(version=PROTOCOL_VERSION, room=room, role="peer", name="phone", client="xfer-web/1"))
    )
    w_page = await recv_message(page)
    assert isinstance(w_page, Welcome)
    await next_message(laptop, PeerJoined)
    await laptop.send(
        serialize(Offer(to=w_page.peer_id, transfer=5, window=8 * CHUNK, files=(FileInfo(name="big.bin", size=size),)))
    )
    await next_message(page, Offer)
    await page.send(serialize(Accept(to=w_laptop.peer_id, transfer=5, download=TOKEN)))
    await next_message(laptop, Accept)
    return laptop, page, w_laptop, w_page


async def _send_file(laptop, w_laptop, w_page, data: bytes, sha256: str | None = None) -> None:
    """The laptop's side of the transfer: chunks, then file-end (with a lie when ``sha256`` is given)."""
    import hashlib

    from xfer.protocol import FileEnd
    from xfer.protocol.frames import encode_chunk

    for offset in range(0, len(data), CHUNK):
        await laptop.send(encode_chunk(w_laptop.peer_id, w_page.peer_id, 5, 0, offset, data[offset : offset + CHUNK]))
    await laptop.send(
        serialize(
            FileEnd(
                to=w_page.peer_id,
                transfer=5,
                index=0,
                size=len(data),
                sha256=sha256 or hashlib.sha256(data).hexdigest(),
            )
        )
    )


async def _page_download(relays, page_relay: int, laptop_relay: int, chunks: int):
    """A 16-chunk download the page never fetches, of which the laptop sends ``chunks`` chunks."""
    from xfer.protocol.frames import encode_chunk

    laptop, page, w_laptop, w_page = await _offer_to_page(relays, page_relay, laptop_relay, 16 * CHUNK)
    for i in range(chunks):
        await laptop.send(encode_chunk(w_laptop.peer_id, w_page.peer_id, 5, 0, i * CHUNK, bytes(CHUNK)))
    return laptop, page, w_laptop, w_page


@pytest.mark.parametrize("relay_count", [1, 2], ids=["one relay", "across relays"])
def test_a_page_that_does_not_fetch_its_download_holds_up_nobody_else(redis, relay_count):
    """The page's relay takes the sender's chunks into the page's download. Across relays they
    come off Redis, and a page that never fetches must not stop that relay's channel: another
    room across the same relays goes on at once. Either way the sender hears ``download-stalled``."""

    async def main():
        async with Relays(redis.url, 2, RelayLimits(download_start_timeout=6.0)) as relays:
            laptop, page, w_laptop, w_page = await _page_download(relays, 0, relay_count - 1, chunks=8)
            started = time.monotonic()  # 8 chunks: a whole credit window, more than the bridge holds unfetched
            other = fresh_nameplate()
            x, w_x = await relays.join(0, other, role="sender", create=True, name="x")
            y, w_y = await relays.join(1, other, name="y")
            await next_message(x, PeerJoined, timeout=3)  # news from relay 1 on relay 0's channel
            await y.send(serialize(Text(to=w_x.peer_id, text="still moving")))
            assert (await next_message(x, Text, timeout=3)).text == "still moving"
            assert time.monotonic() - started < 3, "the page's download held up its relay's channel"

            error = await next_message(laptop, Error, timeout=15)
            assert (error.code, error.sender) == ("download-stalled", w_page.peer_id)
            assert (await next_message(page, Error, timeout=5)).code == "download-stalled"

    run_async(main(), 40)


def test_a_sender_on_another_relay_that_ignores_its_credit_fails_the_download(redis):
    """Chunks through Redis queue without waiting, but only up to a limit (hostile sender)."""

    async def main():
        async with Relays(redis.url, 2, RelayLimits(download_bus_bytes=1024 * 1024)) as relays:
            laptop, page, w_laptop, w_page = await _page_download(relays, 0, 1, chunks=6)
            error = await next_message(laptop, Error, timeout=5)
            assert error.code == "protocol" and "past its credit window" in error.message
            assert (await next_message(page, Error, timeout=5)).code == "protocol"

    run_async(main(), 30)


def test_a_download_asked_for_on_another_relay_streams_from_the_pages_relay(redis):
    """A load balancer that does not keep a client on one relay: the page's WebSocket is on
    relay 0, the laptop on relay 1, and the page's download request reaches relay 2. Relay 2
    finds the page's relay in Redis and streams what relay 0's bridge hands it; the laptop's
    acknowledgements still count bytes written to the phone, and the link works once, and
    only for the page's browser."""
    import os

    from xfer.protocol import Ack, Verified

    data = os.urandom(3 * 1024 * 1024 + 12345)

    async def main():
        async with Relays(redis.url, 3) as relays:
            laptop, page, w_laptop, w_page = await _offer_to_page(relays, 0, 1, len(data), BROWSER)
            base = [f"http://127.0.0.1:{server.port}/download/{TOKEN}/0" for server in relays.servers]
            async with httpx2.AsyncClient(timeout=bounded(20), cookies={"xfer-browser": "cd" * 16}) as stranger:
                for url in base:  # another browser: nothing, and the link is not used up
                    assert (await stranger.get(url)).status_code == 404
            async with httpx2.AsyncClient(timeout=bounded(20), cookies={"xfer-browser": BROWSER}) as client:
                for url in (base[0], base[2]):  # a HEAD does not use the link up, on any relay
                    assert (await client.head(url)).status_code == 405
                async with client.stream("GET", base[2]) as response:
                    assert response.status_code == 200
                    assert response.headers["content-length"] == str(len(data))
                    assert "big.bin" in response.headers["content-disposition"]
                    assert response.headers["x-content-type-options"] == "nosniff"
                    sending = asyncio.ensure_future(_send_file(laptop, w_laptop, w_page, data))
                    body = b"".join([piece async for piece in response.aiter_bytes()])
                    await sending
                assert body == data
                verified = await next_message(laptop, Verified, timeout=10)
                assert (verified.sender, verified.index) == (w_page.peer_id, 0)
                assert (await next_message(page, Verified, timeout=5)).sha256 == verified.sha256
                for url in base:  # once only, whichever relay is asked
                    assert (await client.get(url)).status_code in (404, 410)
                assert (await client.get(base[2].replace(TOKEN, "cd" * 16))).status_code == 404
            acks = []
            while True:  # the laptop's credit came in the page's name, up to the whole file
                try:
                    acks.append(await next_message(laptop, Ack, timeout=0.5))
                except (asyncio.TimeoutError, TimeoutError):
                    break
            assert all(a.sender == w_page.peer_id for a in acks)

    run_async(main(), 60)


@pytest.mark.parametrize("ending", ["hash-mismatch", "phone-gone", "page-relay-stops"])
def test_a_download_through_another_relay_that_fails_fails_on_both_sides(redis, ending):
    """A lying sender: the response on the other relay is cut off (the browser keeps no damaged
    file) and the sender hears ``hash-mismatch``. The phone leaving mid-download: the sender
    hears ``download-cancelled``. The page's relay stopping: the relay with the request notices
    it stopped beating and cuts the response off (no download that hangs for ever)."""
    import os

    data = os.urandom(2 * 1024 * 1024)

    async def main():
        async with Relays(redis.url, 2) as relays:
            laptop, page, w_laptop, w_page = await _offer_to_page(relays, 0, 1, len(data))
            url = f"http://127.0.0.1:{relays.servers[1].port}/download/{TOKEN}/0"
            async with httpx2.AsyncClient(timeout=bounded(20)) as client:
                async with client.stream("GET", url) as response:
                    assert response.status_code == 200
                    if ending == "phone-gone":
                        await _send_file(laptop, w_laptop, w_page, data[: 1024 * 1024])
                        async for _ in response.aiter_bytes():
                            break  # the phone goes away after its first bytes
                    else:
                        lie = "0" * 64 if ending == "hash-mismatch" else None
                        sending = asyncio.ensure_future(_send_file(laptop, w_laptop, w_page, data, sha256=lie))
                        with pytest.raises(httpx2.HTTPError):
                            async for _ in response.aiter_bytes():
                                if ending == "page-relay-stops" and relays.servers[0].server.started:
                                    stopped = time.monotonic()
                                    await relays.servers[0].stop()
                        await sending
            if ending == "page-relay-stops":
                assert time.monotonic() - stopped < bounded(5 * EXPIRY)
                return
            error = await next_message(laptop, Error, timeout=10)
            expected = "hash-mismatch" if ending == "hash-mismatch" else "download-cancelled"
            assert (error.code, error.sender) == (expected, w_page.peer_id)
            assert (await next_message(page, Error, timeout=5)).code == expected

    run_async(main(), 60)


def test_serve_redis_errors_are_one_line(tmp_path):
    """A bad URL, or no redis package: one line that says what to do, exit 2, nothing listening."""
    bad = subprocess.run(
        xfer_cmd() + ["serve", "--port", "0", "--redis", "http://example"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "xfer: --redis wants a URL like redis://HOST:6379/0, not 'http://example'"
    )
    code = (
        "import sys; sys.modules['redis'] = None; from xfer.cli import main; "
        "sys.argv = ['xfer', 'serve', '--port', '0', '--redis', 'redis://127.0.0.1:1/0']; main()"
    )
    missing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "xfer: --redis needs the redis package: pip install 'xfer[redis]'"


def test_no_redis_import_without_redis():
    code = (
        "import sys; from xfer.relay import create_app; create_app(); "
        "assert 'redis' not in sys.modules and 'xfer.relay.bus' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- failures: a dead relay, Redis gone and back -------------------------------------------


def test_a_dead_relays_peers_leave_their_rooms(redis, tmp_path, procs):
    async def main():
        port = free_port()
        other = procs(
            ["serve", "--host", "127.0.0.1", "--port", str(port), "--redis", redis.url, "--redis-expiry", str(EXPIRY)],
            tmp_path,
            "serve-b",
        )
        wait_for_port(port)
        async with Relays(redis.url, 1) as relays:
            room = fresh_nameplate()
            a, _ = await relays.join(0, room, role="sender", create=True)
            b = await connect(f"ws://127.0.0.1:{port}/ws", compression=None)
            await b.send(serialize(Hello(version=PROTOCOL_VERSION, room=room, role="receiver", name="b")))
            welcome = await recv_message(b)
            assert isinstance(welcome, Welcome)
            await next_message(a, PeerJoined)
            other.proc.send_signal(signal.SIGKILL)
            started = time.monotonic()
            left = await next_message(a, PeerLeft, timeout=EXPIRY * 10)
            assert left.peer_id == welcome.peer_id
            assert time.monotonic() - started < bounded(EXPIRY * 8)  # expiry plus a beat, and a loaded machine

    run_async(main())


def test_redis_lost_and_back(redis):
    async def main():
        async with Relays(redis.url, 2) as relays:
            shared = fresh_nameplate()
            a, _ = await relays.join(0, shared, role="sender", create=True, name="a")
            b, welcome_b = await relays.join(1, shared, name="b")
            await next_message(a, PeerJoined)
            local = fresh_nameplate()
            c, _ = await relays.join(0, local, role="sender", create=True, name="c")
            d, welcome_d = await relays.join(0, local, name="d")
            await next_message(c, PeerJoined)
            health = f"http://127.0.0.1:{relays.servers[0].port}/healthz"

            redis.stop()
            # each relay says the other's peer left, and stops opening rooms
            assert (await next_message(a, PeerLeft, timeout=5)).peer_id == welcome_b.peer_id
            await next_message(b, PeerLeft, timeout=5)
            async with httpx2.AsyncClient() as client:
                reply = await client.get(health)
            assert reply.status_code == 503 and reply.json()["status"] == "degraded"
            assert reply.json()["redis"] == "down"
            ws, reply = await relays.join(0, fresh_nameplate(), create=True)
            assert isinstance(reply, Error) and reply.code == "unavailable"
            assert await closed_with(ws) == 1013
            # a room whose peers are all on one relay goes on
            await c.send(serialize(Text(to=welcome_d.peer_id, text="still here")))
            assert (await next_message(d, Text)).text == "still here"

            redis.start()  # empty: the relays write their peers back
            assert (await next_message(a, PeerJoined, timeout=8)).peer.id == welcome_b.peer_id
            await next_message(b, PeerJoined, timeout=8)
            await b.send(serialize(Text(text="back")))
            assert (await next_message(a, Text)).text == "back"
            async with httpx2.AsyncClient() as client:
                reply = await client.get(health)
            assert reply.status_code == 200 and reply.json()["redis"] == "up"
            e, reply = await relays.join(1, local, name="e")  # the local room is known in Redis again
            assert isinstance(reply, Welcome) and sorted(p.name for p in reply.peers) == ["c", "d"]

    run_async(main(), timeout=60)


# -- whole transfers with the CLI ----------------------------------------------------------


class Balancer:
    """A TCP load balancer on loopback: each connection goes to the first backend that answers."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(self, reader, writer) -> None:
        for port in self.backends:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return

        async def copy(src, dst):
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


def _serve(procs, tmp_path, redis, name: str) -> int:
    port = free_port()
    p = procs(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--redis", redis.url, "--redis-expiry", str(EXPIRY)],
        tmp_path,
        name,
    )
    wait_for_port(port)
    p.port = port
    return p


def test_fan_out_across_three_relays(redis, tmp_path, procs):
    """A sender on relay A, receivers on B and C: identical files, the data published once per relay."""
    relays = [_serve(procs, tmp_path, redis, f"serve-{n}") for n in "abc"]
    src = make_file(tmp_path / "data.bin", 24_000_000, seed=7)
    dirs = [tmp_path / "in-b", tmp_path / "in-c"]
    for d in dirs:
        d.mkdir()
    sender = procs(
        ["send", str(src), "--relay", f"127.0.0.1:{relays[0].port}", "--json", "--receivers", "2", "--no-qr"],
        tmp_path,
        "send",
    )
    code = sender.first_event()["code"]
    receivers = [
        procs(
            ["receive", "--room", code, "--relay", f"127.0.0.1:{relay.port}", "--yes", "--json", "--dir", str(d)],
            tmp_path,
            f"receive-{n}",
        )
        for relay, d, n in zip(relays[1:], dirs, "bc")
    ]
    for p in [sender, *receivers]:
        assert p.wait(90) == 0, p.stderr
    for d in dirs:
        assert sha256_of(d / "data.bin") == sha256_of(src)
    done = [e for e in sender.events() if e["event"] == "done"][0]
    assert len(done["peers"]) == 2
    for relay in relays:
        assert "lost Redis" not in relay.stderr


def test_relay_killed_mid_transfer_receiver_resumes_through_another(redis, tmp_path, procs):
    """Relay B dies mid-transfer; its receiver reconnects through the balancer to A and finishes."""
    relay_a = _serve(procs, tmp_path, redis, "serve-a")
    relay_b = _serve(procs, tmp_path, redis, "serve-b")
    src = make_file(tmp_path / "data.bin", 40_000_000, seed=8)
    (tmp_path / "in").mkdir()

    async def main():
        balancer = Balancer([relay_b.port, relay_a.port])
        await balancer.start()
        sender = procs(
            ["send", str(src), "--relay", f"127.0.0.1:{relay_a.port}", "--json", "--no-qr", "--limit-rate", "16MB"],
            tmp_path,
            "send",
        )
        code = (await asyncio.to_thread(sender.first_event))["code"]
        receiver = procs(
            [
                "receive",
                "--room",
                code,
                "--relay",
                f"127.0.0.1:{balancer.port}",
                "--yes",
                "--json",
                "--dir",
                str(tmp_path / "in"),
            ],
            tmp_path,
            "receive",
        )
        await asyncio.to_thread(wait_progress, receiver, 8_000_000, 30)
        relay_b.proc.send_signal(signal.SIGKILL)
        for p in (sender, receiver):
            rc = await asyncio.to_thread(p.wait, 90)
            assert rc == 0, p.stderr
        events = receiver.events()
        assert any(e["event"] == "reconnected" for e in events)
        resumed = [e for e in sender.events() if e["event"] == "accepted"]
        assert len(resumed) >= 2 and resumed[-1]["resumed"] > 0  # a later round started where it stopped
        assert sha256_of(tmp_path / "in" / "data.bin") == sha256_of(src)

    run_async(main(), timeout=150)


def test_fan_out_relay_killed_mid_transfer_its_receiver_comes_back_through_another(redis, tmp_path, procs):
    """The issue's scenario: a sender on A, receivers on B and C; B dies mid-transfer, its
    receiver reconnects through the balancer to A and finishes from what it held."""
    relay_a, relay_b, relay_c = (_serve(procs, tmp_path, redis, f"serve-{n}") for n in "abc")
    src = make_file(tmp_path / "data.bin", 40_000_000, seed=10)
    for name in ("in-b", "in-c"):
        (tmp_path / name).mkdir()

    async def main():
        balancer = Balancer([relay_b.port, relay_a.port])
        await balancer.start()
        sender = procs(
            [
                "send",
                str(src),
                "--relay",
                f"127.0.0.1:{relay_a.port}",
                "--json",
                "--no-qr",
                "--receivers",
                "2",
                "--limit-rate",
                "16MB",
                "--peer-timeout",
                "20",
            ],
            tmp_path,
            "send",
        )
        code = (await asyncio.to_thread(sender.first_event))["code"]
        on_b = procs(
            [
                "receive",
                "--room",
                code,
                "--relay",
                f"127.0.0.1:{balancer.port}",
                "--yes",
                "--json",
                "--dir",
                str(tmp_path / "in-b"),
            ],
            tmp_path,
            "receive-b",
        )
        on_c = procs(
            [
                "receive",
                "--room",
                code,
                "--relay",
                f"127.0.0.1:{relay_c.port}",
                "--yes",
                "--json",
                "--dir",
                str(tmp_path / "in-c"),
            ],
            tmp_path,
            "receive-c",
        )
        await asyncio.to_thread(wait_progress, on_b, 8_000_000, 30)
        relay_b.proc.send_signal(signal.SIGKILL)
        for p in (sender, on_b, on_c):
            rc = await asyncio.to_thread(p.wait, 120)
            assert rc == 0, p.stderr
        for name in ("in-b", "in-c"):
            assert sha256_of(tmp_path / name / "data.bin") == sha256_of(src)
        assert any(e["event"] == "reconnected" for e in on_b.events())
        came_back = [e for e in on_b.events() if e["event"] == "accepted"][-1]
        assert came_back["resumed"] > 0  # it went on from what it held
        events = sender.events()
        assert [e["reason"] for e in events if e["event"] == "waiting"][-1] == "receiver-back"
        assert len([e for e in events if e["event"] == "done"][0]["peers"]) == 2

    run_async(main(), timeout=200)


def test_a_transfer_across_relays_survives_a_redis_restart(redis, tmp_path, procs):
    """Redis is killed mid-transfer and started again, empty: the transfer pauses, then resumes and finishes."""
    relay_a = _serve(procs, tmp_path, redis, "serve-a")
    relay_b = _serve(procs, tmp_path, redis, "serve-b")
    src = make_file(tmp_path / "data.bin", 30_000_000, seed=11)
    (tmp_path / "in").mkdir()
    receiver = procs(
        [
            "receive",
            "--relay",
            f"127.0.0.1:{relay_b.port}",
            "--yes",
            "--json",
            "--no-qr",
            "--dir",
            str(tmp_path / "in"),
        ],
        tmp_path,
        "receive",
    )
    code = receiver.first_event()["code"]
    sender = procs(
        ["send", str(src), "--room", code, "--relay", f"127.0.0.1:{relay_a.port}", "--json", "--limit-rate", "12MB"],
        tmp_path,
        "send",
    )
    wait_progress(receiver, 6_000_000, 30)
    redis.stop()
    time.sleep(EXPIRY * 2)
    redis.start()
    for p in (sender, receiver):
        assert p.wait(120) == 0, p.stderr
    assert sha256_of(tmp_path / "in" / "data.bin") == sha256_of(src)
    assert any(e["event"] == "interrupted" for e in sender.events())
    assert [e for e in sender.events() if e["event"] == "accepted"][-1]["resumed"] > 0
    for relay in (relay_a, relay_b):
        assert "lost Redis" in relay.stderr and "answers again" in relay.stderr


def test_a_big_transfer_across_relays_stays_inside_redis_buffers(redis, tmp_path, procs):
    """96 MiB from relay A to relay B (12 credit windows): credit keeps Redis's output buffer
    for each relay small. (256 MiB and 1 GiB showed the same; bench/redis_relays.py measures
    it at 1 GiB.)"""
    size = 96 << 20
    relay_a = _serve(procs, tmp_path, redis, "serve-a")
    relay_b = _serve(procs, tmp_path, redis, "serve-b")
    src = make_file(tmp_path / "big.bin", size, seed=9)
    (tmp_path / "in").mkdir()
    receiver = procs(
        [
            "receive",
            "--relay",
            f"127.0.0.1:{relay_b.port}",
            "--yes",
            "--json",
            "--no-qr",
            "--dir",
            str(tmp_path / "in"),
        ],
        tmp_path,
        "receive",
    )
    code = receiver.first_event()["code"]
    sender = procs(
        ["send", str(src), "--room", code, "--relay", f"127.0.0.1:{relay_a.port}", "--json"], tmp_path, "send"
    )
    for p in (sender, receiver):
        assert p.wait(300) == 0, p.stderr
    assert sha256_of(tmp_path / "in" / "big.bin") == sha256_of(src)
    clients = redis.info("clients")
    peak = int(clients["client_recent_max_output_buffer"])
    assert peak < 16 * 1024 * 1024, f"a subscriber's output buffer reached {peak} bytes"
    stats = redis.info("stats")
    assert int(stats["total_net_output_bytes"]) > size  # the data did cross Redis
    for relay in (relay_a, relay_b):
        assert "lost Redis" not in relay.stderr


def test_a_redis_outage_longer_than_peer_timeout_ends_the_transfer_and_a_rerun_resumes(redis, tmp_path, procs):
    """The bound docs/redis.md states: ``--peer-timeout`` bounds a Redis outage as it bounds a
    relay's. Past it both sides stop (exit 5) with the partial file kept and nothing under the
    final name; once Redis is back, the same commands run again resume from what was held."""
    relay_a = _serve(procs, tmp_path, redis, "serve-a")
    relay_b = _serve(procs, tmp_path, redis, "serve-b")
    src = make_file(tmp_path / "data.bin", 30_000_000, seed=12)
    into = tmp_path / "in"
    into.mkdir()
    timeout = ("--peer-timeout", "2")

    def receive(name: str):
        args = ["receive", "--relay", f"127.0.0.1:{relay_b.port}", "--yes", "--json", "--no-qr", "--dir", str(into)]
        return procs([*args, *timeout], tmp_path, name)

    def send(code: str, name: str):
        args = ["send", str(src), "--room", code, "--relay", f"127.0.0.1:{relay_a.port}", "--json"]
        return procs([*args, "--limit-rate", "12MB", *timeout], tmp_path, name)

    receiver = receive("receive")
    sender = send(receiver.first_event()["code"], "send")
    wait_progress(receiver, 6_000_000, 30)
    redis.stop()
    try:
        for p in (sender, receiver):
            assert p.wait(30) == 5, p.stderr
    finally:
        redis.start()
    assert not (into / "data.bin").exists()
    partial = [p for p in into.iterdir() if p.name.endswith(".xfer-part")]
    assert len(partial) == 1 and partial[0].stat().st_size >= 6_000_000
    for p in (sender, receiver):
        assert "Traceback" not in p.stderr
        last = p.events()[-1]
        assert last["event"] == "error" and last["code"] == "peer-left" and "again to resume" in last["message"]

    for relay in (relay_a, relay_b):  # Redis is back; the relays see it within a beat or two
        _wait_healthy(relay.port)
    again = receive("receive-again")
    resend = send(again.first_event(timeout=30)["code"], "send-again")
    for p in (resend, again):
        assert p.wait(60) == 0, p.stderr
    assert sha256_of(into / "data.bin") == sha256_of(src)
    assert [e for e in again.events() if e["event"] == "accepted"][-1]["resumed"] >= 6_000_000


def _wait_healthy(port: int, seconds: float = 15) -> None:
    """Until the relay on ``port`` answers /healthz with 200 (it has Redis again)."""
    deadline = time.monotonic() + bounded(seconds)
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the relay on port {port} did not see Redis again within {seconds} s")
