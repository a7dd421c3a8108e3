#!/usr/bin/env python3
"""Benchmark a whole xfer transfer on loopback: ``xfer serve`` + ``xfer receive`` + ``xfer send``.

For each size, a random source file is made once (in 1 MiB blocks) and moved N times by
three real ``xfer`` processes on 127.0.0.1. Each run is timed from the sender's start
until both sender and receiver have exited; each process's peak RSS comes from
its VmHWM, read while it runs (``common.Child``); the received file's SHA-256 must equal the source's.
Interleaved with those runs, a raw TCP two-hop forwarder in this script (client ->
forwarder -> sink that writes and fsyncs a file, like the receiver) moves the same file,
so xfer's throughput can be read as a share of what this machine relays at all.

    python bench/transfer.py --size 100MB --size 1GiB --repeat 3
    python bench/transfer.py --smoke --out /tmp/r.json      # tiny sizes, one run each

Throughput is in MB/s and RSS in MB (decimal: 1 MB = 10^6 bytes). Exits 1 if any
transfer fails or a hash differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from common import (
    BLOCK,
    Child,
    cpu_split,
    fmt,
    free_port,
    make_source,
    provenance,
    sha256_of,
    spread,
    start_relay,
    wait_until,
    xfer_cmd,
)
from xfer.units import parse_size

ROLES = ("sender", "relay", "receiver")


def room_code(path: Path):
    text = path.read_text()
    if "\n" not in text:
        return None
    event = json.loads(text.splitlines()[0])
    if event.get("event") != "room":
        raise RuntimeError(f"receiver's first event is not a room: {text.splitlines()[0]}")
    return event["code"]


def _finish(src: Path, digest: str, out_dir: Path, sender: Child, receiver: Child, timeout: float) -> float:
    """Wait for both peers, check their exit status and the received file; return the seconds taken."""
    deadline = sender.start + timeout
    sender.wait(deadline)
    receiver.wait(deadline)
    seconds = max(sender.end, receiver.end) - sender.start
    for child in (sender, receiver):
        if child.rc != 0:
            raise RuntimeError(f"{child.name} exited {child.rc}{child.tail()}")
    got = out_dir / src.name
    if not got.is_file() or sha256_of(got) != digest:
        raise RuntimeError(f"received file {got} is missing or its SHA-256 differs from the source's")
    return seconds


def run_xfer(cmd: list[str], src: Path, digest: str, work: Path, timeout: float, relay_port: int | None = None) -> dict:
    """One transfer through three ``xfer`` processes; the relay is stopped with SIGINT after it.

    With ``relay_port``, an ``xfer serve`` already running there is used (and left running), and
    no relay RSS is reported. ``seconds`` runs from the sender's start, ``total_seconds`` from the
    receiver's, until both have exited.
    """
    out_dir = work / "received"
    shutil.rmtree(out_dir, ignore_errors=True)
    children: list[Child] = []
    relay, port = None, relay_port
    try:
        if port is None:
            relay, port = start_relay(cmd, work)
            children.append(relay)
            started = cpu_split(relay.proc.pid)  # its start-up, left out as for wormhole's relay
        relay_addr = f"127.0.0.1:{port}"
        receiver = Child(
            "receiver",
            cmd + ["receive", "--relay", relay_addr, "--yes", "--json", "--dir", str(out_dir), "--no-qr"],
            work,
        )
        children.append(receiver)
        code = wait_until(lambda: room_code(receiver.out_path), "room event", receiver, 30)
        sender = Child("sender", cmd + ["send", str(src), "--room", code, "--relay", relay_addr, "--json"], work)
        children.append(sender)
        try:
            seconds = _finish(src, digest, out_dir, sender, receiver, timeout)
        finally:
            if relay:
                relay.signal(signal.SIGINT)
                relay.wait(time.monotonic() + 30)
        peers = (sender, relay, receiver) if relay else (sender, receiver)
        cpu = {c.name: c.cpu_s for c in peers}
        user = {c.name: c.user_s for c in peers}
        if relay and relay.cpu_s is not None and relay.user_s is not None:
            cpu["relay"], user["relay"] = relay.cpu_s - sum(started), relay.user_s - started[0]
        return {
            "seconds": seconds,
            "total_seconds": max(sender.end, receiver.end) - receiver.start,
            "mb_s": src.stat().st_size / seconds / 1e6,
            "relay_exit": relay.rc if relay else None,
            "rss_mb": {c.name: c.rss_mb for c in peers},
            "cpu_s": cpu,
            "user_s": user,
        }
    finally:
        for child in children:
            child.kill()
        shutil.rmtree(out_dir, ignore_errors=True)


def run_embedded(cmd: list[str], src: Path, digest: str, work: Path, timeout: float) -> dict:
    """One transfer where the receiver hosts the relay (no ``--relay``: ``--host 127.0.0.1 --port P``)."""
    out_dir, port = work / "received", free_port()
    shutil.rmtree(out_dir, ignore_errors=True)
    children: list[Child] = []
    try:
        receiver = Child(
            "receiver",
            cmd
            + [
                "receive",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--yes",
                "--json",
                "--dir",
                str(out_dir),
                "--no-qr",
            ],
            work,
        )
        children.append(receiver)
        code = wait_until(lambda: room_code(receiver.out_path), "room event", receiver, 30)
        sender = Child(
            "sender", cmd + ["send", str(src), "--room", code, "--relay", f"127.0.0.1:{port}", "--json"], work
        )
        children.append(sender)
        seconds = _finish(src, digest, out_dir, sender, receiver, timeout)
        return {
            "seconds": seconds,
            "total_seconds": max(sender.end, receiver.end) - receiver.start,
            "mb_s": src.stat().st_size / seconds / 1e6,
            "rss_mb": {c.name: c.rss_mb for c in (sender, receiver)},
            "cpu_s": {c.name: c.cpu_s for c in (sender, receiver)},
            "user_s": {c.name: c.user_s for c in (sender, receiver)},
        }
    finally:
        for child in children:
            child.kill()
        shutil.rmtree(out_dir, ignore_errors=True)


_WRITER = """
import os, sys
size, block = int(sys.argv[2]), os.urandom(1 << 18)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
left = size
while left:
    left -= os.write(fd, block[: min(left, len(block))])
