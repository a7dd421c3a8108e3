// The upload's chunk frames, sealed: in a worker when the browser has module workers
// (sealer.js), else on the page's own thread. Each read of the file goes in whole and comes
// back as CHUNK_SIZE frames, each one the 28-byte header the relay routes on, then the
// payload sealed under the round's content key, nonce = (index, offset), associated data =
// the header with from and to 0 (protocol 2.0). The upload keeps at most two reads here.

import { chunkNonce } from "./e2e.js";
import { startWorker } from "./hashing.js";
import { CHUNK_SIZE, HEADER_SIZE, writeChunkHeader } from "./protocol.js";

/** The frames of ``bytes`` (the file from ``offset``) under ``key`` for ``route`` {from, to, transfer}. */
export async function sealFrames(key, route, index, offset, bytes) {
  const frames = [];
  const aad = new Uint8Array(HEADER_SIZE);
  for (let at = 0; at < bytes.length; at += CHUNK_SIZE) {
    const piece = bytes.subarray(at, Math.min(at + CHUNK_SIZE, bytes.length));
    writeChunkHeader(aad, 0, 0, route.transfer, index, offset + at);
    const frame = new Uint8Array(HEADER_SIZE + piece.length + 16);
    writeChunkHeader(frame, route.from, route.to, route.transfer, index, offset + at);
    const body = frame.subarray(HEADER_SIZE);
    const sealed = await key.seal(chunkNonce(index, offset + at), piece, aad, body);
    if (sealed !== body) frame.set(sealed, HEADER_SIZE);
    frames.push(frame);
  }
  return frames;
}

class InlineSealer {
  constructor() {
    this.inWorker = false;
  }
  round(content, route) {
    this.key = content.aead;
    this.route = route;
  }
  async seal(index, offset, bytes) {
    return sealFrames(this.key, this.route, index, offset, bytes);
  }
  close() {}
}

class WorkerSealer {
  constructor(worker) {
    this.worker = worker;
    this.inWorker = true;
    this.failed = null;
    this.waiting = new Map(); // id -> {resolve, reject}
    this.nextId = 1;
    worker.onmessage = ({ data }) => {
      const entry = this.waiting.get(data.id);
      if (!entry) return;
      this.waiting.delete(data.id);
      if (data.op === "sealed") {
        entry.resolve(data.frames.map((b) => new Uint8Array(b)));
      } else {
        this._fail(new Error(`sealing failed: ${data.message}`));
        entry.reject(this.failed);
      }
    };
    worker.onerror = (event) => this._fail(new Error(`the sealing worker failed: ${event.message || "error"}`));
  }
  _fail(err) {
    if (!this.failed) this.failed = err;
    for (const entry of this.waiting.values()) entry.reject(this.failed);
    this.waiting.clear();
  }
  /** A new round: its content key (a ContentKey) and the headers' ``route`` {from, to, transfer}. */
  round(content, route) {
    const raw = content.raw.slice().buffer;
    this.worker.postMessage({ op: "round", raw, route }, [raw]);
  }
  /** The frames of ``bytes``; a buffer that ``bytes`` spans whole moves to the worker, uncopied. */
  seal(index, offset, bytes) {
    if (this.failed) return Promise.reject(this.failed);
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    const buffer = whole ? bytes.buffer : bytes.slice().buffer;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ op: "seal", id, index, offset, bytes: buffer }, [buffer]);
    });
  }
  close() {
    this.worker.terminate();
  }
}

/** A sealer for one upload: in a worker where there is one that answers, else on the page. */
export async function createSealer() {
  const worker = await startWorker(new URL("./sealer.js", import.meta.url));
  return worker ? new WorkerSealer(worker) : new InlineSealer();
}
