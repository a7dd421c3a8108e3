"""Fault injection with real processes and real signals: each transfer must end identical
to its source, with no partial or state files left, even when something dies mid-way.

Transfers are rate-limited (--limit-rate) so that each fault lands mid-transfer; every
test asserts that it did.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import (
    bounded,
    free_port,
    leftovers,
    make_file,
    safe_events,
    serve,
    sha256_of,
    wait_for_port,
    wait_progress,
)

SIZE = 48 * 1000 * 1000
RATE = "24MB"  # about 2 s of transfer
FAST = ["--keepalive", "1", "--peer-timeout", "30"]


@pytest.fixture
def source(tmp_path):
    return make_file(tmp_path / "movie.mkv", SIZE, 11)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_relay_dies_mid_transfer_and_returns(tmp_path, procs, source, how):
    port = free_port()
    relay = serve(procs, tmp_path, port)
    out = tmp_path / "out"
    receiver = procs(
        ["receive", "--relay", f"127.0.0.1:{port}", "--yes", "--json", "--dir", str(out), *FAST], tmp_path, "recv"
    )
    code = receiver.first_event()["code"]
    sender = procs(
        ["send", str(source), "--room", code, "--relay", f"127.0.0.1:{port}", "--json", "--limit-rate", RATE, *FAST],
        tmp_path,
        "send",
    )
    before = wait_progress(receiver, SIZE // 5)
    relay.proc.send_signal(how)
    relay.wait(10)
    time.sleep(0.5)
    serve(procs, tmp_path, port, "serve2")
    assert sender.wait(90) == 0, sender.stderr
    assert receiver.wait(30) == 0, receiver.stderr
    assert 0 < before < SIZE  # the fault landed mid-transfer
    assert sha256_of(out / "movie.mkv") == sha256_of(source)
    assert leftovers(out) == []
    kinds = [e["event"] for e in receiver.events()]
    assert "reconnecting" in kinds and "reconnected" in kinds
    resumed = [e["resumed"] for e in receiver.events() if e["event"] == "accepted"]
    assert len(resumed) >= 2 and resumed[-1] > 0  # the second round started where the first stopped


def test_receiver_killed_and_started_again_resumes(tmp_path, procs, source):
    port = free_port()
    serve(procs, tmp_path, port)
    out = tmp_path / "out"
    first = procs(
        ["receive", "--relay", f"127.0.0.1:{port}", "--yes", "--json", "--dir", str(out), *FAST], tmp_path, "recv1"
    )
    code = first.first_event()["code"]
    sender = procs(
        ["send", str(source), "--room", code, "--relay", f"127.0.0.1:{port}", "--json", "--limit-rate", RATE, *FAST],
        tmp_path,
        "send",
    )
    before = wait_progress(first, SIZE // 4)
    first.proc.send_signal(signal.SIGKILL)
    first.wait(10)
    partial = [p for p in out.iterdir() if p.name.endswith(".xfer-part")]
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < SIZE
    second = procs(
        ["receive", "--room", code, "--relay", f"127.0.0.1:{port}", "--yes", "--json", "--dir", str(out), *FAST],
        tmp_path,
        "recv2",
    )
    assert second.wait(60) == 0, second.stderr
    assert sender.wait(30) == 0, sender.stderr
    assert 0 < before < SIZE
    assert sha256_of(out / "movie.mkv") == sha256_of(source)
    assert leftovers(out) == []
    resumed = [e["resumed"] for e in second.events() if e["event"] == "accepted"]
    assert resumed and resumed[0] >= before - 8 * 1024 * 1024 and resumed[0] > 0


def test_sender_killed_and_started_again_resumes(tmp_path, procs, source):
    """A new sender process is a different sender (a new transfer id; it cannot be told
    from another member of the room): the waiting receiver refuses it and says so, and
    both run again resume from what the receiver holds."""
    port = free_port()
    serve(procs, tmp_path, port)
    out = tmp_path / "out"
    receive = ["receive", "--relay", f"127.0.0.1:{port}", "--yes", "--json", "--dir", str(out), *FAST]
    receiver = procs(receive, tmp_path, "recv")
    code = receiver.first_event()["code"]
    args = ["send", str(source), "--room", code, "--relay", f"127.0.0.1:{port}", "--json", *FAST]
    first = procs(args + ["--limit-rate", RATE], tmp_path, "send1")
    before = wait_progress(receiver, SIZE // 4)
    first.proc.send_signal(signal.SIGKILL)
    first.wait(10)
    second = procs(args, tmp_path, "send2")
    assert second.wait(60) != 0
    assert "only from the sender it began with" in second.stdout
    assert [e["asking"] for e in receiver.events() if e["event"] == "other-sender"] == [False]
    receiver.proc.send_signal(signal.SIGTERM)
    receiver.wait(10)
    again = procs(receive, tmp_path, "recv2")
    code = again.first_event()["code"]
    third = procs([*args[:3], code, *args[4:]], tmp_path, "send3")
    assert third.wait(60) == 0, third.stderr
    assert again.wait(30) == 0, again.stderr
    assert 0 < before < SIZE
    assert sha256_of(out / "movie.mkv") == sha256_of(source)
    assert leftovers(out) == []
    accepted = [e for e in third.events() if e["event"] == "accepted"]
    assert accepted and accepted[0]["resumed"] > 0


class StallingProxy:
    """A TCP forwarder on loopback that can stop forwarding (a network that stalls)."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.stalled = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.stall_next = True  # connections opened after stall() forward normally
        self.connections: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            stall = threading.Event()
            self.connections.append((client, upstream, stall))
            self._forward(client, upstream, stall)

    def _forward(self, client, upstream, stall):
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b, stall), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, stall):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while stall.is_set():
                    time.sleep(0.05)  # hold the bytes: nothing closes, nothing arrives
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # pass the end on, as a network does (else a closing side waits 10 s)
        except OSError:
            pass

    def stall_existing(self):
        for _, _, stall in self.connections:
            stall.set()

    def close(self):
        self.listener.close()
        for a, b, stall in self.connections:
            stall.clear()
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass


