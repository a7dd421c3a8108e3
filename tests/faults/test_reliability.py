"""Reliability under faults found by chaos testing (issue 14), each on real processes:
connections cut by TCP resets, a relay that blips before anyone joined, a receiver
killed in the middle of placing a file, and reruns after a finished or interrupted run.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from conftest import free_port, leftovers, make_file, safe_events, serve, sha256_of, wait_progress
from xfer.transfer.names import KILLED_STATUS

FAST = ["--keepalive", "1", "--peer-timeout", "30"]


class ResettingProxy:
    """A TCP forwarder on loopback whose connections can be cut with a reset (RST, as
    ``ss -K`` or a dropped NAT entry does): SO_LINGER 0 then close, on both sides."""

    def __init__(self, target_port: int, cut_after_offer: float | None = None) -> None:
        self.target = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.resets = 0
        self.offers = 0
        self.cut_after_offer = cut_after_offer  # seconds after every other offer, or never
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            pair = (client, upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, pair), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket] | None) -> None:
        # Protocol 2.0 seals the offer, so it is found by its place: on a receiver's
        # connection (one told of a peer whose role is sender), the second sealed frame
        # after a key exchange (a ``pake``) is the offer; the first is the sender's ``hi``.
        # The relay's frames to a peer are not masked, so their JSON shows in the bytes.
        receiver = False
        sealed = 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if pair is None:
                    continue
                receiver = receiver or b'"role":"sender"' in data
                if b'"type":"pake"' in data:
                    sealed = 0
                    data = data.rpartition(b'"type":"pake"')[2]
                before, sealed = sealed, sealed + data.count(b'"type":"sealed"')
                if receiver and before < 2 <= sealed:
                    self._offer_passed(pair)
            dst.shutdown(socket.SHUT_WR)  # pass the end on, as a network does (else a closing side waits 10 s)
        except OSError:
            pass

    def _offer_passed(self, pair: tuple[socket.socket, socket.socket]) -> None:
        """An offer went down to a receiver: every other one, cut its connection a moment
        later, while it checks what it holds and before its accept goes out."""
        self.offers += 1
        if self.cut_after_offer is not None and self.offers % 2 == 0:
            threading.Timer(self.cut_after_offer, self._reset, args=([pair],)).start()

    def reset_all(self) -> int:
        """Cut every open connection with a reset; return how many were cut."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        return self._reset(pairs)

    def _reset(self, pairs: list[tuple[socket.socket, socket.socket]]) -> int:
        for pair in pairs:
            for s in pair:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.resets += len(pairs)
        return len(pairs)

    def close(self) -> None:
        self.listener.close()
        self.reset_all()


def test_connections_reset_every_few_seconds(tmp_path, procs):
    """Every TCP connection to the relay is reset every 1 to 1.5 s for the whole transfer
    (about 4 s at --limit-rate), and the receiver's again while it re-hashes its partial
    file after each reconnection (the widest window: its accept then goes out on a dead
    link). Both sides reconnect each time, whether the reset hits a receive or one of
    their own sends, and finish identical, exit 0, with nothing left over."""
    size = 100 * 1000 * 1000
    source = make_file(tmp_path / "big.bin", size, 14)
    port = free_port()
    serve(procs, tmp_path, port)
    proxy = ResettingProxy(port, cut_after_offer=0.02)
    out = tmp_path / "out"
    relay = ["--relay", f"127.0.0.1:{proxy.port}", "--json", *FAST]
    stop = threading.Event()
    cuts: list[float] = []

    def cutter() -> None:
        delays = [1.2, 1.0, 1.5, 1.1]
        i = 0
        while not stop.wait(delays[i % len(delays)]):
            held = [e.get("total_bytes", 0) for e in receiver.events() if e["event"] == "progress"]
            if receiver.proc.poll() is not None or (held and held[-1] >= size * 0.9):
                # The transfer is (nearly) over. (A cut as the last verified travels has a test
                # of its own: test_transfer.py::test_a_verified_lost_with_the_senders_link_...)
                break
            if proxy.reset_all():
                cuts.append(time.monotonic())
            i += 1

    try:
        sender = procs(["send", str(source), "--limit-rate", "25MB", *relay], tmp_path, "send")
        code = sender.first_event()["code"]
        receiver = procs(["receive", "--room", code, "--yes", "--dir", str(out), *relay], tmp_path, "recv")
        wait_progress(receiver, 1)
        thread = threading.Thread(target=cutter, daemon=True)
        thread.start()
        assert receiver.wait(120) == 0, receiver.stderr + receiver.stdout[-2000:]
        assert sender.wait(30) == 0, sender.stderr
    finally:
        stop.set()
        proxy.close()
    assert len(cuts) >= 3, cuts  # the cuts landed during the transfer, several times
    assert proxy.offers >= 4  # and some right after a renewed offer
    assert sha256_of(out / "big.bin") == sha256_of(source)
    assert leftovers(out) == []
    kinds = [e["event"] for e in receiver.events()]
    assert kinds.count("reconnected") >= 3


