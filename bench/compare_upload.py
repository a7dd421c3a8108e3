#!/usr/bin/env python3
"""A/B of the phone page's upload: several xfer source trees, interleaved, next to Chromium's raw send.

Each ``NAME=SRC`` is a source tree (the folder holding ``xfer/``); its own ``xfer serve`` serves its
page, and the upload goes into the installed ``xfer receive``, as ``browser_upload.py`` does it.
Besides MB/s, each run reports the CPU seconds each process took (sampled from /proc every 0.1 s:
Chromium's browser, renderer, network and GPU processes, the relay, the receiver), which says where
the time goes on a machine where the cores, not the network, are the limit.

    git worktree add --detach /tmp/xfer-before HEAD~2
    python bench/compare_upload.py --size 200MB --repeat 3 before=/tmp/xfer-before/src now=src
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import browser_upload as bu
from common import make_source
from compare_fixed_cost import tree_cmd
from xfer.units import parse_size

HZ = os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """CPU seconds per kind of process while it runs (processes that end count up to their last sample)."""

    def __init__(self, kind) -> None:
        self.kind, self.first, self.last, self.kinds = kind, {}, {}, {}
        self.stopped = threading.Event()

    def _snap(self, starting: bool) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                if pid not in self.kinds:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
                    self.kinds[pid] = self.kind(cmd)
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / HZ
            self.first.setdefault(pid, cpu if starting else 0.0)
            self.last[pid] = cpu

    def __enter__(self):
        self._snap(True)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stopped.wait(0.1):
            self._snap(False)

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        self._snap(False)
        self.seconds: dict[str, float] = {}
        for pid, cpu in self.last.items():
            kind = self.kinds.get(pid)
            if kind and cpu > self.first[pid]:
                self.seconds[kind] = self.seconds.get(kind, 0.0) + cpu - self.first[pid]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", metavar="NAME=SRC")
    ap.add_argument("--size", default="200MB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="xfer-compare-upload-"))
    origins: dict[str, bu.Origin] = {}
    for arg in args.trees:  # each tree's own relay serves its page (a sink beside it, unused)
        name, _, src = arg.partition("=")
        origins[name] = bu.Origin("lan", work, tree_cmd(src))
    ports = [f"--port {origin.port}" for origin in origins.values()]

    def kind(cmd: str) -> str | None:
        if "chromium" in cmd:
            for t, label in (("renderer", "renderer"), ("utility", "network"), ("gpu-process", "gpu")):
                if f"--type={t}" in cmd:
                    return label
            return "browser" if "--type=" not in cmd else None
        if " serve " in cmd and any(p in cmd for p in ports):
            return "relay"
        if " receive " in cmd and "--name desk" in cmd:  # browser_upload's receiver
            return "receiver"
        return None

    rows: dict[str, list[tuple[float, dict]]] = {}
    try:
        source = work / "upload.bin"
        digest = make_source(source, size)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=bu.CHROMIUM,
                headless=True,
                args=[
                    "--host-resolver-rules=MAP lan.test 127.0.0.1",
                    "--disable-gpu",
                    "--disable-quic",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--disable-sync",
                ],
            )
            try:
                for run in range(args.repeat):
                    first = next(iter(origins.values()))
                    for name in ["raw", *origins]:
                        with CpuSampler(kind) as cpu:
                            if name == "raw":
                                seconds = bu.loop_send(browser, first, "raw", source, digest, 300)
                            else:
                                seconds = bu.page_upload(browser, origins[name], work, source, digest, 300)
                        rows.setdefault(name, []).append((size / seconds / 1e6, cpu.seconds))
                        print(
                            f"run {run + 1} {name}: {size / seconds / 1e6:.1f} MB/s; CPU s "
                            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.seconds.items())),
                            flush=True,
                        )
            finally:
                browser.close()
    finally:
        for origin in origins.values():
            origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    raw = statistics.median(r for r, _ in rows["raw"])
    print(f"\nmedians of {args.repeat} ({size / 1e6:.0f} MB; load average now {os.getloadavg()[0]:.1f}):")
    for name, rs in rows.items():
        rates = [r for r, _ in rs]
        kinds = sorted({k for _, c in rs for k in c})
        cpu = ", ".join(f"{k} {statistics.median(c.get(k, 0.0) for _, c in rs):.2f}" for k in kinds)
        print(
            f"{name:>10}: {statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) MB/s, "
            f"/ raw {statistics.median(rates) / raw:.2f}; CPU s {cpu}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
