#!/usr/bin/env python3
"""Benchmark the phone page's upload: headless Chromium -> ``xfer serve`` -> ``xfer receive``.

One run: ``xfer serve`` and ``xfer receive --yes`` on 127.0.0.1; Debian's Chromium
(driven by Playwright, never ``playwright install``) opens the page as a phone on a
LAN would (http://lan.test:PORT, mapped to 127.0.0.1, so not a secure context: the
page seals with its own AES-GCM), picks the file, and the page streams it (File.slice,
SHA-256 in JavaScript, every chunk sealed, paced by acks and ``bufferedAmount``). Timed
from picking the file until ``xfer receive`` reports the file saved and verified; the
saved file's SHA-256 must equal the source's. With ``--https`` the same again at
https://lan.test:PORT (a TLS relay, certificate from a throwaway CA): a secure context,
where the page seals with WebCrypto.

In the same run, at the same origin, the same browser sends the same file over a bare
WebSocket to a sink in this script that only counts the bytes, in loops that do a part
of what the page does (issue 15's yardsticks), each reading the file with File.slice
(1 MiB reads, the next one under way while this one is sent) and sending 256 KiB frames
with at most 2 MiB buffered, as the page does:

- ``raw``: no file, one block sent over and over: Chromium's own send rate;
- ``read``: reads the file and sends it;
- ``read-hash``: reads, hashes with the page's own SHA-256 (sha256.js) on its thread, sends
  (issue 15's target: the page's upload at >= 0.9x this);
- ``read-hash-seal``: also seals each 256 KiB with the page's e2e.js (the backend of that
  origin: the page's own AES-GCM on plain http, WebCrypto on https), on its thread.

The loops' SHA-256 must equal the source's. Cases alternate round after round, so a busy
moment of the shared machine hits all of them; ratios are taken within one run.

    python bench/browser_upload.py                       # 200 MB, 3 rounds
    python bench/browser_upload.py --size 1GiB --repeat 3 --https
    python bench/browser_upload.py --size 50MB --repeat 1 --only page --only read-hash
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
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from common import free_port, make_source, sha256_of, wait_for_port, xfer_cmd
from xfer.units import parse_size

CHROMIUM = "/usr/bin/chromium"
RAW_CHUNK = 256 * 1024  # what the page sends per frame
RAW_BUFFERED = 4 * 1024 * 1024  # the raw sender keeps at most this much queued in the browser
LOOP_BUFFERED = 2 * 1024 * 1024  # the loops, as the page's HIGH_WATER
LOOP_READ = 1024 * 1024  # the loops' File.slice reads, as the page's READ_SIZE
LOOPS = ("read", "read-hash", "read-hash-seal")
CASES = ("raw", *LOOPS, "page")
HOST = "lan.test"  # mapped to 127.0.0.1 in Chromium: not a secure context over plain http


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


WEB = Path(__file__).resolve().parents[1] / "src" / "xfer" / "web"
BLANK = b"<!doctype html><meta charset=utf-8><title>xfer upload bench</title><body></body>"


class Sink:
    """A WebSocket server on 127.0.0.1 (TLS with ``tls``) that counts bytes and says when it has them all.

    It also serves a blank page and the page's modules (sha256.js, e2e.js, aes.js, hkdf.js) at
    its own origin, where the loops run: the relay's page may connect to its own relay only
    (its Content-Security-Policy)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the sink did not start")

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{HOST}:{self.port}/"

    @property
    def page_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}/"

    def _run(self) -> None:
        from websockets.asyncio.server import serve

        async def handler(ws) -> None:
            expected = int(await ws.recv())
            got = 0
            async for frame in ws:
                got += len(frame)
                if got >= expected:
                    await ws.send(str(got))

        def files(connection, request):
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return None
            name = request.path.split("?")[0].lstrip("/")
            if name == "":
                body, kind = BLANK, "text/html; charset=utf-8"
            elif name.endswith(".js") and "/" not in name and (WEB / name).is_file():
                body, kind = (WEB / name).read_bytes(), "text/javascript; charset=utf-8"
            else:
                return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
            response = connection.respond(HTTPStatus.OK, "")
            response.body = body
            del response.headers["Content-Type"], response.headers["Content-Length"]
            response.headers["Content-Type"] = kind
            response.headers["Content-Length"] = str(len(body))
            return response

        async def main() -> None:
            self.stopped = asyncio.Event()
            async with serve(
                handler, "127.0.0.1", self.port, compression=None, max_size=None, ssl=self.tls, process_request=files
            ):
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
  return { seconds, got, expected: total };
}"""

# A loop that does part of the page's work on the file picked into #bench-file, on the page's thread.
LOOP_JS = """async ([url, work, chunk, buffered, readSize]) => {
  const file = document.getElementById("bench-file").files[0];
  const { Sha256 } = await import("/sha256.js");
  const e2e = await import("/e2e.js");
  const hash = work !== "read" ? new Sha256() : null;
  const key = work === "read-hash-seal" ? await e2e.ContentKey.create() : null;
  const header = new Uint8Array(28);
  const frames = Math.ceil(file.size / chunk);
  const total = file.size + (key ? 16 * frames : 0);
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("sink unreachable")); });
  const done = new Promise((ok) => { ws.onmessage = (e) => ok(Number(e.data)); });
  ws.send(String(total));
  const start = performance.now();
  const read = (at) => file.slice(at, Math.min(at + readSize, file.size)).arrayBuffer();
  let offset = 0;
  let next = read(0);
  while (offset < file.size) {
    const bytes = new Uint8Array(await next);
    const after = offset + bytes.length;
    next = after < file.size ? read(after) : null;
    if (hash) hash.update(bytes);
    for (let at = 0; at < bytes.length; at += chunk) {
      let piece = bytes.subarray(at, Math.min(at + chunk, bytes.length));
      if (key) piece = await key.seal(0, offset + at, piece, header);
      while (ws.bufferedAmount > buffered) await new Promise((r) => setTimeout(r, 1));
      ws.send(piece);
    }
    offset = after;
  }
  const got = await done;
  const seconds = (performance.now() - start) / 1000;
  ws.close();
  return { seconds, got, expected: total, sha256: hash ? hash.hexdigest() : null,
           backend: key ? key.aead.backend : null };
}"""


class Origin:
    """One origin the page is opened at: its relay (``xfer serve``, TLS for https; ``xfer``: the
    command to run it with, another tree's for compare_upload.py) and its sink."""

    def __init__(self, name: str, workdir: Path, xfer: list[str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**os.environ, "NO_COLOR": "1"}
        extra: list[str] = []
        tls = None
        if name == "https":
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert(HOST, "127.0.0.1")
            paths = {k: workdir / f"{k}.pem" for k in ("cert", "key", "ca")}
            cert.cert_chain_pems[0].write_to_path(paths["cert"])
            cert.private_key_pem.write_to_path(paths["key"])
            ca.cert_pem.write_to_path(paths["ca"])
            extra = ["--tls-cert", str(paths["cert"]), "--tls-key", str(paths["key"])]
            self.env["SSL_CERT_FILE"] = str(paths["ca"])  # xfer receive trusts the throwaway CA
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(paths["cert"], paths["key"])
        self.relay = subprocess.Popen(
            (xfer or xfer_cmd()) + ["serve", "--host", "127.0.0.1", "--port", str(self.port), *extra],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / f"serve-{name}.err", "wb"),
            stdin=subprocess.DEVNULL,
            env={**self.env, "XFER_ALLOW_HOSTS": HOST},  # the relay answers that name (DNS rebinding)
        )
        self.sink = Sink(tls)
        wait_for_port(self.port)

    @property
    def scheme(self) -> str:
        return "https" if self.name == "https" else "http"

    @property
    def page_url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}/"

    @property
    def relay_url(self) -> str:
        return f"{'wss' if self.name == 'https' else 'ws'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.sink.stop()
        self.relay.terminate()
        try:
            self.relay.wait(10)
        except subprocess.TimeoutExpired:
            self.relay.kill()


