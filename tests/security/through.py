"""What the security tests share: a real ``xfer serve``, a wiretap in front of it, and
``xfer send`` / ``xfer receive`` through the wiretap."""

from __future__ import annotations

from pathlib import Path

from wiretap import Tamper, Wiretap

from conftest import free_port, serve

SENDER_NAME = "Zorblax-Laptop-7731"
RECEIVER_NAME = "Quuxmoor-Desk-4410"
FAST = ["--keepalive", "1"]


def tapped_relay(procs, tmp_path: Path, tamper: Tamper | None = None) -> Wiretap:
    """``xfer serve`` on loopback and a started wiretap in front of it (stop it with ``__exit__``)."""
    port = free_port()
    serve(procs, tmp_path, port)
    return Wiretap(port, tamper).__enter__()


def send(procs, tmp_path: Path, relay: str, *what: str, name: str = "send", extra: tuple[str, ...] = ()):
    args = ["send", *what, "--relay", relay, "--json", "--name", SENDER_NAME, *FAST, *extra]
    return procs(args, tmp_path, name)


def receive(procs, tmp_path: Path, relay: str, code: str, out: Path, *, name: str = "recv", extra=()):
    args = ["receive", "--room", code, "--relay", relay, "--yes", "--json", "--dir", str(out)]
    return procs([*args, "--name", RECEIVER_NAME, *FAST, *extra], tmp_path, name)


def sealed_from(role: str, frames) -> list:
    from wiretap import UP

    return [f for f in frames if f.role == role and f.direction == UP and f.kind == "sealed"]


def wait_event(proc, name: str, timeout: float = 30) -> dict:
    """The first ``--json`` event called ``name`` (the process may still run)."""
    import time

    from conftest import bounded, safe_events

    deadline = time.monotonic() + bounded(timeout)
    while time.monotonic() < deadline:
        found = [e for e in safe_events(proc) if e.get("event") == name]
        if found:
            return found[0]
        if proc.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {name} event; exit {proc.proc.poll()}; stderr: {proc.stderr}")
