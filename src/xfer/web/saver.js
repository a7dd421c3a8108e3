// The page's side of sw.js: saving what the page decrypted through the browser's own
// downloader, streamed (docs/page.md, "Receiving sealed"). Only in a secure context (service
// workers exist only there) and only with a worker that controls the page; else the page
// receives through the relay's bridge as before.

import { BUILTIN_RELAY, randomHex } from "./protocol.js";

const CONTROL_WAIT = 4000; // ms for a newly registered worker to take the page over
const READY_WAIT = 4000; // ms for the worker to answer an open save
const KEEP_ALIVE = 10_000; // ms: a message to the worker now and then, so it is not stopped mid-download

let started = null;

/**
 * Register sw.js and wait (bounded) until it controls the page. Resolves true when the page
 * can save sealed downloads itself. Never on the built-in relay: there the bridge reads
 * nothing that leaves the sender's machine, and it needs no worker.
 */
export function startSaver() {
  if (!started) started = register();
  return started;
}

async function register() {
  if (BUILTIN_RELAY || !window.isSecureContext || !("serviceWorker" in navigator) || typeof ReadableStream !== "function") {
    return false;
  }
  try {
    await navigator.serviceWorker.register(new URL("sw.js", location.href), { scope: "./" });
  } catch {
    return false; // a browser that refuses workers here (private mode, a certificate it does not trust)
  }
  const deadline = Date.now() + CONTROL_WAIT;
  while (!navigator.serviceWorker.controller && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return Boolean(navigator.serviceWorker.controller);
}

/**
 * One file on its way to the downloader. ``push`` the decrypted pieces in order; the
 * newest piece is always held back, and goes only once ``finish`` says the file checked
 * out (then the download completes) — ``fail`` errors it instead, and the browser marks it
 * failed. hooks: {pulled(n): n bytes went to the downloader, closed(), cancelled()}.
 */
export class Save {
  constructor(name, size, hooks) {
    this.id = randomHex(16);
    this.name = name;
    this.size = size;
    this.hooks = hooks;
    this.queue = [];
    this.pulling = false;
    this.ending = false;
    this.over = false;
    this.channel = null;
    this.timer = 0;
  }

  /** Hand the worker this save; resolves to the link that starts the download. */
  open() {
    const worker = navigator.serviceWorker.controller;
    if (!worker) return Promise.reject(new Error("The page's service worker is gone; reload the page."));
    const channel = (this.channel = new MessageChannel());
    return new Promise((resolve, reject) => {
      const late = setTimeout(() => reject(new Error("The page's service worker did not answer.")), READY_WAIT);
      channel.port1.onmessage = (event) => {
        const type = event.data?.type;
        if (type === "ready") {
          clearTimeout(late);
          this.timer = setInterval(() => navigator.serviceWorker.controller?.postMessage({ type: "alive" }), KEEP_ALIVE);
          resolve(new URL(`save/${this.id}`, location.href).href.replace(/#.*$/, ""));
        } else if (type === "pull") {
          this.pulling = true;
          this._give();
        } else if (type === "closed") {
          this._over();
          this.hooks.closed();
        } else if (type === "cancelled") {
          this._over();
          this.hooks.cancelled();
        }
      };
      worker.postMessage({ type: "open", id: this.id, name: this.name, size: this.size }, [channel.port2]);
    });
  }

  push(bytes) {
    this.queue.push(bytes);
    this._give();
  }

  /** The file checked out: let its last piece go and the download complete. */
  finish() {
    this.ending = true;
    this._give();
  }

  /** The download fails (in the browser too), whatever was held back. */
  fail(message) {
    if (this.over) return;
    this.queue = [];
    this._post({ type: "error", message }); // answers the worker's pull, or waits there for the next
    this._over();
  }

  _give() {
    if (!this.pulling || this.over) return;
    let msg;
    if (this.queue.length > 1 || (this.ending && this.queue.length)) msg = { type: "data", bytes: this.queue.shift() };
    else if (this.ending) msg = { type: "end" };
    else return; // the newest piece waits for the next, or for the file-end
    this.pulling = false;
    const n = msg.bytes ? msg.bytes.length : 0;
    const own = msg.bytes && msg.bytes.byteOffset === 0 && msg.bytes.byteLength === msg.bytes.buffer.byteLength;
    this._post(msg, own ? [msg.bytes.buffer] : []);
    if (n) this.hooks.pulled(n);
  }

  _post(msg, transfer = []) {
    try {
      this.channel?.port1.postMessage(msg, transfer);
    } catch { /* the worker went away: the browser ends the download */ }
  }

  _over() {
    this.over = true;
    clearInterval(this.timer);
  }
}