def test_stalled_network_is_noticed_by_keepalive(tmp_path, procs, source):
    port = free_port()
    serve(procs, tmp_path, port)
    proxy = StallingProxy(port)
    out = tmp_path / "out"
    try:
        # The receiver pings less often than the relay (keepalive 1 s), so that the relay is
        # first to notice: a receiver back before the relay dropped it would take its place
        receiver = procs(
            [
                "receive",
                "--relay",
                f"127.0.0.1:{proxy.port}",
                "--yes",
                "--json",
                "--dir",
                str(out),
                "--keepalive",
                "2.5",
                "--peer-timeout",
                "30",
            ],
            tmp_path,
            "recv",
        )
        code = receiver.first_event()["code"]
        sender = procs(
            [
                "send",
                str(source),
                "--room",
                code,
                "--relay",
                f"127.0.0.1:{port}",
                "--json",
                "--limit-rate",
                RATE,
                *FAST,
            ],
            tmp_path,
            "send",
        )
        before = wait_progress(receiver, SIZE // 5)
        stalled_at = time.monotonic()
        proxy.stall_existing()
        # The relay's keepalive drops the silent receiver and tells the sender.
        deadline = time.monotonic() + bounded(15)
        while not any(e["event"] == "peer-left" for e in safe_events(sender)) and time.monotonic() < deadline:
            time.sleep(0.05)
        noticed = time.monotonic() - stalled_at
        assert any(e["event"] == "peer-left" for e in safe_events(sender)), sender.stderr
        assert noticed < bounded(8)  # keepalive 1 s: ping + 1 s timeout, with room for a busy machine
        # the receiver notices within 2 to 3 times its keepalive, not a close handshake's 10 s later
        deadline = stalled_at + bounded(10)
        while "interrupted" not in [e["event"] for e in safe_events(receiver)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "interrupted" in [e["event"] for e in safe_events(receiver)], receiver.stderr
        # The receiver notices too, reconnects (a fresh connection through the proxy flows), and finishes.
        assert receiver.wait(90) == 0, receiver.stderr
        assert sender.wait(30) == 0, sender.stderr
    finally:
        proxy.close()
    assert 0 < before < SIZE
    assert sha256_of(out / "movie.mkv") == sha256_of(source)
    assert leftovers(out) == []


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return result.returncode == 0


def test_disk_full_on_the_receiver(tmp_path, procs):
    disk = tmp_path / "small-disk"
    if not _mount_tmpfs(disk, "64m"):
        if os.environ.get("CI"):
            pytest.fail("CI runs as root and must be able to mount a tmpfs for this test")
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        source = make_file(tmp_path / "big.bin", 40 * 1000 * 1000, 3)
        port = free_port()
        serve(procs, tmp_path, port)
        receiver = procs(
            ["receive", "--relay", f"127.0.0.1:{port}", "--yes", "--json", "--dir", str(disk), *FAST], tmp_path, "recv"
        )
        code = receiver.first_event()["code"]
        sender = procs(
            [
                "send",
                str(source),
                "--room",
                code,
                "--relay",
                f"127.0.0.1:{port}",
                "--json",
                "--limit-rate",
                "10MB",
                *FAST,
            ],
            tmp_path,
            "send",
        )
        wait_progress(receiver, 5 * 1000 * 1000)
        with open(disk / "filler", "wb", buffering=0) as f:  # something else fills the disk mid-transfer
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
            except OSError:
                pass
        assert receiver.wait(30) == 8, receiver.stderr
        assert sender.wait(30) == 8, sender.stderr
        assert "disk is full" in receiver.stderr or "disk is full" in receiver.stdout
        error = [e for e in sender.events() if e["event"] == "error"][-1]
        assert error["code"] == "disk-full" and "disk is full" in error["message"]
        names = sorted(p.name for p in disk.iterdir())
        assert "big.bin" not in names  # nothing unverified gets the final name
        assert any(n.endswith(".xfer-part") for n in names)  # kept, to resume once there is room
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_relay_gone_for_good_ends_with_a_clear_error(tmp_path, procs, source):
    port = free_port()
    relay = serve(procs, tmp_path, port)
    out = tmp_path / "out"
    receiver = procs(
        [
            "receive",
            "--relay",
            f"127.0.0.1:{port}",
            "--yes",
            "--json",
            "--dir",
            str(out),
            "--keepalive",
            "1",
            "--peer-timeout",
            "2",
        ],
        tmp_path,
        "recv",
    )
    receiver.first_event()
    relay.proc.send_signal(signal.SIGKILL)
    assert receiver.wait(30) == 3
    error = receiver.events()[-1]
    assert error["event"] == "error" and "could not reach the relay again" in error["message"]
    assert "Traceback" not in receiver.stderr


def test_receiver_started_again_after_some_files_were_saved(tmp_path, procs):
    """Files verified before the kill are confirmed, not sent again; the rest resume."""
    first_file = make_file(tmp_path / "a.bin", 6_000_000, 1)
    second_file = make_file(tmp_path / "b.bin", SIZE, 2)
    port = free_port()
    serve(procs, tmp_path, port)
    out = tmp_path / "out"
    first = procs(
        ["receive", "--relay", f"127.0.0.1:{port}", "--yes", "--json", "--dir", str(out), *FAST], tmp_path, "recv1"
    )
    code = first.first_event()["code"]
    sender = procs(
        [
            "send",
            str(first_file),
            str(second_file),
            "--room",
            code,
            "--relay",
            f"127.0.0.1:{port}",
            "--json",
            "--limit-rate",
            RATE,
            *FAST,
        ],
        tmp_path,
        "send",
    )
    wait_progress(first, 6_000_000 + SIZE // 5)
    first.proc.send_signal(signal.SIGKILL)
    first.wait(10)
    assert (out / "a.bin").exists() and not (out / "b.bin").exists()
    second = procs(
        ["receive", "--room", code, "--relay", f"127.0.0.1:{port}", "--yes", "--json", "--dir", str(out), *FAST],
        tmp_path,
        "recv2",
    )
    assert second.wait(60) == 0, second.stderr
    assert sender.wait(30) == 0, sender.stderr
    assert sha256_of(out / "a.bin") == sha256_of(first_file) and sha256_of(out / "b.bin") == sha256_of(second_file)
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", "b.bin"]  # no "a (1).bin", no state files
    assert [e["name"] for e in second.events() if e["event"] == "file-end"] == ["a.bin", "b.bin"]


class SlowLinkProxy(StallingProxy):
    """A forwarder whose relay-to-client direction moves ``rate`` bytes a second (a slow phone
    link): what the relay sends waits in the buffers before it, as on a real slow network."""

    def __init__(self, target_port: int, rate: float):
        self.rate = rate
        super().__init__(target_port)

    def _forward(self, client, upstream, stall):
        threading.Thread(target=self._slow, args=(upstream, client), daemon=True).start()
        threading.Thread(target=self._pipe, args=(client, upstream, stall), daemon=True).start()

    def _slow(self, src, dst):
        try:
            while data := src.recv(16384):
                dst.sendall(data)
                time.sleep(len(data) / self.rate)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@pytest.mark.parametrize("who", ["peers", "relay"])
def test_a_receiver_on_a_slow_link_keeps_both_links(tmp_path, procs, who):
    """A pong comes behind the frames sent before it, so on a slow link it is late by seconds.
    Neither the peers' keepalive (1 s, the relay's 20 s) nor the relay's (1 s, the peers' 20 s)
    may take that for a dead link, nor the relay's own pause in reading a sender it holds for
    the slow receiver: the transfer runs through without a reconnection. (Before, both cases
    reconnected: the receiver and the held sender gave up on the relay, or the relay on them.)"""
    source = make_file(tmp_path / "movie.mkv", 12 * 1000 * 1000, 12)
    port = free_port()
    relay_keepalive, peer_keepalive = ("20", "1") if who == "peers" else ("1", "20")
    procs(["serve", "--host", "127.0.0.1", "--port", str(port), "--keepalive", relay_keepalive], tmp_path, "serve")
    wait_for_port(port)
    proxy = SlowLinkProxy(port, 2_000_000)
    out = tmp_path / "out"
    opts = ["--json", "--keepalive", peer_keepalive, "--peer-timeout", "30"]
    try:
        receiver = procs(
            ["receive", "--relay", f"127.0.0.1:{proxy.port}", "--yes", "--dir", str(out), *opts], tmp_path, "recv"
        )
        code = receiver.first_event()["code"]
        sender = procs(["send", str(source), "--room", code, "--relay", f"127.0.0.1:{port}", *opts], tmp_path, "send")
        assert receiver.wait(90) == 0, receiver.stderr
        assert sender.wait(30) == 0, sender.stderr
    finally:
        proxy.close()
    assert sha256_of(out / "movie.mkv") == sha256_of(source)
    lost = [(name, e) for name, p in (("sender", sender), ("receiver", receiver)) for e in safe_events(p)]
    lost = [(name, e["reason"]) for name, e in lost if e["event"] == "reconnecting"]
    assert lost == [], lost
