// AES-256-GCM for pages without WebCrypto.
//
// Why our own: crypto.subtle exists only in secure contexts (https, localhost), and a
// phone opens this page at http://192.168.x.x. Where crypto.subtle exists, e2e.js uses
// it instead; this module is the fallback, and is tested against FIPS 197, the GCM
// specification's test cases and Python's ``cryptography`` (tests/browser/test_page_crypto.py).
//
// - AES-256 (FIPS 197), the forward cipher only: GCM needs nothing else. Four 1 KiB
//   T-tables (SubBytes, ShiftRows and MixColumns in one lookup per byte), computed when
//   the module loads; the state is four 32-bit words, big-endian columns.
// - GHASH over GF(2^128) with 8-bit tables per key: for each of a block's 16 byte
//   positions, the 256 multiples of H by that byte (64 KiB a key, built in a fraction of a
//   millisecond), so y * H is the xor of 16 entries: 1.3x the seal's speed of Shoup's 4-bit
//   tables with one step per byte, which this replaced (bench/README.md).
// - GCM (NIST SP 800-38D): CTR from J0 + 1, the tag E(K, J0) xor GHASH(A, C), 16 bytes;
//   a 12-byte nonce gives J0 = nonce || 1, any other length GHASH(nonce). CTR computes the
//   parts of rounds 1 and 2 that do not depend on the counter once (see ctr).
//
// Not constant-time with respect to cache timing (table lookups indexed by secret
// bytes), like every table-driven AES; the tag comparison is constant-time. No
// allocation per block: every loop keeps its state in local variables.

const SBOX = new Uint8Array(256);
const T0 = new Int32Array(256);
const T1 = new Int32Array(256);
const T2 = new Int32Array(256);
const T3 = new Int32Array(256);

(function buildTables() {
  // Powers of the generator 3 in GF(2^8), for the inverses the S-box starts from.
  const exp = new Uint8Array(256);
  const log = new Uint8Array(256);
  for (let i = 0, x = 1; i < 255; i++) {
    exp[i] = x;
    log[x] = i;
    x ^= (x << 1) ^ (x & 0x80 ? 0x11b : 0); // x * 3
  }
  for (let i = 0; i < 256; i++) {
    const inv = i === 0 ? 0 : exp[(255 - log[i]) % 255];
    let s = inv;
    for (let r = 1; r < 5; r++) s ^= ((inv << r) | (inv >>> (8 - r))) & 0xff; // the affine map
    s ^= 0x63;
    SBOX[i] = s;
    const s2 = ((s << 1) ^ (s & 0x80 ? 0x11b : 0)) & 0xff;
    const s3 = s2 ^ s;
    const t = (s2 << 24) | (s << 16) | (s << 8) | s3; // MixColumns' column (2, 1, 1, 3)
    T0[i] = t;
    T1[i] = (t >>> 8) | (t << 24);
    T2[i] = (t >>> 16) | (t << 16);
    T3[i] = (t >>> 24) | (t << 8);
  }
})();

const ROUNDS = 14; // AES-256 (encryptBlock writes its rounds out)
const KEY_BYTES = 32;
export const TAG_BYTES = 16;

/** The 60 round-key words of a 32-byte key (FIPS 197, 5.2). */
function expandKey(key) {
  if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) throw new TypeError("AES-256 takes a 32-byte key");
  const w = new Int32Array(4 * (ROUNDS + 1));
  for (let i = 0; i < 8; i++) w[i] = (key[4 * i] << 24) | (key[4 * i + 1] << 16) | (key[4 * i + 2] << 8) | key[4 * i + 3];
  let rcon = 1;
  for (let i = 8; i < w.length; i++) {
    let t = w[i - 1];
    if (i % 8 === 0) {
      t = (SBOX[(t >>> 16) & 255] << 24) | (SBOX[(t >>> 8) & 255] << 16) | (SBOX[t & 255] << 8) | SBOX[t >>> 24];
      t ^= rcon << 24;
      rcon = (rcon << 1) ^ (rcon & 0x80 ? 0x11b : 0);
    } else if (i % 8 === 4) {
      t = (SBOX[t >>> 24] << 24) | (SBOX[(t >>> 16) & 255] << 16) | (SBOX[(t >>> 8) & 255] << 8) | SBOX[t & 255];
    }
    w[i] = w[i - 8] ^ t;
  }
  return w;
}

