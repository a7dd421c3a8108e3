"""Fixtures and helpers for the phone page tests: one headless Chromium (Debian's,
never a downloaded one), phone contexts, an ``xfer serve`` relay on loopback,
screenshots, bounded waits and Chromium's memory.

The page is opened at ``http://lan.test:PORT``: Chromium maps that name to
127.0.0.1, so traffic stays on loopback while the page is *not* a secure context,
exactly like a phone at http://192.168.x.x (no crypto.subtle, no async clipboard).

Not a conftest.py: tests/conftest.py is imported as the module ``conftest`` by
the other tests, and a second conftest.py here would take that name from them.
The test module imports these fixtures by name.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from conftest import Proc, bounded, free_port, wait_for_port, xfer_cmd

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("XFER_CHROMIUM", "/usr/bin/chromium")
LAN_HOST = "lan.test"
# A relay answers only its own names and addresses (DNS rebinding); this one it is told of,
# as a person whose LAN names their machine would tell it. Every relay the tests start
# (``xfer serve``, and those inside ``xfer send``/``receive``) inherits it.
os.environ["XFER_ALLOW_HOSTS"] = LAN_HOST
CHROMIUM_ARGS = [
    f"--host-resolver-rules=MAP {LAN_HOST} 127.0.0.1",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_api.sync_playwright() as p:
        yield p
    # While the sync API runs, its event loop counts as running in this thread and
    # asyncio.run() fails: so Playwright lives only as long as this module's tests.


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Relay:
    """``xfer serve`` on 127.0.0.1 (on ``port`` again, to test a restart)."""

    def __init__(self, tmp: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.log = open(tmp / f"serve-{time.monotonic_ns()}.err", "wb")
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("XFER_RELAY", None)
        self.proc = subprocess.Popen(
            xfer_cmd() + ["serve", "--host", "127.0.0.1", "--port", str(self.port), *extra],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        wait_for_port(self.port)

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stderr(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def page(self, fragment: str = "", host: str = LAN_HOST) -> str:
        return f"http://{host}:{self.port}/" + (f"#{fragment}" if fragment else "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(bounded(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    r = Relay(tmp_path_factory.mktemp("relay"))
    yield r
    r.stop()


class PageErrors(list):
    """Uncaught page errors and CSP violations: any of them fails the test."""


@pytest.fixture
def phone(browser, playwright):
    """A Pixel 7 page (viewport, touch, user agent) that accepts downloads."""
    context = browser.new_context(**playwright.devices["Pixel 7"], accept_downloads=True)
    context.set_default_timeout(bounded(15_000))
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda m: (
            errors.append(f"console: {m.text}") if m.type == "error" and "Content Security Policy" in m.text else None
        ),
    )
    page.errors = errors
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture
def xfer_procs(tmp_path):
    """Start ``xfer`` subprocesses with output in files; all are killed at the end."""
    started = []

    def start(args, name, **kw):
        p = Proc(args, tmp_path, name, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def on_lan(url: str, host: str = LAN_HOST) -> str:
    """The page link ``xfer`` printed (``http://127.0.0.1:PORT/#7.SECRET``), as a phone on the
    LAN opens it: the same relay under a name that is not a secure context."""
    parts = urlsplit(url)
    assert parts.fragment, url
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}"))


def shot(page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + bounded(timeout)
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def descendants(root: int) -> list[int]:
    """Process ids under ``root`` (from /proc; no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def chromium_rss() -> int:
    """Resident memory of every Chromium process this test process started, in bytes."""
    total = 0
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"chrom" not in f.read().split(b"\0")[0]:
                    continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def make_png(path: Path, size: int = 96) -> Path:
    """A small real PNG (a colour gradient), for the page's thumbnails."""
    import struct
    import zlib

    rows = b"".join(
        b"\0" + bytes(v for x in range(size) for v in (x * 255 // size, y * 255 // size, 160)) for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack("!IIBBBBB", size, size, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


class LinkSender:
    """A sender written in the test, speaking protocol 2.0 through the real ``SecureLink`` and
    ``Guard``, that opens a room and holds its QR link's secret (for a peer that does what
    ``xfer send`` never would). Use inside ``asyncio.run``: ``await LinkSender.open(...)``."""

    @classmethod
    async def open(cls, ws_url: str, name: str):
        from xfer.protocol.guard import Guard
        from xfer.protocol.keys import link_fragment, link_secret
        from xfer.protocol.words import parse_code
        from xfer.transfer.connection import open_room
        from xfer.transfer.secure import SecureLink

        self = cls()
        inner = await open_room(ws_url, "", role="sender", name="", create=True)
        self.secret = link_secret()
        self.nameplate = int(inner.room)
        self.events: list[tuple[str, dict]] = []
        guard = Guard("sender", name, parse_code(f"{inner.room}-guitar-nebula"), link=self.secret)
        self.link = await SecureLink.open(inner, guard, lambda kind, **kw: self.events.append((kind, kw)))
        self.fragment = link_fragment(self.nameplate, self.secret)
        return self
