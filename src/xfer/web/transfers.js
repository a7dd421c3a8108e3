// Transfers as the page runs them, apart from the DOM.
//
// Upload: the page is the sender. Files are read slice by slice (File.slice), hashed
// as they go, and sent as binary chunk frames, paced by the receiver's acks (a credit
// window) and by the socket's bufferedAmount, so a 2 GB video never sits in memory.
//
// Download: the page is the receiver, but the bytes never pass through it. It accepts
// with a secret token, and for each file-start opens /download/TOKEN/INDEX, which the
// relay streams from the sender; the relay also acknowledges and checks the hash.

import { CHUNK_SIZE, HEADER_SIZE, WINDOW, randomHex, randomId, writeChunkHeader } from "./protocol.js";
import { Sha256 } from "./sha256.js";

const HIGH_WATER = 2 * 1024 * 1024; // bytes queued in the socket before the page waits

export class TransferError extends Error {
  constructor(message, code = "failed") {
    super(message);
    this.code = code;
  }
}

/** Resolves when ``predicate()`` is true, re-checked on every ``notify()`` and every few ms. */
class Waiter {
  constructor() {
    this.waiting = new Set();
  }
  until(predicate, { poll = 0, failed = () => null } = {}) {
    return new Promise((resolve, reject) => {
      const entry = () => {
        const err = failed();
        if (err) {
          this.waiting.delete(entry);
          clearInterval(timer);
          reject(err);
        } else if (predicate()) {
          this.waiting.delete(entry);
          clearInterval(timer);
          resolve();
        }
      };
      const timer = poll ? setInterval(entry, poll) : 0;
      this.waiting.add(entry);
      entry();
    });
  }
  notify() {
    for (const entry of [...this.waiting]) entry();
  }
}

export class Upload {
  /** files: File[]; target: peer info; hooks: {onStart(i), onProgress(i, bytes), onVerified(i), onEnd(err)} */
  constructor(conn, files, target, hooks) {
    this.conn = conn;
    this.files = files;
    this.target = target;
    this.hooks = hooks;
    this.transfer = randomId();
    this.answer = null;
    this.sent = 0;
    this.acked = 0;
    this.verified = new Set();
    this.hashes = [];
    this.error = null;
    this.waiter = new Waiter();
    this.starts = [];
    let at = 0;
    for (const f of files) {
      this.starts.push(at);
      at += f.size;
    }
    this.total = at;
  }

  fail(err) {
    if (!this.error) this.error = err;
    this.waiter.notify();
  }

  /** Messages from the room; returns true when this upload consumed it. */
  handle(msg) {
    if (msg.type === "peer-left") {
      if (msg.peer_id === this.target.id && this.verified.size < this.files.length) {
        this.fail(new TransferError(`${this.target.name || "The receiver"} left.`, "peer-left"));
      }
      return false;
    }
    if (msg.from !== this.target.id || msg.transfer !== this.transfer) return false;
    switch (msg.type) {
      case "accept":
      case "reject":
        if (!this.answer) this.answer = msg;
        break;
      case "ack":
        if (typeof msg.bytes === "number" && msg.bytes >= this.acked && msg.bytes <= this.sent) {
          this.acked = msg.bytes;
          this._progress();
        }
        break;
      case "verified":
        if (this.hashes[msg.index] && this.hashes[msg.index] === msg.sha256) {
          this.verified.add(msg.index);
          this.hooks.onVerified(msg.index);
        } else {
          this.fail(new TransferError("The receiver confirmed a different SHA-256.", "hash-mismatch"));
        }
        break;
      case "error":
        this.fail(new TransferError(errorText(msg), msg.code));
        break;
      case "cancel":
        this.fail(new TransferError(`The receiver cancelled${msg.reason ? ": " + msg.reason : ""}.`, "cancelled"));
        break;
      default:
        return false;
    }
    this.waiter.notify();
    return true;
  }

  disconnected() {
    this.fail(new TransferError("The connection dropped.", "relay-lost"));
  }

  _progress() {
    // acks count bytes of the whole transfer: spread them over the files in order
    for (let i = 0; i < this.files.length; i++) {
      if (this.acked <= this.starts[i] && this.files[i].size > 0) break; // not started: still "Waiting…"
      this.hooks.onProgress(i, Math.min(this.files[i].size, this.acked - this.starts[i]));
    }
  }

  _until(predicate, poll = 0) {
    return this.waiter.until(predicate, { poll, failed: () => this.error });
  }

  async run() {
    try {
      await this._run();
      this.hooks.onEnd(null);
    } catch (err) {
      this.hooks.onEnd(err instanceof TransferError ? err : new TransferError(String(err?.message || err)));
    }
  }

  async _run() {
    const to = this.target.id;
    this.conn.send({
      type: "offer", to, transfer: this.transfer, window: WINDOW,
      files: this.files.map((f) => ({
        name: f.name || "file", size: f.size,
        ...(f.type ? { mime: f.type.slice(0, 200) } : {}),
        ...(f.lastModified ? { mtime: f.lastModified / 1000 } : {}),
      })),
    });
    await this._until(() => this.answer);
    if (this.answer.type === "reject") {
      const why = this.answer.reason && this.answer.reason !== "declined" ? `: ${this.answer.reason}` : "";
      throw new TransferError(`${this.target.name || "The receiver"} declined${why}.`, this.answer.code || "declined");
    }
    for (let i = 0; i < this.files.length; i++) await this._sendFile(i, to);
    await this._until(() => this.verified.size === this.files.length);
    this.conn.send({ type: "done", to, transfer: this.transfer });
  }

