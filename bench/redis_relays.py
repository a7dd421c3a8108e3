#!/usr/bin/env python3
"""Benchmark relays that share rooms through Redis (issue 7): ``xfer serve --redis URL``.

- **throughput**: one random file (default 1 GiB) across two relays: ``xfer receive
  --relay B`` opens the room, ``xfer send --room CODE --relay A`` joins it, both relays
  run ``xfer serve --redis redis://127.0.0.1:P/0``; interleaved with the same file
  through one relay (``transfer.run_xfer``, the suite's xfer-relayed case). SHA-256 of
  every received file checked. After each cross-relay run, Redis's
  ``client_recent_max_output_buffer`` (INFO clients; also sampled every 0.5 s during
  the run, the highest kept) against its pub/sub output-buffer limit, and whether a
  relay logged "lost Redis".
- **idle**: N idle connections (default 10,000) over two relays sharing rooms of 10,
  each room's peers alternating between the relays; protocol-level asyncio clients in
  this process (``relay_load.join``: hello -> welcome), spread over source addresses
  127.0.0.x. Each relay's VmRSS before and after, KiB per connection, Redis's
  used_memory, errors (refused joins, a closed connection, a room's first peer not told
  of all nine others) and the time to connect them all.

A private ``redis-server`` (``--port P --bind 127.0.0.1 --save "" --appendonly no``) is
started for each benchmark and stopped at its end; every subprocess has a timeout and is
killed at the end. ``bench/run_all.py`` runs both as ``redis-throughput`` and
``redis-idle``; without redis-server (or the ``redis`` package) they are skipped with a note.

    python bench/redis_relays.py                       # 1 GiB x 3 and 10,000 connections
    python bench/redis_relays.py --quick               # 4 MB once and 200 connections
    python bench/redis_relays.py --only idle --connections 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import relay_load
from common import (
    RESULTS_DIR,
    Child,
    FreedPagesHeld,
    cpu_per_gb,
    cpu_split,
    fmt,
    free_port,
    log,
    make_source,
    provenance,
    raise_nofile,
    ratio,
    report_targets,
    rss_kib,
    run_cases,
    spread,
    start_relay,
    target,
    wait_until,
    xfer_cmd,
)
from transfer import _finish, room_code, run_page_cache_write, run_xfer
from xfer.protocol import PeerJoined, parse_message
from xfer.units import parse_size

REDIS_SERVER = "/usr/bin/redis-server"
LOST = "lost Redis"  # what a relay prints when its link to Redis breaks (xfer.relay.bus)
PER_ROOM = 10


def missing() -> str | None:
    """Why the Redis benchmarks cannot run here, or None."""
    if not (Path(REDIS_SERVER).exists() or shutil.which("redis-server")):
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis package is not installed (pip install -e '.[redis]')"
    return None


class RedisServer:
    """A private redis-server on a free loopback port: no persistence, stopped on exit."""

    def __init__(self, work: Path, name: str = "redis"):
        import redis

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        exe = REDIS_SERVER if Path(REDIS_SERVER).exists() else shutil.which("redis-server")
        self.child = Child(
            name,
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            work,
        )
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, socket_connect_timeout=2)
        try:
            wait_until(self._ready, "PONG", self.child, 15)
        except BaseException:
            self.close()
            raise

    def _ready(self):
        import redis

        try:
            return True if self.client.ping() else None
        except redis.RedisError:
            return None

    def info(self, section: str) -> dict:
        return self.client.info(section)

    def pubsub_limit(self) -> str:
        """The pub/sub line of ``client-output-buffer-limit`` (hard, soft, seconds; Redis's default 32mb 8mb 60)."""
        conf = self.client.config_get("client-output-buffer-limit")["client-output-buffer-limit"].split()
        i = conf.index("pubsub")
        return " ".join(conf[i : i + 4])

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.child.stop(10)  # redis-server shuts down on SIGINT as on SIGTERM; SIGKILL after 10 s

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_redis_relay(
    cmd: list[str], work: Path, name: str, url: str, extra: tuple[str, ...] = ()
) -> tuple[Child, int]:
    """``xfer serve --redis URL``, once it says it listens and shares rooms through Redis."""
    for attempt in range(3):
        try:
            relay, port = start_relay(cmd, work, name=name, extra=("--redis", url, *extra))
            break
        except RuntimeError as exc:  # the free port was taken before the relay bound it (others share the machine)
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
    try:
        wait_until(
            lambda: True if "sharing rooms through Redis" in relay.err_path.read_text(errors="replace") else None,
            "'sharing rooms through Redis' line",
            relay,
            30,
        )
    except BaseException:
        relay.kill()
        raise
    return relay, port


def lost_lines(*relays: Child) -> list[str]:
    """Lines where a relay said it lost Redis (on stderr)."""
    return [
        f"{r.name}: {line.strip()}"
        for r in relays
        for line in r.err_path.read_text(errors="replace").splitlines()
        if LOST in line
    ]


class BufferWatch:
    """Samples INFO clients every ``every`` seconds in a thread; keeps the highest output buffer seen."""

    def __init__(self, server: RedisServer, every: float = 0.5):
        self.server, self.every, self.highest, self.samples = server, every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                value = int(self.server.info("clients")["client_recent_max_output_buffer"])
            except Exception:  # noqa: BLE001 -- a missed sample; the reading after the run still counts
                continue
            self.samples += 1
            self.highest = max(self.highest, value)

    def __enter__(self) -> BufferWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


# -- throughput --------------------------------------------------------------------------------------


def run_cross(cmd: list[str], src: Path, digest: str, work: Path, timeout: float, server: RedisServer) -> dict:
    """One transfer across two fresh relays sharing rooms through Redis: receiver on B, sender on A."""
    out_dir = work / "received"
    shutil.rmtree(out_dir, ignore_errors=True)
    children: list[Child] = []
    try:
        relay_a, port_a = start_redis_relay(cmd, work, "relay-a", server.url)
        children.append(relay_a)
        relay_b, port_b = start_redis_relay(cmd, work, "relay-b", server.url)
        children.append(relay_b)
        a, b = cpu_split(relay_a.proc.pid), cpu_split(relay_b.proc.pid)  # their start-up, left out below
        receiver = Child(
            "receiver",
            cmd + ["receive", "--relay", f"127.0.0.1:{port_b}", "--yes", "--json", "--dir", str(out_dir), "--no-qr"],
            work,
        )
        children.append(receiver)
        code = wait_until(lambda: room_code(receiver.out_path), "room event", receiver, 30)
        redis_before = cpu_split(server.child.proc.pid)
        with BufferWatch(server) as watch:
            sender = Child(
                "sender", cmd + ["send", str(src), "--room", code, "--relay", f"127.0.0.1:{port_a}", "--json"], work
            )
            children.append(sender)
            seconds = _finish(src, digest, out_dir, sender, receiver, timeout)
            after = int(server.info("clients")["client_recent_max_output_buffer"])
        redis_after = cpu_split(server.child.proc.pid)
        for relay in (relay_a, relay_b):
            relay.signal(signal.SIGINT)
        for relay in (relay_a, relay_b):
            relay.wait(time.monotonic() + 30)
        lost = lost_lines(relay_a, relay_b)
        if lost:
            raise RuntimeError(f"a relay lost Redis: {lost[0]}")
        highest = max(after, watch.highest)

        # each process on the path, in its order: the relays' start-up left out, Redis's CPU over the transfer
        def after_start(seconds: float | None, at_start: float) -> float | None:
            return None if seconds is None else seconds - at_start

        cpu = {
            "sender": sender.cpu_s,
            "relay-a": after_start(relay_a.cpu_s, sum(a)),
            "redis-server": sum(redis_after) - sum(redis_before),
            "relay-b": after_start(relay_b.cpu_s, sum(b)),
            "receiver": receiver.cpu_s,
        }
        user = {
            "sender": sender.user_s,
            "relay-a": after_start(relay_a.user_s, a[0]),
            "redis-server": redis_after[0] - redis_before[0],
            "relay-b": after_start(relay_b.user_s, b[0]),
            "receiver": receiver.user_s,
        }
        return {
            "seconds": seconds,
            "total_seconds": max(sender.end, receiver.end) - receiver.start,
            "mb_s": src.stat().st_size / seconds / 1e6,
            "rss_mb": {c.name: c.rss_mb for c in (sender, relay_a, relay_b, receiver)},
            "cpu_s": cpu,
            "user_s": user,
            "redis_output_buffer_after": after,
            "redis_output_buffer_highest": highest,
            "buffer_samples": watch.samples,
            "lost_redis": lost,
            "relay_exit": [relay_a.rc, relay_b.rc],
            "note": f"Redis output buffer {after:,} B after, {highest:,} B highest sampled; no 'lost Redis'",
        }
    finally:
        for child in children:
            child.kill()
        shutil.rmtree(out_dir, ignore_errors=True)


def throughput(cmd: list[str], work: Path, label: str, repeat: int, failures: list[str]) -> dict:
    """The ``redis-throughput`` benchmark: cross-relay runs interleaved with one-relay runs."""
    if reason := missing():
        return skipped(reason)
    size = parse_size(label)
    timeout = 120 + size / 1e6
    src = work / f"redis-source-{label}.bin"
    log(f"  making a {label} source file")
    digest = make_source(src, size)
    try:
        with RedisServer(work) as server:
            limit = server.pubsub_limit()
            version = server.info("server")["redis_version"]
            log(f"  redis-server {version} on 127.0.0.1:{server.port}; client-output-buffer-limit {limit}")
            # as run_all.py's throughput: the first run must not be the first to write to memory idle since boot
            run_page_cache_write(src, digest, work, timeout)
            runs = run_cases(
                [
                    ("cross-relay", lambda: run_cross(cmd, src, digest, work, timeout, server)),
                    ("one-relay", lambda: run_xfer(cmd, src, digest, work, timeout)),
                ],
                repeat,
                failures,
                f"redis-throughput {label}",
            )
    finally:
        src.unlink(missing_ok=True)
    mb_s = {kind: spread([r["mb_s"] for r in rs]) for kind, rs in runs.items()}
    r = ratio(mb_s["cross-relay"], mb_s["one-relay"])
    cross = runs["cross-relay"]
    buffers = [x["redis_output_buffer_highest"] for x in cross]
    highest_buffer = max(buffers) if buffers else None
    rss = {
        kind: {role: max(x["rss_mb"][role] for x in rs) for role in rs[0]["rss_mb"]} for kind, rs in runs.items() if rs
    }
    for kind, s in mb_s.items():
        log(f"  {kind:>12}: {fmt(s)} MB/s")
    log(f"  cross-relay / one relay: {r:.2f}" if r else "  cross-relay / one relay: -")
    cpu = cpu_per_gb(runs, size)
    user = cpu_per_gb(runs, size, "user_s")
    if cpu:
        log("  CPU seconds per GB (whole processes, the relays' start-up left out; user space in brackets):")
    for kind, roles in cpu.items():
        parts = " + ".join(
            f"{role} {v:.2f} ({user.get(kind, {}).get(role, 0):.2f})" for role, v in roles.items() if role != "total"
        )
        log(f"  {kind:>12}: {parts} = {roles['total']:.2f} s/GB")
    if highest_buffer is not None:
        log(
            f"  Redis output buffer, highest over the cross-relay runs: {highest_buffer:,} B "
            f"({highest_buffer / 2**20:.2f} MiB; pub/sub limit {limit})"
        )
    return {
        "measures": "MB/s (10^6 bytes) of one file, from the sender's process start until sender and receiver "
        "have exited; cross-relay: xfer receive on relay B, xfer send on relay A, both relays "
        "xfer serve --redis (a private redis-server); one-relay: the suite's xfer-relayed case; "
        "interleaved; SHA-256 checked; Redis's client_recent_max_output_buffer (INFO clients) "
        "after each cross-relay run and sampled every 0.5 s during it",
        "size": label,
        "bytes": size,
        "repeat": repeat,
        "redis_version": version,
        "redis_pubsub_output_limit": limit,
        "mb_s": mb_s,
        "cpu_s_per_gb": cpu,
        "user_s_per_gb": user,
        "ratio_cross_over_one": r,
        "redis_output_buffer_highest_bytes": highest_buffer,
        "peak_rss_mb": rss,
        "runs": runs,
        "targets": [
            target(f"{label} across two relays through Redis / one relay", r, 0.5, ">="),
            target(
                "Redis output buffer, highest (MiB), under the 32 MiB pub/sub limit",
                None if highest_buffer is None else highest_buffer / 2**20,
                32,
                "<",
                " MiB",
            ),
        ],
        "headline": {f"{k}_mb_s": v["median"] for k, v in mb_s.items() if v},
    }


def skipped(reason: str) -> dict:
    log(f"  NOTE: skipped: {reason}")
    return {"skipped": reason, "notes": [f"skipped: {reason}"], "targets": [], "headline": {}}


# -- idle connections --------------------------------------------------------------------------------


async def _drain_joined(ws, want: int, seconds: float) -> int:
    """How many peer-joined a room's first peer has been told of (up to ``want``), within ``seconds``."""
    seen, deadline = 0, time.monotonic() + seconds
    while seen < want:
        try:
            frame = await asyncio.wait_for(ws.recv(), max(0.001, deadline - time.monotonic()))
        except asyncio.TimeoutError:  # cancelling recv() loses nothing (websockets' asyncio API)
            break
        if isinstance(frame, str) and isinstance(parse_message(frame), PeerJoined):
            seen += 1
    return seen


async def idle_clients(
    relays: list[Child], ports: list[int], server: RedisServer, n: int, concurrency: int = 100
) -> dict:
    """``n`` idle peers in rooms of 10, alternating between the two relays; RSS and used_memory before/after.

    ``errors``: joins that failed, connections closed while idle, a relay that said it lost
    Redis before the clients left. ``missed_peer_joined``: rooms whose first peer was not told
    (peer-joined) of each of the others within 2 s (after 2 s of rest). ``teardown_lost_redis``: what the relays
    said once all the clients had closed at once (after the measurement).
    """
    conns, errors = [], []
    pids = [r.proc.pid for r in relays]
    result: dict = {}
    lost_before: list[str] = []
    try:
        warm_room = ""  # one room across both relays, so the bus path is warm (the first names it)
        for i, port in enumerate(ports):
            ws, welcome = await relay_load.join(port, warm_room, "peer", i == 0, ping=False)
            warm_room = welcome.room or ""
            conns.append(ws)
        await asyncio.sleep(1.0)
        before = [rss_kib(pid) for pid in pids]
        redis_before = int(server.info("memory")["used_memory"])
        rooms = ["" for _ in range((n + PER_ROOM - 1) // PER_ROOM)]  # "": the relay names each when it opens
        gate = asyncio.Semaphore(concurrency)
        per_relay = [0, 0]

        async def one(i: int):
            r, j = divmod(i, PER_ROOM)
            side = (r + j) % 2  # a room's first peer on A or B in turn; its others alternate
            async with gate:
                ws, welcome = await relay_load.join(
                    ports[side], rooms[r], "peer", j == 0, relay_load.source_address(r), ping=False
                )
            if j == 0:
                rooms[r] = welcome.room or ""
            per_relay[side] += 1
            return ws

        started = time.monotonic()
        # the first peer of each room creates it, before the others join
        firsts = await asyncio.gather(*(one(i) for i in range(0, n, PER_ROOM)), return_exceptions=True)
        rest = await asyncio.gather(*(one(i) for i in range(n) if i % PER_ROOM), return_exceptions=True)
        connect_seconds = time.monotonic() - started
        for outcome in (*firsts, *rest):
            (errors.append(f"join: {outcome!r}") if isinstance(outcome, BaseException) else conns.append(outcome))
        await asyncio.sleep(2.0)
        after = [rss_kib(pid) for pid in pids]
        redis_after = int(server.info("memory")["used_memory"])
        # each room's first peer must have been told of its other peers, whichever relay they are on
        counts = await asyncio.gather(
            *(
                _drain_joined(ws, min(PER_ROOM, n - r * PER_ROOM) - 1, 2.0)
                for r, ws in enumerate(firsts)
                if not isinstance(ws, BaseException)
            )
        )
        wants = [
            min(PER_ROOM, n - r * PER_ROOM) - 1 for r, ws in enumerate(firsts) if not isinstance(ws, BaseException)
        ]
        missed = sum(1 for c, want in zip(counts, wants) if c < want)
        closed = sum(1 for ws in conns if ws.close_code is not None)
        if closed:
            errors.append(f"{closed} connection(s) closed while idle")
        lost_before = lost_lines(*relays)
        errors[:0] = lost_before  # first in the samples: it explains the refused joins that follow
        deltas = [a - b for a, b in zip(after, before)]
        result.update(
            {
                "connections": n,
                "per_relay": per_relay,
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_connection": [d / max(1, k) for d, k in zip(deltas, per_relay)],
                "kib_per_connection_both": sum(deltas) / n,
                "relay_peak_kib": [relay_load._status_kib(pid, "VmHWM") for pid in pids],
                "redis_used_memory_before": redis_before,
                "redis_used_memory_after": redis_after,
                "redis_bytes_per_connection": (redis_after - redis_before) / n,
                "connect_seconds": connect_seconds,
                "errors": len(errors),
                "error_samples": errors[:5],
                "missed_peer_joined": missed,
                "peer_joined_told": sum(counts),
                "peer_joined_expected": sum(wants),
            }
        )
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    await asyncio.sleep(1.0)
    result["teardown_lost_redis"] = lost_lines(*relays)[len(lost_before) :]
    return result


def idle(cmd: list[str], work: Path, n: int, failures: list[str], concurrency: int = 100) -> dict:
    """The ``redis-idle`` benchmark."""
    if reason := missing():
        return skipped(reason)
    raise_nofile()
    relays: list[Child] = []
    ports: list[int] = []
    with RedisServer(work) as server:
        try:
            extra = ("--joins-per-minute", "1000000", "--max-rooms", str(max(10_000, n)))
            for name in ("idle-relay-a", "idle-relay-b"):
                relay, port = start_redis_relay(cmd, work, name, server.url, extra)
                relays.append(relay)
                ports.append(port)
            result = asyncio.run(asyncio.wait_for(idle_clients(relays, ports, server, n, concurrency), 300 + n / 20))
            result["concurrency"] = concurrency
            result["redis_connected_clients"] = int(server.info("clients")["connected_clients"])
        finally:
            for relay in relays:
                relay.signal(signal.SIGINT)
            for relay in relays:
                relay.stop()
    if result["errors"]:
        failures.append(f"redis-idle: {result['errors']} error(s): {result['error_samples']}")
    worst = max(result["kib_per_connection"])
    for name, b, a, k, per in zip(
        ("A", "B"), result["rss_before_kib"], result["rss_after_kib"], result["per_relay"], result["kib_per_connection"]
    ):
        log(f"  relay {name}: {k} peers, VmRSS {b / 1024:.1f} -> {a / 1024:.1f} MiB, {per:.1f} KiB per connection")
    log(
        f"  Redis used_memory {result['redis_used_memory_before'] / 2**20:.1f} -> "
        f"{result['redis_used_memory_after'] / 2**20:.1f} MiB ({result['redis_bytes_per_connection']:.0f} B per "
        f"connection); {n} connected in {result['connect_seconds']:.1f} s ({concurrency} joins at a time); "
        f"{result['errors']} errors"
    )
    log(
        f"  rooms whose first peer missed a peer-joined: {result['missed_peer_joined']} of {(n + PER_ROOM - 1) // PER_ROOM}"
        f" ({result['peer_joined_told']} of {result['peer_joined_expected']} peer-joined arrived)"
    )
    notes = []
    if result["teardown_lost_redis"]:
        notes.append(
            f"when the {n} clients closed at once (after the measurement), a relay said: "
            f"{result['teardown_lost_redis'][0]}"
        )
        log("  NOTE: " + notes[-1])
    return {
        "measures": "two xfer serve --redis relays: VmRSS of each with one peer, then with N more idle peers in "
        "rooms of 10 whose peers alternate between the relays (hello, welcome); the difference "
        "divided by that relay's peers; Redis used_memory before and after; errors: failed joins, "
        "connections closed while idle, a relay that lost Redis; missed_peer_joined: rooms whose "
        "first peer was not told of every other peer (peer-joined) within 2 s",
        **result,
        "notes": notes,
        "targets": [
            target(f"{n} idle connections over two relays: errors", result["errors"], 0, "=="),
            target("relay memory per idle connection, worse relay (KiB)", worst, 50, "<=", " KiB"),
            target("rooms whose first peer missed a peer-joined", result["missed_peer_joined"], 0, "=="),
        ],
        "headline": {"kib_per_connection": worst, "connect_seconds": result["connect_seconds"]},
    }


# -- standalone ----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description="Benchmark xfer relays sharing rooms through Redis, on loopback.")
    ap.add_argument("--quick", action="store_true", help="4 MB once and 200 connections: checks the script works")
    ap.add_argument("--only", action="append", choices=("throughput", "idle"), help="run only this part (repeatable)")
    ap.add_argument("--size", default=None, help="throughput file size (default 1GiB; 4MB with --quick)")
    ap.add_argument("--repeat", type=int, default=None, help="runs of each case (default 3; 1 with --quick)")
    ap.add_argument(
        "--page-reporting-as-is", action="store_true", help="do not hold freed pages (see run_all.py's option)"
    )
    ap.add_argument("--connections", type=int, default=None, help="idle connections (default 10000; 200 with --quick)")
    ap.add_argument("--concurrency", type=int, default=100, help="idle: joins in flight at once (default 100)")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON results (default: bench/results/redis-<UTC time>.json)"
    )
    args = ap.parse_args()
    label = args.size or ("4MB" if args.quick else "1GiB")
    try:
        parse_size(label)
    except ValueError as exc:
        ap.error(str(exc))
    started = datetime.now(timezone.utc)
    out = args.out or RESULTS_DIR / f"redis-{started.strftime('%Y%m%d-%H%M%S')}.json"
    raise_nofile()
    cmd, failures = xfer_cmd(), []
    report = {
        "date": started.isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "xfer": {"command": cmd, **provenance()},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "benchmarks": {},
        "failures": failures,
    }
    log(f"xfer: {' '.join(cmd)}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}; loopback 127.0.0.1")
    with (
        FreedPagesHeld(not args.page_reporting_as_is) as pages,
        tempfile.TemporaryDirectory(prefix="xfer-bench-redis-") as tmp,
    ):
        report["machine"]["page_reporting"] = pages.state
        work = Path(tmp)
        parts = {
            "throughput": lambda: throughput(cmd, work, label, args.repeat or (1 if args.quick else 3), failures),
            "idle": lambda: idle(
                cmd, work, args.connections or (200 if args.quick else 10_000), failures, args.concurrency
            ),
        }
        for name, run in parts.items():
            if args.only and name not in args.only:
                continue
            log(f"\n== redis-{name}")
            try:
                report["benchmarks"][name] = run()
            except Exception as exc:  # noqa: BLE001 -- recorded; the exit status becomes 1
                failures.append(f"redis-{name}: {type(exc).__name__}: {exc}")
                log(f"  FAILED: {type(exc).__name__}: {exc}")
            report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report_targets(report, out, failures, lambda name: f"redis-{name}:")


if __name__ == "__main__":
    sys.exit(main())
