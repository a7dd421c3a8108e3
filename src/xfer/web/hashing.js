// The upload's SHA-256: in a worker when the browser has module workers (hasher.js),
// else on the page's own thread. Either way the digest is of exactly the bytes sent,
// in order; ``pending`` is what was handed over and not hashed yet, which the upload
// bounds (a worker that falls behind must not let slices pile up in memory).

import { Sha256 } from "./sha256.js";

const READY_WAIT = 3000; // ms for the worker to answer before hashing on the page instead

class InlineHasher {
  constructor() {
    this.hash = new Sha256();
    this.pending = 0;
    this.inWorker = false;
  }
  start(prefix) {
    this.hash = prefix ? prefix.copy() : new Sha256();
  }
  update(bytes) {
    this.hash.update(bytes);
  }
  async digest() {
    return this.hash.hexdigest();
  }
  close() {}
}

class WorkerHasher {
  constructor(worker, onProgress) {
    this.worker = worker;
    this.onProgress = onProgress;
    this.pending = 0; // bytes posted and not hashed yet
    this.inWorker = true;
    this.failed = null;
    this.digests = new Map(); // id -> resolve
    this.nextId = 1;
    worker.onmessage = ({ data }) => {
      if (data.op === "hashed") {
        this.pending -= data.n;
        this.onProgress();
      } else if (data.op === "digest") {
        const resolve = this.digests.get(data.id);
        this.digests.delete(data.id);
        resolve?.(data.sha256);
      }
    };
    worker.onerror = (event) => {
      this.failed = new Error(`the hashing worker failed: ${event.message || "error"}`);
      for (const resolve of this.digests.values()) resolve(null);
      this.digests.clear();
      this.onProgress();
    };
  }
  start(prefix) {
    this.worker.postMessage({ op: "start", state: prefix ? prefix.state() : null });
  }
  /** Hands ``bytes`` over: when they span their whole buffer it moves to the worker, uncopied. */
  update(bytes) {
    if (this.failed) throw this.failed;
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    const buffer = whole ? bytes.buffer : bytes.slice().buffer;
    this.pending += buffer.byteLength;
    this.worker.postMessage({ op: "update", bytes: buffer }, [buffer]);
  }
  digest() {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.digests.set(id, (sha256) => (sha256 ? resolve(sha256) : reject(this.failed)));
      this.worker.postMessage({ op: "digest", id });
    });
  }
  close() {
    this.worker.terminate();
  }
}

/** A module worker at ``url`` that answered a ping, or null (no module workers here, or no answer in time). */
export async function startWorker(url) {
  if (typeof Worker === "undefined") return null;
  let worker;
  try {
    worker = new Worker(url, { type: "module" });
  } catch {
    return null;
  }
  const ready = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), READY_WAIT);
    worker.onmessage = ({ data }) => {
      if (data.op === "pong") {
        clearTimeout(timer);
        resolve(true);
      }
    };
    worker.onerror = () => {
      clearTimeout(timer);
      resolve(false);
    };
    worker.postMessage({ op: "ping" });
  });
  if (ready) return worker;
  worker.terminate();
  return null;
}

/** A hasher for one upload; ``onProgress`` is called whenever ``pending`` shrinks (or the worker fails). */
export async function createHasher(onProgress) {
  const worker = await startWorker(new URL("./hasher.js", import.meta.url));
  return worker ? new WorkerHasher(worker, onProgress) : new InlineHasher();
}
