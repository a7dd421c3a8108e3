// What another app shared with the installed page (share-sw.js keeps it in Cache Storage):
// read here, offered to the terminal in the room, forgotten once sent or discarded.

import { humanSize } from "./protocol.js";
import { el, fileName } from "./ui.js";

const SHARED = "xfer-shared";
const MAX_AGE = 24 * 3600 * 1000; // ms: a share never sent is dropped after a day

/** Register the share target's worker (service workers exist in secure contexts only: an
 * https relay, or localhost; a phone at http://192.168.x.x has none, and no share target). */
export async function registerShareWorker() {
  if (!window.isSecureContext || !("serviceWorker" in navigator)) return false;
  try {
    await navigator.serviceWorker.register(new URL("share-sw.js", location.href), { scope: "./share" });
    return true;
  } catch {
    return false;
  }
}

/** {files: File[], text: string} kept by the share target, or null when there is nothing. */
export async function sharedItems() {
  if (!window.isSecureContext || typeof caches === "undefined") return null;
  try {
    if (!(await caches.has(SHARED))) return null;
    const cache = await caches.open(SHARED);
    const files = [];
    let text = "";
    for (const request of await cache.keys()) {
      const stamp = Number(new URL(request.url).pathname.split("/").at(-2));
      const response = await cache.match(request);
      if (!response || !(Date.now() - stamp < MAX_AGE)) {
        await cache.delete(request);
        continue;
      }
      if (response.headers.get("x-text")) {
        text = (await response.text()).slice(0, 65536);
        continue;
      }
      const blob = await response.blob();
      let name = "shared";
      try {
        name = decodeURIComponent(response.headers.get("x-name") || "shared");
      } catch { /* keep "shared" */ }
      const lastModified = Number(response.headers.get("x-modified")) || Date.now();
      files.push(new File([blob], name, { type: blob.type, lastModified }));
    }
    return files.length || text ? { files, text } : null;
  } catch {
    return null;
  }
}

/** Forget what was shared (sent, or discarded). */
export async function forgetShared() {
  try {
    await caches.delete(SHARED);
  } catch { /* nothing kept */ }
}

/** The card of shared ``files``: the list, ``hint`` (how to get them to a terminal, or null),
 * "Send to WHO" (disabled while there is no ``who``) and "Discard". */
export function sharedCard(files, who, hint) {
  const total = files.reduce((n, f) => n + f.size, 0);
  const list = el("ul", { class: "files" });
  for (const f of files.slice(0, 20)) list.append(el("li", { class: "file" }, fileName(f.name), el("span", { class: "size", text: humanSize(f.size) })));
  if (files.length > 20) list.append(el("li", { class: "hint", text: `… and ${files.length - 20} more` }));
  const send = el("button", { type: "button", class: "primary", disabled: !who }, who ? `Send to ${who}` : "Send");
  const discard = el("button", { type: "button" }, "Discard");
  const card = el("section", { class: "card shared", "aria-label": "Shared with xfer" },
    el("p", { class: "card-title", text: `Shared with xfer: ${files.length === 1 ? "1 file" : files.length + " files"}, ${humanSize(total)}` }),
    list,
    hint ? el("p", { class: "hint", text: hint }) : null,
    el("div", { class: "row buttons" }, send, discard));
  return { card, send, discard };
}
