// A download the page decrypts itself (a secure context with its service worker, on a
// hosted relay): the page is a receiver like `xfer receive`, and the relay forwards only
// sealed boxes and sealed chunks (docs/page.md, "Receiving sealed").
//
// The sender's sealed offer carries the round's content key. The page answers a sealed
// accept (no resume points: a phone keeps no partial files), opens each chunk with the key
// (nonce = index ‖ offset, associated data = the header with from and to 0), checks that
// it is the next byte of the file being sent, hashes it, and hands it to a ``Save`` (sw.js
// streams it to the browser's downloader). It acknowledges only bytes the downloader took,
// so the sender's credit window bounds what waits in the page. Each file's last piece is
// held back until the sealed file-end: a size or SHA-256 that differs fails the download
// in the browser, and the sender hears `error hash-mismatch`; a chunk that does not open
// stops the page as any tampered box does.

import { ContentKey } from "./e2e.js";
import { createHasher } from "./hashing.js";
import { CHUNK_KIND, HEADER_SIZE, WINDOW, b64decode, cleanText, writeChunkHeader } from "./protocol.js";
import { Save } from "./saver.js";
import { TransferError, droppedBecause, errorText } from "./transfers.js";

const ACK_STEP = 1024 * 1024; // bytes between acks, at most (protocol.md, "Flow control")
const HASH_AHEAD = 8 * 1024 * 1024; // bytes handed to the hashing worker and not hashed yet, at most

/** The header of a chunk frame, or null when it is not one (frames.py: "!B3xIIIIQ", the kind
 * first; the reserved bytes are not looked at) or its offset is past what a number holds exactly. */
export function readChunkHeader(frame) {
  if (frame.byteLength < HEADER_SIZE) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, HEADER_SIZE);
  const offset = view.getUint32(20) * 0x100000000 + view.getUint32(24);
  if (view.getUint8(0) !== CHUNK_KIND || !Number.isSafeInteger(offset)) return null;
  return { from: view.getUint32(4), to: view.getUint32(8), transfer: view.getUint32(12), index: view.getUint32(16), offset };
}