/** Encrypt the block (s0, s1, s2, s3) under the round keys rk into out[0..4). */
function encryptBlock(rk, s0, s1, s2, s3, out) {
  const t0 = T0, t1 = T1, t2 = T2, t3 = T3;
  s0 ^= rk[0]; s1 ^= rk[1]; s2 ^= rk[2]; s3 ^= rk[3];
  const a = t0[s0 >>> 24] ^ t1[(s1 >>> 16) & 255] ^ t2[(s2 >>> 8) & 255] ^ t3[s3 & 255] ^ rk[4];
  const b = t0[s1 >>> 24] ^ t1[(s2 >>> 16) & 255] ^ t2[(s3 >>> 8) & 255] ^ t3[s0 & 255] ^ rk[5];
  const c = t0[s2 >>> 24] ^ t1[(s3 >>> 16) & 255] ^ t2[(s0 >>> 8) & 255] ^ t3[s1 & 255] ^ rk[6];
  const d = t0[s3 >>> 24] ^ t1[(s0 >>> 16) & 255] ^ t2[(s1 >>> 8) & 255] ^ t3[s2 & 255] ^ rk[7];
  s0 = t0[a >>> 24] ^ t1[(b >>> 16) & 255] ^ t2[(c >>> 8) & 255] ^ t3[d & 255] ^ rk[8];
  s1 = t0[b >>> 24] ^ t1[(c >>> 16) & 255] ^ t2[(d >>> 8) & 255] ^ t3[a & 255] ^ rk[9];
  s2 = t0[c >>> 24] ^ t1[(d >>> 16) & 255] ^ t2[(a >>> 8) & 255] ^ t3[b & 255] ^ rk[10];
  s3 = t0[d >>> 24] ^ t1[(a >>> 16) & 255] ^ t2[(b >>> 8) & 255] ^ t3[c & 255] ^ rk[11];
  finishBlock(rk, s0, s1, s2, s3, out);
}

