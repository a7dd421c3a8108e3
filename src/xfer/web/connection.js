// The page's connection to its room: hello/welcome, peers, and reconnecting with
// backoff to the same room (the same session secret, so the relay drops the stale one).
// Each WebSocket gets a fresh PageGuard (guard.js): new keys with every terminal, so a
// reconnection never reuses one. What comes in is handled one message at a time, in
// order (opening a box may wait for WebCrypto); what goes out is sealed and sent one at a
// time, in order, chunks included, so the channels' counters follow the wire.

import { GuardError, PageGuard, WrongLink } from "./guard.js";
import { BUILTIN_RELAY, CLIENT, CLOSE, PROTOCOL_VERSION, randomHex } from "./protocol.js";

const CLOSE_ROOM_NOT_FOUND = CLOSE.room_not_found;
const CLOSE_REPLACED = CLOSE.replaced;
const CLOSE_VERSION = CLOSE.version;
const CLOSE_PROTOCOL = CLOSE.protocol;
const CLOSE_ROOM_FULL = CLOSE.room_full;
const CLOSE_RESTART = CLOSE.restart;
const GIVE_UP_AFTER = 120_000; // ms of failed reconnects before the room counts as closed
// A socket can die without a close reaching the page (Wi-Fi gone, a phone asleep, a NAT that
// forgot it): the browser says nothing for minutes. So the page listens: after PROBE_AFTER ms
// with nothing from the relay it asks for an answer, and after DEAD_AFTER ms of silence (or of
// a join that never completes) it drops the socket and reconnects, so what it shows follows it.
export const PROBE_AFTER = 3_000;
export const DEAD_AFTER = 10_000;
const PROBE_CODE = "no-such-peer"; // the relay's answer to the probe: a text to the page itself