def test_sender_waiting_for_its_first_receiver_survives_a_relay_blip(tmp_path, procs):
    """Nobody had joined when the relay was killed and came back a second later: the sender
    keeps waiting (no deadline for a first receiver) past --peer-timeout, and a receiver
    that joins later gets the file."""
    source = make_file(tmp_path / "f.bin", 3 * 1000 * 1000, 21)
    port = free_port()
    relay = serve(procs, tmp_path, port)
    opts = ["--relay", f"127.0.0.1:{port}", "--json", "--keepalive", "1", "--peer-timeout", "1.5"]
    sender = procs(["send", str(source), *opts], tmp_path, "send")
    code = sender.first_event()["code"]
    time.sleep(0.5)
    relay.proc.send_signal(signal.SIGKILL)
    relay.wait(10)
    time.sleep(1)
    serve(procs, tmp_path, port, "serve2")
    time.sleep(1.5 + 2)  # well past --peer-timeout
    assert sender.proc.poll() is None, sender.stdout
    assert "reconnected" in [e["event"] for e in safe_events(sender)]
    out = tmp_path / "out"
    receiver = procs(["receive", "--room", code, "--yes", "--dir", str(out), *opts], tmp_path, "recv")
    assert receiver.wait(60) == 0, receiver.stderr
    assert sender.wait(30) == 0, sender.stderr
    assert sha256_of(out / "f.bin") == sha256_of(source)
    assert leftovers(out) == []
    assert "interrupted" not in [e["event"] for e in safe_events(sender)]  # nothing had broken off


@pytest.mark.parametrize("step", ["marked", "linked", "moved", "recording", "recorded"])
def test_killed_at_each_step_of_placing_a_file(tmp_path, procs, step):
    """The receiver dies (as by kill -9) at each step of giving a verified file its final
    name; started again, it recognises the file it placed (name, size, SHA-256): one name
    per file, no "a (1).bin" twin, no state file left, both exit 0."""
    files = [make_file(tmp_path / name, 2 * 1000 * 1000, seed) for seed, name in enumerate(["a.bin", "b.bin"])]
    port = free_port()
    serve(procs, tmp_path, port)
    opts = ["--relay", f"127.0.0.1:{port}", "--json", *FAST]
    sender = procs(["send", *map(str, files), *opts], tmp_path, "send")
    code = sender.first_event()["code"]
    out = tmp_path / "out"
    receive = ["receive", "--room", code, "--yes", "--dir", str(out), *opts]
    first = procs(receive, tmp_path, "recv1", env={"XFER_TEST_KILL_AT": step})
    assert first.wait(30) == KILLED_STATUS, first.stderr  # it died at that step
    second = procs(receive, tmp_path, "recv2")
    assert second.wait(60) == 0, second.stderr
    assert sender.wait(30) == 0, sender.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", "b.bin"]  # no twin, nothing hidden left
    for f in files:
        assert sha256_of(out / f.name) == sha256_of(f)
    saved = [e for e in second.events() if e["event"] == "done"][0]["saved"]
    assert sorted(e["name"] for e in saved) == ["a.bin", "b.bin"]