def profile_summary(profile: dict, top: int = 15) -> list[dict]:
    """The functions with the most self time in a CDP ``Profiler.stop`` profile (the page's own
    thread: a worker's time is not in it), with their share of all samples."""
    totals: dict[str, int] = {}
    for node in profile["nodes"]:
        frame = node["callFrame"]
        name = f"{frame['functionName'] or '(anonymous)'} {frame['url'].rsplit('/', 1)[-1]}:{frame['lineNumber'] + 1}"
        if not frame["url"]:
            name = frame["functionName"] or "(anonymous)"
        totals[name] = totals.get(name, 0) + node.get("hitCount", 0)
    all_hits = sum(totals.values()) or 1
    best = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return [{"function": name, "share": round(hits / all_hits, 3)} for name, hits in best]


def page_upload(
    browser, origin: Origin, workdir: Path, source: Path, digest: str, timeout: float, profile: list | None = None
) -> float:
    out = workdir / "received"
    if out.exists():
        shutil.rmtree(out)
    events_path = workdir / "receive.json"
    with open(events_path, "wb") as stdout, open(workdir / "receive.err", "wb") as stderr:
        proc = subprocess.Popen(
            xfer_cmd()
            + ["receive", "--relay", origin.relay_url, "--yes", "--json", "--dir", str(out), "--name", "desk"],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=origin.env,
        )
    events = Events(events_path, proc)
    context = browser.new_context(ignore_https_errors=True)
    try:
        link = urlsplit(events.wait("room", 15)["url"])  # the QR code's link: the nameplate and its secret
        page = context.new_page()
        page.goto(f"{origin.page_url}#{link.fragment}", timeout=15_000)
        events.wait("peer-joined", 15)
        if profile is not None:  # the page's thread, sampled every ms
            cdp = context.new_cdp_session(page)
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 1000})
            cdp.send("Profiler.start")
        start = time.monotonic()
        page.locator("input[type=file][multiple]").first.set_input_files(str(source))
        done = events.wait("done", timeout)
        seconds = time.monotonic() - start
        if profile is not None:
            profile.append(profile_summary(cdp.send("Profiler.stop")["profile"]))
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


