// The xfer wire protocol as the page speaks it: room codes, room ids, chunk headers.
// Its numbers and codes are not copied here: the relay serves them in constants.js,
// made from src/xfer/protocol and its Limits, and this module imports them before
// anything else of the page runs (and so before it connects).

import SERVED from "./constants.js";
import { Sha256 } from "./sha256.js";

export const PROTOCOL_VERSION = SERVED.protocol_version;
export const CLIENT = "xfer-web/1"; // the page's own name and version, in hello
export const HEADER_SIZE = SERVED.header_size;
export const CHUNK_SIZE = SERVED.chunk_size;
export const WINDOW = SERVED.window;
export const MAX_PEER_NAME = SERVED.max_peer_name_chars;
export const MAX_TEXT = SERVED.max_text_chars;
export const CLOSE = SERVED.close_codes; // the relay's WebSocket close codes, by name

const ALPHABET = SERVED.code_alphabet; // Crockford base32
const CODE_CHARS = SERVED.code_chars;
const GROUP = new RegExp(`.{${SERVED.code_group}}`, "g");
const ROOM_ID_CONTEXT = SERVED.room_id_context;

/** A typed or linked room code in its canonical grouped form, or null. */
export function parseCode(text) {
  if (typeof text !== "string" || text.length > 64) return null;
  const raw = text.replace(/[\s\-_.]+/g, "").toUpperCase().replace(/O/g, "0").replace(/[IL]/g, "1");
  if (raw.length !== CODE_CHARS) return null;
  for (const c of raw) if (!ALPHABET.includes(c)) return null;
  return raw.match(GROUP).join("-");
}

export function shortCode(code) {
  const groups = code.split("-");
  return groups.length > 2 ? `${groups[0]}-…-${groups[groups.length - 1]}` : code;
}

/** What the relay sees instead of the code: SHA-256 under a context string, 32 hex digits. */
export function roomId(code) {
  const canonical = code.replace(/-/g, "");
  const h = new Sha256();
  h.update(new TextEncoder().encode(ROOM_ID_CONTEXT + canonical));
  return h.hexdigest().slice(0, 32);
}

/** The header of a binary chunk frame (frames.py: "!B3xIIIIQ"), written into ``frame``. */
export function writeChunkHeader(frame, from, to, transfer, index, offset) {
  const view = new DataView(frame.buffer, frame.byteOffset, HEADER_SIZE);
  view.setUint32(0, SERVED.chunk_kind * 0x1000000); // the kind, then three reserved zero bytes
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
