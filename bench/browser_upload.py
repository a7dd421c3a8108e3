#!/usr/bin/env python3
"""Benchmark the phone page's upload: headless Chromium -> ``xfer serve`` -> ``xfer receive``.

One run: ``xfer serve`` and ``xfer receive --yes`` on 127.0.0.1; Debian's Chromium
(driven by Playwright, never ``playwright install``) opens the page as a phone on a
LAN would (http://lan.test:PORT, mapped to 127.0.0.1, so not a secure context), picks
the file, and the page streams it (File.slice, SHA-256 in JavaScript, paced by acks
and ``bufferedAmount``). Timed from picking the file until ``xfer receive`` reports
the file saved and verified; the saved file's SHA-256 must equal the source's.

In the same run, the same browser sends the same number of bytes over a bare
WebSocket to a sink in this script that only counts them: Chromium's own send rate,
the ceiling for any page. Runs alternate between the two.

    python bench/browser_upload.py                       # 200 MB, 3 runs each
    python bench/browser_upload.py --size 50MB --repeat 1
    python bench/browser_upload.py --smoke --out /tmp/b.json

MB/s are decimal (10^6 bytes). Exits 1 if an upload fails or a hash differs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from common import free_port, make_source, sha256_of, wait_for_port, xfer_cmd
from xfer.units import parse_size

CHROMIUM = "/usr/bin/chromium"
RAW_CHUNK = 256 * 1024  # what the page sends per frame
RAW_BUFFERED = 4 * 1024 * 1024  # keep at most this much queued in the browser, as the page does


class Events:
    """``xfer receive --json`` output, read as it is written."""

    def __init__(self, path: Path, proc: subprocess.Popen) -> None:
        self.path, self.proc = path, proc

    def all(self) -> list[dict]:
        text = self.path.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip() and text.endswith("\n")]

    def wait(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.all():
                if e["event"] == event:
                    return e
                if e["event"] == "error":
                    raise RuntimeError(f"xfer receive failed: {e['message']}")
            if self.proc.poll() is not None and not any(e["event"] == event for e in self.all()):
                raise RuntimeError(f"xfer receive exited {self.proc.returncode} before {event}")
            time.sleep(0.02)
        raise TimeoutError(f"no {event} event from xfer receive in {timeout:.0f} s")


class Sink:
    """A WebSocket server on 127.0.0.1 that counts bytes and says when it has them all."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the sink did not start")

    def _run(self) -> None:
        from websockets.asyncio.server import serve

        async def handler(ws) -> None:
            expected = int(await ws.recv())
            got = 0
            async for frame in ws:
                got += len(frame)
                if got >= expected:
                    await ws.send(str(got))

        async def main() -> None:
            self.stopped = asyncio.Event()
            async with serve(handler, "127.0.0.1", self.port, compression=None, max_size=None):
                self.ready.set()
                await self.stopped.wait()

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(main())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(5)


RAW_SEND_JS = """async ([url, total, chunk, buffered]) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("sink unreachable")); });
  const done = new Promise((ok) => { ws.onmessage = (e) => ok(Number(e.data)); });
  const block = new Uint8Array(chunk);
  crypto.getRandomValues(block.subarray(0, 65536));
  ws.send(String(total));
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    while (ws.bufferedAmount > buffered) await new Promise((r) => setTimeout(r, 1));
    const n = Math.min(chunk, total - sent);
    ws.send(n === chunk ? block : block.subarray(0, n));
    sent += n;
  }
  const got = await done;
  const seconds = (performance.now() - start) / 1000;
  ws.close();
  return { seconds, got };
}"""


