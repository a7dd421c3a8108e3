// Noticing that the page was away: hidden (another app, another tab, the screen off), frozen
// by the browser, or asleep with the phone (no event at all: the page's timers just stop, so a
// tick that comes much later than asked for is the only trace). When it is back, the page says
// what happened to the transfers meanwhile (app.js).

import { howLong } from "./ui.js";

const TICK = 1000; // ms between ticks while the page is visible
const GAP = 4000; // ms: a tick this late means the page did not run (the phone slept)

/**
 * Calls ``onBack({since, ms, kind})`` when the page is back after an absence: ``kind`` is
 * "hidden" (visibilitychange), "paused" (the browser froze the page) or "slept" (a gap
 * between ticks while it was visible); ``since`` is when it went away (Date.now() ms).
 * Returns a check to call on other signs of life (a transfer's progress): after a sleep, the
 * messages that waited run before the tick does, and could end a transfer before it.
 */
export function watchAbsence(onBack) {
  let away = document.visibilityState === "hidden" ? { since: Date.now(), kind: "hidden" } : null;
  let last = Date.now();
  const back = () => {
    if (!away || document.visibilityState === "hidden") return;
    const { since, kind } = away;
    away = null;
    last = Date.now();
    onBack({ since, ms: last - since, kind });
  };
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") away ??= { since: Date.now(), kind: "hidden" };
    else back();
  });
  document.addEventListener("freeze", () => { away ??= { since: Date.now(), kind: "paused" }; });
  document.addEventListener("resume", back);
  const check = () => {
    const now = Date.now();
    if (!away && document.visibilityState === "visible" && now - last > GAP) {
      away = { since: last, kind: "slept" };
      back();
    }
    last = now;
  };
  setInterval(check, TICK);
  return check;
}

const WHERE = {
  hidden: (t) => `This page was in the background for ${t}`,
  paused: (t) => `The browser paused this page for ${t}`,
  slept: (t) => `The phone slept for ${t}`,
};

/**
 * What to say about ``transfers`` (each {kind: "upload"|"download", state, error}, where state
 * is "running", "resuming", "resumed" (running again after a break), "done" or "failed") after an absence of ``ms`` of ``kind``;
 * ``online``: the page's own connection is up. Null when nothing ran meanwhile.
 */
export function absenceNote(kind, ms, transfers, online) {
  if (!transfers.length) return null;
  const where = WHERE[kind](howLong(ms));
  const noun = (list) => (list.length > 1 ? "the transfers" : `the ${list[0].kind}`);
  const by = (state) => transfers.filter((t) => t.state === state);
  const failed = by("failed");
  if (failed.length) {
    const what = failed.some((t) => t.kind === "download")
      ? "ask the sender to send again"
      : "pick the files again to send them";
    return `${where}, and ${noun(failed)} stopped meanwhile: ${what}.`;
  }
  const resuming = by("resuming");
  if (resuming.length) {
    return online
      ? `${where}; the receiver left meanwhile: the upload goes on once it is back.`
      : `${where}, and the connection was lost meanwhile: resuming once it is back.`;
  }
  if (by("resumed").length) return `${where}, and the connection was lost meanwhile; the upload goes on from where it stopped.`;
  const running = by("running");
  if (running.length) return `${where}; ${noun(running)} ${running.length > 1 ? "go" : "goes"} on.`;
  return `${where}; ${noun(transfers)} finished meanwhile.`;
}