/** Rounds 3 to 14 of a block whose state after round 2 is (s0, s1, s2, s3), into out[0..4). */
function finishBlock(rk, s0, s1, s2, s3, out) {
  const t0 = T0, t1 = T1, t2 = T2, t3 = T3;
  // Written out (1.15-1.2x the speed of a loop in V8 here); the state moves between
  // (s0, s1, s2, s3) and (a, b, c, d) instead of being copied back each round.
  let a = 0, b = 0, c = 0, d = 0;
  a = t0[s0 >>> 24] ^ t1[(s1 >>> 16) & 255] ^ t2[(s2 >>> 8) & 255] ^ t3[s3 & 255] ^ rk[12];
  b = t0[s1 >>> 24] ^ t1[(s2 >>> 16) & 255] ^ t2[(s3 >>> 8) & 255] ^ t3[s0 & 255] ^ rk[13];
  c = t0[s2 >>> 24] ^ t1[(s3 >>> 16) & 255] ^ t2[(s0 >>> 8) & 255] ^ t3[s1 & 255] ^ rk[14];
  d = t0[s3 >>> 24] ^ t1[(s0 >>> 16) & 255] ^ t2[(s1 >>> 8) & 255] ^ t3[s2 & 255] ^ rk[15];
  s0 = t0[a >>> 24] ^ t1[(b >>> 16) & 255] ^ t2[(c >>> 8) & 255] ^ t3[d & 255] ^ rk[16];
  s1 = t0[b >>> 24] ^ t1[(c >>> 16) & 255] ^ t2[(d >>> 8) & 255] ^ t3[a & 255] ^ rk[17];
  s2 = t0[c >>> 24] ^ t1[(d >>> 16) & 255] ^ t2[(a >>> 8) & 255] ^ t3[b & 255] ^ rk[18];
  s3 = t0[d >>> 24] ^ t1[(a >>> 16) & 255] ^ t2[(b >>> 8) & 255] ^ t3[c & 255] ^ rk[19];
  a = t0[s0 >>> 24] ^ t1[(s1 >>> 16) & 255] ^ t2[(s2 >>> 8) & 255] ^ t3[s3 & 255] ^ rk[20];
  b = t0[s1 >>> 24] ^ t1[(s2 >>> 16) & 255] ^ t2[(s3 >>> 8) & 255] ^ t3[s0 & 255] ^ rk[21];
  c = t0[s2 >>> 24] ^ t1[(s3 >>> 16) & 255] ^ t2[(s0 >>> 8) & 255] ^ t3[s1 & 255] ^ rk[22];
  d = t0[s3 >>> 24] ^ t1[(s0 >>> 16) & 255] ^ t2[(s1 >>> 8) & 255] ^ t3[s2 & 255] ^ rk[23];
  s0 = t0[a >>> 24] ^ t1[(b >>> 16) & 255] ^ t2[(c >>> 8) & 255] ^ t3[d & 255] ^ rk[24];
  s1 = t0[b >>> 24] ^ t1[(c >>> 16) & 255] ^ t2[(d >>> 8) & 255] ^ t3[a & 255] ^ rk[25];
  s2 = t0[c >>> 24] ^ t1[(d >>> 16) & 255] ^ t2[(a >>> 8) & 255] ^ t3[b & 255] ^ rk[26];
  s3 = t0[d >>> 24] ^ t1[(a >>> 16) & 255] ^ t2[(b >>> 8) & 255] ^ t3[c & 255] ^ rk[27];
  a = t0[s0 >>> 24] ^ t1[(s1 >>> 16) & 255] ^ t2[(s2 >>> 8) & 255] ^ t3[s3 & 255] ^ rk[28];
  b = t0[s1 >>> 24] ^ t1[(s2 >>> 16) & 255] ^ t2[(s3 >>> 8) & 255] ^ t3[s0 & 255] ^ rk[29];
  c = t0[s2 >>> 24] ^ t1[(s3 >>> 16) & 255] ^ t2[(s0 >>> 8) & 255] ^ t3[s1 & 255] ^ rk[30];
  d = t0[s3 >>> 24] ^ t1[(s0 >>> 16) & 255] ^ t2[(s1 >>> 8) & 255] ^ t3[s2 & 255] ^ rk[31];
  s0 = t0[a >>> 24] ^ t1[(b >>> 16) & 255] ^ t2[(c >>> 8) & 255] ^ t3[d & 255] ^ rk[32];
  s1 = t0[b >>> 24] ^ t1[(c >>> 16) & 255] ^ t2[(d >>> 8) & 255] ^ t3[a & 255] ^ rk[33];
  s2 = t0[c >>> 24] ^ t1[(d >>> 16) & 255] ^ t2[(a >>> 8) & 255] ^ t3[b & 255] ^ rk[34];
  s3 = t0[d >>> 24] ^ t1[(a >>> 16) & 255] ^ t2[(b >>> 8) & 255] ^ t3[c & 255] ^ rk[35];
  a = t0[s0 >>> 24] ^ t1[(s1 >>> 16) & 255] ^ t2[(s2 >>> 8) & 255] ^ t3[s3 & 255] ^ rk[36];
  b = t0[s1 >>> 24] ^ t1[(s2 >>> 16) & 255] ^ t2[(s3 >>> 8) & 255] ^ t3[s0 & 255] ^ rk[37];
  c = t0[s2 >>> 24] ^ t1[(s3 >>> 16) & 255] ^ t2[(s0 >>> 8) & 255] ^ t3[s1 & 255] ^ rk[38];
  d = t0[s3 >>> 24] ^ t1[(s0 >>> 16) & 255] ^ t2[(s1 >>> 8) & 255] ^ t3[s2 & 255] ^ rk[39];
  s0 = t0[a >>> 24] ^ t1[(b >>> 16) & 255] ^ t2[(c >>> 8) & 255] ^ t3[d & 255] ^ rk[40];
  s1 = t0[b >>> 24] ^ t1[(c >>> 16) & 255] ^ t2[(d >>> 8) & 255] ^ t3[a & 255] ^ rk[41];
  s2 = t0[c >>> 24] ^ t1[(d >>> 16) & 255] ^ t2[(a >>> 8) & 255] ^ t3[b & 255] ^ rk[42];
  s3 = t0[d >>> 24] ^ t1[(a >>> 16) & 255] ^ t2[(b >>> 8) & 255] ^ t3[c & 255] ^ rk[43];
  a = t0[s0 >>> 24] ^ t1[(s1 >>> 16) & 255] ^ t2[(s2 >>> 8) & 255] ^ t3[s3 & 255] ^ rk[44];
  b = t0[s1 >>> 24] ^ t1[(s2 >>> 16) & 255] ^ t2[(s3 >>> 8) & 255] ^ t3[s0 & 255] ^ rk[45];
  c = t0[s2 >>> 24] ^ t1[(s3 >>> 16) & 255] ^ t2[(s0 >>> 8) & 255] ^ t3[s1 & 255] ^ rk[46];
  d = t0[s3 >>> 24] ^ t1[(s0 >>> 16) & 255] ^ t2[(s1 >>> 8) & 255] ^ t3[s2 & 255] ^ rk[47];
  s0 = t0[a >>> 24] ^ t1[(b >>> 16) & 255] ^ t2[(c >>> 8) & 255] ^ t3[d & 255] ^ rk[48];
  s1 = t0[b >>> 24] ^ t1[(c >>> 16) & 255] ^ t2[(d >>> 8) & 255] ^ t3[a & 255] ^ rk[49];
  s2 = t0[c >>> 24] ^ t1[(d >>> 16) & 255] ^ t2[(a >>> 8) & 255] ^ t3[b & 255] ^ rk[50];
  s3 = t0[d >>> 24] ^ t1[(a >>> 16) & 255] ^ t2[(b >>> 8) & 255] ^ t3[c & 255] ^ rk[51];
  a = t0[s0 >>> 24] ^ t1[(s1 >>> 16) & 255] ^ t2[(s2 >>> 8) & 255] ^ t3[s3 & 255] ^ rk[52];
  b = t0[s1 >>> 24] ^ t1[(s2 >>> 16) & 255] ^ t2[(s3 >>> 8) & 255] ^ t3[s0 & 255] ^ rk[53];
  c = t0[s2 >>> 24] ^ t1[(s3 >>> 16) & 255] ^ t2[(s0 >>> 8) & 255] ^ t3[s1 & 255] ^ rk[54];
  d = t0[s3 >>> 24] ^ t1[(s0 >>> 16) & 255] ^ t2[(s1 >>> 8) & 255] ^ t3[s2 & 255] ^ rk[55];
  const k = 56; // the last round's key, applied to (a, b, c, d)
  const s = SBOX;
  out[0] = ((s[a >>> 24] << 24) | (s[(b >>> 16) & 255] << 16) | (s[(c >>> 8) & 255] << 8) | s[d & 255]) ^ rk[k];
  out[1] = ((s[b >>> 24] << 24) | (s[(c >>> 16) & 255] << 16) | (s[(d >>> 8) & 255] << 8) | s[a & 255]) ^ rk[k + 1];
  out[2] = ((s[c >>> 24] << 24) | (s[(d >>> 16) & 255] << 16) | (s[(a >>> 8) & 255] << 8) | s[b & 255]) ^ rk[k + 2];
  out[3] = ((s[d >>> 24] << 24) | (s[(a >>> 16) & 255] << 16) | (s[(b >>> 8) & 255] << 8) | s[c & 255]) ^ rk[k + 3];
}

