// The xfer wire protocol as the page speaks it: the link it joins by, chunk headers,
// base64. Its numbers and codes are not copied here: the relay serves them in
// constants.js, made from src/xfer/protocol and its Limits, and this module imports
// them before anything else of the page runs (and so before it connects).

import SERVED from "./constants.js";

export const PROTOCOL_VERSION = SERVED.protocol_version;
export const CLIENT = "xfer-web/2"; // the page's own name and version, in hello
export const HEADER_SIZE = SERVED.header_size;
export const CHUNK_SIZE = SERVED.chunk_size;
export const CHUNK_KIND = SERVED.chunk_kind; // the first byte of a binary chunk frame
export const WINDOW = SERVED.window;
export const MAX_PEER_NAME = SERVED.max_peer_name_chars;
export const MAX_TEXT = SERVED.max_text_chars;
export const CLOSE = SERVED.close_codes; // the relay's WebSocket close codes, by name
export const BUILTIN_RELAY = SERVED.builtin_relay === true; // the relay runs inside the sending xfer itself
const MAX_NAMEPLATE = SERVED.max_nameplate;
const SECRET_CHARS = SERVED.link_secret_chars; // 32 bytes in base64url, unpadded

/**
 * The link's fragment, ``7.<43 characters of base64url>`` (keys.link_fragment): the nameplate the
 * relay knows the room by, and the 32-byte secret the page's keys come from. Null if it is not one.
 * Browsers never send a fragment to a server, so the secret never reaches the relay.
 */
export function parseLink(fragment) {
  if (typeof fragment !== "string" || fragment.length > 64) return null;
  const match = /^([1-9][0-9]{0,5})\.([A-Za-z0-9_-]+)$/.exec(fragment.trim());
  if (!match || match[2].length !== SECRET_CHARS) return null;
  const nameplate = Number(match[1]);
  if (nameplate > MAX_NAMEPLATE) return null;
  let secret;
  try {
    secret = b64decode(match[2].replace(/-/g, "+").replace(/_/g, "/") + "=");
  } catch {
    return null;
  }
  if (secret.length !== 32) return null;
  return { nameplate: String(nameplate), secret };
}

/** Standard base64 with padding, as the protocol's binary fields are (btoa's alphabet). */
export function b64encode(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(text);
}

/** Bytes of standard base64; throws on anything else. */
export function b64decode(text) {
  if (typeof text !== "string" || text.length % 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new TypeError("not base64");
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** The header of a binary chunk frame (frames.py: "!B3xIIIIQ"), written into ``frame``. With
 * ``from`` and ``to`` 0 it is a sealed chunk's associated data: what the relay may not change. */
export function writeChunkHeader(frame, from, to, transfer, index, offset) {
  const view = new DataView(frame.buffer, frame.byteOffset, HEADER_SIZE);
  view.setUint32(0, CHUNK_KIND * 0x1000000); // the kind, then three reserved zero bytes
  view.setUint32(4, from);
  view.setUint32(8, to);
  view.setUint32(12, transfer);
  view.setUint32(16, index);
  view.setUint32(20, Math.floor(offset / 0x100000000));
  view.setUint32(24, offset % 0x100000000);
}

/** Hex from crypto.getRandomValues, which (unlike randomUUID) exists on plain http pages. */
export function randomHex(bytes) {
  const buf = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function randomId() {
  const [n] = crypto.getRandomValues(new Uint32Array(1));
  return n || 1;
}

/** A readable default name from the user agent: "Pixel 7 (Chrome)", "iPhone Safari", "Linux Firefox". */
export function deviceName(ua) {
  const browser =
    /EdgA?\//.test(ua) ? "Edge"
    : /OPR\//.test(ua) ? "Opera"
    : /SamsungBrowser/.test(ua) ? "Samsung Internet"
    : /Firefox|FxiOS/.test(ua) ? "Firefox"
    : /CriOS|Chrome\//.test(ua) ? "Chrome"
    : /Safari/.test(ua) ? "Safari"
    : "Browser";
  const model = /Android [\d.]+; ([^;)]+)\)/.exec(ua);
  if (model && model[1].trim().length > 1 && !/^K$|Build/.test(model[1].trim())) {
    return `${model[1].trim().slice(0, 40)} (${browser})`;
  }
  const platform =
    /Android/.test(ua) ? "Android"
    : /iPhone/.test(ua) ? "iPhone"
    : /iPad/.test(ua) ? "iPad"
    : /CrOS/.test(ua) ? "Chromebook"
    : /Windows/.test(ua) ? "Windows"
    : /Macintosh|Mac OS X/.test(ua) ? "Mac"
    : /Linux/.test(ua) ? "Linux"
    : "";
  return platform ? `${platform} ${browser}` : browser;
}

/** Sizes as units.py prints them: decimal, one decimal place. */
export function humanSize(n) {
  if (n < 1000) return `${Math.floor(n)} B`;
  for (const unit of ["kB", "MB", "GB", "TB", "PB"]) {
    n /= 1000;
    if (n < 1000 || unit === "PB") return `${n.toFixed(1)} ${unit}`;
  }
  return "";
}

/** Strip what should never be shown from a peer's string: control, bidi and zero-width characters. */
export function cleanText(s, max = 10000) {
  const text = String(s).replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, "\ufffd");
  return text.length > max ? text.slice(0, max) + "…" : text;
}
