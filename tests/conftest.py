"""Shared fixtures: a real relay on loopback, the installed ``xfer`` command, and time bounds.

Every wait in the tests is bounded; ``XFER_TEST_TIMEOUT_FACTOR`` scales them all
on a slow machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline: on a loaded machine (CI's two cores, or tests running beside
# each other) an example that takes longer than Hypothesis's 200 ms is slowness, not a bug,
# and failed a run; every test still has pytest-timeout's limit.
settings.register_profile("xfer", deadline=None)
settings.load_profile("xfer")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from common import free_port  # noqa: E402  (one port picker for the tests and the benchmarks)

FACTOR = float(os.environ.get("XFER_TEST_TIMEOUT_FACTOR", "1"))


def bounded(seconds: float) -> float:
    return seconds * FACTOR


def run_async(coro, timeout: float = 30):
    """Run a coroutine to completion, failing the test if it takes too long."""
    return asyncio.run(asyncio.wait_for(coro, bounded(timeout)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def make_file(path: Path, size: int, seed: int = 0) -> Path:
    """A file of pseudo-random bytes, written in 1 MiB blocks (never whole in memory)."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return path


def xfer_cmd() -> list[str]:
    exe = shutil.which("xfer")
    return [exe] if exe else [sys.executable, "-m", "xfer"]


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + bounded(timeout)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Proc:
    """A running ``xfer`` subprocess with its output collected to files."""

    def __init__(self, args: list[str], cwd: Path, name: str, env: dict | None = None, stdin=subprocess.DEVNULL):
        self.out_path = cwd / f"{name}.out"
        self.err_path = cwd / f"{name}.err"
        full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", **(env or {})}
        full_env.pop("XFER_RELAY", None)
        if env and "XFER_RELAY" in env:
            full_env["XFER_RELAY"] = env["XFER_RELAY"]
        self.proc = subprocess.Popen(
            xfer_cmd() + args,
            cwd=cwd,
            env=full_env,
            stdin=stdin,
            stdout=open(self.out_path, "wb"),
            stderr=open(self.err_path, "wb"),
        )

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(bounded(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"timed out; stderr: {self.stderr}") from None

    def first_event(self, timeout: float = 15) -> dict:
        deadline = time.monotonic() + bounded(timeout)
        while time.monotonic() < deadline:
            text = self.out_path.read_text()
            if "\n" in text:
                return json.loads(text.splitlines()[0])
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"no event in time; stderr: {self.stderr}")

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="session", autouse=True)
def private_state(tmp_path_factory):
    """Receipts of finished receives (transfer/receipts.py) go to a folder of this run,
    not to the user's ~/.local/state; a test that reads them sets its own."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield


@pytest.fixture
def procs():
    """Start ``xfer`` subprocesses; all are killed at the end of the test."""
    started: list[Proc] = []

    def start(args: list[str], cwd: Path, name: str, **kw) -> Proc:
        p = Proc(args, cwd, name, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def relay_process(tmp_path, procs):
    """``xfer serve`` on a free loopback port; yields its port."""
    port = free_port()
    p = procs(["serve", "--host", "127.0.0.1", "--port", str(port)], tmp_path, "serve")
    wait_for_port(port)
    p.port = port
    return p


# -- shared by the fault, outage, reliability, fan-out and Redis tests -----------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def wait_progress(proc, at_least: int, timeout: float = 20) -> int:
    """Wait until the receiver's JSON events report ``at_least`` bytes held; return that figure."""
    deadline = time.monotonic() + bounded(timeout)
    while time.monotonic() < deadline:
        held = [e.get("total_bytes", 0) for e in proc.events() if e["event"] == "progress"]
        if held and held[-1] >= at_least:
            return held[-1]
        if proc.proc.poll() is not None:
            raise AssertionError(f"exited {proc.proc.returncode}: {proc.stderr}")
        time.sleep(0.05)
    raise AssertionError("the transfer did not progress in time")


def safe_events(proc) -> list[dict]:
    out = []
    for line in proc.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line cut short by kill -9
    return out


def serve(procs, tmp_path, port, name="serve"):
    p = procs(["serve", "--host", "127.0.0.1", "--port", str(port), "--keepalive", "1"], tmp_path, name)
    wait_for_port(port)
    return p


class RedisServer:
    """A private ``redis-server`` on a free loopback port, that a test can stop and start again."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed: run scripts/test-setup")
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def info(self, section: str) -> dict[str, str]:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), "info", section], capture_output=True, text=True, timeout=5
        ).stdout
        return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A small file system of its own at ``folder`` (root only), unmounted at the end."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root and must be able to mount a tmpfs for this test")
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