/** AES-256 of one 16-byte block (for the FIPS 197 test; GCM never needs it alone). */
export function aes256Block(key, block) {
  const rk = expandKey(key);
  const w = new Int32Array(4);
  const b = block;
  encryptBlock(rk, (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3], (b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7],
    (b[8] << 24) | (b[9] << 16) | (b[10] << 8) | b[11], (b[12] << 24) | (b[13] << 16) | (b[14] << 8) | b[15], w);
  return wordsToBytes(w, new Uint8Array(16), 0);
}

function wordsToBytes(w, out, at) {
  for (let i = 0; i < 4; i++, at += 4) {
    const x = w[i];
    out[at] = x >>> 24; out[at + 1] = x >>> 16; out[at + 2] = x >>> 8; out[at + 3] = x;
  }
  return out;
}

// GHASH's reduction of the eight bits that a right shift by 8 drops off the end, already
// in place in the top word: each dropped bit adds x^128 = x^7 + x^2 + x + 1 (0xe1000000,
// bit-reflected), shifted by the steps still to come. (mbed TLS's last4, for 8 bits.)
const REDUCE8 = new Int32Array(256);
for (let rem = 0; rem < 256; rem++) {
  let top = 0;
  for (let bit = 0; bit < 8; bit++) top = (top >>> 1) ^ ((rem >>> bit) & 1 ? 0xe1000000 : 0);
  REDUCE8[rem] = top;
}

