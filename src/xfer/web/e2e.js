// Protocol 2.0's primitives for the page, one async API over two implementations:
// WebCrypto where crypto.subtle exists (https, localhost), the page's own code where it
// does not (a phone at http://192.168.x.x). Both give the same bytes (checked in
// tests/browser/test_page_crypto.py), and the same as Python's xfer.protocol.keys:
//
//   const key = await importKey(raw32);                  // once per key
//   const sealed = await key.seal(nonce12, plaintext, aad);  // ciphertext || 16-byte tag
//   await key.seal(nonce12, plaintext, aad, into)  // the same, written into ``into`` where it can
//                                                  // (the page's own code; WebCrypto returns a new one)
//   const plain = await key.open(nonce12, sealed, aad);      // throws Tampered on a bad tag
//   const okm = await deriveKey(pakeKey, "control sender", { salt });  // = keys.hkdf
//   counterNonce(n), chunkNonce(index, offset)           // = keys.Channel's, ContentKey's
//   const ch = await Channel.create(raw32); await ch.seal(plaintext, aad)  // = keys.Channel
//   const keys = await PairKeys.fromLink(secret, senderNonce, pageNonce, side)  // = keys.link_keys
//   const content = await ContentKey.create(); await content.seal(index, offset, data, header)
//
// Bytes are Uint8Arrays (ArrayBuffers and strings, as UTF-8, are accepted as input).

import { AesGcm, TAG_BYTES } from "./aes.js";
import { hkdf as ownHkdf } from "./hkdf.js";
import { Sha256 } from "./sha256.js";

export { TAG_BYTES };
export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const CONTEXT = "xfer v2 "; // every HKDF info starts with it (keys.py's _CONTEXT)

/** A sealed frame or chunk did not open: changed, dropped, replayed or reordered on the way. */
export class Tampered extends Error {
  constructor(message = "a message between the peers was changed on the way") {
    super(message);
    this.name = "Tampered";
  }
}

function bytes(data, what) {
  if (data == null) return new Uint8Array(0);
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`${what} must be bytes`);
}

function checkKey(raw) {
  const key = bytes(raw, "a key");
  if (key.length !== KEY_BYTES) throw new TypeError("an AES-256-GCM key has 32 bytes");
  return key;
}

function checkNonce(nonce) {
  const n = bytes(nonce, "a nonce");
  if (n.length !== NONCE_BYTES) throw new TypeError("a nonce has 12 bytes");
  return n;
}

function checkLength(length) {
  if (!Number.isInteger(length) || length < 1 || length > 255 * 32) throw new RangeError("HKDF: 1 to 8160 bytes");
  return length;
}

/** The page's own AES-256-GCM and HKDF-SHA256 (aes.js, hkdf.js). */
const own = {
  name: "page",
  async importKey(raw) {
    const gcm = new AesGcm(checkKey(raw));
    return {
      backend: "page",
      async seal(nonce, plaintext, aad, into) {
        return gcm.seal(checkNonce(nonce), bytes(plaintext, "plaintext"), bytes(aad, "aad"), into);
      },
      async open(nonce, sealed, aad) {
        const out = gcm.open(checkNonce(nonce), bytes(sealed, "a sealed message"), bytes(aad, "aad"));
        if (out === null) throw new Tampered();
        return out;
      },
    };
  },
  async hkdf(ikm, salt, info, length) {
    return ownHkdf(bytes(ikm, "ikm"), bytes(salt, "salt"), bytes(info, "info"), checkLength(length));
  },
};

/** WebCrypto's (crypto.subtle), only in secure contexts. */
const webcrypto = {
  name: "webcrypto",
  async importKey(raw) {
    const subtle = globalThis.crypto.subtle;
    const key = await subtle.importKey("raw", checkKey(raw), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
    const params = (nonce, aad) => ({ name: "AES-GCM", iv: checkNonce(nonce), additionalData: bytes(aad, "aad"), tagLength: 128 });
    return {
      backend: "webcrypto",
      async seal(nonce, plaintext, aad) {
        return new Uint8Array(await subtle.encrypt(params(nonce, aad), key, bytes(plaintext, "plaintext")));
      },
      async open(nonce, sealed, aad) {
        const p = params(nonce, aad);
        try {
          return new Uint8Array(await subtle.decrypt(p, key, bytes(sealed, "a sealed message")));
        } catch (err) {
          if (err && err.name === "OperationError") throw new Tampered();
          throw err;
        }
      },
    };
  },
  async hkdf(ikm, salt, info, length) {
    const subtle = globalThis.crypto.subtle;
    const key = await subtle.importKey("raw", bytes(ikm, "ikm"), "HKDF", false, ["deriveBits"]);
    const params = { name: "HKDF", hash: "SHA-256", salt: bytes(salt, "salt"), info: bytes(info, "info") };
    return new Uint8Array(await subtle.deriveBits(params, key, 8 * checkLength(length)));
  },
};

export function hasWebCrypto() {
  return typeof globalThis.crypto === "object" && globalThis.crypto !== null && typeof globalThis.crypto.subtle === "object" &&
    globalThis.crypto.subtle !== null;
}

/** The implementation to use: "webcrypto" where it exists, else "page"; or the one named. */
export function backend(name = hasWebCrypto() ? "webcrypto" : "page") {
  if (name === "webcrypto") {
    if (!hasWebCrypto()) throw new Error("WebCrypto is missing here (not a secure context)");
    return webcrypto;
  }
  if (name === "page") return own;
  throw new Error(`no crypto backend named ${name}`);
}

/** An AES-256-GCM key: { backend, seal(nonce, plaintext, aad), open(nonce, sealed, aad) }, all async. */
export function importKey(raw, name) {
  return backend(name).importKey(raw);
}

/** HKDF-SHA256 as RFC 5869 has it (salt null or empty: 32 zero bytes). */
export function hkdf(ikm, salt, info, length, name) {
  return backend(name).hkdf(ikm, salt, info, length);
}

/** Python's ``xfer.protocol.keys.hkdf``: ``info`` gets the "xfer v2 " prefix. */
export function deriveKey(key, info, { salt = null, length = KEY_BYTES, backend: name } = {}) {
  const suffix = bytes(info, "info");
  const full = new Uint8Array(CONTEXT.length + suffix.length);
  full.set(new TextEncoder().encode(CONTEXT));
  full.set(suffix, CONTEXT.length);
  return hkdf(key, salt, full, length, name);
}

function nonce(high, low) {
  if (!Number.isSafeInteger(low) || low < 0) throw new RangeError("a nonce's counter or offset is 0 to 2^53 - 1");
  const out = new Uint8Array(NONCE_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, high);
  v.setUint32(4, Math.floor(low / 0x100000000));
  v.setUint32(8, low >>> 0);
  return out;
}

/** A channel's implicit nonce: 4 zero bytes, then the 64-bit big-endian counter (keys.Channel). */
export function counterNonce(counter) {
  return nonce(0, counter);
}

/** A chunk's nonce: the 32-bit file index, then the 64-bit offset (keys.ContentKey). */
export function chunkNonce(index, offset) {
  if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) throw new RangeError("a file index is 0 to 2^32 - 1");
  return nonce(index, offset);
}

