// SHA-256 off the page's main thread, so that hashing a slice overlaps with reading
// the next one and sending the last one. Runs as a module worker (hashing.js talks to
// it); it hashes one file at a time, in the order the slices arrive.

import { Sha256 } from "./sha256.js";

let hash = new Sha256();

self.onmessage = ({ data }) => {
  switch (data.op) {
    case "ping":
      self.postMessage({ op: "pong" });
      break;
    case "start": // a new file, or a resumed one from the prefix's state
      hash = data.state ? Sha256.from(data.state) : new Sha256();
      break;
    case "update":
      hash.update(new Uint8Array(data.bytes));
      self.postMessage({ op: "hashed", n: data.bytes.byteLength });
      break;
    case "digest":
      self.postMessage({ op: "digest", id: data.id, sha256: hash.hexdigest() });
      break;
  }
};