/** Shift the 128-bit value v right by ``bits`` (1 to 8), reducing what drops off: v * x^bits. */
function shiftReduce(v, bits) {
  const rem = v[3] & ((1 << bits) - 1);
  v[3] = (v[3] >>> bits) | (v[2] << (32 - bits));
  v[2] = (v[2] >>> bits) | (v[1] << (32 - bits));
  v[1] = (v[1] >>> bits) | (v[0] << (32 - bits));
  v[0] = (v[0] >>> bits) ^ REDUCE8[rem << (8 - bits)];
}

/**
 * GHASH's tables for H, 8 bits at a time: for each of the 16 byte positions of a block and
 * each of the 256 values of that byte, that byte alone (the rest zero) times H, four words
 * an entry, in one Int32Array of 16 x 256 x 4 words (64 KiB a key). y * H is then the xor of
 * 16 entries, one per byte of y: 64 loads and no shifts a block.
 */
function ghashTables(h) {
  const t = new Int32Array(16 * 256 * 4);
  const v = Int32Array.from(h); // H times x^j for j = 0, 1, ... (GCM's bit order: the top bit of a byte is x^0)
  const basis = new Int32Array(8 * 4); // this byte's H x^j, indexed by the bit's number (0 is 0x01)
  for (let i = 0; i < 16; i++) {
    for (let k = 7; k >= 0; k--) { // bit 0x80 is x^(8i), 0x01 is x^(8i + 7)
      basis.set(v, 4 * k);
      shiftReduce(v, 1);
    }
    const base = i * 1024;
    for (let k = 0; k < 8; k++) { // the values below 2^(k+1): each is bit k plus a value already done
      const bit = 1 << k;
      for (let b = bit; b < 2 * bit; b++) {
        const to = base + 4 * b, from = base + 4 * (b ^ bit);
        for (let w = 0; w < 4; w++) t[to + w] = t[from + w] ^ basis[4 * k + w];
      }
    }
  }
  return t;
}

/**
 * Absorb d[p, end) into the GHASH state y (four words), zero-padding a last partial block:
 * y = (y xor block) * H for each block, with the tables t of H.
 */
