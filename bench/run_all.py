#!/usr/bin/env python3
"""Run every xfer benchmark (issues 6 and 7) on loopback, print the numbers, write them to one JSON file.

    python bench/run_all.py                      # everything, 1 GiB, 3 runs of each case
    python bench/run_all.py --size 512MB --big   # a smaller throughput file; memory also at 4 GiB
    python bench/run_all.py --quick              # tiny sizes, one run: checks the suite works (~1 min)
    python bench/run_all.py --only round-trip --only startup

Benchmarks (``--only NAME``, repeatable): throughput, fixed-cost, round-trip, memory,
idle-connections, rooms, startup, browser, and issue 7's redis-throughput and redis-idle (two
relays sharing rooms through a private redis-server; ``bench/redis_relays.py``). Each case is
repeated (``--repeat``) with the baselines measured in the same run, interleaved, and reported
as median (min-max) and as ratios. The magic-wormhole cases need ``pip install -e '.[bench]'``;
without it they are skipped with a note, and so are the Redis cases without ``redis-server`` or
the ``redis`` package (``pip install -e '.[redis]'``). Everything listens on 127.0.0.1 only;
every subprocess has a timeout and is killed at the end. Exits 1 if any case failed (a timeout, an exit status, a hash).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import redis_relays
import relay_load
from common import (
    BENCH_DIR,
    RESULTS_DIR,
    FreedPagesHeld,
    agreement,
    byte_compile_xfer,
    cpu_per_gb,
    fmt,
    log,
    make_source,
    provenance,
    raise_nofile,
    ratio,
    report_targets,
    run_cases,
    script,
    spread,
    start_relay,
    target,
    wormhole_tools,
    xfer_cmd,
)
from transfer import run_embedded, run_page_cache_write, run_raw, run_xfer
from wormhole import WormholeServers, run_wormhole
from xfer.units import parse_size

NAMES = (
    "throughput",
    "fixed-cost",
    "round-trip",
    "memory",
    "idle-connections",
    "rooms",
    "startup",
    "browser",
    "redis-throughput",
    "redis-idle",
)
ROLES = ("sender", "relay", "receiver")


class Context:
    def __init__(self, args, work: Path):
        self.args, self.work, self.quick = args, work, args.quick
        self.cmd = xfer_cmd()
        self.wormhole = wormhole_tools()
        self.repeat = args.repeat or (1 if args.quick else 3)
        # rounds go on until three agree within 15 % (issue 17), up to this many; off with --quick
        self.max_repeat = None if args.quick or args.max_repeat == 0 else args.max_repeat or 3 * self.repeat
        self.shared: dict = {}  # figures one benchmark leaves for another (the 1 GiB RSS for memory)


# -- 1, 2: throughput ------------------------------------------------------------------------------


def bench_throughput(ctx: Context, failures: list[str]) -> dict:
    label = "1MB" if ctx.quick else ctx.args.size
    size = parse_size(label)
    timeout = 120 + size / 1e6
    src = ctx.work / f"source-{label}.bin"
    log(f"  making a {label} source file")
    digest = make_source(src, size)
    notes = []
    # One write of that size first, thrown away: the rounds then start on pages this VM has
    # touched lately, not on pages its host took back while it was idle (the page-cache tax).
    run_page_cache_write(src, digest, ctx.work, timeout)
    cases = [
        ("xfer-relayed", lambda: run_xfer(ctx.cmd, src, digest, ctx.work, timeout)),
        ("xfer-embedded", lambda: run_embedded(ctx.cmd, src, digest, ctx.work, timeout)),
        ("raw-forwarder", lambda: run_raw(src, digest, ctx.work, timeout)),
        ("page-cache-write", lambda: run_page_cache_write(src, digest, ctx.work, timeout)),
    ]
    try:
        if ctx.wormhole:
            with WormholeServers(ctx.wormhole, ctx.work) as servers:
                cases += [
                    ("wormhole-relayed", lambda: run_wormhole(servers, src, digest, ctx.work, timeout, relayed=True)),
                    ("wormhole-direct", lambda: run_wormhole(servers, src, digest, ctx.work, timeout, relayed=False)),
                ]
                runs = run_cases(cases, ctx.repeat, failures, f"throughput {label}", max_repeat=ctx.max_repeat)
        else:
            notes.append("magic-wormhole is not installed (pip install -e '.[bench]'): its cases were skipped")
            log("  NOTE: " + notes[-1])
            runs = run_cases(cases, ctx.repeat, failures, f"throughput {label}", max_repeat=ctx.max_repeat)
    finally:
        src.unlink(missing_ok=True)
    mb_s = {kind: spread([r["mb_s"] for r in rs]) for kind, rs in runs.items()}
    relayed, embedded = mb_s["xfer-relayed"], mb_s["xfer-embedded"]
    ratios = {
        "xfer_relayed_over_raw": ratio(relayed, mb_s["raw-forwarder"]),
        "xfer_embedded_over_xfer_relayed": ratio(embedded, relayed),
        "xfer_relayed_over_wormhole_relayed": ratio(relayed, mb_s.get("wormhole-relayed", {})),
        "xfer_relayed_over_wormhole_direct": ratio(relayed, mb_s.get("wormhole-direct", {})),
    }
    rss = {
        kind: {role: max(r["rss_mb"][role] for r in rs) for role in rs[0]["rss_mb"]}
        for kind, rs in runs.items()
        if rs and "rss_mb" in rs[0]
    }
    if rss.get("xfer-relayed"):
        ctx.shared["rss_big"] = (label, rss["xfer-relayed"])
    paths = sorted({r["path"] for r in runs.get("wormhole-direct", [])})
    if paths:
        notes.append(f"wormhole direct mode connected via {', '.join(paths)} (this machine's own address)")
    for kind, s in mb_s.items():
        log(f"  {kind:>18}: {fmt(s)} MB/s")
    for k, v in ratios.items():
        log(f"  {k}: {v:.2f}" if v else f"  {k}: -")
    cpu, user = cpu_per_gb(runs, size), cpu_per_gb(runs, size, "user_s")
    log("  CPU seconds per GB moved (user + kernel of the whole processes, start-up included; median of the runs):")
    for kind, roles in cpu.items():
        parts = " + ".join(f"{role} {seconds:.2f}" for role, seconds in roles.items() if role != "total")
        log(
            f"  {kind:>18}: {parts} = {roles['total']:.2f} s/GB -> at most {2 / roles['total'] * 1000:.0f} MB/s on 2 cores"
        )
    log("  of which user space (the kernel's share swings with the page-cache writer's, see page-cache-write):")
    for kind, roles in user.items():
        parts = " + ".join(f"{role} {seconds:.2f}" for role, seconds in roles.items() if role != "total")
        log(f"  {kind:>18}: {parts} = {roles['total']:.2f} s/GB")
    targets = [
        target(
            "1 GiB relayed: xfer / magic-wormhole through its relay",
            ratios["xfer_relayed_over_wormhole_relayed"],
            2.0,
            ">=",
        ),
        target("1 GiB relayed: xfer / magic-wormhole direct", ratios["xfer_relayed_over_wormhole_direct"], 1.3, ">="),
        target("embedded relay / relayed xfer", ratios["xfer_embedded_over_xfer_relayed"], 1.5, ">="),
        target("CPU per GB, all processes: xfer relayed / magic-wormhole relayed", cpu_ratio(cpu), 0.5, "<="),
        target("CPU per GB: xfer's relay / the raw forwarder's thread", relay_ratio(cpu), 1.5, "<="),
    ]
    log(
        "  the same two ratios in user space alone: "
        + ", ".join("-" if r is None else f"{r:.2f}" for r in (cpu_ratio(user), relay_ratio(user)))
    )
    return {
        "measures": "MB/s (10^6 bytes) of one file, from the sender's process start until sender and receiver "
        "have exited; SHA-256 of every received file checked",
        "size": label,
        "bytes": size,
        "repeat": ctx.repeat,
        "agreement": say_agreement(runs),
        "mb_s": mb_s,
        "ratios": ratios,
        "peak_rss_mb": rss,
        "cpu_s_per_gb": cpu,
        "user_cpu_s_per_gb": user,
        "runs": runs,
        "notes": notes,
        "targets": targets,
        "headline": {f"{k}_mb_s": v["median"] for k, v in mb_s.items() if v},
    }


def cpu_ratio(cpu: dict[str, dict[str, float]]) -> float | None:
    """Issue 17: xfer relayed's CPU per GB, all processes, over magic-wormhole relayed's."""
    if "xfer-relayed" not in cpu or "wormhole-relayed" not in cpu:
        return None
    return cpu["xfer-relayed"]["total"] / cpu["wormhole-relayed"]["total"]


def relay_ratio(cpu: dict[str, dict[str, float]]) -> float | None:
    """Issue 17: what hosting costs, ``xfer serve``'s CPU per GB (start-up left out) over the raw
    forwarder thread's."""
    relay, raw = cpu.get("xfer-relayed", {}).get("relay"), cpu.get("raw-forwarder", {}).get("forwarder")
    return relay / raw if relay is not None and raw else None


