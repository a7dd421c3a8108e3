// SHA-256 that can be fed a file slice by slice.
//
// Why not crypto.subtle: it only exists in secure contexts (https, localhost), and
// a phone opens this page at http://192.168.x.x; its digest() is one-shot anyway.
// Plain 32-bit integer arithmetic, no allocation per block.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

export class Sha256 {
  constructor() {
    this.h = new Int32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    this.w = new Int32Array(64);
    this.block = new Uint8Array(64);
    this.blockLength = 0;
    this.length = 0; // bytes hashed so far (exact up to 2^53)
    this.finished = false;
  }

  /** Feed bytes (a Uint8Array, or an ArrayBuffer). Returns this. */
  update(data) {
    if (this.finished) throw new Error("Sha256: update after digest");
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const n = bytes.length;
    let pos = 0;
    this.length += n;
    if (this.blockLength > 0) {
      const take = Math.min(64 - this.blockLength, n);
      this.block.set(bytes.subarray(0, take), this.blockLength);
      this.blockLength += take;
      pos = take;
      if (this.blockLength < 64) return this;
      this._compress(this.block, 0);
      this.blockLength = 0;
    }
    while (pos + 64 <= n) {
      this._compress(bytes, pos);
      pos += 64;
    }
    if (pos < n) {
      this.block.set(bytes.subarray(pos), 0);
      this.blockLength = n - pos;
    }
    return this;
  }

  _compress(d, p) {
    const w = this.w;
    const h = this.h;
    for (let i = 0; i < 16; i++, p += 4) {
      w[i] = (d[p] << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h[0], b = h[1], c = h[2], e = h[4], f = h[5], g = h[6], dd = h[3], hh = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      hh = g; g = f; f = e; e = (dd + t1) | 0; dd = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + dd) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
  }

  /** An independent copy of the state so far: its digest leaves this one open for more. */
  copy() {
    const c = new Sha256();
    c.h.set(this.h);
    c.block.set(this.block);
    c.blockLength = this.blockLength;
    c.length = this.length;
    c.finished = this.finished;
    return c;
  }

  /** The digest as 64 lowercase hex digits. The hash cannot be fed after this. */
  hexdigest() {
    if (!this.finished) {
      const bitsHigh = Math.floor(this.length / 0x20000000); // length * 8 / 2^32
      const bitsLow = (this.length % 0x20000000) * 8;
      const block = this.block;
      let n = this.blockLength;
      block[n++] = 0x80;
      if (n > 56) {
        block.fill(0, n);
        this._compress(block, 0);
        n = 0;
      }
      block.fill(0, n);
      const view = new DataView(block.buffer);
      view.setUint32(56, bitsHigh);
      view.setUint32(60, bitsLow);
      this._compress(block, 0);
      this.finished = true;
    }
    let out = "";
    for (const word of this.h) out += (word >>> 0).toString(16).padStart(8, "0");
    return out;
  }
}

/** SHA-256 of bytes or a string (UTF-8), as hex. */
export function sha256Hex(data) {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return new Sha256().update(bytes).hexdigest();
}