os.fsync(fd)
os.close(fd)
"""


def run_page_cache_write(src: Path, digest: str, work: Path, timeout: float) -> dict:
    """The machine's own cost of putting a new file of the source's size on disk: one process
    that only writes it (256 KiB writes, then fsync, as the receivers do), nothing else.

    The known-answer case for the receivers' CPU: what this costs is not xfer's (or
    magic-wormhole's) doing. On a VM that hands freed memory back to its host (free page
    reporting) it swings from about 0.5 to 5 CPU s per GB with the moment, almost all of it
    kernel time, and every receiver in the same round pays about the same. ``digest`` is unused
    (the file is not the source's): the argument is there to fit ``run_cases``."""
    del digest
    out_dir = work / "written"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    size = src.stat().st_size
    writer = Child("writer", [sys.executable, "-c", _WRITER, str(out_dir / "file"), str(size)], work)
    try:
        writer.wait(writer.start + timeout)
        if writer.rc != 0 or (out_dir / "file").stat().st_size != size:
            raise RuntimeError(f"the page-cache writer failed (exit {writer.rc}){writer.tail()}")
        seconds = writer.end - writer.start
        return {
            "seconds": seconds,
            "mb_s": size / seconds / 1e6,
            "cpu_s": {"writer": writer.cpu_s},
            "user_s": {"writer": writer.user_s},
        }
    finally:
        writer.kill()
        shutil.rmtree(out_dir, ignore_errors=True)


def run_raw(src: Path, digest: str, work: Path, timeout: float) -> dict:
    """Baseline: client -> forwarder -> sink over plain TCP on loopback, in threads of this process."""
    dst, errors = work / "raw.bin", []
    sink_srv = socket.create_server(("127.0.0.1", 0))
    fwd_srv = socket.create_server(("127.0.0.1", 0))

    def guarded(fn):
        def run():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 -- reported by the caller
                errors.append(f"{fn.__name__}: {exc!r}")

        return threading.Thread(target=run, daemon=True)

    threads_cpu: dict[str, tuple[float, float]] = {}  # each thread's own (user, kernel) seconds

    def pump(a: socket.socket, b: socket.socket | None, f=None) -> None:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        while n := a.recv_into(buf):
            b.sendall(view[:n]) if b else f.write(view[:n])

    def sink() -> None:
        conn, _ = sink_srv.accept()
        conn.settimeout(timeout)
        with conn, open(dst, "wb") as f:
            pump(conn, None, f)
            f.flush()
            os.fsync(f.fileno())
        threads_cpu["sink"] = cpu_split("thread-self")

    def forwarder() -> None:
        a, _ = fwd_srv.accept()
        a.settimeout(timeout)
        with a, socket.create_connection(sink_srv.getsockname(), timeout=timeout) as b:
            pump(a, b)
            b.shutdown(socket.SHUT_WR)
        threads_cpu["forwarder"] = cpu_split("thread-self")

    threads = [guarded(sink), guarded(forwarder)]
    try:
        for t in threads:
            t.start()
        start, sender_start = time.monotonic(), cpu_split("thread-self")
        with socket.create_connection(fwd_srv.getsockname(), timeout=timeout) as c, open(src, "rb") as f:
            while block := f.read(BLOCK):
                c.sendall(block)
            c.shutdown(socket.SHUT_WR)
            sender_end = cpu_split("thread-self")
            threads_cpu["sender"] = (sender_end[0] - sender_start[0], sender_end[1] - sender_start[1])
            for t in threads:
                t.join(max(0.0, start + timeout - time.monotonic()))
        seconds = time.monotonic() - start
        if errors or any(t.is_alive() for t in threads):
            raise RuntimeError("raw forwarder: " + ("; ".join(errors) or "timed out"))
        if sha256_of(dst) != digest:
            raise RuntimeError("raw forwarder: SHA-256 differs")
        return {
            "seconds": seconds,
            "mb_s": src.stat().st_size / seconds / 1e6,
            "cpu_s": {name: user + kernel for name, (user, kernel) in threads_cpu.items()},
            "user_s": {name: user for name, (user, _) in threads_cpu.items()},
        }
    finally:
        sink_srv.close()
        fwd_srv.close()
        dst.unlink(missing_ok=True)


def summarize(runs: list[dict], raw: list[dict]) -> dict:
    xfer, base = spread([r["mb_s"] for r in runs]), spread([r["mb_s"] for r in raw])
    rss = {role: spread([r["rss_mb"][role] for r in runs]) for role in ROLES} if runs else {}
    ratio = xfer["median"] / base["median"] if xfer and base else None
    return {"xfer_mb_s": xfer, "raw_mb_s": base, "ratio_to_raw": ratio, "peak_rss_mb": rss}


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Benchmark xfer send/serve/receive on loopback against a raw TCP forwarder."
    )
    ap.add_argument("--size", action="append", metavar="SIZE", help="file size, e.g. 100MB or 1GiB (repeatable)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per size (default 3; 1 with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (1MB, 3MB), one run each: checks the script works")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "transfer.json",
        help="where to write the JSON results (default: bench/results/transfer.json)",
    )
    ap.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="limit per transfer (default: 60 s + 1 s per MB)"
    )
    args = ap.parse_args()
    labels = args.size or (["1MB", "3MB"] if args.smoke else ["100MB", "1GiB"])
    try:
        sizes = [(label, parse_size(label)) for label in labels]
    except ValueError as exc:
        ap.error(str(exc))
    repeat = args.repeat or (1 if args.smoke else 3)
    cmd, failures, results = xfer_cmd(), [], []
    print(f"xfer: {' '.join(cmd)}; {os.cpu_count()} CPUs; {repeat} run(s) per size; loopback 127.0.0.1", flush=True)
    with tempfile.TemporaryDirectory(prefix="xfer-bench-") as tmp:
        work = Path(tmp)
        for label, size in sizes:
            src = work / f"source-{label}.bin"
            digest = make_source(src, size)
            timeout = args.timeout or 60 + size / 1e6
            runs, raw = [], []
            for i in range(1, repeat + 1):
                for kind, into, run, first in (("raw", raw, run_raw, ()), ("xfer", runs, run_xfer, (cmd,))):
                    try:
                        r = run(*first, src, digest, work, timeout)
                    except Exception as exc:  # noqa: BLE001 -- any failure is recorded, and the exit status is 1
                        failures.append(f"{label} {kind} run {i}: {exc}")
                        print(f"  {label} {kind} run {i}: FAILED: {exc}", flush=True)
                        continue
                    into.append(r)
                    rss = " ".join(f"{k} {v:.1f} MB" for k, v in r.get("rss_mb", {}).items())
                    print(f"  {label} {kind} run {i}: {r['seconds']:.2f} s, {r['mb_s']:.1f} MB/s {rss}", flush=True)
            src.unlink()
            results.append(
                {"size": label, "bytes": size, "runs": runs, "raw_runs": raw, "summary": summarize(runs, raw)}
            )

    print(
        f"\n{'size':>8}  {'xfer MB/s med (min-max)':>24}  {'raw MB/s med (min-max)':>24}  {'ratio':>6}  "
        "peak RSS MB sender / relay / receiver (max of runs)"
    )
    for r in results:
        s = r["summary"]
        ratio = f"{s['ratio_to_raw']:.1%}" if s["ratio_to_raw"] else "-"
        rss = " / ".join(f"{s['peak_rss_mb'][k]['max']:.1f}" if s["peak_rss_mb"] else "-" for k in ROLES)
        print(f"{r['size']:>8}  {fmt(s['xfer_mb_s']):>24}  {fmt(s['raw_mb_s']):>24}  {ratio:>6}  {rss}")
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "xfer": {"command": cmd, **provenance()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "units": "MB/s and MB are decimal (10^6 bytes); rss is VmHWM read while each process runs",
        "repeat": repeat,
        "results": results,
        "failures": failures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {args.out}")
    if failures:
        print(f"{len(failures)} failure(s):\n  " + "\n  ".join(failures), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