function ghash(y, t, d, p, end) {
  let y0 = y[0], y1 = y[1], y2 = y[2], y3 = y[3];
  while (p < end) {
    if (p + 16 <= end) {
      y0 ^= (d[p] << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3];
      y1 ^= (d[p + 4] << 24) | (d[p + 5] << 16) | (d[p + 6] << 8) | d[p + 7];
      y2 ^= (d[p + 8] << 24) | (d[p + 9] << 16) | (d[p + 10] << 8) | d[p + 11];
      y3 ^= (d[p + 12] << 24) | (d[p + 13] << 16) | (d[p + 14] << 8) | d[p + 15];
      p += 16;
    } else {
      for (let i = 0; p < end; i++, p++) {
        const b = d[p] << (24 - 8 * (i & 3));
        if (i < 4) y0 ^= b; else if (i < 8) y1 ^= b; else if (i < 12) y2 ^= b; else y3 ^= b;
      }
    }
    // The entry of byte i with value v is at 1024 i + 4 v.
    const a0 = (y0 >>> 22) & 1020, a1 = 1024 + ((y0 >>> 14) & 1020), a2 = 2048 + ((y0 >>> 6) & 1020), a3 = 3072 + ((y0 << 2) & 1020);
    const b0 = 4096 + ((y1 >>> 22) & 1020), b1 = 5120 + ((y1 >>> 14) & 1020), b2 = 6144 + ((y1 >>> 6) & 1020), b3 = 7168 + ((y1 << 2) & 1020);
    const c0 = 8192 + ((y2 >>> 22) & 1020), c1 = 9216 + ((y2 >>> 14) & 1020), c2 = 10240 + ((y2 >>> 6) & 1020), c3 = 11264 + ((y2 << 2) & 1020);
    const d0 = 12288 + ((y3 >>> 22) & 1020), d1 = 13312 + ((y3 >>> 14) & 1020), d2 = 14336 + ((y3 >>> 6) & 1020), d3 = 15360 + ((y3 << 2) & 1020);
    y0 = t[a0] ^ t[a1] ^ t[a2] ^ t[a3] ^ t[b0] ^ t[b1] ^ t[b2] ^ t[b3] ^ t[c0] ^ t[c1] ^ t[c2] ^ t[c3] ^ t[d0] ^ t[d1] ^ t[d2] ^ t[d3];
    y1 = t[a0 + 1] ^ t[a1 + 1] ^ t[a2 + 1] ^ t[a3 + 1] ^ t[b0 + 1] ^ t[b1 + 1] ^ t[b2 + 1] ^ t[b3 + 1] ^
         t[c0 + 1] ^ t[c1 + 1] ^ t[c2 + 1] ^ t[c3 + 1] ^ t[d0 + 1] ^ t[d1 + 1] ^ t[d2 + 1] ^ t[d3 + 1];
    y2 = t[a0 + 2] ^ t[a1 + 2] ^ t[a2 + 2] ^ t[a3 + 2] ^ t[b0 + 2] ^ t[b1 + 2] ^ t[b2 + 2] ^ t[b3 + 2] ^
         t[c0 + 2] ^ t[c1 + 2] ^ t[c2 + 2] ^ t[c3 + 2] ^ t[d0 + 2] ^ t[d1 + 2] ^ t[d2 + 2] ^ t[d3 + 2];
    y3 = t[a0 + 3] ^ t[a1 + 3] ^ t[a2 + 3] ^ t[a3 + 3] ^ t[b0 + 3] ^ t[b1 + 3] ^ t[b2 + 3] ^ t[b3 + 3] ^
         t[c0 + 3] ^ t[c1 + 3] ^ t[c2 + 3] ^ t[c3 + 3] ^ t[d0 + 3] ^ t[d1 + 3] ^ t[d2 + 3] ^ t[d3 + 3];
  }
  y[0] = y0; y[1] = y1; y[2] = y2; y[3] = y3;
}

const KS = new Int32Array(4); // ctr's keystream block (shared: ctr never yields)

