"""Load on one xfer relay from asyncio clients that speak the protocol (``xfer.protocol``) directly.

- ``round_trip``: two peers in a room ping-pong ``text`` messages through the relay; the
  time of each round trip (A sends, B answers, A has the answer), and the same clients
  against a bare WebSocket echo server in this process (no relay) and through a bare
  forwarder process, the cases taking turns. ``python bench/relay_load.py round-trip
  --relay NAME=PORT ...`` runs it in a process of its own (what ``run_all.py`` does).
- ``idle_connections``: N peers join rooms and stay idle; the relay's RSS before and after.
- ``rooms``: N rooms, each a sender and a receiver moving one small file at once, in full
  protocol (offer, accept, file-start, chunks, file-end, ack, verified, done); SHA-256 checked.

The relay limits rooms per client address (50) and joins per minute, so the clients spread
their rooms over source addresses 127.0.0.2, 127.0.0.3, ... (all loopback on Linux), and the
relay is started with ``--joins-per-minute`` high enough.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from xfer.protocol import (
    PROTOCOL_VERSION,
    Accept,
    Ack,
    Done,
    FileEnd,
    FileInfo,
    FileStart,
    Hello,
    Offer,
    PeerJoined,
    Text,
    Verified,
    Welcome,
    chunk_header,
    parse_chunk,
    parse_message,
    serialize,
)

CHUNK = 256 * 1024
WINDOW = 8 * 1024 * 1024
ROOMS_PER_ADDRESS = 40  # under the relay's 50 rooms per client address


def source_address(room_index: int) -> str:
    return f"127.0.0.{2 + room_index // ROOMS_PER_ADDRESS}"


async def join(port: int, room: str, role: str, create: bool, local: str | None = None, ping: bool = True):
    """Open a WebSocket to the relay and join ``room``; return (ws, welcome)."""
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws",
        compression=None,
        max_size=None,
        proxy=None,
        ping_interval=20 if ping else None,
        open_timeout=30,
        **({"local_addr": (local, 0)} if local else {}),
    )
    await ws.send(
        serialize(Hello(version=PROTOCOL_VERSION, room=room, role=role, name=role, client="xfer-bench", create=create))
    )
    welcome = parse_message(await ws.recv())
    if not isinstance(welcome, Welcome):
        await ws.close()
        raise RuntimeError(f"expected welcome, got {welcome}")
    return ws, welcome


async def next_of(ws, kind: type):
    """The next control message of this type (others, like peer-joined, are skipped)."""
    while True:
        frame = await ws.recv()
        if isinstance(frame, str):
            message = parse_message(frame)
            if isinstance(message, kind):
                return message


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    return {
        "p50": at(50),
        "p99": at(99),
        "min": ordered[0],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "n": len(ordered),
    }


class _Pair:
    """One timed path: ``a`` sends a text message, and has it back once the far side answered
    (``b``, a peer that echoes each ``Text``; None: the server itself echoes)."""

    def __init__(self, a, b=None, close=()):
        self.a, self.b, self.close = a, b, close
        self.samples: list[float] = []
        self.sent = 0
        self.echo = asyncio.create_task(self._echo()) if b is not None else None

    async def _echo(self) -> None:
        while True:
            message = await next_of(self.b, Text)
            await self.b.send(serialize(Text(text=message.text)))

    async def run(self, count: int, timed: bool) -> None:
        for _ in range(count):
            text = f"ping {self.sent}"
            self.sent += 1
            start = time.perf_counter()
            await self.a.send(serialize(Text(text=text)))
            answer = await next_of(self.a, Text)
            elapsed = time.perf_counter() - start
            if answer.text != text:
                raise RuntimeError(f"round trip {self.sent}: got {answer.text!r}")
            if timed:
                self.samples.append(elapsed)

    async def aclose(self) -> None:
        if self.echo is not None:
            self.echo.cancel()
        await asyncio.gather(*(ws.close() for ws in self.close), return_exceptions=True)


async def _relay_pair(port: int) -> _Pair:
    a, opened = await join(port, "", "receiver", True)  # the relay names the room (its nameplate)
    b, _ = await join(port, opened.room or "", "sender", False)
    await next_of(a, PeerJoined)
    return _Pair(a, b, (a, b))


async def _echo_handler(ws) -> None:  # the relay's job, minus everything the relay does
    async for frame in ws:
        await ws.send(frame)


async def round_trip(port: int | dict[str, int], n: int = 1000, warmup: int = 50, block: int = 50) -> dict:
    """p50/p99 (seconds) of ``n`` text round trips through the relay, a bare echo server
    and a bare forwarder; several relays when ``port`` is a dict (name: port).

    The cases take turns in blocks of ``block`` round trips, so a busy minute of the
    machine lands on each alike. The garbage collector of this process is off while it
    measures (its heap frozen first): a collection here is this process's pause, not the
    relay's, and would land on whichever case was running."""
    ports = {"relay": port} if isinstance(port, int) else dict(port)
    pairs: dict[str, _Pair] = {}
    forwarder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BARE_FORWARDER, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with serve(_echo_handler, "127.0.0.1", 0, compression=None) as server:
            for name, relay_port in ports.items():
                pairs[name] = await _relay_pair(relay_port)
            echo = await connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", compression=None, proxy=None)
            pairs["echo_no_relay"] = _Pair(echo, close=(echo,))
            assert forwarder.stdout is not None
            bare_port = int(await asyncio.wait_for(forwarder.stdout.readline(), 30))
            fa = await connect(f"ws://127.0.0.1:{bare_port}/", compression=None, proxy=None)
            fb = await connect(f"ws://127.0.0.1:{bare_port}/", compression=None, proxy=None)
            await asyncio.sleep(0.2)  # both of the forwarder's handlers registered
            pairs["bare_forwarder"] = _Pair(fa, fb, (fa, fb))
            for pair in pairs.values():
                await pair.run(warmup, timed=False)
            gc.collect()
            gc.freeze()
            gc.disable()
            try:
                for done in range(0, n, block):
                    for pair in pairs.values():
                        await pair.run(min(block, n - done), timed=True)
            finally:
                gc.enable()
                gc.unfreeze()
    finally:
        await asyncio.gather(*(pair.aclose() for pair in pairs.values()), return_exceptions=True)
        forwarder.kill()
        await forwarder.wait()
    return {name: percentiles(pair.samples) for name, pair in pairs.items()}


