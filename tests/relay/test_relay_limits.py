"""What one connection, one address or a crowd can do to a relay: measured against a real
``xfer serve`` on loopback with real WebSocket clients (issue 13, relays; issue 14, memory)."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

import relay_load  # bench/, on the path through conftest
from conftest import bounded, free_port, run_async, wait_for_port, xfer_cmd
from peers import fresh_nameplate
from xfer.protocol import (
    MAX_BINARY_FRAME,
    PROTOCOL_VERSION,
    Error,
    Hello,
    Welcome,
    encode_chunk,
    parse_message,
    serialize,
)
from xfer.protocol.room import Joined, Refused, Room, address_key
from xfer.relay import RelayLimits, RelayServer, bind_socket
from xfer.relay.budget import Budget

# An abuser alone in its room: it sends valid offers of 1,000 files (about 230 KB of JSON each)
# as fast as the relay reads them. Run as its own process, so that it competes with the relay
# for the CPU as a client elsewhere would, and not with the test's own clients for one GIL.
ABUSER = r"""
import json, sys
from websockets.sync.client import connect
files = [{"name": f"folder/file-{i:05d}-" + "x" * 200, "size": i + 1, "kind": "file"} for i in range(1000)]
offer = json.dumps({"type": "offer", "transfer": 1, "files": files})
with connect(sys.argv[1], compression=None, max_size=None) as ws:
    ws.send(sys.argv[2])
    ws.recv()
    print(len(offer), flush=True)
    sys.stdin.readline()
    while True:
        ws.send(offer)
"""


def hello(room: str, role: str, create: bool = False) -> str:
    return serialize(Hello(version=PROTOCOL_VERSION, room=room, role=role, name=role, create=create))


async def join(url: str, room: str, role: str, create: bool = False, **kw):
    ws = await connect(url, compression=None, max_size=MAX_BINARY_FRAME, **kw)
    await ws.send(hello(room, role, create))
    welcome = parse_message(await asyncio.wait_for(ws.recv(), bounded(5)))
    assert isinstance(welcome, Welcome), welcome
    return ws, welcome


async def healthz_ms(port: int) -> float:
    """Milliseconds for one GET /healthz, on a new connection."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    body = await asyncio.wait_for(reader.read(), bounded(10))
    writer.close()
    assert body.startswith(b"HTTP/1.1 200")
    return (time.perf_counter() - start) * 1000