/**
 * XOR src[0, n) with the keystream from counter block c (the last word counts, mod 2^32) into
 * dst. Only the last word changes from block to block, so most of the first two rounds is
 * the same for every block: round 1 takes 4 lookups instead of 16, and round 2 takes 4
 * while the counter's top three bytes stay the same (255 blocks in 256).
 */
function ctr(rk, c, src, dst, n) {
  const t0 = T0, t1 = T1, t2 = T2, t3 = T3;
  const k0 = c[0] ^ rk[0], k1 = c[1] ^ rk[1], k2 = c[2] ^ rk[2];
  let c3 = c[3];
  // Round 1 without the terms of the counter's word: a = a1 ^ t3[byte 0 of it], b = b1 ^ t2[byte 1], ...
  const a1 = t0[k0 >>> 24] ^ t1[(k1 >>> 16) & 255] ^ t2[(k2 >>> 8) & 255] ^ rk[4];
  const b1 = t0[k1 >>> 24] ^ t1[(k2 >>> 16) & 255] ^ t3[k0 & 255] ^ rk[5];
  const c1 = t0[k2 >>> 24] ^ t2[(k0 >>> 8) & 255] ^ t3[k1 & 255] ^ rk[6];
  const d1 = t1[(k0 >>> 16) & 255] ^ t2[(k1 >>> 8) & 255] ^ t3[k2 & 255] ^ rk[7];
  // Round 2 without the terms of a, for the current top bytes of the counter's word (b, c, d).
  let high = -1, p0 = 0, p1 = 0, p2 = 0, p3 = 0;
  const ks = KS;
  for (let p = 0; p < n; p += 16) {
    const s3 = c3 ^ rk[3];
    const a = a1 ^ t3[s3 & 255];
    if (s3 >>> 8 !== high) {
      high = s3 >>> 8;
      const b = b1 ^ t2[(s3 >>> 8) & 255], cc = c1 ^ t1[(s3 >>> 16) & 255], d = d1 ^ t0[s3 >>> 24];
      p0 = t1[(b >>> 16) & 255] ^ t2[(cc >>> 8) & 255] ^ t3[d & 255] ^ rk[8];
      p1 = t0[b >>> 24] ^ t1[(cc >>> 16) & 255] ^ t2[(d >>> 8) & 255] ^ rk[9];
      p2 = t0[cc >>> 24] ^ t1[(d >>> 16) & 255] ^ t3[b & 255] ^ rk[10];
      p3 = t0[d >>> 24] ^ t2[(b >>> 8) & 255] ^ t3[cc & 255] ^ rk[11];
    }
    finishBlock(rk, p0 ^ t0[a >>> 24], p1 ^ t3[a & 255], p2 ^ t2[(a >>> 8) & 255], p3 ^ t1[(a >>> 16) & 255], ks);
    c3 = (c3 + 1) | 0;
    if (p + 16 <= n) {
      for (let i = 0, q = p; i < 4; i++, q += 4) {
        const k = ks[i];
        dst[q] = src[q] ^ (k >>> 24);
        dst[q + 1] = src[q + 1] ^ (k >>> 16);
        dst[q + 2] = src[q + 2] ^ (k >>> 8);
        dst[q + 3] = src[q + 3] ^ k;
      }
    } else {
      for (let q = p; q < n; q++) dst[q] = src[q] ^ (ks[(q - p) >> 2] >>> (24 - 8 * ((q - p) & 3)));
    }
  }
}

function bytes(data, what) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data == null && what === "aad") return new Uint8Array(0);
  throw new TypeError(`AES-GCM: ${what} must be bytes`);
}

/** AES-256-GCM under one key; the key schedule and GHASH table are computed once. */
export class AesGcm {
  constructor(key) {
    this.rk = expandKey(bytes(key, "key"));
    const h = new Int32Array(4);
    encryptBlock(this.rk, 0, 0, 0, 0, h);
    this.t = ghashTables(h);
    this.j0 = new Int32Array(4);
    this.y = new Int32Array(4);
    this.block = new Uint8Array(16);
    this.view = new DataView(this.block.buffer);
    this.counter = new Int32Array(4);
    this.mask = new Int32Array(4);
  }

