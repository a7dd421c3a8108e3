// HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869) on the page's own SHA-256, for
// pages without WebCrypto (see aes.js for why). Key derivation hashes a few hundred
// bytes per key, so this favours plain code over speed. Tested against RFC 4231,
// RFC 5869 and Python's ``cryptography`` (tests/browser/test_page_crypto.py).

import { Sha256 } from "./sha256.js";

const BLOCK = 64; // SHA-256's block size
export const HASH_BYTES = 32;

function bytes(data, what) {
  if (data == null) return new Uint8Array(0);
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`HKDF: ${what} must be bytes or a string`);
}

function digestOf(hash) {
  const hex = hash.hexdigest();
  const out = new Uint8Array(HASH_BYTES);
  for (let i = 0; i < HASH_BYTES; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

/** HMAC-SHA256 under one key: the padded key's two hash states are computed once. */
export class HmacSha256 {
  constructor(key) {
    let k = bytes(key, "key");
    if (k.length > BLOCK) k = digestOf(new Sha256().update(k));
    const pad = new Uint8Array(BLOCK);
    pad.set(k);
    for (let i = 0; i < BLOCK; i++) pad[i] ^= 0x36;
    this.inner = new Sha256().update(pad);
    for (let i = 0; i < BLOCK; i++) pad[i] ^= 0x36 ^ 0x5c;
    this.outer = new Sha256().update(pad);
  }

  /** The MAC of the concatenated parts (32 bytes). */
  mac(...parts) {
    const inner = this.inner.copy();
    for (const part of parts) inner.update(bytes(part, "data"));
    return digestOf(this.outer.copy().update(digestOf(inner)));
  }
}

export function hmacSha256(key, data) {
  return new HmacSha256(key).mac(data);
}

/** RFC 5869 2.2: PRK = HMAC(salt, IKM); no salt (or an empty one) is 32 zero bytes. */
export function hkdfExtract(salt, ikm) {
  const s = bytes(salt, "salt");
  return hmacSha256(s.length ? s : new Uint8Array(HASH_BYTES), bytes(ikm, "ikm"));
}

/** RFC 5869 2.3: T(i) = HMAC(PRK, T(i-1) | info | i), the first ``length`` bytes of T(1) | T(2) | ... */
export function hkdfExpand(prk, info, length) {
  if (!Number.isInteger(length) || length < 0 || length > 255 * HASH_BYTES) {
    throw new RangeError("HKDF: length must be 0 to 8160 bytes");
  }
  const mac = new HmacSha256(prk);
  const inf = bytes(info, "info");
  const out = new Uint8Array(length);
  let t = new Uint8Array(0);
  for (let i = 1, at = 0; at < length; i++, at += HASH_BYTES) {
    t = mac.mac(t, inf, new Uint8Array([i]));
    out.set(t.subarray(0, Math.min(HASH_BYTES, length - at)), at);
  }
  return out;
}

/** HKDF-SHA256: extract with ``salt`` (null for none), then expand with ``info`` to ``length`` bytes. */
export function hkdf(ikm, salt, info, length) {
  return hkdfExpand(hkdfExtract(salt, ikm), info, length);
}