def test_an_abuser_alone_in_its_room_slows_no_other_room(relay_process, tmp_path):
    """Another room's transfer keeps at least 80 % of its rate, and /healthz stays quick,
    while one connection sends large valid offers in a loop (the relay reads it no faster
    than its budget). Rates are bytes moved in fixed rounds: phases without an abuser and
    with one (a new one each time) take turns, and the medians of each kind are compared,
    so that what else the machine does weighs on both alike."""
    port = relay_process.port
    url = f"ws://127.0.0.1:{port}/ws"

    async def main():
        room = fresh_nameplate()
        sender, welcome = await join(url, room, "sender", create=True)
        receiver, joined = await join(url, room, "receiver")
        frame = encode_chunk(welcome.peer_id, joined.peer_id, 1, 0, 0, bytes(256 * 1024))
        received = 0

        async def send():
            while True:
                await sender.send(frame)

        async def receive():
            nonlocal received
            while True:
                received += len(await receiver.recv())

        async def rounds(rates: list[float], pings: list[float]) -> None:
            await asyncio.sleep(0.2)
            for _ in range(2):
                before, start = received, time.perf_counter()
                pings.append(await healthz_ms(port))
                await asyncio.sleep(0.4)
                rates.append((received - before) / (time.perf_counter() - start))

        abusers = [
            subprocess.Popen(
                [sys.executable, "-c", ABUSER, url, hello(fresh_nameplate(), "sender", create=True)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        tasks = [asyncio.create_task(send()), asyncio.create_task(receive())]
        calm: list[float] = []
        abused: list[float] = []
        calm_pings: list[float] = []
        abused_pings: list[float] = []
        try:
            for abuser in abusers:  # each joined its room and made its offer
                assert int(await asyncio.to_thread(abuser.stdout.readline)) > 200_000
            await rounds([], [])  # warm up
            for abuser in abusers:
                await rounds(calm, calm_pings)
                abuser.stdin.write("go\n")
                abuser.stdin.flush()
                await rounds(abused, abused_pings)
                assert abuser.poll() is None  # slowed, not dropped
                abuser.kill()
                abuser.wait(5)
            await rounds(calm, calm_pings)
        finally:
            for abuser in abusers:
                if abuser.poll() is None:
                    abuser.kill()
                    abuser.wait(5)
            for task in tasks:
                task.cancel()
        mib = 1024 * 1024
        shown = (
            f"alone {[round(r / mib) for r in calm]} MiB/s, with the abuser {[round(r / mib) for r in abused]} MiB/s"
        )
        assert statistics.median(abused) >= 0.8 * statistics.median(calm), shown
        assert statistics.median(abused_pings) <= statistics.median(calm_pings) + bounded(50), (
            abused_pings,
            calm_pings,
        )
        for ws in (sender, receiver):
            ws.transport.abort()  # a close handshake would wait behind the chunks in flight

    run_async(main(), 60)


def test_a_budget_lets_an_honest_burst_through_and_makes_a_flood_wait():
    """The largest offer and chunk pass at once on an idle budget; a flood waits as long
    as its bytes take at the budget's rate; an idle second refills it."""
    limits = RelayLimits(control_messages_per_second=10, control_bytes_per_second=1000, peer_bytes_per_second=5000)
    budget = Budget(limits, now=0.0)
    assert budget.charge("x" * limits.max_control_frame, None, 0.0) == 0.0  # one offer of the largest size
    assert budget.charge("x" * 2000, None, 0.0) == 2.0  # the next waits for its bytes
    chunks = Budget(limits, now=0.0)  # chunks count toward every byte, not the control bytes
    assert chunks.charge(None, bytes(limits.max_binary_frame), 0.0) == 0.0  # a chunk of the largest size
    assert chunks.charge(None, bytes(5000), 0.0) == 1.0
    assert chunks.charge("{}", None, 0.0) > 1.0  # a message too, once every byte is spent
    fresh = Budget(limits, now=0.0)
    waits = [fresh.charge("{}", None, 0.0) for _ in range(12)]
    assert waits[:9] == [0.0] * 9 and waits[10:] == [0.1, 0.2]  # the 11th message is one too many
    assert fresh.charge("{}", None, 10.0) == 0.0


def test_per_address_limits_count_ipv6_by_its_64():
    """Every address of one IPv6 /64 is one client to the limits (one subscriber holds
    2^64 of them); other /64s, IPv4 addresses and IPv4 written as IPv6 are counted apart."""
    assert address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert address_key("2001:DB8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_key("::1") == "::/64"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7" == address_key("192.0.2.7")
    assert address_key("unknown") == "unknown" and address_key("local") == "local"

    limits = RelayLimits(max_rooms_per_address=50, max_rooms=10_000, joins_per_minute=10_000)
    room: Room[object] = Room(limits)
    opened = [
        room.join(
            "",
            create=True,
            address=address_key(f"2001:db8:1:2::{n:x}"),  # 200 addresses of one /64
            name="",
            role="sender",
            client="",
            handle=object(),
            now=0.0,
        )
        for n in range(1, 201)
    ]
    assert sum(isinstance(r, Joined) for r in opened) == 50  # as one address would
    assert {r.code for r in opened if isinstance(r, Refused)} == {"too-many-rooms"}
    other = room.join(
        "", create=True, address=address_key("2001:db8:1:3::1"), name="", role="sender", client="", handle=0, now=0.0
    )
    assert isinstance(other, Joined)  # the next /64 is someone else


def test_a_relay_on_ipv6_counts_its_clients_by_64():
    """The same, over a real socket: a client on ::1 is counted as ::/64."""

    async def main():
        server = RelayServer(bind_socket("::1", 0), limits=RelayLimits(max_rooms_per_address=1))
        await server.start()
        try:
            url = f"ws://[::1]:{server.port}/ws"
            first, _ = await join(url, fresh_nameplate(), "sender", create=True)
            assert server.room.rooms_of("::/64") == 1
            second = await connect(url, compression=None)
            await second.send(hello(fresh_nameplate(), "sender", create=True))
            refused = parse_message(await asyncio.wait_for(second.recv(), bounded(5)))
            assert isinstance(refused, Error) and refused.code == "too-many-rooms"
            await first.close()
            await second.close()
        finally:
            await server.stop()

    run_async(main())


def _refused(sock: socket.socket) -> bool:
    """Whether the relay closed this connection of ours without a word."""
    sock.settimeout(bounded(5))
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_past_its_connection_cap_the_relay_refuses_the_newest_and_says_so_once(procs, tmp_path):
    """Idle connections past ``--max-connections`` are closed at once, those already open
    are kept, and the relay says so in one line, not one per connection; once idle ones go
    (closed here; the relay closes them itself after ``handshake_timeout``), people join again."""
    port = free_port()
    relay = procs(["serve", "--host", "127.0.0.1", "--port", str(port), "--max-connections", "20"], tmp_path, "serve")
    wait_for_port(port)
    time.sleep(0.3)  # the relay is done with wait_for_port's connection
    url = f"ws://127.0.0.1:{port}/ws"
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        time.sleep(0.3)
        newest = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        assert all(_refused(sock) for sock in newest)
        for sock in idle:  # the oldest are kept
            sock.settimeout(0.05)
            with pytest.raises(TimeoutError):
                sock.recv(1)

        async def try_join():
            try:
                ws, welcome = await join(url, fresh_nameplate(), "sender", create=True)
            except (OSError, InvalidHandshake, ConnectionClosed):
                return None
            await ws.close()
            return welcome

        assert run_async(try_join()) is None  # a join too, while the relay is full
        for sock in idle[:5]:
            sock.close()
        time.sleep(0.3)
        assert isinstance(run_async(try_join()), Welcome)
    finally:
        for sock in idle:
            sock.close()
    relay.proc.send_signal(signal.SIGINT)
    relay.wait(10)
    said = relay.stderr + relay.stdout
    assert "Up to 20 connections at once" in said
    assert said.count("refusing new connections") == 1, said
    assert said.count("taking new connections again") == 1, said


def test_the_relay_raises_its_limit_of_open_files_and_stays_below_it(procs, tmp_path):
    """Started with a soft limit of 100 open files and a hard one of 150, ``xfer serve``
    raises the soft limit to 150 and takes at most 150 - 32 connections."""
    port = free_port()
    relay = subprocess.Popen(
        ["prlimit", "--nofile=100:150", *xfer_cmd(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    said = b""
    try:
        # Its port listens before the banner is printed: wait for the banner's last line
        # (a Ctrl-C before it ends the start-up with only "interrupted").
        assert relay.stdout is not None
        deadline = time.monotonic() + bounded(10)
        while b"Ctrl-C stops it" not in said and time.monotonic() < deadline and relay.poll() is None:
            if select.select([relay.stdout], [], [], 0.2)[0]:
                said += os.read(relay.stdout.fileno(), 4096)
    finally:
        relay.send_signal(signal.SIGINT)
        rest = relay.communicate(timeout=bounded(10))[0]
    said_all = said.decode() + rest
    assert "Up to 118 connections at once (limit of open files: 150)" in said_all, said_all


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def test_memory_returns_near_idle_after_many_rooms(procs, tmp_path):
    """Hundreds of busy rooms (each sender sends a megabyte at once to its receiver through
    ``xfer serve``) raise the relay's memory; once they closed it goes back near its idle
    level within seconds, instead of staying at most of its peak (glibc keeps freed memory
    unless asked to give it back)."""
    port = free_port()
    relay = procs(["serve", "--host", "127.0.0.1", "--port", str(port), "--joins-per-minute", "1000000"], tmp_path, "s")
    wait_for_port(port)
    pid = relay.proc.pid

    async def main():
        gate = asyncio.Semaphore(50)

        async def room(i: int):
            async with gate:
                where = relay_load.source_address(i)  # rooms per address are limited: spread them
                receiver, welcome = await relay_load.join(port, "", "receiver", True, where, ping=False)
                sender, joined = await relay_load.join(port, welcome.room, "sender", False, where, ping=False)
            return sender, receiver, encode_chunk(joined.peer_id, welcome.peer_id, 1, 0, 0, bytes(256 * 1024))

        async def busy(sender, receiver, frame):
            await asyncio.gather(*(sender.send(frame) for _ in range(4)))
            for _ in range(4):
                await receiver.recv()

        await asyncio.sleep(0.5)
        idle = _rss_kib(pid)
        rooms = await asyncio.gather(*(room(i) for i in range(300)))
        await asyncio.gather(*(busy(*r) for r in rooms))
        peak = _rss_kib(pid, "VmHWM")
        await asyncio.gather(*(ws.close() for r in rooms for ws in r[:2]))
        deadline = time.monotonic() + bounded(10)
        while (after := _rss_kib(pid)) - idle > (peak - idle) // 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        return idle, peak, after

    idle, peak, after = run_async(main(), 90)
    shown = f"idle {idle // 1024} MiB, peak {peak // 1024} MiB, after {after // 1024} MiB"
    assert peak - idle > 60 * 1024, shown  # the load did take memory
    assert after - idle <= (peak - idle) // 3, shown


def test_past_its_memory_bound_the_relay_opens_no_new_rooms():
    """Over ``max_memory`` of resident memory a new room is refused with a clear error;
    rooms already open go on and people still join them."""

    async def main():
        server = RelayServer(bind_socket("127.0.0.1", 0))
        await server.start()
        try:
            url = f"ws://127.0.0.1:{server.port}/ws"
            room = fresh_nameplate()
            sender, _ = await join(url, room, "sender", create=True)
            server.app.state.relay.memory.limit = 1  # any process is past one byte
            refused = await connect(url, compression=None)
            await refused.send(hello(fresh_nameplate(), "sender", create=True))
            error = parse_message(await asyncio.wait_for(refused.recv(), bounded(5)))
            assert isinstance(error, Error) and error.code == "relay-full", error
            assert "memory" in error.message and "try again later" in error.message
            receiver, welcome = await join(url, room, "receiver")  # the open room is still joined
            assert welcome.peers and welcome.room == room
            for ws in (sender, refused, receiver):
                await ws.close()
        finally:
            await server.stop()

    run_async(main())
