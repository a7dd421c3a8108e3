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

/** "40 s", "2 min", "1 h 5 min" */
export function howLong(ms) {
  const s = Math.max(1, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h${min % 60 ? ` ${min % 60} min` : ""}`;
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

/** The overall bar of a batch (several files): one bar, the bytes, the percentage and the time
 * left at the speed so far. Returns an updater; ``progress`` takes the bytes done in all files. */
export function batchBar(box, total, verb) {
  const bar = el("progress", { class: "overall", max: Math.max(total, 1), value: 0, "aria-label": `${verb}, all files` });
  const line = el("span", { class: "status-line overall-line", text: "" });
  box.append(bar, line);
  let from = null; // {at, bytes}: where the speed is measured from (a resume starts again)
  return {
    progress(bytes, restart = false) {
      if (restart || from === null) from = { at: performance.now(), bytes };
      bar.value = bytes;
      const pct = Math.floor((bytes * 100) / Math.max(total, 1));
      const ms = performance.now() - from.at;
      const rate = ms > 1000 ? ((bytes - from.bytes) * 1000) / ms : 0;
      const left = rate > 0 ? `about ${howLong(((total - bytes) * 1000) / rate)} left` : "";
      line.textContent = [`${humanSize(bytes)} of ${humanSize(total)}`, `${pct}%`, left].filter(Boolean).join(" · ");
    },
    done(text) {
      bar.value = Math.max(total, 1);
      bar.classList.add("done");
      line.textContent = text;
    },
  };
}