  async _sendFile(index, to) {
    const file = this.files[index];
    const hash = new Sha256();
    this.conn.send({ type: "file-start", to, transfer: this.transfer, index, offset: 0 });
    this.hooks.onStart(index);
    let offset = 0;
    let next = file.size > 0 ? readSlice(file, 0, Math.min(CHUNK_SIZE, file.size)) : null;
    while (offset < file.size) {
      const bytes = await next; // the slice read while the previous one was being sent
      const n = bytes.length;
      if (n === 0) throw new TransferError(`${file.name} could not be read.`, "read-error");
      const after = offset + n;
      next = after < file.size ? readSlice(file, after, Math.min(after + CHUNK_SIZE, file.size)) : null;
      hash.update(bytes);
      const frame = new Uint8Array(HEADER_SIZE + n);
      writeChunkHeader(frame, this.conn.peerId, to, this.transfer, index, offset);
      frame.set(bytes, HEADER_SIZE);
      await this._until(() => this.sent - this.acked + n <= WINDOW && this.conn.bufferedAmount < HIGH_WATER, 4);
      if (!this.conn.open) throw new TransferError("The connection dropped.", "relay-lost");
      this.conn.sendFrame(frame);
      this.sent += n;
      offset = after;
    }
    const sha256 = hash.hexdigest();
    this.hashes[index] = sha256;
    this.conn.send({ type: "file-end", to, transfer: this.transfer, index, size: file.size, sha256 });
  }
}

async function readSlice(file, start, end) {
  try {
    return new Uint8Array(await file.slice(start, end).arrayBuffer());
  } catch (err) {
    throw new TransferError(`${file.name} could not be read (${err?.message || err}).`, "read-error");
  }
}

export class Download {
  /** offer: the offer message; hooks: {onStart(i), onProgress(i, bytes), onVerified(i), onEnd(err)} */
  constructor(conn, offer, hooks) {
    this.conn = conn;
    this.offer = offer;
    this.hooks = hooks;
    this.token = randomHex(16);
    this.verified = new Set();
    this.current = -1;
    this.finished = false;
    this.starts = [];
    let at = 0;
    for (const f of offer.files) {
      this.starts.push(at);
      at += f.size;
    }
  }

  accept() {
    this.conn.send({ type: "accept", to: this.offer.from, transfer: this.offer.transfer, download: this.token });
  }

  url(index) {
    return new URL(`download/${this.token}/${index}`, location.href).href.replace(/#.*$/, "");
  }

  _end(err) {
    if (this.finished) return;
    this.finished = true;
    this.hooks.onEnd(err);
  }

  handle(msg) {
    if (msg.type === "peer-left") {
      if (msg.peer_id === this.offer.from && !this.finished && this.verified.size < this.offer.files.length) {
        this._end(new TransferError("The sender left before the end.", "peer-left"));
      }
      return false;
    }
    if (msg.transfer !== this.offer.transfer || (msg.from && msg.from !== this.offer.from)) return false;
    switch (msg.type) {
      case "file-start":
        if (typeof msg.index === "number" && msg.index >= 0 && msg.index < this.offer.files.length) {
          this.current = msg.index;
          this.hooks.onStart(msg.index, this.url(msg.index));
        }
        return true;
      case "ack":
        for (let i = 0; i < this.offer.files.length; i++) {
          if (msg.bytes <= this.starts[i] && i !== this.current) break;
          this.hooks.onProgress(i, Math.min(this.offer.files[i].size || 0, msg.bytes - this.starts[i]));
        }
        return true;
      case "verified":
        this.verified.add(msg.index);
        this.hooks.onVerified(msg.index);
        if (this.verified.size === this.offer.files.length) this._end(null);
        return true;
      case "error":
        this._end(new TransferError(errorText(msg), msg.code));
        return true;
      case "cancel":
        this._end(new TransferError(`The sender cancelled${msg.reason ? ": " + msg.reason : ""}.`, "cancelled"));
        return true;
      case "done":
        if (this.verified.size === this.offer.files.length) this._end(null);
        return true;
      default:
        return msg.type === "file-end";
    }
  }

  disconnected() {
    if (!this.finished) this._end(new TransferError("The connection dropped.", "relay-lost"));
  }
}

export function errorText(msg) {
  switch (msg.code) {
    case "hash-mismatch":
      return "The file arrived damaged (SHA-256 mismatch); it was not kept.";
    case "no-space":
    case "disk-full":
      return "The receiver has no room for this.";
    case "download-cancelled":
      return "The download was stopped.";
    case "download-unavailable":
      return "The relay could not stream this offer. Ask for it again.";
    default:
      return msg.message ? String(msg.message) : `Failed (${msg.code || "error"}).`;
  }
}
