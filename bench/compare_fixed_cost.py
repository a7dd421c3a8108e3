#!/usr/bin/env python3
"""A/B of the 1 KiB fixed cost: several xfer source trees, interleaved, and magic-wormhole, in one run.

Each ``NAME=SRC`` is a source tree (the folder holding ``xfer/``, e.g. a ``git worktree add``'s
``src``); its modules are byte-compiled first, as ``pip install`` does. All trees go through one
``xfer serve`` of the installed xfer; each run is as in ``run_all.py --only fixed-cost`` (the
receiver opens the room, the sender joins once the code is printed), and magic-wormhole's default
mode runs between them, so every ratio is measured in the same run.

    git worktree add --detach /tmp/xfer-before HEAD~3
    python bench/compare_fixed_cost.py --repeat 7 before=/tmp/xfer-before/src now=src
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import sys
import tempfile
from pathlib import Path

from common import start_relay, wormhole_tools, xfer_cmd
from transfer import make_source, run_xfer
from wormhole import WormholeServers, run_wormhole


def tree_cmd(src: str) -> list[str]:
    boot = (
        f"import sys; sys.path.insert(0, {str(Path(src).resolve())!r}); sys.argv[0] = 'xfer'; "
        "from xfer.cli import main; main()"
    )
    return [sys.executable, "-c", boot]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", metavar="NAME=SRC")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    trees = {}
    for arg in args.trees:
        name, _, src = arg.partition("=")
        compileall.compile_dir(str(Path(src) / "xfer"), quiet=1)
        trees[name] = tree_cmd(src)
    tools = wormhole_tools()
    work = Path(tempfile.mkdtemp(prefix="xfer-compare-"))
    source = work / "small.bin"
    digest = make_source(source, 1024)
    relay, port = start_relay(xfer_cmd(), work, name="compare-relay")
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in [*trees, *(["wormhole"] if tools else [])]}
    try:
        servers = WormholeServers(tools, work) if tools else None
        with servers or _Nothing():
            for _ in range(args.repeat):
                for name, cmd in trees.items():
                    r = run_xfer(cmd, source, digest, work, 60, relay_port=port)
                    runs[name].append((r["total_seconds"], r["seconds"]))
                if servers:
                    r = run_wormhole(servers, source, digest, work, 60, relayed=False, sender_first=True)
                    runs["wormhole"].append((r["total_seconds"], r["seconds"]))
    finally:
        relay.stop()
    base = statistics.median(t for t, _ in runs["wormhole"]) if tools else None
    for name, rs in runs.items():
        first, second = [t for t, _ in rs], [s for _, s in rs]
        ratio = f"; / wormhole {statistics.median(first) / base:.2f}" if base else ""
        print(
            f"{name:>10}: {statistics.median(first):.3f} ({min(first):.3f}-{max(first):.3f}) s from the first start, "
            f"{statistics.median(second):.3f} ({min(second):.3f}-{max(second):.3f}) s from the second{ratio}"
        )
    return 0


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
