// DOM helpers. Everything a peer sent goes in as text (textContent, attributes),
// never as HTML: no HTML string is ever parsed from what a peer sent.

import { cleanText, humanSize } from "./protocol.js";

export const $ = (id) => document.getElementById(id);

/** el("li", {class: "x", "aria-label": "y"}, child, "text", ...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A file name that keeps its start and its extension when it is long; the whole name in the
 * title, shown on tap. Not a tab stop: a screen reader reads the whole name (head and tail are
 * one text), so a focusable name would be a stop that does nothing. */
export function fileName(name, cls = "name") {
  const clean = cleanText(name, 1024).replace(/[\n\t]/g, "\ufffd"); // one line, always
  const dot = clean.lastIndexOf(".");
  const tailLength = Math.min(12, Math.max(6, dot > 0 ? clean.length - dot + 4 : 8));
  if (clean.length <= tailLength + 4) return el("span", { class: cls, title: clean }, el("span", { class: "head", text: clean }));
  return el(
    "span",
    { class: cls, title: clean, onclick: (event) => event.currentTarget.classList.toggle("whole") },
    el("span", { class: "head", text: clean.slice(0, clean.length - tailLength) }),
    el("span", { class: "tail", text: clean.slice(clean.length - tailLength) }),
  );
}

export function peerLabel(peer) {
  if (!peer) return "someone";
  const name = cleanText(peer.name || peer.role || "peer", 64);
  return peer.client && peer.client.startsWith("xfer/") ? `${name} (xfer)` : name;
}

export function speed(bytes, ms) {
  return ms > 200 ? `${humanSize((bytes * 1000) / ms)}/s` : "";
}

/** One row per file: name, size, bar, status. Returns an updater. */
export function transferRow(list, file, verb) {
  const bar = el("progress", { max: Math.max(file.size, 1), value: 0 });
  const status = el("span", { class: "status-line", text: "Waiting…" });
  const check = el("span", { class: "check", "aria-hidden": "true", text: "" });
  const row = el(
    "li",
    { class: "transfer" },
    el("div", { class: "row-top" }, fileName(file.name), el("span", { class: "size", text: humanSize(file.size) }), check),
    bar,
    status,
  );
  bar.setAttribute("aria-label", `${verb} ${cleanText(file.name, 200)}`);
  list.append(row);
  let started = 0;
  let from = 0; // where this run of the file started (a resumed upload starts past 0)
  return {
    row,
    start(offset = 0) {
      started = performance.now();
      from = offset;
      bar.value = offset;
      status.textContent = offset > 0 ? `Resumed at ${humanSize(offset)}` : verb === "Sending" ? "Sending…" : "Downloading…";
      row.dataset.state = "active";
    },
    /** Not started yet: why (the receiver is deciding, or the file is next in line). */
    waiting(text) {
      if (row.dataset.state) return;
      status.textContent = text;
    },
    resuming(text = "Resuming…") {
      if (row.dataset.state === "done" || row.dataset.state === "failed") return;
      started = 0;
      row.dataset.state = "resuming";
      status.textContent = text;
    },
    progress(bytes) {
      if (row.dataset.state === "done" || row.dataset.state === "failed" || row.dataset.state === "resuming") return;
      bar.value = bytes;
      const pct = file.size ? Math.floor((bytes * 100) / file.size) : 100;
      const rate = started ? speed(bytes - from, performance.now() - started) : "";
      status.textContent = `${humanSize(bytes)} of ${humanSize(file.size)} · ${pct}%${rate ? " · " + rate : ""}`;
    },
    done(text) {
      bar.value = Math.max(file.size, 1);
      check.textContent = "✓";
      row.dataset.state = "done";
      status.textContent = text;
    },
    failed(text) {
      row.dataset.state = "failed";
      status.textContent = text;
    },
  };
}

/** Copy text; the async clipboard API exists only in secure contexts, so fall back to execCommand. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      /* fall through */
    }
  }
  const area = el("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  area.setSelectionRange(0, text.length);
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
