#!/usr/bin/env python3
"""A/B of relayed throughput: several xfer source trees, interleaved, in one run.

Each ``NAME=SRC`` is a source tree (the folder holding ``xfer/``, e.g. a ``git worktree
add``'s ``src``). Each run is ``run_all.py``'s relayed case: ``xfer serve``, ``xfer receive``
and ``xfer send`` of that tree on loopback, a file of ``--size``, its SHA-256 checked. The
trees take turns, so a busy machine slows them alike; the figures are medians, and the
CPU seconds per GB are summed over the three processes.

    git worktree add --detach /tmp/xfer-before HEAD~3
    python bench/compare_throughput.py --size 200MB --repeat 3 before=/tmp/xfer-before/src now=src

``--embedded`` adds ``run_all.py``'s embedded case to each turn (``xfer receive --host``: the
receiver hosts the relay), printed as its own lines.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import tempfile
from pathlib import Path

from common import FreedPagesHeld, make_source
from compare_fixed_cost import tree_cmd
from transfer import run_embedded, run_xfer
from xfer.units import parse_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", metavar="NAME=SRC")
    ap.add_argument("--size", default="200MB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--embedded", action="store_true", help="also the case where the receiver hosts the relay")
    ap.add_argument(
        "--page-reporting-as-is", action="store_true", help="do not hold freed pages (see run_all.py's option)"
    )
    args = ap.parse_args()
    trees = {}
    for arg in args.trees:
        name, _, src = arg.partition("=")
        compileall.compile_dir(str(Path(src) / "xfer"), quiet=1)
        trees[name] = tree_cmd(src)
    work = Path(tempfile.mkdtemp(prefix="xfer-compare-"))
    size = parse_size(args.size)
    source = work / "source.bin"
    digest = make_source(source, size)
    cases = {"": run_xfer, " embedded": run_embedded} if args.embedded else {"": run_xfer}
    runs: dict[str, list[dict]] = {name + case: [] for case in cases for name in trees}
    with FreedPagesHeld(not args.page_reporting_as_is) as pages:
        if pages.note:
            print(f"NOTE: {pages.note}")
        for _ in range(args.repeat):
            for case, run in cases.items():
                for name, cmd in trees.items():
                    runs[name + case].append(run(cmd, source, digest, work, 60 + size / 1e6))
    base: dict[str, float] = {}
    for name, rs in runs.items():
        case = name[name.find(" ") :] if " " in name else ""
        mb_s = [r["mb_s"] for r in rs]
        cpu = [sum(r["cpu_s"].values()) / (size / 1e9) for r in rs]
        median = statistics.median(mb_s)
        first = base.setdefault(case, median)
        roles = {role: statistics.median(r["cpu_s"][role] for r in rs) / (size / 1e9) for role in rs[0]["cpu_s"]}
        split = ", ".join(f"{role} {seconds:.2f}" for role, seconds in roles.items())
        # the user-space part apart: the kernel's swings with the VM's memory (bench/README, the page-cache tax)
        user = {role: [r["user_s"][role] / (size / 1e9) for r in rs] for role in rs[0]["user_s"]}
        users = ", ".join(f"{role} {statistics.median(each):.2f}" for role, each in user.items())
        print(
            f"{name:>14}: {median:6.1f} MB/s ({min(mb_s):.1f}-{max(mb_s):.1f}), "
            f"{statistics.median(cpu):.2f} CPU s/GB ({split}), {median / first:.2f}x the first tree\n"
            f"{'':>16}user CPU s/GB: {users}; receiver's in each run: "
            + " ".join(f"{seconds:.2f}" for seconds in user.get("receiver", []))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
