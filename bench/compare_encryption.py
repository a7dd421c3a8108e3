#!/usr/bin/env python3
"""What protocol 2.0's encryption costs: xfer now against xfer 1.0 (no encryption), side by side.

Issue 12's targets: encryption costs at most 10 % of the relayed throughput of 1 GiB, and
the handshake at most 50 ms of the 1 KiB fixed cost. Both trees run in one run, taking
turns, so a busy machine slows them alike:

- ``throughput``: ``run_all.py``'s relayed case (``xfer serve``, ``xfer receive`` that
  opens the room, ``xfer send --room CODE``, SHA-256 checked), each tree with its own
  relay (a 2.0 relay refuses a 1.0 peer). The trees take turns A B, B A, ...; the cost
  is ``1 - median(now / baseline)`` over the rounds' pairs. CPU seconds per GB (sender
  + relay + receiver) are reported beside it: on a shared machine they vary less.
- ``fixed-cost``: the same with a 1 KiB file through a relay already running (one per
  tree), from the receiver's start until both have exited; the cost is the median of
  each round's difference.

The baseline is xfer at ``f9faf55`` (the last 1.0 commit), taken out of this checkout's
git history with ``git archive`` into a temporary folder (no worktree is registered, so
an interrupted run leaves nothing in the repository), or a tree given with
``--baseline SRC``. Each tree runs with itself first on ``sys.path`` (``tree_cmd``).
``--self-check`` runs the baseline against itself: the method is sound if that gives
about 1.0 and 0 ms.

    python bench/compare_encryption.py                     # 1 GiB x 5, 1 KiB x 25
    python bench/compare_encryption.py --self-check --size 200MB
    python bench/compare_encryption.py --quick             # tiny: checks the script works
"""

from __future__ import annotations

import argparse
import compileall
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import RESULTS_DIR, Child, log, make_source, start_relay, target
from compare_fixed_cost import tree_cmd
from transfer import run_xfer
from xfer.units import parse_size

BASELINE_COMMIT = "f9faf55"  # the last commit of protocol 1.0, before any encryption
REPO = Path(__file__).resolve().parent.parent
MAX_THROUGHPUT_COST = 0.10  # issue 12: at most 10 % of the relayed throughput
MAX_HANDSHAKE_SECONDS = 0.050  # issue 12: at most 50 ms of the 1 KiB fixed cost


def baseline_tree(into: Path, commit: str = BASELINE_COMMIT) -> Path:
    """This checkout's ``src`` at ``commit``, written under ``into``; its path."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def _turns(trees: dict[str, list[str]], round_: int) -> list[tuple[str, list[str]]]:
    """The trees in this round's order: A B, then B A, and so on, so that neither always
    runs first (right after a file was written, or after the other one's burst)."""
    turns = list(trees.items())
    return turns if round_ % 2 else turns[::-1]


def paired(a: list[float | None], b: list[float | None], how) -> list[float]:
    """``how(a, b)`` of each round where both ran: a slow moment of the machine hits both
    runs of a round, so the pairs vary less than either tree's runs."""
    return [how(x, y) for x, y in zip(a, b) if x is not None and y is not None]


def throughput(trees: dict[str, list[str]], work: Path, size: int, repeat: int, failures: list[str]) -> dict:
    source = work / "source.bin"
    digest = make_source(source, size)
    runs: dict[str, list[dict | None]] = {name: [] for name in trees}
    try:
        for i in range(1, repeat + 1):
            for name, cmd in _turns(trees, i):
                try:
                    r = run_xfer(cmd, source, digest, work, 60 + size / 5e6)
                except Exception as exc:  # noqa: BLE001 -- recorded; the exit status becomes 1
                    failures.append(f"throughput {name} run {i}: {exc}")
                    log(f"  throughput {name} run {i}: FAILED: {exc}")
                    runs[name].append(None)
                    continue
                runs[name].append(r)
                cpu = sum(r["cpu_s"].values()) / (size / 1e9)
                log(f"  throughput {name} run {i}: {r['mb_s']:.1f} MB/s, {cpu:.2f} CPU s/GB")
    finally:
        source.unlink(missing_ok=True)
    out = {}
    for name, all_runs in runs.items():
        rs = [r for r in all_runs if r is not None]
        out[name] = {
            "mb_s": [r and r["mb_s"] for r in all_runs],  # by round (None: it failed)
            "cpu_s_per_gb_total": [r and sum(r["cpu_s"].values()) / (size / 1e9) for r in all_runs],
            "median_mb_s": statistics.median(r["mb_s"] for r in rs) if rs else None,
            "cpu_s_per_gb": {
                role: statistics.median(r["cpu_s"][role] / (size / 1e9) for r in rs) for role in rs[0]["cpu_s"]
            }
            if rs
            else {},
        }
    return out


def fixed_cost(trees: dict[str, list[str]], work: Path, repeat: int, failures: list[str]) -> dict:
    source = work / "small.bin"
    digest = make_source(source, 1024)
    relays: dict[str, tuple[Child, int]] = {}
    runs: dict[str, list[float | None]] = {name: [] for name in trees}
    cpu: dict[str, list[float | None]] = {name: [] for name in trees}  # sender + receiver, seconds
    try:
        for name, cmd in trees.items():
            relays[name] = start_relay(cmd, work, name=f"relay-{name}")
        for i in range(1, repeat + 1):
            for name, cmd in _turns(trees, i):
                try:
                    r = run_xfer(cmd, source, digest, work, 60, relay_port=relays[name][1])
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"fixed-cost {name} run {i}: {exc}")
                    log(f"  fixed-cost {name} run {i}: FAILED: {exc}")
                    runs[name].append(None)
                    cpu[name].append(None)
                    continue
                runs[name].append(r["total_seconds"])
                cpu[name].append(sum(r["cpu_s"].values()))
                log(f"  fixed-cost {name} run {i}: {r['total_seconds']:.3f} s, {cpu[name][-1]:.3f} CPU s")
    finally:
        for relay, _port in relays.values():
            relay.kill()
    return {
        name: {
            "seconds": s,
            "cpu_seconds": cpu[name],
            "median_seconds": _median(s),
            "median_cpu_seconds": _median(cpu[name]),
        }
        for name, s in runs.items()
    }