/** Backoff with jitter: about 1, 2, 4, 8, then 10 s. */
export function backoff(attempt) {
  const base = Math.min(1000 * 2 ** attempt, 10_000);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

function sessionSecret() {
  // Per tab and kept across reloads: a reloaded page replaces its old connection.
  try {
    let s = sessionStorage.getItem("xfer-session");
    if (!s || !/^[0-9a-f]{32}$/.test(s)) {
      s = randomHex(16);
      sessionStorage.setItem("xfer-session", s);
    }
    return s;
  } catch {
    return randomHex(16);
  }
}

/** Why the page stopped for good, in the words it shows. */
export const WRONG_LINK = "This link is not for this room any more; scan the QR code again.";
export const TAMPERED = "The connection was tampered with, so it was stopped. Nothing was saved from it.";

export class RoomConnection extends EventTarget {
  /** link: {nameplate, secret} from the URL's fragment (protocol.parseLink). sealedDownloads: the
   * page saves downloads itself (saver.js), so it asks for them sealed. */
  constructor(link, name, { sealedDownloads = false } = {}) {
    super();
    this.sealedDownloads = sealedDownloads;
    this.chunks = null; // async (frame: Uint8Array) => whether a download took it
    this.nameplate = link.nameplate;
    this.secret = link.secret;
    this.name = name;
    this.session = sessionSecret();
    this.ws = null;
    this.peerId = 0;
    this.guard = null; // this WebSocket's keys
    this.members = new Map(); // everyone the relay says is in the room: id -> {id, role, client}
    this.inbox = Promise.resolve();
    this.outbox = Promise.resolve();
    this.failure = null; // the message of a stop for good (a wrong link, tampering)
    this.state = "connecting";
    this.attempt = 0;
    this.failingSince = 0;
    this.everJoined = false;
    this.timer = 0;
    this.stopped = false;
    this.lastError = null;
    this.heard = 0; // when the current socket last brought anything (ms)
    this.probes = 0; // probes sent and not answered yet
    this.watch = 0;
  }

  url() {
    const base = new URL("ws", location.href);
    base.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    base.hash = "";
    return base.href;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  connect() {
    clearTimeout(this.timer);
    this.stopped = false;
    this.lastError = null;
    this._setState(this.everJoined ? "reconnecting" : "connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this._retry();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.members = new Map();
    this.guard = new PageGuard({
      secret: this.secret, name: this.name, post: (msg, sealed) => this._post(ws, msg, sealed),
      sealedDownloads: this.sealedDownloads,
    });
    this.inbox = Promise.resolve();
    this.outbox = Promise.resolve();
    this.heard = Date.now();
    this.probes = 0;
    clearInterval(this.watch);
    this.watch = setInterval(() => this._listen(ws), 1000);
    ws.onopen = () => {
      // The device name travels sealed, in hi: the relay learns the nameplate, never the name.
      ws.send(JSON.stringify({
        type: "hello", version: PROTOCOL_VERSION, room: this.nameplate, role: "peer",
        name: "", client: CLIENT, create: false, session: this.session,
      }));
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      this.heard = Date.now();
      if (typeof event.data !== "string") {
        // A sealed download's chunk, in order with the messages around it (a page that receives
        // through the relay's bridge gets none: strays are dropped). One that does not open stops the page.
        const frame = new Uint8Array(event.data);
        this.inbox = this.inbox.then(() => (ws === this.ws && this.chunks ? this.chunks(frame) : null)).catch((err) => this._stop(ws, err));
        return;
      }
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!msg || typeof msg !== "object" || typeof msg.type !== "string") return;
      this.inbox = this.inbox.then(() => (ws === this.ws ? this._message(msg) : null)).catch((err) => this._stop(ws, err));
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this._closed(event.code);
    };
  }

  /** Once a second: probe a quiet socket, and drop one that stays silent (see DEAD_AFTER). */
  _listen(ws) {
    if (ws !== this.ws) {
      if (!this.ws) clearInterval(this.watch);
      return;
    }
    const quiet = Date.now() - this.heard;
    if (quiet > DEAD_AFTER) {
      this.ws = null;
      clearInterval(this.watch);
      ws.close(1000);
      this._closed(1006); // as if the browser had noticed: reconnect
    } else if (quiet > PROBE_AFTER && this.state === "connected" && ws.readyState === WebSocket.OPEN && this.probes < 3) {
      // Sent past the outbox: it is in clear, to nobody but the page itself, and only
      // makes the relay answer with an error that it is not in the room (docs/page.md).
      this.probes += 1;
      ws.send(JSON.stringify({ type: "text", to: this.peerId, text: "." }));
    }
  }

  /** The terminals the page trusts (they proved the link's secret), with their sealed names. */
  get peers() {
    return this.guard ? this.guard.trusted : new Map();
  }

  async _message(msg) {
    if (msg.from) {
      this._outputs(await this.guard.receive(msg));
      return;
    }
    switch (msg.type) { // the relay's own
      case "welcome":
        this.peerId = msg.peer_id;
        this.members = new Map((Array.isArray(msg.peers) ? msg.peers : []).filter((p) => p && p.id).map((p) => [p.id, p]));
        this.attempt = 0;
        this.failingSince = 0;
        this.everJoined = true;
        this._setState("connected");
        this._emit("peers", this.peers);
        for (const peer of this.members.values()) await this._greet(peer);
        return;
      case "peer-joined":
        if (msg.peer && msg.peer.id) {
          this.members.set(msg.peer.id, msg.peer);
          await this._greet(msg.peer);
        }
        return;
      case "peer-left":
        this.members.delete(msg.peer_id);
        if (this.guard.left(msg.peer_id)) this._emit("peers", this.peers);
        this._emit("peer-left", msg.peer_id);
        return;
      case "error":
        if (msg.code === PROBE_CODE && !msg.transfer && this.probes > 0) {
          this.probes -= 1; // the answer to a probe: the relay is there
          return;
        }
        if (!msg.transfer) this.lastError = msg;
        this._emit("message", msg);
        return;
      default:
        this._emit("message", msg);
    }
  }

  async _greet(peer) {
    this._outputs(await this.guard.greet(peer));
  }

  _outputs(outputs) {
    for (const out of outputs) {
      if (out.kind === "trusted") {
        this._emit("peers", this.peers);
        this._emit("peer-joined", out.peer);
      } else if (out.kind === "refused") {
        // Another terminal may hold the link; the page is wrong only when none of them does.
        if (this.guard.trusted.size === 0 && this.guard.pending === 0) throw new WrongLink();
      } else {
        this._emit("message", out.msg);
      }
    }
  }

  /** Stop for good: the link is wrong, the relay tampered, or a terminal broke the protocol. */
  _stop(ws, err) {
    if (ws !== this.ws) return;
    const message = err?.name === "WrongLink" ? WRONG_LINK
      : err?.name === "Tampered" ? TAMPERED
      : err instanceof GuardError ? `A device in the room broke the protocol (${err.message}).`
      : `The page failed: ${err?.message || err}`;
    this.failure = message;
    this.close();
    this.guard = null;
    this._emit("peers", this.peers);
    this._emit("disconnected", { code: 1000 });
    this._setState(err?.name === "WrongLink" ? "wrong-link" : "failed", { message });
  }

  _closed(code) {
    const wasConnected = this.state === "connected";
    this.closeCode = code; // the last socket's close code (1006 when the page gave up on a silent one)
    this.guard = null;
    this.members = new Map();
    this._emit("peers", this.peers);
    if (this.stopped) return;
    this._emit("disconnected", { code });
    if (code === CLOSE_REPLACED) {
      this._setState("replaced");
      return;
    }
    if (code === CLOSE_VERSION || code === CLOSE_PROTOCOL) {
      this._setState("failed", { message: this.lastError?.message || "The relay does not speak this page's protocol." });
      return;
    }
    if (code === CLOSE_ROOM_NOT_FOUND && !this.everJoined) {
      this._setState("not-found");
      return;
    }
    if (code === CLOSE_RESTART && BUILTIN_RELAY) {
      // The relay ran inside the terminal, and the terminal stopped: the room went with it.
      this._setState("closed", { gone: true });
      return;
    }
    if (code === CLOSE_ROOM_FULL && !this.everJoined) {
      this._setState("failed", { message: "This room is full." });
      return;
    }
    if (wasConnected) this.failingSince = Date.now();
    if (!this.failingSince) this.failingSince = Date.now();
    if (Date.now() - this.failingSince > GIVE_UP_AFTER) {
      this._setState("closed");
      return;
    }
    this._retry();
  }

  _retry() {
    const delay = backoff(this.attempt++);
    const until = Date.now() + delay;
    this._setState("waiting", { until });
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Try again now (the "Retry" button). */
  retryNow() {
    clearTimeout(this.timer);
    this.failingSince = Date.now();
    this.connect();
  }

  /** Rejoin under a new name: the relay knows names only from hello. */
  rename(name) {
    this.name = name;
    this.reopen();
  }

  /** Leave this socket and join again on a new one; what ran on the old one is told it ended. */
  reopen() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.close(1000);
      this.guard = null;
      this.members = new Map();
      this._emit("disconnected", { code: 1000 });
    }
    this.connect();
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.watch);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.state === "connected";
  }

  /** Whether ``id`` is a terminal the page trusts on this connection. */
  trusts(id) {
    return this.guard !== null && this.guard.isTrusted(id);
  }

  /** Put ``msg`` on the wire after everything before it: sealed for ``msg.to``, or in clear. */
  _post(ws, msg, sealed) {
    const step = this.outbox.then(async () => {
      if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) throw new Error("not connected");
      const wire = sealed ? await this.guard.seal(msg) : msg;
      if (ws !== this.ws) throw new Error("not connected");
      ws.send(typeof wire === "string" || wire instanceof Uint8Array ? wire : JSON.stringify(wire));
    });
    this.outbox = step.catch(() => {});
    return step;
  }

  /** Send ``msg`` sealed to the trusted terminal ``msg.to``; resolves once it is on the wire. */
  send(msg) {
    if (!this.open || !this.trusts(msg.to)) return Promise.reject(new Error("not connected"));
    return this._post(this.ws, msg, true);
  }

  /** Send ``msg`` in clear: only what the relay's download bridge must read (a download's accept). */
  sendClear(msg) {
    if (!this.open) return Promise.reject(new Error("not connected"));
    return this._post(this.ws, msg, false);
  }

  /** A binary chunk frame (its payload already sealed), in order with the messages. */
  sendFrame(frame) {
    if (!this.open) return Promise.reject(new Error("not connected"));
    return this._post(this.ws, frame, false);
  }

  get bufferedAmount() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }
}
