// Transfers as the page runs them, apart from the DOM.
//
// Upload: the page is the sender. Files are read slice by slice (File.slice), hashed
// as they go, and sent as binary chunk frames, paced by the receiver's acks (a credit
// window) and by the socket's bufferedAmount, so a 2 GB video never sits in memory.
// Every message is sealed for the receiver; each offer (each round) carries a fresh
// content key, and each chunk's payload is sealed under it (protocol 2.0).
//
// Download: the page is the receiver, but the bytes never pass through it. It accepts
// with a secret token, and for each file-start opens /download/TOKEN/INDEX, which the
// relay streams from the sender; the relay also acknowledges and checks the hash. The
// page asked for its transfers in clear for this (hi {download: "relay"}), so the relay
// can read them: the page says so before anything is accepted.

import { ContentKey } from "./e2e.js";
import { CHUNK_SIZE, HEADER_SIZE, WINDOW, b64encode, randomHex, randomId } from "./protocol.js";
import { createHasher } from "./hashing.js";
import { createSealer } from "./sealing.js";
import { Sha256 } from "./sha256.js";

const HIGH_WATER = 2 * 1024 * 1024; // bytes queued in the socket before the page waits
// bytes per File.slice read (each is a round trip to the browser process): about 1 MiB, in
// whole chunks, so that no read ends in a short frame (the relay's chunks are 1020 KiB)
const READ_SIZE = Math.max(1, Math.floor((1024 * 1024) / CHUNK_SIZE)) * CHUNK_SIZE;
const HASH_AHEAD = 8 * 1024 * 1024; // bytes handed to the hashing worker and not hashed yet, at most
const TAG_SIZE = 16; // what sealing adds to each chunk

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

/** The round broke (connection dropped, receiver left): the next one resumes. */
class RoundBroken extends Error {
  constructor() {
    super("The connection dropped.");
  }
}

const RESUME_WAIT = 120_000; // ms to wait for the connection and the receiver to come back
const HASH_PIECE = 1024 * 1024; // bytes read at a time to check a resume point
const GONE_STATES = new Set(["replaced", "failed", "closed", "not-found"]);

export class Upload {
  /**
   * files: File[]; target: peer info;
   * hooks: {onStart(i, offset), onProgress(i, bytes), onVerified(i), onEnd(err),
   *         onInterrupted(), onResuming(i, offset)}
   *
   * Runs in rounds, like the CLI sender: when the connection drops or the receiver
   * leaves, the same offer (same transfer id, same File objects) goes out again once
   * the page and a receiver are back, and each file continues from the resume point
   * the receiver answers with, if that prefix hashes the same here.
   */
  constructor(conn, files, target, transfer, hooks) {
    this.conn = conn;
    this.files = files;
    this.target = target;
    this.hooks = hooks;
    this.transfer = transfer ?? randomId(); // a reloaded page's cut-off upload keeps its id
    this.verified = new Set(); // confirmed by the receiver, in any round
    this.hashes = []; // index -> SHA-256 of the whole file, once computed
    this.error = null;
    this.rounds = 0;
    this.waiter = new Waiter();
    this._newRound();
  }

  _newRound() {
    this.answer = null;
    this.sent = 0; // payload bytes sent this round
    this.acked = 0; // what the receiver reported written this round
    this.base = []; // index -> offset the file started at this round
    this.roundVerified = new Set();
    this.broken = false;
  }

  fail(err) {
    if (!this.error) this.error = err;
    this.waiter.notify();
  }

  _break() {
    if (!this.broken) {
      this.broken = true;
      this.waiter.notify();
    }
  }