def say_agreement(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """``agreement`` of the runs, logged: whether each case's last three runs agree within 15 %."""
    agreed = agreement(runs)
    for kind, a in agreed.items():
        last = "-" if a["last_three_spread"] is None else f"{a['last_three_spread']:.0%}"
        verdict = "agree" if a["agree"] else "do NOT agree"
        loads = ", ".join(f"{x:.1f}" for x in a["load"] if x is not None)
        log(f"  {kind:>18}: last three runs {verdict} within 15 % (spread {last}); load at each run {loads}")
    return agreed


# -- 3: fixed cost ---------------------------------------------------------------------------------


def bench_fixed_cost(ctx: Context, failures: list[str]) -> dict:
    size = 1024
    src = ctx.work / "small.bin"
    digest = make_source(src, size)
    repeat = ctx.args.repeat or (1 if ctx.quick else 5)
    notes = []
    relay, port = start_relay(ctx.cmd, ctx.work, name="fixed-relay")
    try:
        cases = [("xfer", lambda: run_xfer(ctx.cmd, src, digest, ctx.work, 60, relay_port=port))]
        if ctx.wormhole:
            with WormholeServers(ctx.wormhole, ctx.work) as servers:
                cases.append(
                    (
                        "wormhole",
                        lambda: run_wormhole(servers, src, digest, ctx.work, 60, relayed=False, sender_first=True),
                    )
                )
                runs = run_cases(
                    cases,
                    repeat,
                    failures,
                    "fixed-cost",
                    max_repeat=ctx.max_repeat and (ctx.args.max_repeat or 3 * repeat),
                )
        else:
            notes.append("magic-wormhole is not installed: its case was skipped")
            log("  NOTE: " + notes[-1])
            runs = run_cases(
                cases, repeat, failures, "fixed-cost", max_repeat=ctx.max_repeat and (ctx.args.max_repeat or 3 * repeat)
            )
    finally:
        relay.stop()
        src.unlink(missing_ok=True)
    secs = {kind: spread([r["total_seconds"] for r in rs]) for kind, rs in runs.items()}
    joiner = {kind: spread([r["seconds"] for r in rs]) for kind, rs in runs.items()}
    r = ratio(secs["xfer"], secs.get("wormhole", {}))
    r_joiner = ratio(joiner["xfer"], joiner.get("wormhole", {}))
    for kind, s in secs.items():
        log(f"  {kind:>9}: {fmt(s, 3)} s from the first start; {fmt(joiner[kind], 3)} s from the second")
    log(f"  xfer / wormhole: {r:.2f} (from the second start: {r_joiner:.2f})" if r else "  xfer / wormhole: -")
    return {
        "measures": "seconds to move a 1 KiB file, as people run it: the side that opens the room starts "
        "(xfer receive; wormhole send), the other starts once the first has printed the code; from "
        "the first start until both have exited (seconds_from_second_start: from the second "
        "start); relays already running (xfer serve; wormhole's mailbox and transit relay); "
        "wormhole in its default mode",
        "repeat": repeat,
        "agreement": say_agreement(runs),
        "seconds": secs,
        "seconds_from_second_start": joiner,
        "ratio_xfer_over_wormhole": r,
        "ratio_from_second_start": r_joiner,
        "runs": runs,
        "notes": notes,
        "targets": [target("1 KiB fixed cost: xfer / magic-wormhole", r, 0.5, "<=")],
        "headline": {f"{k}_seconds": v["median"] for k, v in secs.items() if v},
    }


# -- 4: round trip ---------------------------------------------------------------------------------


QUIET_MS = 0.5  # issue 17: the relay's p99 counts where the bare forwarder's p99 is under this


def bench_round_trip(ctx: Context, failures: list[str]) -> dict:
    """Rounds of ``relay_load.round_trip`` (up to 5, fewer once one finds the machine quiet:
    the bare forwarder's p99 under 0.5 ms); the target is read in the round whose bare
    forwarder had the lowest p99, as issue 17 words it (\"where the bare forwarder is under
    0.5 ms in the same minute\")."""
    n = ctx.args.messages or (100 if ctx.quick else 1000)
    relay, port = start_relay(ctx.cmd, ctx.work, name="rtt-relay", extra=relay_load.RELAY_OPTIONS)
    rounds: list[dict] = []
    try:
        for _ in range(1 if ctx.quick else 5):
            load = os.getloadavg()[0]
            result = relay_load.round_trip_apart({"relay": port}, n)
            ms = {k: {q: v * 1000 if q != "n" else v for q, v in p.items()} for k, p in result.items()}
            rounds.append({"load_average": round(load, 2), "ms": ms})
            log(f"  round {len(rounds)} (load {load:.1f})")
            for k, p in ms.items():
                log(
                    f"  {k:>14}: p50 {p['p50']:.3f} ms, p99 {p['p99']:.3f} ms (min {p['min']:.3f}, "
                    f"max {p['max']:.3f}; n={p['n']})"
                )
            if ms["bare_forwarder"]["p99"] < QUIET_MS:
                break
    finally:
        relay.stop()
    quietest = min(rounds, key=lambda r: r["ms"]["bare_forwarder"]["p99"])
    ms = quietest["ms"]
    quiet = ms["bare_forwarder"]["p99"] < QUIET_MS
    notes = (
        []
        if quiet
        else [
            f"the bare forwarder's p99 was not under {QUIET_MS} ms in any round (lowest "
            f"{ms['bare_forwarder']['p99']:.2f} ms): the machine's own tail is in every figure"
        ]
    )
    for note in notes:
        log("  NOTE: " + note)
    return {
        "measures": "milliseconds per round trip of a text message between two peers in a room (A sends, the "
        "relay forwards, B answers, the relay forwards, A has it); both clients are asyncio "
        "websockets clients in a process of their own, its garbage collector off while it measures; "
        "echo_no_relay: a client of that process against a bare WebSocket echo server in it; "
        "bare_forwarder: two such clients through a websockets server in another process that only "
        "forwards frames; the three cases take turns in blocks of 50 round trips. ms: the round "
        "whose bare forwarder had the lowest p99; rounds: every round",
        "messages": n,
        "ms": ms,
        "rounds": rounds,
        "machine_quiet": quiet,
        "notes": notes,
        "targets": [
            target(
                "text round trip p99 (ms), in the round with the quietest bare forwarder",
                ms["relay"]["p99"],
                1.0,
                "<=",
                " ms",
            )
        ],
        "headline": {
            "relay_p50_ms": ms["relay"]["p50"],
            "relay_p99_ms": ms["relay"]["p99"],
            "bare_forwarder_p99_ms": ms["bare_forwarder"]["p99"],
        },
    }


# -- 5: memory -------------------------------------------------------------------------------------


def bench_memory(ctx: Context, failures: list[str]) -> dict:
    labels = ["2MB"] if ctx.quick else ["100MB"] + (["4GiB"] if ctx.args.big else [])
    peaks: dict[str, dict] = {}
    notes = []
    for label in labels:
        size = parse_size(label)
        src = ctx.work / f"mem-{label}.bin"
        log(f"  making a {label} source file")
        digest = make_source(src, size)
        try:
            runs = run_cases(
                [
                    (
                        "xfer-relayed",
                        lambda src=src, digest=digest, size=size: run_xfer(
                            ctx.cmd, src, digest, ctx.work, 120 + size / 1e6
                        ),
                    )
                ],
                1,
                failures,
                f"memory {label}",
            )["xfer-relayed"]
        finally:
            src.unlink(missing_ok=True)
        if runs:
            peaks[label] = runs[0]["rss_mb"]
    if "rss_big" in ctx.shared and ctx.shared["rss_big"][0] not in peaks:
        label, rss = ctx.shared["rss_big"]
        peaks[label] = rss
        notes.append(f"the {label} figures come from the throughput benchmark's runs (highest of its runs)")
    if not ctx.quick and not ctx.args.big:
        notes.append("4 GiB not run (add --big)")
    for label, rss in peaks.items():
        log(f"  {label:>6}: " + " / ".join(f"{role} {rss[role]:.1f} MB" for role in ROLES))
    ordered = sorted(peaks.items(), key=lambda kv: parse_size(kv[0]))
    highest = max((v for rss in peaks.values() for v in rss.values()), default=None)
    growth = None
    if len(ordered) > 1:
        growth = max(ordered[-1][1][r] - ordered[0][1][r] for r in ROLES)
        log(f"  growth from {ordered[0][0]} to {ordered[-1][0]}: at most {growth:.1f} MB")
    return {
        "measures": "peak RSS (VmHWM read while each runs, MB = 10^6 bytes) of xfer send, xfer serve and "
        "xfer receive moving one file",
        "peak_rss_mb": peaks,
        "highest_mb": highest,
        "growth_mb": growth,
        "notes": notes,
        "targets": [
            target("peak RSS per process (MB)", highest, 80, "<=", " MB"),
            target("peak RSS growth from the smallest to the largest file (MB), 'flat'", growth, 5, "<=", " MB"),
        ],
        "headline": {f"{label}_{role}_mb": rss[role] for label, rss in peaks.items() for role in ROLES},
    }


def bench_idle(ctx: Context, failures: list[str]) -> dict:
    n = 50 if ctx.quick else 1000
    relay, port = start_relay(ctx.cmd, ctx.work, name="idle-relay", extra=("--joins-per-minute", "1000000"))
    try:
        result = asyncio.run(asyncio.wait_for(relay_load.idle_connections(port, relay.proc.pid, n), 300))
    finally:
        relay.stop()
    log(
        f"  {n} idle peers: relay RSS {result['rss_before_kib'] / 1024:.1f} -> {result['rss_after_kib'] / 1024:.1f} MiB,"
        f" {result['kib_per_connection']:.1f} KiB per connection"
    )
    return {
        "measures": "relay (xfer serve) VmRSS with one peer, then with N more peers that joined rooms of 10 "
        "(hello, welcome) and stay idle; the difference divided by N",
        **result,
        "targets": [target("relay memory per idle connection (KiB)", result["kib_per_connection"], 50, "<=", " KiB")],
        "headline": {"kib_per_connection": result["kib_per_connection"]},
    }


def bench_rooms(ctx: Context, failures: list[str]) -> dict:
    n, size = (10, 64 * 1024) if ctx.quick else (200, 4 << 20)
    relay, port = start_relay(ctx.cmd, ctx.work, name="rooms-relay", extra=("--joins-per-minute", "1000000"))
    try:
        settle = 0.0 if ctx.quick else 8.0  # too few rooms for the relay to give memory back
        result = asyncio.run(relay_load.rooms(port, relay.proc.pid, n, size, timeout=600, settle=settle))
    finally:
        relay.stop()
    if result["errors"]:
        failures.append(f"rooms: {result['errors']} error(s): {result['error_samples']}")
    log(
        f"  {result['completed']}/{n} rooms x {size / 1024:.0f} KiB in {result['seconds']:.2f} s: "
        f"{result['aggregate_mb_s']:.1f} MB/s aggregate, {result['errors']} errors, "
        f"relay peak RSS {result['relay_peak_kib'] / 1024:.1f} MiB; RSS idle, busy, after: "
        f"{result['rss_idle_kib'] / 1024:.0f}, {result['rss_busy_kib'] / 1024:.0f}, {result['rss_after_kib'] / 1024:.0f} MiB"
    )
    return {
        "measures": "N rooms at once through one xfer serve, each a sender and a receiver (asyncio clients in "
        "one process speaking the protocol: offer, accept, file-start, 256 KiB chunks, file-end, "
        "ack, verified, done) moving one in-memory file; SHA-256 checked; timed from when all "
        "have joined until the last verified",
        **result,
        "targets": [target(f"{n} rooms at once: errors", result["errors"], 0, "==")],
        "headline": {"aggregate_mb_s": result["aggregate_mb_s"]},
    }


# -- 6: start-up -----------------------------------------------------------------------------------


def bench_startup(ctx: Context, failures: list[str]) -> dict:
    repeat = 3 if ctx.quick else 10
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "xfer --version": ctx.cmd + ["--version"],
        "xfer --help": ctx.cmd + ["--help"],
    }
    notes = []
    wormhole = script("wormhole") if ctx.wormhole else None
    if wormhole:
        commands["wormhole --version"] = [wormhole, "--version"]
    else:
        notes.append("magic-wormhole is not installed: wormhole --version skipped")
        log("  NOTE: " + notes[-1])
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(repeat):
        for name, args in commands.items():
            start = time.perf_counter()
            proc = subprocess.run(
                args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                failures.append(f"startup: {name} exited {proc.returncode}")
            times[name].append(elapsed * 1000)
    ms = {k: spread(v) for k, v in times.items()}
    for k, s in ms.items():
        log(f"  {k:>18}: {fmt(s)} ms")
    r = ratio(ms["xfer --version"], ms.get("wormhole --version", {}))
    return {
        "measures": "wall time (ms) of each command, run by its full path (no pyenv shim), interleaved",
        "repeat": repeat,
        "commands": {k: v for k, v in commands.items()},
        "ms": ms,
        "ratio_xfer_version_over_wormhole_version": r,
        "notes": notes,
        "targets": [
            target("xfer --version / wormhole --version", r, 0.4, "<="),
            target("xfer --help (ms)", ms["xfer --help"]["median"], 250, "<", " ms"),
        ],
        "headline": {f"{k} ms": v["median"] for k, v in ms.items()},
    }


# -- 7: browser upload -----------------------------------------------------------------------------


def bench_browser(ctx: Context, failures: list[str]) -> dict:
    missing = None
    if not Path("/usr/bin/chromium").exists():
        missing = "/usr/bin/chromium is missing"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            missing = "playwright is not installed"
    if missing:
        log(f"  NOTE: skipped: {missing}")
        return {"skipped": missing, "notes": [f"skipped: {missing}"], "targets": [], "headline": {}}
    out = ctx.work / "browser.json"
    args = [sys.executable, str(BENCH_DIR / "browser_upload.py"), "--out", str(out)]
    args += ["--smoke"] if ctx.quick else ["--size", ctx.args.browser_size, "--repeat", str(ctx.repeat)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120 if ctx.quick else 1800, check=False)
    for line in (proc.stderr + proc.stdout).strip().splitlines():
        log(f"  {line}")
    if proc.returncode != 0:
        raise RuntimeError(f"browser_upload.py exited {proc.returncode}")
    result = json.loads(out.read_text())
    return {
        "measures": "the phone page's upload (headless Chromium -> xfer serve -> xfer receive, SHA-256 "
        "checked) next to Chromium's raw WebSocket send rate and loops that read, hash (and seal) the file, "
        "MB/s (see bench/browser_upload.py)",
        **result,
        "targets": [
            target("browser upload / Chromium raw WebSocket", result["ratio"], 0.9, ">="),
            target("browser upload / read-and-hash loop (issue 15)", result["ratio_read_hash"], 0.9, ">="),
        ],
        "headline": {
            "page_upload_mb_s": result["page_upload_mb_s"]["median"],
            "raw_websocket_mb_s": result["raw_websocket_mb_s"]["median"],
            "read_hash_mb_s": result["read_hash_mb_s"]["median"],
        },
    }


# -- issue 7: relays sharing rooms through Redis (bench/redis_relays.py) ----------------------------


def bench_redis_throughput(ctx: Context, failures: list[str]) -> dict:
    label = "4MB" if ctx.quick else ctx.args.size
    return redis_relays.throughput(ctx.cmd, ctx.work, label, ctx.repeat, failures)


def bench_redis_idle(ctx: Context, failures: list[str]) -> dict:
    return redis_relays.idle(ctx.cmd, ctx.work, ctx.args.connections or (200 if ctx.quick else 10_000), failures)


BENCHES = {
    "throughput": bench_throughput,
    "fixed-cost": bench_fixed_cost,
    "round-trip": bench_round_trip,
    "memory": bench_memory,
    "idle-connections": bench_idle,
    "rooms": bench_rooms,
    "startup": bench_startup,
    "browser": bench_browser,
    "redis-throughput": bench_redis_throughput,
    "redis-idle": bench_redis_idle,
}


def main() -> int:
    ap = argparse.ArgumentParser(description="Run the xfer benchmark suite on loopback (issue 6).")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run each: checks the suite works")
    ap.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}",
    )
    ap.add_argument(
        "--size",
        default="1GiB",
        help="throughput and redis-throughput file size (default 1GiB; 1MB and 4MB with --quick)",
    )
    ap.add_argument(
        "--repeat", type=int, default=None, help="runs of each case (default 3, fixed cost 5; 1 with --quick)"
    )
    ap.add_argument(
        "--max-repeat",
        type=int,
        default=None,
        help="throughput and fixed cost: more rounds, up to this many, until the last three runs of each case "
        "agree within 15 %% (default 3x --repeat; 0: exactly --repeat)",
    )
    ap.add_argument("--big", action="store_true", help="also measure memory with a 4 GiB file")
    ap.add_argument("--messages", type=int, default=None, help="round trips (default 1000; 100 with --quick)")
    ap.add_argument("--browser-size", default="200MB", help="browser upload size (default 200MB; 2MB with --quick)")
    ap.add_argument(
        "--connections",
        type=int,
        default=None,
        help="idle connections over two Redis-sharing relays (default 10000; 200 with --quick)",
    )
    ap.add_argument(
        "--page-reporting-as-is",
        action="store_true",
        help="leave this VM's free page reporting as it is (by default freed pages are held for 60 s during "
        "the run where the kernel allows it: bench/README.md, the page-cache tax)",
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON results (default: bench/results/suite-<UTC time>.json)"
    )
    args = ap.parse_args()
    try:
        parse_size(args.size)
    except ValueError as exc:
        ap.error(str(exc))
    started = datetime.now(timezone.utc)
    out = args.out or RESULTS_DIR / f"suite-{started.strftime('%Y%m%d-%H%M%S')}.json"
    selected = [n for n in NAMES if not args.only or n in args.only]
    raise_nofile()
    failures: list[str] = []
    report = {
        "date": started.isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "units": "MB/s and MB are decimal (10^6 bytes); KiB/MiB binary; times as labelled",
        "quick": args.quick,
        "benchmarks": {},
        "failures": failures,
    }
    with (
        FreedPagesHeld(not args.page_reporting_as_is) as pages,
        tempfile.TemporaryDirectory(prefix="xfer-bench-suite-") as tmp,
    ):
        report["machine"]["page_reporting"] = pages.state
        if pages.note:
            log(f"NOTE: {pages.note}")
        ctx = Context(args, Path(tmp))
        report["xfer"] = {"command": ctx.cmd, **provenance(), "byte_compiled": byte_compile_xfer()}
        report["wormhole"] = ctx.wormhole
        if not ctx.wormhole:
            log("NOTE: magic-wormhole is not installed (pip install -e '.[bench]'): its cases are skipped")
        log(f"xfer: {' '.join(ctx.cmd)}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}; loopback 127.0.0.1")
        if not report["xfer"]["byte_compiled"]["ok"]:
            log("NOTE: could not byte-compile xfer's modules; each xfer process compiles them from source (~50 ms)")
        for name in selected:
            log(f"\n== {name}")
            began = time.monotonic()
            try:
                result = BENCHES[name](ctx, failures)
            except Exception as exc:  # noqa: BLE001 -- recorded; the exit status becomes 1
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                log(f"  FAILED: {type(exc).__name__}: {exc}")
                result = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                    "targets": [],
                    "headline": {},
                }
            result["wall_seconds"] = round(time.monotonic() - began, 1)
            report["benchmarks"][name] = result
            report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2, default=str) + "\n")  # partial results survive a crash

    log("\n== targets (issues 6 and 7), each a ratio or figure from this run")
    return report_targets(report, out, failures, lambda name: f"{name:>16} ")


if __name__ == "__main__":
    sys.exit(main())