# A relay reduced to forwarding: a websockets server in its own process that sends every frame
# from one connection to the others. The same path as through ``xfer serve`` (two processes to
# cross each way), without anything xfer does: what the machine itself costs a round trip.
_BARE_FORWARDER = """
import asyncio
from websockets.asyncio.server import serve
peers = []
async def handler(ws):
    peers.append(ws)
    try:
        async for frame in ws:
            for other in list(peers):
                if other is not ws:
                    await other.send(frame)
    finally:
        peers.remove(ws)
async def main():
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


async def idle_connections(port: int, relay_pid: int, n: int = 1000, per_room: int = 10) -> dict:
    """Relay RSS (KiB) with one warm-up peer, then with ``n`` more idle peers in rooms of ``per_room``."""
    conns = []
    try:
        warm, _ = await join(port, "", "receiver", True, ping=False)
        conns.append(warm)
        await asyncio.sleep(1.0)
        before = _status_kib(relay_pid, "VmRSS")
        rooms = ["" for _ in range((n + per_room - 1) // per_room)]  # "": the relay names each when it opens
        gate = asyncio.Semaphore(50)

        async def one(i: int):
            async with gate:
                r = i // per_room
                first = i % per_room == 0
                ws, welcome = await join(port, rooms[r], "peer", first, source_address(r), ping=False)
                if first:
                    rooms[r] = welcome.room or ""
                return ws

        # the first peer of each room creates it, before the others join
        firsts = await asyncio.gather(*(one(i) for i in range(0, n, per_room)))
        conns.extend(firsts)
        rest = await asyncio.gather(*(one(i) for i in range(n) if i % per_room))
        conns.extend(rest)
        await asyncio.sleep(2.0)
        after = _status_kib(relay_pid, "VmRSS")
        return {
            "connections": n,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_connection": (after - before) / n,
            "relay_peak_kib": _status_kib(relay_pid, "VmHWM"),
        }
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


async def _receiver(ws, digest: str) -> None:
    offer = await next_of(ws, Offer)
    sender = offer.sender
    await ws.send(serialize(Accept(to=sender, transfer=offer.transfer)))
    hasher, got, acked = hashlib.sha256(), 0, 0
    end = None
    while end is None:
        frame = await ws.recv()
        if isinstance(frame, bytes):
            chunk = parse_chunk(frame)
            if chunk.offset != got:
                raise RuntimeError(f"chunk at {chunk.offset}, expected {got}")
            hasher.update(chunk.payload)
            got += len(chunk.payload)
            if got - acked >= 1 << 20:
                acked = got
                await ws.send(serialize(Ack(to=sender, transfer=offer.transfer, bytes=got)))
        else:
            message = parse_message(frame)
            if isinstance(message, FileEnd):
                end = message
    if got != end.size or hasher.hexdigest() != end.sha256 or end.sha256 != digest:
        raise RuntimeError("receiver: size or SHA-256 differs")
    await ws.send(serialize(Ack(to=sender, transfer=offer.transfer, bytes=got)))
    await ws.send(serialize(Verified(to=sender, transfer=offer.transfer, index=0, sha256=end.sha256)))
    await next_of(ws, Done)


async def _sender(ws, me: int, to: int, data: bytes, digest: str) -> None:
    transfer = secrets.randbelow(2**32 - 1) + 1
    await ws.send(
        serialize(Offer(to=to, transfer=transfer, files=(FileInfo(name="bench.bin", size=len(data)),), window=WINDOW))
    )
    await next_of(ws, Accept)
    await ws.send(serialize(FileStart(to=to, transfer=transfer, index=0)))
    view = memoryview(data)
    for offset in range(0, len(data), CHUNK):  # data fits in one window: no need to wait for acks
        await ws.send(chunk_header(me, to, transfer, 0, offset) + view[offset : offset + CHUNK])
    await ws.send(serialize(FileEnd(to=to, transfer=transfer, index=0, size=len(data), sha256=digest)))
    await next_of(ws, Verified)
    await ws.send(serialize(Done(to=to, transfer=transfer)))


async def rooms(
    port: int, relay_pid: int, n: int = 200, size: int = 4 << 20, timeout: float = 300, settle: float = 8.0
) -> dict:
    """``n`` rooms, each moving one file of ``size`` bytes from its sender to its receiver at once.

    Also the relay's VmRSS (KiB): before the rooms open, once every transfer is done, and
    once they all closed (after up to ``settle`` seconds: the relay gives memory back a
    few seconds after its connections went, see ``xfer.relay.memory``)."""
    rss_idle = _status_kib(relay_pid, "VmRSS")
    if size > WINDOW:
        raise ValueError(f"at most {WINDOW} bytes per room (one credit window)")
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    pairs: list[tuple] = []
    errors: list[str] = []
    gate = asyncio.Semaphore(50)

    async def setup(i: int):
        async with gate:
            rws, rwel = await join(port, "", "receiver", True, source_address(i))
            sws, swel = await join(port, rwel.room or "", "sender", False, source_address(i))
            return rws, sws, swel.peer_id, rwel.peer_id

    results = await asyncio.gather(*(setup(i) for i in range(n)), return_exceptions=True)
    for r in results:
        (errors.append(f"join: {r!r}") if isinstance(r, BaseException) else pairs.append(r))
    try:
        start = time.monotonic()

        async def one(rws, sws, sid, rid):
            await asyncio.gather(_receiver(rws, digest), _sender(sws, sid, rid, data, digest))
            return time.monotonic()

        outcome = await asyncio.wait_for(asyncio.gather(*(one(*p) for p in pairs), return_exceptions=True), timeout)
        ends = []
        for r in outcome:
            (errors.append(f"transfer: {r!r}") if isinstance(r, BaseException) else ends.append(r))
        seconds = (max(ends) - start) if ends else float("nan")
        done = len(ends)
        rss_busy = _status_kib(relay_pid, "VmRSS")
        await asyncio.gather(*(ws.close() for p in pairs for ws in p[:2]), return_exceptions=True)
        pairs.clear()
        rss_after = await _settled_rss(relay_pid, rss_idle + (rss_busy - rss_idle) // 4, settle)
        return {
            "rooms": n,
            "bytes_per_room": size,
            "completed": done,
            "errors": len(errors),
            "error_samples": errors[:5],
            "seconds": seconds,
            "aggregate_mb_s": done * size / seconds / 1e6 if ends else 0.0,
            "relay_peak_kib": _status_kib(relay_pid, "VmHWM"),
            "rss_idle_kib": rss_idle,
            "rss_busy_kib": rss_busy,
            "rss_after_kib": rss_after,
        }
    finally:
        await asyncio.gather(*(ws.close() for p in pairs for ws in p[:2]), return_exceptions=True)


async def _settled_rss(pid: int, enough: int, seconds: float) -> int:
    """The process's VmRSS (KiB) once at most ``enough``, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    rss = _status_kib(pid, "VmRSS")
    while rss > enough and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        rss = _status_kib(pid, "VmRSS")
    return rss


