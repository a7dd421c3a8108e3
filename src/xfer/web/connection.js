// The page's connection to its room: hello/welcome, peers, and reconnecting with
// backoff to the same room (the same session secret, so the relay drops the stale one).

import { CLIENT, CLOSE, PROTOCOL_VERSION, randomHex, roomId } from "./protocol.js";

const CLOSE_ROOM_NOT_FOUND = CLOSE.room_not_found;
const CLOSE_REPLACED = CLOSE.replaced;
const CLOSE_VERSION = CLOSE.version;
const CLOSE_PROTOCOL = CLOSE.protocol;
const CLOSE_ROOM_FULL = CLOSE.room_full;
const GIVE_UP_AFTER = 120_000; // ms of failed reconnects before the room counts as closed

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

export class RoomConnection extends EventTarget {
  constructor(code, name) {
    super();
    this.code = code;
    this.name = name;
    this.session = sessionSecret();
    this.ws = null;
    this.peerId = 0;
    this.peers = new Map(); // id -> {id, name, role, client}
    this.state = "connecting";
    this.attempt = 0;
    this.failingSince = 0;
    this.everJoined = false;
    this.timer = 0;
    this.stopped = false;
    this.lastError = null;
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
    ws.onopen = () => {
      ws.send(JSON.stringify({
        type: "hello", version: PROTOCOL_VERSION, room: roomId(this.code), role: "peer",
        name: this.name, client: CLIENT, create: false, session: this.session,
      }));
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      if (typeof event.data !== "string") {
        this._emit("chunk", event.data); // the relay streams downloads over HTTP; ignore strays
        return;
      }
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!msg || typeof msg !== "object" || typeof msg.type !== "string") return;
      this._message(msg);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this._closed(event.code);
    };
  }

  _message(msg) {
    switch (msg.type) {
      case "welcome":
        this.peerId = msg.peer_id;
        this.peers = new Map((msg.peers || []).map((p) => [p.id, p]));
        this.attempt = 0;
        this.failingSince = 0;
        this.everJoined = true;
        this._setState("connected");
        this._emit("peers", this.peers);
        return;
      case "peer-joined":
        if (msg.peer && msg.peer.id) this.peers.set(msg.peer.id, msg.peer);
        this._emit("peers", this.peers);
        this._emit("peer-joined", msg.peer);
        return;
      case "peer-left":
        this.peers.delete(msg.peer_id);
        this._emit("peers", this.peers);
        this._emit("peer-left", msg.peer_id);
        return;
      case "error":
        if (!msg.from && !msg.transfer) this.lastError = msg;
        this._emit("message", msg);
        return;
      default:
        this._emit("message", msg);
    }
  }

  _closed(code) {
    const wasConnected = this.state === "connected";
    this.peers = new Map();
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

  reopen() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    this.connect();
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.state === "connected";
  }

  send(msg) {
    if (!this.open) throw new Error("not connected");
    this.ws.send(JSON.stringify(msg));
  }

  sendFrame(frame) {
    if (!this.open) throw new Error("not connected");
    this.ws.send(frame);
  }

  get bufferedAmount() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }
}