def page_upload(browser, port: int, workdir: Path, source: Path, digest: str, timeout: float) -> float:
    out = workdir / "received"
    if out.exists():
        shutil.rmtree(out)
    events_path = workdir / "receive.json"
    with open(events_path, "wb") as stdout, open(workdir / "receive.err", "wb") as stderr:
        proc = subprocess.Popen(
            xfer_cmd()
            + ["receive", "--relay", f"ws://127.0.0.1:{port}", "--yes", "--json", "--dir", str(out), "--name", "desk"],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
        )
    events = Events(events_path, proc)
    context = browser.new_context()
    try:
        link = urlsplit(events.wait("room", 15)["url"])  # the QR code's link: the nameplate and its secret
        page = context.new_page()
        page.goto(f"http://lan.test:{port}/#{link.fragment}", timeout=15_000)
        events.wait("peer-joined", 15)
        start = time.monotonic()
        page.locator("input[type=file][multiple]").first.set_input_files(str(source))
        done = events.wait("done", timeout)
        seconds = time.monotonic() - start
        saved = Path(done["saved"][0]["path"])
        if sha256_of(saved) != digest:
            raise RuntimeError("the received file's SHA-256 differs from the source's")
        if proc.wait(15) != 0:
            raise RuntimeError(f"xfer receive exited {proc.returncode}")
        return seconds
    finally:
        context.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def raw_send(browser, sink: Sink, size: int, timeout: float) -> float:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(timeout * 1000)
        result = page.evaluate(RAW_SEND_JS, [f"ws://127.0.0.1:{sink.port}/", size, RAW_CHUNK, RAW_BUFFERED])
        if result["got"] != size:
            raise RuntimeError(f"the sink counted {result['got']} bytes, not {size}")
        return result["seconds"]
    finally:
        context.close()


def summary(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "runs": [round(v, 1) for v in values],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="Benchmark the page's upload against Chromium's raw WebSocket send rate.")
    ap.add_argument("--size", default="200MB", help="file size, e.g. 200MB (default)")
    ap.add_argument("--repeat", type=int, default=None, help="runs of each (default 3; 1 with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="2MB, one run each: checks the script works")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "browser_upload.json")
    ap.add_argument("--timeout", type=float, default=300, metavar="SECONDS", help="per upload")
    args = ap.parse_args()
    size = parse_size("2MB" if args.smoke else args.size)
    repeat = args.repeat or (1 if args.smoke else 3)

    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="xfer-bench-browser-"))
    port = free_port()
    serve = subprocess.Popen(
        xfer_cmd() + ["serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "serve.err", "wb"),
        stdin=subprocess.DEVNULL,
        env={**os.environ, "XFER_ALLOW_HOSTS": "lan.test"},  # the relay answers that name (DNS rebinding)
    )
    sink = Sink()
    page_rates: list[float] = []
    raw_rates: list[float] = []
    failed = False
    try:
        wait_for_port(port)
        source = workdir / "upload.bin"
        digest = make_source(source, size)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
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
                for run in range(repeat):
                    seconds = raw_send(browser, sink, size, args.timeout)
                    raw_rates.append(size / seconds / 1e6)
                    seconds = page_upload(browser, port, workdir, source, digest, args.timeout)
                    page_rates.append(size / seconds / 1e6)
                    print(
                        f"run {run + 1}/{repeat}: page {page_rates[-1]:.1f} MB/s, raw {raw_rates[-1]:.1f} MB/s",
                        file=sys.stderr,
                    )
            finally:
                browser.close()
    except Exception as exc:
        print(f"browser_upload: {type(exc).__name__}: {exc}", file=sys.stderr)
        failed = True
    finally:
        sink.stop()
        serve.terminate()
        try:
            serve.wait(10)
        except subprocess.TimeoutExpired:
            serve.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    if failed or not page_rates:
        return 1
    page, raw = summary(page_rates), summary(raw_rates)
    result = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "size": size,
        "repeat": repeat,
        "page_upload_mb_s": page,
        "raw_websocket_mb_s": raw,
        "ratio": round(page["median"] / raw["median"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{size / 1e6:.0f} MB: page -> relay -> xfer receive {page['median']} MB/s median "
        f"({page['min']}-{page['max']}); Chromium raw WebSocket send {raw['median']} MB/s "
        f"({raw['min']}-{raw['max']}); ratio {result['ratio']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