/** A name for the downloader: the last part of the sender's path, nothing it could misread. */
function saveName(name) {
  const last = String(name).split("/").pop().replace(/[\\:*?"<>|]/g, "_");
  return cleanText(last, 200).replace(/\ufffd/g, "_").replace(/^\.+/, "_") || "file";
}

export class SealedDownload {
  /** offer: the sealed offer (with its ``key``); hooks: as Download's. */
  constructor(conn, offer, hooks) {
    this.conn = conn;
    this.offer = offer;
    this.hooks = hooks;
    this.content = null; // the round's content key, from the offer
    const window = Number.isSafeInteger(offer.window) && offer.window > 0 ? offer.window : WINDOW;
    this.step = Math.max(1, Math.min(ACK_STEP, Math.floor(window / 4)));
    this.written = 0; // bytes the downloader took, this round
    this.acked = 0;
    this.current = null; // the file whose chunks come: {index, offset, size, save}
    this.hasher = null; // SHA-256 in a worker (hashing.js), one file after another
    this.hashWait = null; // resolves when the worker has caught up (see HASH_AHEAD)
    this.saves = new Map(); // index -> Save, until it closed or failed
    this.verified = new Set();
    this.hashes = {}; // index -> SHA-256 of a file that checked out
    this.saved = {}; // index -> bytes of it the downloader took
    this.expected = offer.files.filter((f) => f.kind !== "dir").length;
    this.finished = false;
  }

  async accept() {
    const to = this.offer.from;
    const transfer = this.offer.transfer;
    try {
      this.content = await ContentKey.create(b64decode(this.offer.key)); // throws on a malformed key
      this.hasher = await createHasher(() => this._hashed());
      await this.conn.send({ type: "accept", to, transfer, resume: [] });
      await this.conn.sendClear({ type: "subscribe", to, transfer }); // for a chunk fanned out to several
    } catch {
      this._end(new TransferError("The connection dropped.", "relay-lost"));
    }
  }

  _end(err) {
    if (this.finished) return;
    this.finished = true;
    if (err) for (const save of this.saves.values()) save.fail(err.message);
    this.saves.clear();
    this.hasher?.close();
    this._hashed();
    this.current = null;
    this.hooks.onEnd(err);
  }

  /** Fail the download and tell the sender why (sealed, like everything else to it). */
  _fail(code, message) {
    if (this.finished) return;
    this.conn.send({ type: "error", to: this.offer.from, transfer: this.offer.transfer, code, message }).catch(() => {});
    this._end(new TransferError(errorText({ code, message }), code));
  }

  handle(msg) {
    if (msg.type === "peer-left") {
      if (msg.peer_id === this.offer.from && !this.finished && this.verified.size < this.expected) {
        this._end(new TransferError("The sender left before the end.", "peer-left"));
      }
      return false;
    }
    if (msg.transfer !== this.offer.transfer || msg.from !== this.offer.from) return false;
    if (this.finished) return true;
    switch (msg.type) {
      case "file-start":
        this._start(msg);
        return true;
      case "file-end":
        this._fileEnd(msg);
        return true;
      case "done":
        if (this.verified.size === this.expected) this._end(null);
        else this._fail("protocol", "done before every file was verified");
        return true;
      case "error":
        this._end(new TransferError(errorText(msg), msg.code));
        return true;
      case "cancel":
        this._end(new TransferError(`The sender cancelled${msg.reason ? ": " + msg.reason : ""}.`, "cancelled"));
        return true;
      default:
        return false;
    }
  }

  _start(msg) {
    const entry = Number.isInteger(msg.index) ? this.offer.files[msg.index] : undefined;
    if (!entry || entry.kind === "dir" || this.current || this.saves.has(msg.index) || this.verified.has(msg.index) ||
        (msg.offset ?? 0) !== 0) {
      this._fail("protocol", "a file-start out of turn");
      return;
    }
    const index = msg.index;
    const size = Number.isSafeInteger(entry.size) ? entry.size : null;
    const save = new Save(saveName(entry.name), size, {
      pulled: (n) => this._written(index, n),
      closed: () => this._saved(index),
      cancelled: () => this._fail("download-cancelled", `the download of ${saveName(entry.name)} stopped on the phone`),
    });
    this.saves.set(index, save);
    this.current = { index, offset: 0, size, save };
    this.hasher.start(null);
    save.open().then((url) => {
      if (!this.finished) this.hooks.onStart(index, url);
    }, (err) => this._fail("download-cancelled", String(err?.message || err)));
  }

  /**
   * A binary frame from the room, in order with the messages. Resolves false when it is not
   * this download's; throws ``Tampered`` when it does not open (the page then stops).
   */
  async chunk(frame) {
    const head = readChunkHeader(frame);
    if (!head || head.from !== this.offer.from || head.transfer !== this.offer.transfer || this.finished) return false;
    const cur = this.current;
    if (!cur || head.index !== cur.index || head.offset !== cur.offset) {
      this._fail("protocol", "a chunk out of order");
      return true;
    }
    const routed = new Uint8Array(HEADER_SIZE);
    writeChunkHeader(routed, 0, 0, head.transfer, head.index, head.offset);
    const plain = await this.content.open(head.index, head.offset, frame.subarray(HEADER_SIZE), routed);
    if (this.current !== cur) return true; // the download ended meanwhile
    if (cur.size !== null && cur.offset + plain.length > cur.size) {
      this._fail("protocol", "a chunk past the offered size");
      return true;
    }
    cur.offset += plain.length;
    this.hasher.update(plain.slice()); // a copy moves to the worker; the page keeps ``plain`` for the Save
    cur.save.push(plain);
    // A worker that falls behind holds up the next chunk (and so, through the acks, the sender).
    while (this.hasher.pending > HASH_AHEAD && !this.finished && !this.hasher.failed) {
      await new Promise((resolve) => { this.hashWait = resolve; });
    }
    return true;
  }

  _hashed() {
    const resolve = this.hashWait;
    this.hashWait = null;
    resolve?.();
  }

  async _fileEnd(msg) {
    const cur = this.current;
    if (!cur || msg.index !== cur.index) {
      this._fail("protocol", "a file-end out of turn");
      return;
    }
    this.current = null;
    let sha256;
    try {
      sha256 = await this.hasher.digest(); // of this file: the worker takes the next file's bytes after it
    } catch (err) {
      this._fail("hash-failed", String(err?.message || err));
      return;
    }
    if (this.finished) return;
    if (msg.size !== cur.offset || (cur.size !== null && cur.size !== cur.offset) || msg.sha256 !== sha256) {
      this._fail("hash-mismatch", `SHA-256 of ${saveName(this.offer.files[cur.index].name)} did not match`);
      return;
    }
    this.hashes[cur.index] = sha256;
    cur.save.finish(); // its last piece goes, and the download completes
  }

  _written(index, n) {
    this.written += n;
    this.saved[index] = (this.saved[index] || 0) + n;
    if (this.written - this.acked >= this.step) this._ack(index);
  }

  _ack(index) {
    if (this.written === this.acked) return;
    this.acked = this.written;
    this.conn.send({ type: "ack", to: this.offer.from, transfer: this.offer.transfer, bytes: this.written }).catch(() => {});
    this.hooks.onProgress(index, this.saved[index] || 0);
  }

  /** The downloader has the whole file: acknowledge it, then say it is verified. */
  _saved(index) {
    if (this.finished) return;
    this.saves.delete(index);
    this._ack(index);
    const sha256 = this.hashes[index];
    this.conn.send({ type: "verified", to: this.offer.from, transfer: this.offer.transfer, index, sha256 }).catch(() => {});
    this.verified.add(index);
    this.hooks.onVerified(index);
  }

  disconnected() {
    if (!this.finished) {
      this._end(new TransferError(droppedBecause(this.conn), "relay-lost"));
    }
  }
}
