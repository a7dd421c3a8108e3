// What the page holds of what it received: small images (kept to show a preview, and to pass
// on), and texts; and passing them on to other apps with the Web Share API where there is one.
//
// Files reach the phone through the browser's own downloader (the relay's bridge), so the page
// never holds them: nothing to preview or share. Only an image of at most PREVIEW_MAX bytes is
// fetched by the page itself from the same one-time link, kept as a Blob, saved from it, and
// shown; a larger file, or one that is not an image, is never read into the page's memory.

import { cleanText } from "./protocol.js";
import { el } from "./ui.js";

export const PREVIEW_MAX = 8 * 1024 * 1024; // bytes: the largest image the page keeps to preview

// Raster images only, by extension (the name is the sender's; the bytes are checked by the
// browser's decoder, in an <img>, which runs nothing).
const IMAGE_TYPES = {
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp",
  avif: "image/avif", bmp: "image/bmp",
};

/** The image type of an offered file the page may keep to preview, or null. */
export function previewType(file) {
  if (!(file.size > 0 && file.size <= PREVIEW_MAX)) return null;
  const ext = /\.([A-Za-z0-9]{1,5})$/.exec(file.name)?.[1]?.toLowerCase();
  return (ext && IMAGE_TYPES[ext]) || null;
}

/** The file at ``url`` as a Blob of ``type``, read as it streams; never more than ``cap`` bytes
 * (the size in the offer is the sender's word: past the cap the page stops reading). */
export async function fetchCapped(url, cap, type) {
  const abort = new AbortController();
  const response = await fetch(url, { credentials: "same-origin", signal: abort.signal });
  if (!response.ok || !response.body) throw new Error(`the relay answered ${response.status}`);
  const parts = [];
  let size = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > cap) {
      abort.abort();
      throw new Error("larger than it said");
    }
    parts.push(value);
  }
  return new Blob(parts, { type });
}

/** A safe name for the browser's "save as": the last path part, no control characters. */
function saveName(name) {
  const last = cleanText(String(name), 255).split(/[\\/]/).pop().replace(/\ufffd/g, "_").trim();
  return last && last !== "." && last !== ".." ? last : "file";
}

/** Save ``blob`` through the browser's downloader, as the link for a bigger file would. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: saveName(name), class: "offscreen", tabindex: -1 });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the downloader has read it by then
}

/** A small preview of a received image, from the Blob the page holds (its own blob: URL). */
export function preview(blob, name) {
  const url = URL.createObjectURL(blob);
  const img = el("img", { class: "preview", alt: `Preview of ${cleanText(name, 200)}`, src: url, decoding: "async" });
  img.addEventListener("error", () => { URL.revokeObjectURL(url); img.remove(); }, { once: true });
  return img;
}

/** Whether this browser can hand ``data`` ({text} or {files}) to other apps (Web Share API). */
export function canShare(data) {
  if (typeof navigator.share !== "function") return false;
  if (typeof navigator.canShare !== "function") return !data.files;
  try {
    return navigator.canShare(data);
  } catch {
    return false;
  }
}

/** A "Share" button that hands ``data`` to the system's share sheet, or null where the browser
 * has no Web Share API for it (most desktops, and plain-http pages: it needs a secure context). */
export function shareButton(data, label) {
  if (!canShare(data)) return null;
  const button = el("button", { type: "button", class: "share", "aria-label": label }, "Share");
  button.addEventListener("click", async () => {
    try {
      await navigator.share(data);
    } catch { /* the person closed the share sheet: nothing to say */ }
  });
  return button;
}