def loop_send(browser, origin: Origin, work: str, source: Path, digest: str, timeout: float) -> float:
    """One of the yardsticks (``raw`` or one of LOOPS) at ``origin``, into its sink; seconds."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.set_default_timeout(timeout * 1000)
        page.goto(origin.sink.page_url, timeout=15_000)  # the sink's origin (same scheme as the relay's page)
        if work == "raw":
            size = source.stat().st_size
            result = page.evaluate(RAW_SEND_JS, [origin.sink.url, size, RAW_CHUNK, RAW_BUFFERED])
        else:
            page.evaluate(
                "() => { const i = document.createElement('input'); i.type = 'file'; i.id = 'bench-file';"
                " document.body.append(i); }"
            )
            page.set_input_files("#bench-file", str(source))
            result = page.evaluate(LOOP_JS, [origin.sink.url, work, RAW_CHUNK, LOOP_BUFFERED, LOOP_READ])
            if work != "read" and result["sha256"] != digest:
                raise RuntimeError(f"the {work} loop's SHA-256 differs from the source's")
            want = "webcrypto" if origin.name == "https" else "page"
            if work == "read-hash-seal" and result["backend"] != want:
                raise RuntimeError(f"the {work} loop sealed with {result['backend']}, not {want}")
        if result["got"] != result["expected"]:
            raise RuntimeError(f"the sink counted {result['got']} bytes, not {result['expected']}")
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
    ap = argparse.ArgumentParser(description="Benchmark the page's upload against loops in the same browser.")
    ap.add_argument("--size", default="200MB", help="file size, e.g. 200MB (default)")
    ap.add_argument("--repeat", type=int, default=None, help="rounds (default 3; 1 with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="2MB, one round: checks the script works")
    ap.add_argument("--https", action="store_true", help="also at an https origin (WebCrypto)")
    ap.add_argument("--only", action="append", choices=CASES, help="run only this case (repeatable)")
    ap.add_argument("--profile", action="store_true", help="sample the page's own thread (CDP) during its uploads")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "browser_upload.json")
    ap.add_argument("--timeout", type=float, default=300, metavar="SECONDS", help="per upload")
    args = ap.parse_args()
    size = parse_size("2MB" if args.smoke else args.size)
    repeat = args.repeat or (1 if args.smoke else 3)
    cases = [c for c in CASES if not args.only or c in args.only]
    names = ["lan", "https"] if args.https else ["lan"]

    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="xfer-bench-browser-"))
    origins: list[Origin] = []
    rates: dict[str, dict[str, list[float]]] = {n: {c: [] for c in cases} for n in names}
    load = [os.getloadavg()[0]]
    profiles: dict[str, list] = {}
    failed = False
    try:
        for name in names:
            origins.append(Origin(name, workdir))
        source = workdir / "upload.bin"
        digest = make_source(source, size)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
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
                    for origin in origins:
                        line = []
                        for case in cases:
                            if case == "page":
                                profile = profiles.setdefault(origin.name, []) if args.profile else None
                                seconds = page_upload(browser, origin, workdir, source, digest, args.timeout, profile)
                            else:
                                seconds = loop_send(browser, origin, case, source, digest, args.timeout)
                            rates[origin.name][case].append(size / seconds / 1e6)
                            line.append(f"{case} {rates[origin.name][case][-1]:.1f}")
                        print(f"round {run + 1}/{repeat}, {origin.name}: {', '.join(line)} MB/s", file=sys.stderr)
            finally:
                browser.close()
    except Exception as exc:
        print(f"browser_upload: {type(exc).__name__}: {exc}", file=sys.stderr)
        failed = True
    finally:
        for origin in origins:
            origin.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load.append(os.getloadavg()[0])
    if failed:
        return 1
    by_origin = {}
    for name in names:
        got = {case: summary(values) for case, values in rates[name].items()}
        ratios = {}
        if "page" in got:
            for case in ("raw", *LOOPS):
                if case in got:
                    ratios[f"page/{case}"] = round(got["page"]["median"] / got[case]["median"], 2)
        by_origin[name] = {"mb_s": got, "ratios": ratios}
    lan = by_origin["lan"]
    result = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip(),
        "load_average": [round(x, 2) for x in load],
        "size": size,
        "repeat": repeat,
        "origins": by_origin,
        # the figures run_all.py reports: the LAN page against Chromium's raw send and against read-and-hash
        "page_upload_mb_s": lan["mb_s"].get("page"),
        "raw_websocket_mb_s": lan["mb_s"].get("raw"),
        "read_hash_mb_s": lan["mb_s"].get("read-hash"),
        "ratio": lan["ratios"].get("page/raw"),
        "ratio_read_hash": lan["ratios"].get("page/read-hash"),
        **({"profiles": profiles} if profiles else {}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, got in by_origin.items():
        figures = "; ".join(f"{case} {s['median']} ({s['min']}-{s['max']})" for case, s in got["mb_s"].items())
        ratios = ", ".join(f"{k} {v}" for k, v in got["ratios"].items())
        print(f"{size / 1e6:.0f} MB at {name}: {figures} MB/s" + (f"; {ratios}" if ratios else ""))
        for i, functions in enumerate(profiles.get(name, [])):
            print(
                f"  the page's thread, round {i + 1}: "
                + ", ".join(f"{f['function']} {f['share']:.0%}" for f in functions)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