  /** Messages from the room; returns true when this upload consumed it. */
  handle(msg) {
    if (msg.type === "peer-left") {
      if (msg.peer_id === this.target.id && this.verified.size < this.files.length) this._break();
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
          this.roundVerified.add(msg.index);
          if (!this.verified.has(msg.index)) {
            this.verified.add(msg.index);
            this.hooks.onVerified(msg.index);
          }
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

  /** The page's connection dropped: this round is over; the page reconnects by itself. */
  disconnected() {
    if (this.verified.size < this.files.length) this._break();
  }

  _progress() {
    // acks count bytes written this round across files, in order, from where each one started
    let left = this.acked;
    for (let i = 0; i < this.files.length; i++) {
      const base = this.base[i];
      if (base === undefined) break; // not started this round: still "Waiting…"
      const part = Math.min(this.files[i].size - base, left);
      left -= part;
      if (!this.verified.has(i)) this.hooks.onProgress(i, base + part);
    }
  }

  _until(predicate, poll = 0) {
    return this.waiter.until(predicate, {
      poll, failed: () => this.error || (this.broken ? new RoundBroken() : null),
    });
  }

  /** Send ``msg`` sealed to the receiver; resolves once it is on the wire. */
  async _send(msg) {
    if (this.broken || !this.conn.open) throw new RoundBroken();
    try {
      await this.conn.send(msg);
    } catch {
      throw new RoundBroken();
    }
  }

  async run() {
    try {
      this.hasher = await createHasher(() => this.waiter.notify());
      this.sealer = await createSealer();
      await this._run();
      this.hooks.onEnd(null);
    } catch (err) {
      this.hooks.onEnd(err instanceof TransferError ? err : new TransferError(String(err?.message || err)));
    } finally {
      this.hasher?.close();
      this.sealer?.close();
    }
  }

  async _run() {
    for (;;) {
      try {
        await this._round();
        return;
      } catch (err) {
        if (!(err instanceof RoundBroken) || this.error) throw this.error || err;
      }
      if (this.verified.size === this.files.length) return; // it had everything before the break
      this.hooks.onInterrupted?.();
      await this._comeBack();
    }
  }

  /** Wait (bounded) until the page is back in the room and the receiver is there too. */
  async _comeBack() {
    const deadline = Date.now() + RESUME_WAIT;
    const who = this.target.name || "The receiver";
    let found = null;
    await this.waiter.until(() => {
      found = this.conn.open ? this._findTarget() : null;
      return found !== null;
    }, {
      poll: 200,
      failed: () => {
        if (this.error) return this.error;
        if (this.conn.stopped || GONE_STATES.has(this.conn.state)) {
          const why = this.conn.state === "closed" ? "The room closed before the end." : "The connection is gone; the upload cannot resume.";
          return new TransferError(this.conn.failure || why, "relay-lost");
        }
        if (Date.now() > deadline) {
          return new TransferError(
            this.conn.open ? `${who} did not come back.` : "The connection did not come back.", "peer-left");
        }
        return null;
      },
    });
    this.target = found;
  }

  /** The receiver again (a new peer id after it rejoined): the same role, preferably the same name. */
  _findTarget() {
    const peers = [...this.conn.peers.values()].filter((p) => p.id !== this.conn.peerId && p.role === this.target.role);
    const same = peers.find((p) => p.name === this.target.name);
    if (same) return same;
    return this.target.role === "receiver" ? peers[0] || null : null; // another page is someone else
  }

  async _round() {
    this._newRound();
    this.rounds += 1;
    const to = this.target.id;
    // A new content key for every offer sent: chunks sent again in a later round are sealed
    // under another key, so no key and nonce pair is ever used twice.
    this.content = await ContentKey.create();
    this.sealer.round(this.content, { from: this.conn.peerId, to, transfer: this.transfer });
    await this._send({
      type: "offer", to, transfer: this.transfer, window: WINDOW, key: b64encode(this.content.raw),
      files: this.files.map((f) => ({
        name: f.name || "file", size: f.size,
        ...(f.type ? { mime: f.type.slice(0, 200) } : {}),
        ...(f.lastModified ? { mtime: f.lastModified / 1000 } : {}),
      })),
    });
    await this._until(() => this.answer);
    if (this.answer.type === "reject") throw rejected(this.answer, this.target.name || "The receiver");
    this.hooks.onAccepted?.();
    const starts = await this._resumeStarts(this.answer.resume);
    // Every file, each round: one the receiver holds whole costs a file-start at its size and a file-end.
    for (let i = 0; i < this.files.length; i++) await this._sendFile(i, to, starts.get(i));
    await this._until(() => this.roundVerified.size === this.files.length);
    await this._send({ type: "done", to, transfer: this.transfer });
  }

  /** For each resume point: hash that many bytes of our file; where they match, the file starts there. */
  async _resumeStarts(points) {
    const starts = new Map();
    if (!Array.isArray(points)) return starts;
    for (const point of points) {
      if (!point || typeof point !== "object") continue;
      const { index, offset, sha256 } = point;
      const file = Number.isInteger(index) ? this.files[index] : undefined;
      if (!file || starts.has(index) || !Number.isSafeInteger(offset) || offset <= 0 || offset > file.size) continue;
      if (typeof sha256 !== "string") continue;
      if (!this.verified.has(index)) this.hooks.onResuming?.(index, offset);
      const known = this.hashes[index];
      if (known && offset === file.size) { // hashed whole already
        if (known === sha256) starts.set(index, { offset, hash: null, whole: known });
        continue;
      }
      const hash = await this._prefixHash(file, offset);
      if (hash.copy().hexdigest() === sha256) starts.set(index, { offset, hash });
    }
    return starts;
  }

  /** SHA-256 of the first ``end`` bytes of ``file``, read piece by piece (the next while this one hashes). */
  async _prefixHash(file, end) {
    const hash = new Sha256();
    let at = 0;
    let next = readSlice(file, 0, Math.min(HASH_PIECE, end));
    try {
      while (at < end) {
        const bytes = await next;
        if (bytes.length === 0) throw new TransferError(`${file.name} could not be read.`, "read-error");
        at += bytes.length;
        next = at < end ? readSlice(file, at, Math.min(at + HASH_PIECE, end)) : null;
        hash.update(bytes);
        if (this.error) throw this.error;
        if (this.broken) throw new RoundBroken();
      }
    } finally {
      next?.catch(() => {});
    }
    return hash;
  }

  async _sendFile(index, to, start) {
    const file = this.files[index];
    let offset = start ? start.offset : 0;
    const hasher = this.hasher;
    hasher.start(start?.hash || null);
    this.base[index] = offset;
    await this._send({ type: "file-start", to, transfer: this.transfer, index, offset });
    if (!this.verified.has(index)) this.hooks.onStart(index, offset);
    // The reads, sealing and sending overlap: while read k + 1 is under way, read k is hashed
    // (by the hasher, a worker, on a copy) and sealed into CHUNK_SIZE frames (by the sealer,
    // another worker), and the frames of read k - 1 go out as credit and the socket allow.
    let next = offset < file.size ? readSlice(file, offset, Math.min(offset + READ_SIZE, file.size)) : null;
    let sealing = null; // the frames of the read before, being sealed
    try {
      while (offset < file.size) {
        const bytes = await next;
        const n = bytes.length;
        if (n === 0) throw new TransferError(`${file.name} could not be read.`, "read-error");
        const after = offset + n;
        next = after < file.size ? readSlice(file, after, Math.min(after + READ_SIZE, file.size)) : null;
        hasher.update(hasher.inWorker ? bytes.slice() : bytes); // a hashing worker takes its copy; the sealer, the buffer
        const sealed = this.sealer.seal(index, offset, bytes);
        sealed.catch(() => {});
        if (sealing) await this._sendFrames(await sealing);
        sealing = sealed;
        offset = after;
      }
      if (sealing) await this._sendFrames(await sealing);
    } finally {
      next?.catch(() => {}); // a read still under way when the round broke
    }
    let sha256 = start?.whole;
    if (!sha256) {
      try {
        sha256 = await hasher.digest();
      } catch (err) {
        throw new TransferError(String(err?.message || err), "hash-failed");
      }
    }
    this.hashes[index] = sha256;
    await this._send({ type: "file-end", to, transfer: this.transfer, index, size: file.size, sha256 });
  }

  /** Chunk frames from the sealer, each sent once the credit window and the socket allow it. */
  async _sendFrames(frames) {
    const hasher = this.hasher;
    for (const frame of frames) {
      const m = frame.length - HEADER_SIZE - TAG_SIZE;
      await this._until(() => this.sent - this.acked + m <= WINDOW && this.conn.bufferedAmount < HIGH_WATER &&
                              (hasher.pending <= HASH_AHEAD || hasher.failed), 4);
      if (hasher.failed) throw new TransferError(String(hasher.failed.message), "hash-failed");
      if (this.broken || !this.conn.open) throw new RoundBroken();
      try {
        await this.conn.sendFrame(frame);
      } catch {
        throw new RoundBroken();
      }
      this.sent += m;
    }
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

  /** In clear: the relay's download bridge reads the token (the page said so before). */
  accept() {
    this.conn.sendClear({ type: "accept", to: this.offer.from, transfer: this.offer.transfer, download: this.token })
      .catch(() => this._end(new TransferError("The connection dropped.", "relay-lost")));
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
    if (!this.finished) this._end(new TransferError(droppedBecause(this.conn), "relay-lost"));
  }
}

/** Why a download ended with its connection: the connection's own reason when it stopped for
 * good (a tampering relay, a wrong link), else a drop the page comes back from. */
export function droppedBecause(conn) {
  return conn.failure || "The connection dropped. Once the page is back, ask the sender to send again.";
}

/** What a reject means, in words: busy is not a refusal (the receiver is taking another offer). */
function rejected(answer, who) {
  const reason = typeof answer.reason === "string" ? answer.reason.slice(0, 200) : "";
  if (answer.code === "busy") {
    return new TransferError(`${who} is busy with another transfer. Try again once it is done.`, "busy");
  }
  if (answer.code === "no-space") return new TransferError(`${who} has no room for this${reason ? ": " + reason : ""}.`, "no-space");
  const why = reason && reason !== "declined" ? `: ${reason}` : "";
  return new TransferError(`${who} declined${why}.`, answer.code || "declined");
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
