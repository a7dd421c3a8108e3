// Sealing the upload's chunks off the page's main thread, so that sealing one read overlaps
// with reading the next, hashing it (in hasher.js's worker) and sending the last one. Runs
// as a module worker (sealing.js talks to it): for each read it gets, it returns the chunk
// frames ready to send, each one header the relay routes on and the payload sealed under
// the round's content key (e2e.js: WebCrypto in a secure context, the page's own AES-GCM
// elsewhere), in the order the reads arrive.

import { sealFrames } from "./sealing.js";
import { importKey } from "./e2e.js";

let round = null; // {key, from, to, transfer}
let queue = Promise.resolve(); // one message at a time, in order, even while WebCrypto awaits

async function handle(data) {
  switch (data.op) {
    case "ping":
      self.postMessage({ op: "pong" });
      break;
    case "round": // a new round: its content key and the header's routing
      round = { key: await importKey(new Uint8Array(data.raw)), ...data.route };
      break;
    case "seal": {
      const frames = await sealFrames(round.key, round, data.index, data.offset, new Uint8Array(data.bytes));
      const buffers = frames.map((f) => f.buffer);
      self.postMessage({ op: "sealed", id: data.id, frames: buffers }, buffers);
      break;
    }
  }
}

self.onmessage = ({ data }) => {
  queue = queue.then(() => handle(data)).catch((err) => {
    self.postMessage({ op: "failed", id: data.id, message: String(err?.message || err) });
  });
};