/**
 * One direction of a control channel, as keys.Channel: the nonce is a counter both ends keep
 * (never sent). Each call takes the next counter when it is made, so calls that overlap still
 * use the nonces in call order; an open that fails uses its counter up too (the peer's
 * transfer stops then anyway).
 */
export class Channel {
  static async create(raw, name) {
    return new Channel(await importKey(raw, name));
  }

  constructor(key) {
    this.key = key;
    this.counter = 0;
  }

  _next() {
    if (this.counter >= Number.MAX_SAFE_INTEGER) throw new Error("too many messages under one key");
    return counterNonce(this.counter++);
  }

  seal(plaintext, aad) {
    return this.key.seal(this._next(), plaintext, aad);
  }

  open(sealed, aad) {
    return this.key.open(this._next(), sealed, aad);
  }
}

/** A constant-time comparison of two byte strings (a tag the other side sent, and ours). */
function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function fromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

/** 32 fresh random bytes (a content key) or ``n`` of them; getRandomValues exists on plain http too. */
export function randomBytes(n = KEY_BYTES) {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** The other side's keys did not match ours: a link for another room (or an old one). */
export class WrongLink extends Error {
  constructor(message = "the link's key does not match this room") {
    super(message);
    this.name = "WrongLink";
  }
}

const SIDES = new Set(["sender", "receiver"]);

/**
 * The keys one page shares with one terminal (keys.PairKeys): from the link's secret instead of
 * a PAKE, ``K = SHA-256("xfer v2 link " || secret)``; every key is HKDF(K, salt = the sender's
 * nonce || the receiver's nonce, info = "xfer v2 " + purpose). ``side``: the page's own side
 * toward that terminal ("receiver" toward a sender, "sender" toward a receiver).
 */
export class PairKeys {
  static async fromLink(secret, senderNonce, receiverNonce, side, name) {
    const raw = bytes(secret, "a link secret");
    if (raw.length !== KEY_BYTES) throw new TypeError("a link secret has 32 bytes");
    const hash = new Sha256().update(new TextEncoder().encode(CONTEXT + "link ")).update(raw);
    const salt = new Uint8Array(2 * 16);
    const [a, b] = [bytes(senderNonce, "a nonce"), bytes(receiverNonce, "a nonce")];
    if (a.length !== 16 || b.length !== 16) throw new TypeError("a handshake nonce has 16 bytes");
    salt.set(a);
    salt.set(b, 16);
    return new PairKeys(fromHex(hash.hexdigest()), salt, side, name);
  }

  constructor(key, salt, side, name) {
    if (!SIDES.has(side)) throw new TypeError("a side is sender or receiver");
    this.key = key;
    this.salt = salt;
    this.side = side;
    this.other = side === "sender" ? "receiver" : "sender";
    this.backendName = name;
  }

  derive(purpose) {
    return deriveKey(this.key, purpose, { salt: this.salt, backend: this.backendName });
  }

  /** The tag this side sends first. */
  confirmation() {
    return this.derive(`confirm ${this.side}`);
  }

  /** The other side's tag: ``WrongLink`` when it is not what our keys give. */
  async check(tag) {
    const expected = await this.derive(`confirm ${this.other}`);
    if (!equalBytes(expected, bytes(tag, "a tag"))) throw new WrongLink();
  }

  async outgoing() {
    return Channel.create(await this.derive(`control ${this.side}`), this.backendName);
  }

  async incoming() {
    return Channel.create(await this.derive(`control ${this.other}`), this.backendName);
  }
}

/** The chunks of one round (keys.ContentKey): a fresh random key, nonce = (file index, offset). */
export class ContentKey {
  static async create(raw = randomBytes(), name) {
    const key = new ContentKey(raw);
    key.aead = await importKey(raw, name);
    return key;
  }

  constructor(raw) {
    this.raw = checkKey(raw);
    this.aead = null;
  }

  seal(index, offset, data, header) {
    return this.aead.seal(chunkNonce(index, offset), data, header);
  }

  open(index, offset, sealed, header) {
    return this.aead.open(chunkNonce(index, offset), sealed, header);
  }
}