# What ``xfer serve`` runs with for round trips. By default a relay holds each connection to 500
# control messages a second (a burst of as many): the clients here send back to back, about
# 2,000 a second each, spent the burst within the first 700 round trips, and from then on every
# message waited 2 ms for the relay's budget. run_all.py's p99 was that wait (2.6-2.8 ms in every
# round on 2026-12-04, the bare forwarder's 0.6-1.0; alone in turn, a default relay's mean 0.61
# and 0.74 ms, one with this option 0.30 and 0.39). The round trip measures the relay's own work
# per message, so its rate limit is lifted.
RELAY_OPTIONS = ("--peer-messages-per-second", "1000000")


def round_trip_apart(ports: dict[str, int], n: int, timeout: float = 300) -> dict:
    """``round_trip`` in a process of its own: no other threads (a benchmark's samplers), no
    large heap of its own, nothing else on its event loop."""
    args = [sys.executable, os.path.abspath(__file__), "round-trip", "--messages", str(n)]
    args += [f"--relay={name}={port}" for name, port in ports.items()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"round trips failed: {done.stderr.strip()[-500:]}")
    result: dict = json.loads(done.stdout)
    return result


def main() -> int:
    """``round-trip``: the clients of ``round_trip`` in a process of their own, the figures as JSON."""
    ap = argparse.ArgumentParser(description="text round trips through running relays (seconds, as JSON)")
    ap.add_argument("case", choices=["round-trip"])
    ap.add_argument("--relay", action="append", required=True, metavar="NAME=PORT")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--block", type=int, default=50)
    args = ap.parse_args()
    ports = {name: int(port) for name, _, port in (r.partition("=") for r in args.relay)}
    result = asyncio.run(asyncio.wait_for(round_trip(ports, args.messages, block=args.block), 300))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
