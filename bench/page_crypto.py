#!/usr/bin/env python3
"""Measure the phone page's own AES-256-GCM (src/xfer/web/aes.js, through e2e.js) in Chromium.

A measurement, not a test: MB/s of sealing and opening 256 KiB chunks, the size the page
sends, with the page's own code on a page that is not a secure context (http://lan.test:PORT,
mapped to 127.0.0.1, as a phone at http://192.168.x.x sees it), next to WebCrypto's AES-GCM
on a secure-context page (http://127.0.0.1:PORT) in the same browser and run, and the page's
SHA-256 (sha256.js, what every upload already pays) for scale. The cases alternate, repeat
after repeat, so a busy moment of the machine hits all of them.

Each case runs in the page: a warm-up, then ``--chunks`` chunks one after the other, each
awaited as the page will (WebCrypto is asynchronous), timed with performance.now(). Before
timing, the method is checked: a chunk sealed in the page equals Python's AESGCM, the page's
count of bytes equals chunks x 256 KiB, what was sealed is 16 bytes longer per chunk, what was
opened equals what was sealed, and the in-page time is within the wall time Python measured
around the call.

    python bench/page_crypto.py                   # 64 chunks (16 MiB) per case, 5 repeats
    python bench/page_crypto.py --chunks 16 --repeat 1

Debian's /usr/bin/chromium through Playwright (never ``playwright install``). MB/s are
decimal (10^6 bytes).
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from common import fmt, spread

WEB = Path(__file__).resolve().parents[1] / "src" / "xfer" / "web"
CHROMIUM = "/usr/bin/chromium"
CHUNK = 256 * 1024
TAG = 16
BLANK = b"<!doctype html><meta charset=utf-8><title>page crypto bench</title>"

# One case in the page: fill ``n`` random chunks, then time ``n`` operations on them.
CASE = """async ([kind, n, chunk, check]) => {
    const e2e = await import("./e2e.js");
    const { Sha256 } = await import("./sha256.js");
    const key = new Uint8Array(32).map((_, i) => i);
    const chunks = [];
    for (let i = 0; i < n; i++) {
        const c = new Uint8Array(chunk);
        for (let at = 0; at < chunk; at += 65536) crypto.getRandomValues(c.subarray(at, Math.min(chunk, at + 65536)));
        chunks.push(c);
    }
    let k = null, sealed = null, work;
    if (kind === "sha256") {
        work = async () => { const h = new Sha256(); let bytes = 0; for (const c of chunks) { h.update(c); bytes += c.length; } return { bytes, out: bytes, digest: h.hexdigest() }; };
    } else {
        k = await e2e.importKey(key, kind.split("-")[0]);
        sealed = [];
        for (let i = 0; i < n; i++) sealed.push(await k.seal(e2e.chunkNonce(0, i * chunk), chunks[i], "header"));
        if (kind.endsWith("seal")) {
            work = async () => { let bytes = 0, out = 0; for (let i = 0; i < n; i++) { const s = await k.seal(e2e.chunkNonce(0, i * chunk), chunks[i], "header"); bytes += chunks[i].length; out += s.length; } return { bytes, out }; };
        } else {
            work = async () => { let bytes = 0, out = 0, same = true; for (let i = 0; i < n; i++) { const p = await k.open(e2e.chunkNonce(0, i * chunk), sealed[i], "header"); bytes += sealed[i].length - 16; out += p.length; same = same && p[0] === chunks[i][0] && p[p.length - 1] === chunks[i][chunk - 1]; } return { bytes, out, same }; };
        }
    }
    await work(); // warm-up: the JIT, and WebCrypto's first calls
    const t0 = performance.now();
    const result = await work();
    const ms = performance.now() - t0;
    result.ms = ms;
    if (check && kind !== "sha256") {
        let t = ""; for (let i = 0; i < 2048; i++) t += String.fromCharCode(sealed[0][i]);
        result.firstSealed = btoa(t);
        result.firstSealedLength = sealed[0].length;
        t = ""; for (let i = 0; i < 2048; i++) t += String.fromCharCode(chunks[0][i]);
        result.firstPlain = btoa(t);
        result.sameOpened = (await k.open(e2e.chunkNonce(0, 0), sealed[0], "header")).every((x, i) => x === chunks[0][i]);
    }
    return result;
}"""


class _Files(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(BLANK)))
            self.end_headers()
            self.wfile.write(BLANK)
            return
        super().do_GET()

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


def measure(page, kind: str, chunks: int, check: bool) -> dict:
    start = time.perf_counter()
    r = page.evaluate(CASE, [kind, chunks, CHUNK, check])
    wall = (time.perf_counter() - start) * 1000
    problems = []
    if r["bytes"] != chunks * CHUNK:
        problems.append(f"counted {r['bytes']} bytes, not {chunks * CHUNK}")
    want_out = chunks * (CHUNK + TAG) if kind.endswith("seal") else chunks * CHUNK
    if r["out"] != want_out:
        problems.append(f"{r['out']} bytes out, not {want_out}")
    if r.get("same") is False:
        problems.append("an opened chunk differs from its plaintext")
    if r["ms"] > wall:  # the timed loop is one part of the call Python timed
        problems.append(f"page time {r['ms']:.1f} ms > wall time {wall:.1f} ms")
    if check and kind != "sha256":
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        # The first chunk's first 2 KiB sealed alone are not a prefix of the whole chunk's
        # sealing (the tag differs), but CTR's ciphertext is: compare that much.
        plain = base64.b64decode(r["firstPlain"])
        ours = base64.b64decode(r["firstSealed"])
        nonce = bytes(4) + bytes(8)  # chunkNonce(0, 0)
        theirs = AESGCM(bytes(range(32))).encrypt(nonce, plain, b"header")[: len(plain)]
        if ours != theirs or r["firstSealedLength"] != CHUNK + TAG or not r["sameOpened"]:
            problems.append("the page's sealed chunk differs from Python's AESGCM")
    if problems:
        raise SystemExit(f"{kind}: the method check failed: {'; '.join(problems)}")
    return {
        "mb_s": r["bytes"] / 1e6 / (r["ms"] / 1000),
        "ms_per_chunk": r["ms"] / chunks,
        "wall_ms": wall,
        "page_ms": r["ms"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="MB/s of the page's own AES-256-GCM in Chromium, next to WebCrypto's.")
    ap.add_argument("--chunks", type=int, default=64, help="256 KiB chunks per timed case (default 64: 16 MiB)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds of all cases (default 5)")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Files, directory=str(WEB)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    load_start = os.getloadavg()
    cases = {
        "page-seal": "lan",
        "page-open": "lan",
        "webcrypto-seal": "local",
        "webcrypto-open": "local",
        "sha256": "lan",
    }
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--host-resolver-rules=MAP lan.test 127.0.0.1", "--disable-gpu", "--no-first-run"],
        )
        pages = {}
        for name, url in (("lan", f"http://lan.test:{port}/"), ("local", f"http://127.0.0.1:{port}/")):
            pages[name] = browser.new_context().new_page()
            pages[name].set_default_timeout(300_000)
            pages[name].goto(url)
        assert pages["lan"].evaluate("[isSecureContext, typeof crypto.subtle]") == [False, "undefined"]
        assert pages["local"].evaluate("isSecureContext") is True
        version = browser.version
        for name, where in cases.items():  # the method, on one small case each
            measure(pages[where], name, 4, check=True)
        for _ in range(args.repeat):
            for name, where in cases.items():
                runs[name].append(measure(pages[where], name, args.chunks, check=False))
        browser.close()
    server.shutdown()

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=WEB, capture_output=True, text=True
    ).stdout.strip()
    print(f"Chromium {version}, {args.chunks} chunks of 256 KiB per case, {args.repeat} rounds, xfer at {commit}")
    print(f"load average {load_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    print(f"{'case':<16} {'MB/s median (min-max)':<26} ms per 256 KiB chunk (median)")
    summary = {}
    for name, values in runs.items():
        mb = spread([v["mb_s"] for v in values])
        ms = spread([v["ms_per_chunk"] for v in values])
        summary[name] = {"mb_s": mb, "ms_per_chunk": ms}
        print(f"{name:<16} {fmt(mb):<26} {ms['median']:.2f}")
    page_seal, web_seal = summary["page-seal"]["mb_s"]["median"], summary["webcrypto-seal"]["mb_s"]["median"]
    print(
        f"page seal / WebCrypto seal: {page_seal / web_seal:.2f}; page seal / SHA-256: {page_seal / summary['sha256']['mb_s']['median']:.2f}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "chromium": version,
            "commit": commit,
            "chunks": args.chunks,
            "repeat": args.repeat,
            "load_average": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
            "summary": summary,
            "runs": runs,
            "python": sys.version.split()[0],
        }
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