  /** J0 from the nonce (SP 800-38D, 7.1 step 2), into this.j0. */
  _j0(nonce) {
    const n = nonce;
    if (n.length === 12) {
      this.j0[0] = (n[0] << 24) | (n[1] << 16) | (n[2] << 8) | n[3];
      this.j0[1] = (n[4] << 24) | (n[5] << 16) | (n[6] << 8) | n[7];
      this.j0[2] = (n[8] << 24) | (n[9] << 16) | (n[10] << 8) | n[11];
      this.j0[3] = 1;
      return;
    }
    if (n.length === 0) throw new TypeError("AES-GCM: the nonce is empty");
    this.j0.fill(0);
    ghash(this.j0, this.t, n, 0, n.length);
    this._lengths(this.j0, 0, n.length);
  }

  /** Absorb the final block: the bit lengths of A and C, 64 bits each. */
  _lengths(y, aadLength, textLength) {
    const v = this.view;
    v.setUint32(0, Math.floor(aadLength / 0x20000000));
    v.setUint32(4, (aadLength * 8) >>> 0);
    v.setUint32(8, Math.floor(textLength / 0x20000000));
    v.setUint32(12, (textLength * 8) >>> 0);
    ghash(y, this.t, this.block, 0, 16);
  }

  /** The tag of (aad, ciphertext[0, n)) under the current J0, into this.y. */
  _tag(aad, ct, n) {
    const y = this.y;
    y.fill(0);
    ghash(y, this.t, aad, 0, aad.length);
    ghash(y, this.t, ct, 0, n);
    this._lengths(y, aad.length, n);
    const s = this.mask;
    encryptBlock(this.rk, this.j0[0], this.j0[1], this.j0[2], this.j0[3], s);
    for (let i = 0; i < 4; i++) y[i] ^= s[i];
  }

  _counter1() {
    const c = this.counter;
    c.set(this.j0);
    c[3] = (c[3] + 1) | 0;
    return c;
  }

  /** ciphertext || tag: 16 bytes longer than the plaintext, in ``into`` if given (a Uint8Array of
   * that length, not overlapping the plaintext), else in a new Uint8Array. */
  seal(nonce, plaintext, aad, into) {
    const pt = bytes(plaintext, "plaintext");
    const a = bytes(aad, "aad");
    this._j0(bytes(nonce, "nonce"));
    const n = pt.length;
    if (into !== undefined && (!(into instanceof Uint8Array) || into.length !== n + TAG_BYTES)) {
      throw new TypeError("AES-GCM: the output must be a Uint8Array 16 bytes longer than the plaintext");
    }
    const out = into ?? new Uint8Array(n + TAG_BYTES);
    ctr(this.rk, this._counter1(), pt, out, n);
    this._tag(a, out, n);
    wordsToBytes(this.y, out, n);
    return out;
  }

  /** The plaintext (a new Uint8Array), or null if the tag does not match (checked before decrypting). */
  open(nonce, sealed, aad) {
    const ct = bytes(sealed, "sealed");
    const a = bytes(aad, "aad");
    if (ct.length < TAG_BYTES) return null;
    this._j0(bytes(nonce, "nonce"));
    const n = ct.length - TAG_BYTES;
    this._tag(a, ct, n);
    let diff = 0;
    for (let i = 0; i < 4; i++) {
      const x = this.y[i];
      diff |= (ct[n + 4 * i] ^ (x >>> 24)) | (ct[n + 4 * i + 1] ^ ((x >>> 16) & 255)) |
              (ct[n + 4 * i + 2] ^ ((x >>> 8) & 255)) | (ct[n + 4 * i + 3] ^ (x & 255));
    }
    if (diff !== 0) return null;
    const out = new Uint8Array(n);
    ctr(this.rk, this._counter1(), ct, out, n);
    return out;
  }
}