def _median(values: list[float | None]) -> float | None:
    ran = [v for v in values if v is not None]
    return statistics.median(ran) if ran else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", metavar="SRC", help=f"a 1.0 source tree (default: {BASELINE_COMMIT} from git)")
    ap.add_argument("--now", metavar="SRC", default=str(REPO / "src"), help="the tree to measure (default: this one)")
    ap.add_argument("--self-check", action="store_true", help="the baseline against itself (expect ~1.0 and ~0 ms)")
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--repeat", type=int, default=5, help="throughput runs of each tree")
    ap.add_argument("--fixed-repeat", type=int, default=25, help="1 KiB runs of each tree")
    ap.add_argument("--quick", action="store_true", help="1 MB, one run each: checks that the script works")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.size, args.repeat, args.fixed_repeat = "1MB", 1, 1
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="xfer-encryption-"))
    failures: list[str] = []
    try:
        base_src = Path(args.baseline) if args.baseline else baseline_tree(work)
        now_src = base_src if args.self_check else Path(args.now)
        names = ("baseline", "baseline-again") if args.self_check else ("baseline", "now")
        trees = {}
        for name, src in zip(names, (base_src, now_src)):
            compileall.compile_dir(str(src / "xfer"), quiet=1)  # as pip install does: no compiling at each start
            trees[name] = tree_cmd(str(src))
        log(f"throughput: {args.size} x {args.repeat}, trees interleaved")
        speed = throughput(trees, work, size, args.repeat, failures)
        log(f"fixed cost: 1 KiB x {args.fixed_repeat}, trees interleaved")
        fixed = fixed_cost(trees, work, args.fixed_repeat, failures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base, other = names
    report: dict = {
        "size": size,
        "repeat": args.repeat,
        "fixed_repeat": args.fixed_repeat,
        "self_check": args.self_check,
    }
    report.update(throughput=speed, fixed_cost=fixed, failures=failures, load_average=list(_load()))
    # The targets take the median of the rounds' pairs (see ``paired``); each tree's own
    # medians are reported beside them.
    ratios = paired(speed[other]["mb_s"], speed[base]["mb_s"], lambda x, y: x / y)
    cpu_ratios = paired(speed[other]["cpu_s_per_gb_total"], speed[base]["cpu_s_per_gb_total"], lambda x, y: x / y)
    deltas = paired(fixed[other]["seconds"], fixed[base]["seconds"], lambda x, y: x - y)
    cpu_deltas = paired(fixed[other]["cpu_seconds"], fixed[base]["cpu_seconds"], lambda x, y: x - y)
    cost = 1 - statistics.median(ratios) if ratios else None
    handshake = statistics.median(deltas) if deltas else None
    report["paired"] = {
        "throughput_ratios": ratios,
        "cpu_per_gb_ratios": cpu_ratios,
        "cpu_per_gb_ratio_median": statistics.median(cpu_ratios) if cpu_ratios else None,
        "fixed_cost_deltas": deltas,
        "fixed_cost_cpu_deltas": cpu_deltas,
        "fixed_cost_cpu_delta_median": statistics.median(cpu_deltas) if cpu_deltas else None,
    }
    report["targets"] = [
        target("encryption's share of relayed throughput", cost, MAX_THROUGHPUT_COST, "<="),
        target("handshake's share of the 1 KiB fixed cost (s)", handshake, MAX_HANDSHAKE_SECONDS, "<="),
    ]
    for name in names:
        s, f = speed[name], fixed[name]
        cpu = s["cpu_s_per_gb"]
        split = " + ".join(f"{role} {v:.2f}" for role, v in cpu.items())
        log(
            f"{name:>15}: {s['median_mb_s'] or 0:.1f} MB/s ({', '.join(f'{x or 0:.1f}' for x in s['mb_s'])}), "
            f"{sum(cpu.values()):.2f} CPU s/GB ({split}); 1 KiB {f['median_seconds'] or 0:.3f} s, "
            f"{f['median_cpu_seconds'] or 0:.3f} CPU s"
        )
    if ratios:
        log(f"  paired throughput ratios {other}/{base}: {', '.join(f'{x:.3f}' for x in ratios)}")
        log(f"  paired CPU-per-GB ratios {other}/{base}: {', '.join(f'{x:.3f}' for x in cpu_ratios)}")
    if deltas:
        log(f"  paired 1 KiB differences {other}-{base} (ms): {', '.join(f'{x * 1000:.0f}' for x in deltas)}")
        log(
            f"  paired 1 KiB CPU differences (sender + receiver, ms): {', '.join(f'{x * 1000:.0f}' for x in cpu_deltas)}"
            f"; median {statistics.median(cpu_deltas) * 1000:.0f}"
        )
    for t in report["targets"]:
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
        measured = "-" if t["measured"] is None else f"{t['measured']:.3f}"
        log(f"  {t['target']}: {measured} (target {t['limit']}): {verdict}")
    out = args.out or RESULTS_DIR / f"encryption-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    log(f"results: {out}")
    return 1 if failures else 0


def _load() -> tuple[float, ...]:
    import os

    return os.getloadavg()


if __name__ == "__main__":
    raise SystemExit(main())