def test_a_receiver_run_again_after_it_finished_says_the_files_are_here(tmp_path, procs):
    """The room closed when both finished; the same receive command again finds the room
    gone, and its receipt says the files are already here (exit 0). A folder without
    them, or files changed since, still get "room not found" (exit 4)."""
    source = make_file(tmp_path / "f.bin", 1000 * 1000, 31)
    port = free_port()
    serve(procs, tmp_path, port)
    opts = ["--relay", f"127.0.0.1:{port}", "--json", *FAST]
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    sender = procs(["send", str(source), *opts], tmp_path, "send")
    code = sender.first_event()["code"]
    out = tmp_path / "out"
    receive = ["receive", "--room", code, "--yes", "--dir", str(out), *opts]
    assert procs(receive, tmp_path, "recv1", env=env).wait(30) == 0
    assert sender.wait(30) == 0, sender.stderr
    again = procs(receive, tmp_path, "recv2", env=env)
    assert again.wait(30) == 0, again.stderr
    told = again.events()[-1]
    assert told["event"] == "already-received" and told["folder"] == str(out)
    assert [f["name"] for f in told["files"]] == ["f.bin"]
    assert sorted(p.name for p in out.iterdir()) == ["f.bin"]
    other = procs([*receive[:5], str(tmp_path / "elsewhere"), *opts], tmp_path, "recv3", env=env)
    assert other.wait(30) == 4
    (out / "f.bin").write_bytes(b"changed")
    assert procs(receive, tmp_path, "recv4", env=env).wait(30) == 4


def test_a_sender_stopped_by_a_signal_prints_the_command_that_resumes_it(tmp_path, procs):
    """A sender that opened the room is stopped (SIGTERM, or SIGHUP when its terminal
    closes): it prints the command that comes back to this room, the receiver waits, and
    that command finishes the transfer from where it stopped."""
    size = 24 * 1000 * 1000
    source = make_file(tmp_path / "big.bin", size, 41)
    port = free_port()
    serve(procs, tmp_path, port)
    opts = ["--relay", f"127.0.0.1:{port}", "--json", *FAST]
    sender = procs(["send", str(source), "--limit-rate", "8MB", *opts], tmp_path, "send")
    code = sender.first_event()["code"]
    out = tmp_path / "out"
    receiver = procs(["receive", "--room", code, "--yes", "--dir", str(out), *opts], tmp_path, "recv")
    before = wait_progress(receiver, size // 4)
    sender.proc.send_signal(signal.SIGTERM)
    assert sender.wait(15) == 130
    events = safe_events(sender)
    assert events[-1]["event"] == "error" and "SIGTERM" in events[-1]["message"]
    command = shlex.split(next(e["command"] for e in events if e["event"] == "resume"))
    assert command[:2] == ["xfer", "send"] and ["--room", code] == command[3:5] and "--limit-rate" in command
    # The run is kept (its transfer id and secrets), so that the command comes back as the
    # same sender: the receiver takes files from no other (docs/guarantees.md).
    kept = Path(os.environ["XDG_STATE_HOME"]) / "xfer" / "sent"
    [run] = [p for p in kept.glob("*.json") if p.stat().st_mtime > time.time() - 30]
    assert run.stat().st_mode & 0o077 == 0
    resumed = procs([*command[1:], "--json", *FAST], tmp_path, "send2")
    assert resumed.wait(60) == 0, resumed.stderr
    assert not run.exists()  # taken by the command that came back
    assert receiver.wait(30) == 0, receiver.stderr
    assert 0 < before < size
    assert sha256_of(out / "big.bin") == sha256_of(source)
    assert leftovers(out) == []
    accepted = [e for e in resumed.events() if e["event"] == "accepted"]
    assert accepted and accepted[0]["resumed"] > 0  # from where it stopped, not from zero
