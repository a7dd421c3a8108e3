"""Outages that last: a relay that dies and stays dead (or comes back too late) must end
both peers within ``--peer-timeout``, with a few lines of output and flat memory.

Found as a user would meet it: a sender whose relay was killed went round in a loop,
writing "interrupted" and "waiting" lines by the million and growing past 1 GB, and never
gave up. Each test runs the installed command and reads its peak memory (VmHWM)
while it runs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from conftest import bounded, free_port, make_file, safe_events, serve, wait_for_port, wait_progress

SIZE = 64 * 1000 * 1000
RATE = "5MB"  # slow enough that the outage lands mid-transfer and lasts past it
TIMEOUT = 4  # --peer-timeout of these tests, in seconds
MAX_LINES = 40  # of --json output, for a whole run with one outage
MAX_RSS = 150 * 1024 * 1024  # a healthy peer stays near 40 MB; the loop passed 1 GB in 20 s


def peak_rss(pid: int) -> int | None:
    """The high-water mark of a running process's resident memory, in bytes (VmHWM).

    Not ``wait4``'s ``ru_maxrss``: that counts the test runner's own memory too, which
    the child carried until its exec (checked in ``test_peak_memory_method``)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reap(proc, timeout: float) -> tuple[int, int]:
    """Wait for ``proc`` to exit; return its exit status and peak resident memory in bytes
    (the last high-water mark read before it exited, every 50 ms)."""
    deadline = time.monotonic() + bounded(timeout)
    peak = 0
    while time.monotonic() < deadline:
        peak = max(peak, peak_rss(proc.proc.pid) or 0)
        if proc.proc.poll() is not None:
            return proc.proc.returncode, peak
        time.sleep(0.05)
    proc.stop()
    raise AssertionError(f"still running after {timeout} s; {len(proc.stdout.splitlines())} lines of output")


@pytest.mark.parametrize("mib", [0, 200])
def test_peak_memory_method(tmp_path, mib):
    """The method, on children of known memory: one that holds 200 MiB, one that holds nothing."""
    hold = f"b = bytearray({mib} * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1)"

    class Child:
        proc = subprocess.Popen([sys.executable, "-c", f"import time; {hold}"])
        stdout = ""

        def stop(self):
            self.proc.kill()

    status, rss = reap(Child(), 20)
    assert status == 0
    assert mib * 2**20 <= rss < (mib + 40) * 2**20


def start_transfer(procs, tmp_path, port):
    source = make_file(tmp_path / "big.bin", SIZE, 3)
    out = tmp_path / "out"
    opts = [
        "--relay",
        f"127.0.0.1:{port}",
        "--json",
        "--keepalive",
        "1",
        "--peer-timeout",
        str(TIMEOUT),
    ]
    sender = procs(["send", str(source), "--limit-rate", RATE, *opts], tmp_path, "send")
    code = sender.first_event()["code"]
    receiver = procs(["receive", "--room", code, "--yes", "--dir", str(out), *opts], tmp_path, "recv")
    wait_progress(receiver, 2 * 1000 * 1000)
    return sender, receiver


def assert_bounded(proc, status: int, rss: int, expected: tuple[int, ...]) -> None:
    lines = proc.stdout.splitlines()
    assert status in expected, proc.stderr
    assert len(lines) <= MAX_LINES, lines[-6:]
    assert rss < MAX_RSS, f"peak memory {rss / 2**20:.0f} MiB"
    assert safe_events(proc)[-1]["event"] == "error"


def test_relay_killed_and_never_restarted(tmp_path, procs):
    port = free_port()
    relay = serve(procs, tmp_path, port)
    sender, receiver = start_transfer(procs, tmp_path, port)
    relay.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    status, rss = reap(sender, 3 * TIMEOUT + 10)
    assert time.monotonic() - killed < bounded(TIMEOUT + 5)  # --peer-timeout bounds the whole wait
    assert_bounded(sender, status, rss, (3,))
    assert "could not reach the relay again" in safe_events(sender)[-1]["message"]
    status, rss = reap(receiver, TIMEOUT + 10)
    assert_bounded(receiver, status, rss, (3,))


def test_receiver_killed_then_relay_killed(tmp_path, procs):
    port = free_port()
    relay = serve(procs, tmp_path, port)
    sender, receiver = start_transfer(procs, tmp_path, port)
    receiver.proc.send_signal(signal.SIGKILL)
    time.sleep(0.5)
    relay.proc.send_signal(signal.SIGKILL)
    status, rss = reap(sender, 3 * TIMEOUT + 10)
    # whichever bound comes first: the relay stayed away (3) or the receiver did (5)
    assert_bounded(sender, status, rss, (3, 5))


def test_relay_restarted_after_the_peer_timeout(tmp_path, procs):
    port = free_port()
    relay = serve(procs, tmp_path, port)
    sender, receiver = start_transfer(procs, tmp_path, port)
    relay.proc.send_signal(signal.SIGKILL)
    relay.wait(10)
    time.sleep(TIMEOUT + 2)
    serve(procs, tmp_path, port, "serve2")
    wait_for_port(port)
    for proc in (sender, receiver):
        status, rss = reap(proc, 3 * TIMEOUT + 10)
        assert_bounded(proc, status, rss, (3,))


@pytest.mark.parametrize("role", ["send", "receive"])
def test_one_reconnecting_event_per_outage(tmp_path, procs, role):
    """People and --json get one line when the link is lost, not one per attempt."""
    port = free_port()
    relay = serve(procs, tmp_path, port)
    sender, receiver = start_transfer(procs, tmp_path, port)
    relay.proc.send_signal(signal.SIGKILL)
    proc = sender if role == "send" else receiver
    reap(proc, 3 * TIMEOUT + 10)
    kinds = [e["event"] for e in safe_events(proc)]
    assert kinds.count("reconnecting") == 1
    assert kinds.count("interrupted") <= 1
