#!/usr/bin/env python3
"""A/B of the text round trip: ``xfer serve`` of several source trees, in turns, in one run.

Each ``NAME=SRC`` is a source tree (the folder holding ``xfer/``); each gets its own
``xfer serve``. A run is ``run_all.py --only round-trip``'s method (``relay_load.round_trip``
in a process of its own) with every relay at once: the relays, a bare echo server and a
bare forwarder take turns in blocks of 50 round trips, so a busy minute lands on each alike.
Each line is one run; the last ones are the medians of the runs' p50 and p99.

    git worktree add --detach /tmp/xfer-before HEAD~3
    python bench/compare_round_trip.py --repeat 5 before=/tmp/xfer-before/src now=src
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import tempfile
from pathlib import Path

import relay_load
from common import Child, start_relay
from compare_fixed_cost import tree_cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", metavar="NAME=SRC")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--messages", type=int, default=1000, help="round trips per case and run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xfer-rtt-"))
    relays: dict[str, Child] = {}
    ports: dict[str, int] = {}
    try:
        for arg in args.trees:
            name, _, src = arg.partition("=")
            compileall.compile_dir(str(Path(src) / "xfer"), quiet=1)
            relays[name], ports[name] = start_relay(
                tree_cmd(src), work, name=f"relay-{name}", extra=relay_load.RELAY_OPTIONS
            )
        runs: list[dict] = []
        for i in range(args.repeat):
            load = os.getloadavg()[0]
            result = relay_load.round_trip_apart(ports, args.messages)
            runs.append(result)
            cases = ", ".join(f"{case} {p['p50'] * 1e3:.3f}/{p['p99'] * 1e3:.3f}" for case, p in result.items())
            print(f"run {i + 1} (load {load:.1f}), p50/p99 ms: {cases}", flush=True)
        for case in runs[0]:
            p50 = statistics.median(r[case]["p50"] * 1e3 for r in runs)
            p99 = statistics.median(r[case]["p99"] * 1e3 for r in runs)
            print(f"{case:>15}: median of {len(runs)} runs: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    finally:
        for relay in relays.values():
            relay.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
