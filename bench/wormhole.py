"""magic-wormhole as a baseline: its mailbox server and transit relay on loopback, ``wormhole send`` / ``receive``.

Needs the pip packages magic-wormhole, magic-wormhole-mailbox-server and
magic-wormhole-transit-relay (``pip install -e '.[bench]'``); ``common.wormhole_tools()``
says whether they are there. Nothing leaves 127.0.0.1: ``--relay-url`` and
``--transit-helper`` point at the servers started here.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from common import Child, cpu_seconds, cpu_split, free_port, sha256_of, wait_for_port, wait_until


class WormholeServers:
    """``twist wormhole-mailbox`` and ``twist transitrelay`` on 127.0.0.1, for as long as the ``with`` lasts."""

    def __init__(self, tools: dict[str, str], work: Path):
        self.tools, self.work = tools, work
        self.children: list[Child] = []

    def __enter__(self) -> WormholeServers:
        try:
            self.mailbox_port, self.transit_port = free_port(), free_port()
            db = self.work / "wormhole-mailbox.sqlite"
            db.unlink(missing_ok=True)
            self.children.append(
                Child(
                    "wormhole-mailbox",
                    [
                        self.tools["twist"],
                        "wormhole-mailbox",
                        f"--port=tcp:{self.mailbox_port}:interface=127.0.0.1",
                        f"--channel-db={db}",
                    ],
                    self.work,
                )
            )
            self.children.append(
                Child(
                    "wormhole-transit",
                    [self.tools["twist"], "transitrelay", f"--port=tcp:{self.transit_port}:interface=127.0.0.1"],
                    self.work,
                )
            )
            wait_for_port(self.mailbox_port, 30)
            wait_for_port(self.transit_port, 30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for child in self.children:
            child.stop(5)

    def cmd(self) -> list[str]:
        return [
            self.tools["wormhole"],
            "--relay-url",
            f"ws://127.0.0.1:{self.mailbox_port}/v1",
            "--transit-helper",
            f"tcp:127.0.0.1:{self.transit_port}",
        ]


_runs = 0


def run_wormhole(
    servers: WormholeServers,
    src: Path,
    digest: str,
    work: Path,
    timeout: float,
    relayed: bool,
    head_start: float = 1.0,
    sender_first: bool = False,
) -> dict:
    """One ``wormhole send`` -> ``wormhole receive`` of ``src``; the received file's SHA-256 must match.

    ``relayed``: ``--no-listen`` on both sides, so the data must go through the transit relay (checked
    from the receiver's output). Otherwise wormhole picks (a direct connection on loopback).
    The receiver starts first and gets ``head_start`` seconds to connect to the mailbox; the time runs
    from the sender's start until both have exited (``total_seconds``: from the receiver's start).
    ``seconds`` always runs from the second process's start, ``total_seconds`` from the first's.

    ``sender_first``: as people use it, and as ``xfer`` runs (the side that opens the room starts,
    shows the code, then the other starts): the sender starts, the receiver starts once the sender
    has printed the code; ``total_seconds`` then runs from the sender's start.
    """
    global _runs
    _runs += 1
    code = f"{_runs}-xfer-bench"  # a nameplate number, then words: a fresh one per run
    out_dir = work / "wormhole-received"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    listen = ["--no-listen"] if relayed else []
    children: list[Child] = []

    def start_receiver() -> Child:
        child = Child(
            "wormhole-receiver",
            servers.cmd() + ["receive", "--hide-progress", "--accept-file", "-o", str(out_dir), *listen, code],
            work,
        )
        children.append(child)
        return child

    def start_sender() -> Child:
        child = Child(
            "wormhole-sender",
            servers.cmd() + ["send", "--hide-progress", "--no-qr", *listen, "--code", code, str(src)],
            work,
        )
        children.append(child)
        return child

    transit = next(c for c in servers.children if c.name == "wormhole-transit")
    transit_cpu = cpu_seconds(transit.proc.pid)
    transit_user = cpu_split(transit.proc.pid)[0]
    try:
        if sender_first:
            sender = start_sender()
            wait_until(
                lambda: (
                    True
                    if "Wormhole code is"
                    in sender.err_path.read_text(errors="replace") + sender.out_path.read_text(errors="replace")
                    else None
                ),
                "code",
                sender,
                30,
            )
            receiver = start_receiver()
        else:
            receiver = start_receiver()
            time.sleep(head_start)
            sender = start_sender()
        deadline = sender.start + timeout
        sender.wait(deadline)
        receiver.wait(deadline)
        second = receiver if sender_first else sender
        seconds = max(sender.end, receiver.end) - second.start
        for child in (sender, receiver):
            if child.rc != 0:
                raise RuntimeError(f"{child.name} exited {child.rc}{child.tail()}")
        said = receiver.out_path.read_text(errors="replace") + receiver.err_path.read_text(errors="replace")
        match = re.search(r"Receiving \(->([^)]*)\)", said)
        path = match.group(1) if match else "?"
        if relayed and not path.startswith("relay:"):
            raise RuntimeError(f"wormhole with --no-listen did not use the transit relay: {path}")
        got = out_dir / src.name
        if not got.is_file() or sha256_of(got) != digest:
            raise RuntimeError(f"wormhole: received file {got} is missing or its SHA-256 differs from the source's")
        first = sender if sender_first else receiver
        return {
            "seconds": seconds,
            "total_seconds": max(sender.end, receiver.end) - first.start,
            "mb_s": src.stat().st_size / seconds / 1e6,
            "path": path,
            "rss_mb": {c.name: c.rss_mb for c in (sender, receiver)},
            "cpu_s": {
                "sender": sender.cpu_s,
                "receiver": receiver.cpu_s,
                **({"relay": cpu_seconds(transit.proc.pid) - transit_cpu} if relayed else {}),
            },
            "user_s": {
                "sender": sender.user_s,
                "receiver": receiver.user_s,
                **({"relay": cpu_split(transit.proc.pid)[0] - transit_user} if relayed else {}),
            },
        }
    finally:
        for child in children:
            child.kill()
        shutil.rmtree(out_dir, ignore_errors=True)
