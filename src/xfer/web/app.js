// The page: join the room in the URL fragment, show who is here, send and receive.

import { absenceNote, watchAbsence } from "./absence.js";
import { RoomConnection } from "./connection.js";
import { leftWell, peersHint } from "./hints.js";
import { BUILTIN_RELAY, CLOSE, MAX_PEER_NAME, MAX_TEXT, cleanText, deviceName, humanSize, parseLink } from "./protocol.js";
import { forgetShared, registerShareWorker, sharedCard, sharedItems } from "./shared.js";
import { PREVIEW_MAX, fetchCapped, preview, previewType, saveBlob, shareButton } from "./received.js";
import { startSaver } from "./saver.js";
import { SealedDownload } from "./sealed.js";
import { Download, Upload } from "./transfers.js";
import { $, batchBar, copyText, el, fileName, peerLabel, transferRow } from "./ui.js";

let conn = null;
let countdown = 0;
let pendingName = null; // a rename that waits for the transfers to end
let finishedWith = null; // {id, who, texts}: the terminal the last transfer ended well with (or that only sent texts), while no other runs
let finished = null; // leftWell's words, once it left (the session is over, and it went well)
const offeredBy = new Set(); // terminals that offered files to this page
const seen = new Map(); // terminal id -> {who, role, since}: what the page knew of it, kept after it left
let wentElsewhere = null; // a sender that left without offering here while another device was in the room
let left = null; // who left last, leaving nobody: the room is not waiting for its first terminal any more
const ELSEWHERE_AFTER = 3000; // ms: a sender offers at once, so one that did not is busy with another device
const active = new Set(); // running uploads and downloads: they see every message

function myName() {
  try {
    const saved = localStorage.getItem("xfer-name");
    if (saved) return saved.slice(0, MAX_PEER_NAME);
  } catch { /* storage may be off */ }
  return deviceName(navigator.userAgent).slice(0, MAX_PEER_NAME);
}

let announcedAt = 0;

/** Say ``text`` in the live region; what comes within a second of the last is said with it
 * (a join right after "Connected", a leave with "finished"), not instead of it. */
function announce(text) {
  const region = $("announce");
  const now = Date.now();
  const recent = now - announcedAt < 1000 && region.textContent;
  if (recent && region.textContent.endsWith(text)) return;
  region.textContent = recent ? `${region.textContent} ${text}` : text;
  announcedAt = now;
}

// -- joining -------------------------------------------------------------------

let starts = 0; // start() calls: a later one (a new fragment) wins

async function start() {
  const fragment = location.hash.replace(/^#/, "");
  const link = parseLink(fragment);
  const mine = ++starts;
  if (conn) leaveRoom();
  conn = null;
  if (!link) {
    // There is no code to type on the page: the link holds the room's key, so only the QR code will do.
    showJoin(fragment ? "This link is not a whole xfer link. Scan the QR code again." : null);
    return;
  }
  $("join").hidden = true;
  $("room").hidden = false;
  $("room-line").hidden = false;
  $("room-code").textContent = link.nameplate;
  setStatus("connecting", "Connecting…");
  // Downloads sealed end to end where the page can save them itself (saver.js); else through the relay's bridge.
  const sealedDownloads = await startSaver();
  if (mine !== starts) return;
  conn = new RoomConnection(link, myName(), { sealedDownloads });
  conn.chunks = async (frame) => {
    for (const t of [...active]) if (t.chunk && (await t.chunk(frame))) return;
  };
  conn.addEventListener("state", (e) => {
    showState(e.detail);
    sayAway();
  });
  conn.addEventListener("peers", renderPeers);
  conn.addEventListener("message", (e) => onMessage(e.detail));
  conn.addEventListener("peer-left", (e) => {
    for (const t of [...active]) t.handle({ type: "peer-left", peer_id: e.detail });
    const gone = seen.get(e.detail);
    if (finishedWith && finishedWith.id === e.detail && !active.size && !conn.peers.size) {
      finished = leftWell(finishedWith.who, finishedWith.texts);
      announce(finished);
    } else if (gone && gone.role === "sender" && !offeredBy.has(e.detail) && (gone.elsewhere || anotherDevice())) {
      wentElsewhere = gone.who;
      announce(`${gone.who} sent its files to another device and left.`);
    } else if (gone) {
      announce(`${gone.who} left.`);
      left = gone.who;
    }
    renderPeers();
  });
  conn.addEventListener("peer-joined", (e) => {
    finished = wentElsewhere = left = null;
    const peer = e.detail;
    if (peer) announce(`${peerLabel(peer)} joined.`);
    if (peer && peer.role === "sender") setTimeout(renderPeers, ELSEWHERE_AFTER + 100);
    renderPeers();
  });
  conn.addEventListener("disconnected", () => {
    for (const t of [...active]) t.disconnected();
  });
  conn.connect();
  showCutOff();
}

function showJoin(message) {
  $("room").hidden = true;
  $("join").hidden = false;
  $("room-line").hidden = true;
  if (message) $("join-message").textContent = message;
  setStatus("idle", "Not in a room");
}

window.addEventListener("hashchange", start);

/** Another link in the address: the page goes to that room, and what it showed of this one goes
 * (its transfers end: their connection is gone for good). */
function leaveRoom() {
  conn.failure = "The page went to another room.";
  conn.close();
  for (const t of [...active]) if (t.fail) t.fail(new Error(conn.failure)); else t.disconnected(); // an upload would wait to resume
  for (const id of ["messages", "offers", "transfers"]) $(id).replaceChildren();
  for (const id of ["incoming", "outgoing", "failure"]) $(id).hidden = true;
  offeredBy.clear();
  seen.clear();
  finished = finishedWith = wentElsewhere = left = away = null;
  sayAway();
}

function setStatus(state, text, retry = false) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
  $("retry").hidden = !retry;
}

const SPOKEN = {  // what the aria-live region says on a state change (the countdown itself is not read out)
  connected: "Connected to the room.", waiting: "Connection lost. Retrying.", closed: "The room is closed.",
  "not-found": "This room is not open.", replaced: "This room is open in another tab.",
};

/** Nothing more can happen in this room from this page: no "Try again". */
function roomGone() {
  return !conn || conn.stopped || ["closed", "replaced", "failed", "not-found", "wrong-link"].includes(conn.state);
}

/** The transfer with ``id`` ended well (or it sent a text: ``text``): if that terminal now leaves, the session is over. */
function endedWell(id, text = false) {
  const same = finishedWith?.id === id;
  if (text && same && !finishedWith.texts) return; // a text after its transfer: it still finished
  finishedWith = active.size ? null : { id, who: nameOf(id), texts: text ? (same ? finishedWith.texts : 0) + 1 : 0 };
}

/** The socket dropped right after a transfer that ended well, and nobody else is here: with its
 * own relay the computer is gone (it finished and left), so there is nothing to retry. */
function sessionOver(state) {
  if (!finishedWith || active.size || !["waiting", "closed"].includes(state)) return false;
  return finished !== null || (BUILTIN_RELAY && conn.closeCode === CLOSE.restart);
}

function showState({ state, until, message, gone }) {
  clearInterval(countdown);
  if (sessionOver(state)) {
    finished = finished || leftWell(finishedWith.who, finishedWith.texts);
    conn.close();
    setStatus("finished", "Finished");
    retireAgain();
    announce(finished);
    renderPeers();
    return;
  }
  if (SPOKEN[state] && $("status").dataset.state !== state) announce(SPOKEN[state]);
  switch (state) {
    case "connecting":
      setStatus("connecting", "Connecting…");
      break;
    case "reconnecting":
      setStatus("connecting", "Reconnecting…");
      break;
    case "connected":
      setStatus("connected", "Connected");
      break;
    case "waiting": {
      const tick = () => {
        const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
        setStatus("waiting", `Offline · retry in ${s} s`, true);
      };
      tick();
      countdown = setInterval(tick, 500);
      break;
    }
    case "not-found":
      showJoin(`Room ${conn.nameplate} is not open. It closes when everyone leaves: ask the other side to start again and scan its new QR code.`);
      setStatus("closed", "Room not open");
      break;
    case "wrong-link":
      showJoin(message);
      setStatus("closed", "Wrong link");
      announce(message);
      break;
    case "closed":
      setStatus("closed", "Room closed", !gone);
      if (gone) announce("The computer left, and the room closed with it.");
      break;
    case "replaced":
      setStatus("closed", "Open in another tab", true);
      break;
    default: // stopped for good: the header says so briefly, the box above the room says why
      setStatus("closed", message ? "Stopped" : "Cannot join");
      if (message) {
        announce(message);
        showFailure(message);
      }
  }
  if (conn) renderPeers();
  if (roomGone()) retireAgain();
}

/** The room is gone: a "Try again" could only fail, so it says what to do instead. */
function retireAgain() {
  for (const again of document.querySelectorAll("button.again")) {
    again.replaceWith(el("p", { class: "hint", text: AGAIN_ELSEWHERE }));
  }
}

const AGAIN_ELSEWHERE = "This room is closed. To send these files, start xfer on the computer again and scan its new QR code.";

$("retry").addEventListener("click", () => conn && conn.retryNow());

/** A stop for good (tampering, a broken peer): said once, plainly, above everything. */
function showFailure(message) {
  const box = $("failure");
  box.textContent = message;
  box.hidden = false;
}

// -- who is here ------------------------------------------------------------------

function renderPeers() {
  const list = $("peers");
  const chips = [];
  const me = el("li", { class: "chip me" },
    el("span", { text: `You: ${cleanText(conn.name, 64)}` }),
    pendingName ? el("span", { class: "hint", text: ` → ${cleanText(pendingName, 64)} once the transfers end` }) : null,
    el("button", { type: "button", class: "icon", "aria-label": "Rename yourself", title: "Rename", onclick: openRename }, "✎"));
  chips.push(me);
  for (const peer of conn.peers.values()) {
    chips.push(el("li", { class: "chip", "data-role": peer.role }, peerLabel(peer)));
  }
  list.replaceChildren(...chips);
  const others = conn.peers.size;
  const busy = conn.state === "connected" ? busyElsewhere() : null;
  $("peers-hint").textContent = peersHint({ state: conn.state, others, finished, wentElsewhere, left, busy });
  offerShared();
  $("text-send").disabled = others === 0;
}

/** Another device here (a page, or a peer the page has no keys with): the relay lists it, the page cannot name it. */
function anotherDevice() {
  return [...conn.members.values()].some((m) => m.id !== conn.peerId && !conn.peers.has(m.id));
}

/** A sender here that offered nothing to this page, long after it could have, while another device is in the room. */
function busyElsewhere() {
  const now = Date.now();
  for (const [id, peer] of conn.peers) {
    if (!seen.has(id)) seen.set(id, { who: peerLabel(peer), role: peer.role, since: now, elsewhere: false });
  }
  if (!anotherDevice()) return null;
  for (const [id, peer] of conn.peers) {
    const known = seen.get(id);
    if (peer.role === "sender" && !offeredBy.has(id) && now - known.since >= ELSEWHERE_AFTER) {
      known.elsewhere = true;
      return known.who;
    }
  }
  return null;
}

function openRename() {
  $("rename-form").hidden = false;
  $("rename-input").value = conn.name;
  $("rename-input").focus();
  $("rename-input").select();
}

$("rename-cancel").addEventListener("click", () => {
  $("rename-form").hidden = true;
});

$("rename-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("rename-input").value.trim().slice(0, MAX_PEER_NAME);
  $("rename-form").hidden = true;
  if (!name || name === conn.name) return;
  try {
    localStorage.setItem("xfer-name", name);
  } catch { /* not kept, still used */ }
  // The relay knows names only from a new sealed hi, so a rename rejoins the room: that would
  // cut a running upload or the browser's download, so it waits for them to end.
  pendingName = name;
  renameWhenIdle();
});

function renameWhenIdle() {
  if (!pendingName || !conn) return;
  if (active.size) {
    renderPeers();
    announce("Your new name is used once the transfers end.");
    return;
  }
  const name = pendingName;
  pendingName = null;
  conn.rename(name);
}

/** The bytes done in each of ``files``, for the batch's overall bar (several files: appended to
 * ``box``) and the tab's title ("42 % · xfer" while transfers run). */
function tallied(files, box, verb) {
  const total = files.reduce((n, f) => n + f.size, 0);
  const done = files.map(() => 0);
  const bar = files.length > 1 ? batchBar(box, total, verb) : null;
  let restart = false;
  return {
    total,
    get bytes() { return done.reduce((a, b) => a + b, 0); },
    set(i, bytes) {
      stillHere();
      done[i] = Math.min(Math.max(bytes, 0), files[i].size);
      bar?.progress(this.bytes, restart);
      restart = false;
      showTitle();
    },
    restart() { restart = true; }, // the speed so far says nothing of the speed after a resume
    done(text) { bar?.done(text); },
  };
}

/** "42 % · xfer" while transfers run (all of them together), "xfer" again after. */
function showTitle() {
  let bytes = 0;
  let total = 0;
  for (const t of active) {
    if (!t.tally) continue;
    bytes += t.tally.bytes;
    total += t.tally.total;
  }
  document.title = active.size && total ? `${Math.floor((bytes * 100) / total)} % · xfer` : "xfer";
}

/** A transfer ended (``err``: how, or null when it went well): forget it, and apply a rename that waited for it. */
function ended(transfer, err) {
  stillHere();
  active.delete(transfer);
  transfer.endedAt = Date.now();
  transfer.endError = err;
  sayAway();
  showTitle();
  if (transfer instanceof Upload) cutOff(transfer, null);
  renameWhenIdle();
  stayAwake();
}

/** A transfer started: keep the screen on, and the page from going away unasked. */
function began(transfer) {
  active.add(transfer);
  transfer.began = Date.now();
  lately.push(transfer);
  if (lately.length > 20) lately.shift();
  stayAwake();
}

// -- while transfers run: screen on, no reload by accident, and what a reload cut off -------

let wakeLock = null;

/** Screen Wake Lock while a transfer runs (secure contexts only: https, localhost). A phone that
 * dims and sleeps mid-transfer drops its socket; the lock is let go by the browser when the tab
 * is hidden, so it is asked for again when the tab shows. */
async function stayAwake() {
  if (!navigator.wakeLock) return;
  if (!active.size) {
    const lock = wakeLock;
    wakeLock = null;
    lock?.release().catch(() => {});
    return;
  }
  if (wakeLock && !wakeLock.released) return;
  try {
    wakeLock = await navigator.wakeLock.request("screen");
  } catch { /* refused (battery saver, hidden tab): the transfer runs anyway */ }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") stayAwake();
});

// -- back from the background or from sleep: what happened to the transfers meanwhile ---------

const lately = []; // the last transfers begun, running or not: which ran while the page was away
let away = null; // {since, ms, kind, transfers}: the last absence during transfers, while it is said
const AWAY_SAID = 60_000; // ms the note follows what happens after the page is back (a socket found dead, a resume)

const stillHere = watchAbsence(({ since, ms, kind }) => {
  // ``since`` is the last sign of life, up to a tick before the page stopped: a transfer begun
  // after it and before the page stopped ran during the absence too
  const transfers = lately.filter((t) => !(t.endedAt < since));
  away = transfers.length ? { since, ms, kind, transfers, back: Date.now() } : null;
  sayAway(true);
});

/** The note on what the absence did, kept up to date for a while: a socket that died while the
 * phone slept is found out only after it is back (DEAD_AFTER), and a resume follows. */
function sayAway(fresh = false) {
  let note = $("away");
  if (!away || Date.now() - away.back > AWAY_SAID) {
    if (!away) note?.remove();
    return;
  }
  const states = away.transfers.map((t) => {
    let state = t.endedAt ? (t.endError ? "failed" : "done") : t.broken ? "resuming" : "running";
    if (state === "done" && t.endedAt >= away.back) state = "running"; // it went on, and ended well since
    if (state === "resuming") away.broke = true;
    else if (state === "running" && away.broke) state = "resumed"; // once said, a lost connection stays said
    return { kind: t instanceof Upload ? "upload" : "download", state };
  });
  const text = absenceNote(away.kind, away.ms, states, Boolean(conn && conn.open));
  if (!note) {
    note = el("div", { id: "away", class: "card away", role: "status" },
      el("p", { class: "away-text" }),
      el("button", { type: "button", class: "link", "aria-label": "Dismiss this note", onclick: () => { away = null; sayAway(); } }, "OK"));
    $("room").prepend(note);
  }
  const line = note.querySelector(".away-text");
  if (fresh || line.textContent !== text) line.textContent = text; // a status: read out as it changes
}

let saving = 0; // when the page last followed a link to its service worker's download (ms)

window.addEventListener("beforeunload", (event) => {
  if (!active.size || Date.now() - saving < 2000) return; // a download starting is no leaving
  event.preventDefault(); // the browser asks "Leave site?": a reload or a back swipe would cut the transfers
  event.returnValue = "";
});

const CUT_OFF = "xfer-uploads"; // sessionStorage: uploads under way, said again after a reload

/** Remember an upload under way (``files``), or forget it (null). */
function cutOff(upload, files) {
  try {
    const all = JSON.parse(sessionStorage.getItem(CUT_OFF) || "{}");
    if (files) all[upload.transfer] = files.map((f) => ({ name: f.name, size: f.size }));
    else delete all[upload.transfer];
    sessionStorage.setItem(CUT_OFF, JSON.stringify(all));
  } catch { /* storage off: nothing said after a reload */ }
}

// Uploads a reload cut off: transfer id -> [{name, size}]. Picking the same files again offers
// them under the same transfer id, which is how the receiver knows its sender (a new one would be
// a different sender, whom it refuses mid-transfer: docs/guarantees.md).
let reloaded = {};

/** After a reload: which uploads it cut off, and that picking the same files again resumes them. */
function showCutOff() {
  let all = {};
  try {
    all = JSON.parse(sessionStorage.getItem(CUT_OFF) || "{}");
    sessionStorage.removeItem(CUT_OFF);
  } catch { return; }
  if (all && typeof all === "object") reloaded = all;
  const files = Object.values(all).flat().filter((f) => f && typeof f.name === "string" && typeof f.size === "number");
  if (!files.length) return;
  const list = el("ul", { class: "files" });
  for (const f of files.slice(0, 20)) list.append(el("li", { class: "file" }, fileName(f.name), el("span", { class: "size", text: humanSize(f.size) })));
  const card = el("div", { class: "card cut-off", role: "status" },
    el("p", { class: "card-title", text: "The page was reloaded during an upload" }), list,
    el("p", { class: "hint", text: "Pick the same files again: the upload goes on from where it stopped." }));
  $("outgoing").hidden = false;
  $("transfers").prepend(card);
}

/** The transfer id of a cut-off upload of exactly ``files`` (names and sizes, in order), taken
 * once; null when these are other files. */
function takeCutOff(files) {
  for (const [id, list] of Object.entries(reloaded)) {
    const transfer = Number(id);
    if (!Array.isArray(list) || list.length !== files.length || !(transfer >= 1 && transfer <= 0xffffffff)) continue;
    if (list.every((f, i) => f && f.name === files[i].name && f.size === files[i].size)) {
      delete reloaded[id];
      return transfer;
    }
  }
  return null;
}

// -- messages -------------------------------------------------------------------------

function onMessage(msg) {
  for (const t of [...active]) if (t.handle(msg)) return;
  if (msg.type === "offer") showOffer(msg);
  else if (msg.type === "text") showText(msg);
  else if (msg.type === "error" && !msg.transfer && conn.state === "connected") {
    announce(cleanText(msg.message || msg.code, 200));
  }
}

function nameOf(id) {
  return peerLabel(conn.peers.get(id));
}

// -- text -------------------------------------------------------------------------------

// A multi-line box, as in messaging apps: on a desktop (a fine pointer, a keyboard) Enter sends
// and Shift+Enter starts a new line; on a phone Enter starts a new line and the Send button sends.
const ENTER_SENDS = window.matchMedia("(pointer: fine)").matches;
$("text-hint").textContent = ENTER_SENDS ? "Enter sends · Shift+Enter starts a new line." : "Line breaks are kept: tap Send to send.";

$("text-input").addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.isComposing || !ENTER_SENDS || event.shiftKey || event.altKey) return;
  event.preventDefault();
  $("text-form").requestSubmit();
});
$("text-input").addEventListener("input", fitText);

/** The box grows with its lines, up to its CSS max-height (then it scrolls). */
function fitText() {
  const box = $("text-input");
  box.style.height = "auto";
  box.style.height = `${box.scrollHeight + box.offsetHeight - box.clientHeight}px`;
}

$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text-input");
  const text = input.value.replace(/\s+$/, ""); // the Enter or newline typed last is no part of it
  if (!text.trim() || !conn || !conn.open || !conn.peers.size) return;
  for (const id of conn.peers.keys()) { // sealed for each, in its own channel
    conn.send({ type: "text", to: id, text: text.slice(0, MAX_TEXT) }).catch(() => announce("The text was not sent: the connection dropped."));
  }
  addBubble("You", text, true);
  input.value = "";
  fitText();
});

function showText(msg) {
  if (typeof msg.text !== "string") return;
  addBubble(nameOf(msg.from), msg.text, false);
  announce(`Text from ${nameOf(msg.from)}`);
  endedWell(msg.from, true); // a sender that only texts leaves after it (xfer send --text)
}

function addBubble(who, text, mine) {
  const body = el("p", { class: "bubble-text", text: cleanText(text, MAX_TEXT) });
  const copy = el("button", { type: "button", class: "copy", "aria-label": "Copy this text" }, "Copy");
  copy.addEventListener("click", async () => {
    const ok = await copyText(text);
    copy.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(() => { copy.textContent = "Copy"; }, 2000);
  });
  const share = mine ? null : shareButton({ text }, "Share this text");
  const item = el("li", { class: mine ? "bubble mine" : "bubble" },
    el("span", { class: "who", text: who }), body, mine ? null : el("div", { class: "bubble-actions" }, copy, share));
  $("messages").prepend(item);
}

// -- sending files ---------------------------------------------------------------------

function receiverFor() {
  return [...conn.peers.values()].find((p) => p.role === "receiver") || null;
}

/** Send ``fileList`` to the receiver in the room; ``after(err)`` when the upload ended (null: well). */
function sendFiles(fileList, after = null) {
  const files = [...fileList];
  if (!files.length) return;
  const target = conn && conn.open ? receiverFor() : null;
  const box = el("div", { class: "card transfer-card" });
  $("outgoing").hidden = false;
  $("transfers").prepend(box);
  const total = files.reduce((n, f) => n + f.size, 0);
  const title = el("p", { class: "card-title" },
    `${files.length === 1 ? "1 file" : files.length + " files"}, ${humanSize(total)} → ${target ? peerLabel(target) : "nobody"}`);
  const list = el("ul", { class: "files" });
  box.append(title);
  const tally = tallied(files, box, "Sending");
  box.append(list);
  if (!target) {
    box.append(el("p", { class: "error", text: conn && conn.open ? "Nobody here can receive files yet." : "Not connected." }));
    return;
  }
  const rows = files.map((f) => transferRow(list, f, "Sending"));
  for (const r of rows) r.waiting(`Waiting for ${peerLabel(target)} to accept…`);
  files.forEach((f, i) => {
    if (i < 50 && /^image\//.test(f.type) && f.size < 50_000_000) {  // a thumbnail of the user's own photo
      const url = URL.createObjectURL(f);
      const img = el("img", { class: "thumb", alt: "", src: url, decoding: "async" });
      img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
      img.addEventListener("error", () => { URL.revokeObjectURL(url); img.remove(); }, { once: true });
      rows[i].row.querySelector(".row-top").prepend(img);
    }
  });
  const upload = new Upload(conn, files, target, takeCutOff(files), {
    onStart: (i, offset) => {
      rows[i].start(offset);
      tally.set(i, offset);
      announce(offset > 0
        ? `Resuming ${cleanText(files[i].name, 100)} from ${humanSize(offset)}`
        : `Sending ${cleanText(files[i].name, 100)}`);
    },
    onAccepted: () => {
      for (const [i, r] of rows.entries()) if (!upload.verified.has(i)) r.waiting("Next in line");
    },
    onInterrupted: () => {
      // our connection, or only the receiver's: the header says which, the rows must agree
      const lost = conn.open ? `once ${peerLabel(upload.target)} is back` : "once the connection is back";
      for (const [i, r] of rows.entries()) if (!upload.verified.has(i)) r.resuming(`Resuming… ${lost}`);
      tally.restart();
      announce(conn.open ? `${peerLabel(upload.target)} left. Sending resumes when it is back.` : "Connection lost. Sending resumes when it is back.");
      sayAway();
    },
    onResuming: (i, offset) => rows[i].resuming(`Resuming… checking the ${humanSize(offset)} already sent`),
    onProgress: (i, bytes) => {
      rows[i].progress(bytes);
      tally.set(i, bytes);
    },
    onVerified: (i) => {
      rows[i].done("Sent · SHA-256 verified");
      tally.set(i, files[i].size);
      announce(`${cleanText(files[i].name, 100)} sent and verified`);
    },
    onEnd: (err) => {
      ended(upload, err);
      after?.(err);
      if (!err) {
        title.append(el("span", { class: "ok", text: " ✓ done" }));
        tally.done("All sent · SHA-256 verified");
        endedWell(upload.target.id);
        return;
      }
      for (const [i, r] of rows.entries()) if (!upload.verified.has(i)) r.failed("Not sent");
      box.append(el("p", { class: "error", role: "alert", text: err.message }));
      if (roomGone()) {
        box.append(el("p", { class: "hint", text: AGAIN_ELSEWHERE }));
      } else {
        box.append(el("button", { type: "button", class: "again", onclick: () => { box.remove(); sendFiles(files, after); } }, "Try again"));
      }
      announce(`Sending failed: ${err.message}`);
    },
  });
  upload.tally = tally;
  began(upload);
  cutOff(upload, files);
  for (const card of document.querySelectorAll(".cut-off")) card.remove();
  upload.run();
}

for (const id of ["pick-files", "pick-camera"]) {
  $(id).addEventListener("change", (event) => {
    sendFiles(event.target.files);
    event.target.value = "";
  });
}

const drop = document.body;
drop.addEventListener("dragover", (event) => {
  if (!conn || $("room").hidden) return;
  event.preventDefault();
  document.body.classList.add("dragging");
});
drop.addEventListener("dragleave", (event) => {
  if (event.target === document.body || !event.relatedTarget) document.body.classList.remove("dragging");
});
drop.addEventListener("drop", (event) => {
  document.body.classList.remove("dragging");
  if (!conn || $("room").hidden) return;
  event.preventDefault();
  sendFiles(event.dataTransfer.files);
});

// -- receiving files --------------------------------------------------------------------

function showOffer(offer) {
  if (!Array.isArray(offer.files) || !offer.files.length || !offer.transfer || !offer.from) return;
  const files = offer.files.filter((f) => f && typeof f.name === "string" && typeof f.size === "number");
  if (files.length !== offer.files.length) return;
  if (conn.sealedDownloads && typeof offer.key !== "string") return; // a sealed offer without its key: nothing to open
  offeredBy.add(offer.from);
  const total = files.reduce((n, f) => n + f.size, 0);
  const who = nameOf(offer.from);
  const card = el("div", { class: "card offer", role: "group", "aria-label": `Offer from ${who}` });
  const list = el("ul", { class: "files" });
  const title = el("p", { class: "card-title" },
    `${who} wants to send ${files.length === 1 ? "1 file" : files.length + " files"}, ${humanSize(total)}`);
  for (const f of files.slice(0, 100)) {
    list.append(el("li", { class: "file" }, fileName(f.name), el("span", { class: "size", text: humanSize(f.size) })));
  }
  if (files.length > 100) list.append(el("li", { class: "hint", text: `… and ${files.length - 100} more` }));
  const accept = el("button", { type: "button", class: "primary" }, "Accept");
  const decline = el("button", { type: "button" }, "Decline");
  const buttons = el("div", { class: "row buttons" }, accept, decline);
  // Said before anything is accepted: the relay's bridge streams these files to the browser's
  // downloader, so a relay other than the sender's own xfer could read them on the way; unless
  // they come sealed, for the page to open itself.
  const sealed = conn.sealedDownloads;
  const note = sealed
    ? el("p", { class: "hint relay-note", text: "End-to-end encrypted: this page decrypts these files; the relay cannot read them." })
    : BUILTIN_RELAY
    ? el("p", { class: "hint relay-note", text: "These files come straight from the sender's computer, which runs this relay." })
    : el("p", { class: "warning relay-note", role: "note",
      text: "This relay can read these files: a phone receives them through it, not end-to-end encrypted. " +
        "To keep them from the relay, receive with xfer receive on a computer." });
  card.append(title, list, note, buttons);
  $("incoming").hidden = false;
  $("offers").prepend(card);
  announce(`${who} wants to send ${files.length} file${files.length === 1 ? "" : "s"}`);
  // Never onto Accept (issue 13): an offer that lands while someone types would take their
  // next Enter. Only when nothing has the focus does the card take it, to be read, not pressed.
  if (!document.activeElement || document.activeElement === document.body) {
    card.tabIndex = -1;
    card.focus({ preventScroll: true });
  }

  decline.addEventListener("click", () => {
    const reject = { type: "reject", to: offer.from, transfer: offer.transfer, reason: "declined" };
    if (conn.open) (sealed ? conn.send(reject) : conn.sendClear(reject)).catch(() => {});
    card.replaceChildren(el("p", { class: "card-title", text: `Declined ${who}'s ${files.length === 1 ? "file" : "files"}.` }));
  });
  accept.addEventListener("click", () => {
    if (!conn.open) return;
    buttons.remove();
    list.remove();
    const rows = el("ul", { class: "files" });
    const tally = tallied(files, card, "Downloading");
    card.append(rows);
    const bars = files.map((f) => transferRow(rows, f, "Downloading"));
    const Kind = sealed ? SealedDownload : Download;
    const download = new Kind(conn, offer, {
      onStart: (i, url) => {
        bars[i].start();
        announce(`Downloading ${cleanText(files[i].name, 100)}`);
        const type = sealed ? null : previewType(files[i]); // the page's own worker saves sealed ones
        if (type) { // a small image: the page keeps it to show it (and pass it on), and saves it from there
          keepImage(url, type, files[i].name, bars[i].row);
          return;
        }
        // The browser's own downloader saves it, streamed from the relay, or from the page's service
        // worker (a navigation, which the worker answers: it does not see a download attribute's request).
        if (sealed) saving = Date.now();
        const link = el("a", { href: url, ...(sealed ? {} : { download: "" }), class: "offscreen", tabindex: -1 });
        document.body.append(link);
        link.click();
        link.remove();
      },
      onProgress: (i, bytes) => {
        bars[i].progress(bytes);
        tally.set(i, bytes);
      },
      onVerified: (i) => {
        bars[i].done("Saved to your downloads · SHA-256 verified");
        tally.set(i, files[i].size);
        announce(`${cleanText(files[i].name, 100)} downloaded`);
      },
      onEnd: (err) => {
        ended(download, err);
        if (err) {
          for (const [i, b] of bars.entries()) if (!download.verified.has(i)) b.failed("Not received");
          card.append(el("p", { class: "error", role: "alert", text: err.message }));
          announce(`Download failed: ${err.message}`);
        } else {
          title.append(el("span", { class: "ok", text: " ✓ done" }));
          tally.done("All saved · SHA-256 verified");
          endedWell(offer.from);
        }
      },
    });
    download.tally = tally;
    began(download);
    download.accept();
  }, { once: true });
}

/** A small received image: fetched by the page from its one-time link (the relay streams it as it
 * would to the downloader, and completes the response only when its SHA-256 matched), saved from
 * the Blob, and shown with a Share button where the browser has one. */
async function keepImage(url, type, name, row) {
  let blob;
  try {
    blob = await fetchCapped(url, PREVIEW_MAX, type);
  } catch {
    return; // the bridge says why (hash-mismatch, cancelled): the download's own message
  }
  saveBlob(blob, name);
  const file = new File([blob], name, { type });
  const shown = el("div", { class: "received" }, preview(blob, name),
    shareButton({ files: [file] }, `Share ${cleanText(name, 100)}`));
  row.append(shown);
}

// -- what another app shared with the installed page (its share target) -----------------------

let shared = null; // {files, text} kept by share-sw.js, while not sent
let sharedShown = null; // its card

/** Read what was shared, once at start: the share target opens the page at ./?shared. */
async function loadShared() {
  const failed = new URLSearchParams(location.search).get("share") === "failed";
  if (location.search) history.replaceState(null, "", location.pathname + location.hash);
  shared = await sharedItems();
  if (shared?.text && !$("text-input").value) $("text-input").value = shared.text;
  if (!shared?.files.length) shared = null;
  if (failed && !shared) {
    showFailure("What you shared did not reach this page. Open this page once in the browser, then share again.");
  }
  offerShared();
}

/** The card of shared files: send them to the receiver in the room, or say how to get into one. */
function offerShared() {
  if (!shared) {
    sharedShown?.remove();
    sharedShown = null;
    return;
  }
  const target = conn && conn.state === "connected" ? receiverFor() : null;
  const key = `${Boolean(conn)} ${target ? target.id : ""}`;
  if (sharedShown && sharedShown.dataset.key === key) return; // as it is: keep the focus where it is
  const hint = target ? null : conn
    ? "Once xfer receive on the computer is in this room, send them from here."
    : "Scan the QR code that xfer receive shows on the computer: these files go to it from there.";
  const { card, send, discard } = sharedCard(shared.files, target ? peerLabel(target) : null, hint);
  send.addEventListener("click", () => {
    const files = shared.files;
    shared = null;
    offerShared();
    sendFiles(files, (err) => {
      if (!err) forgetShared();
    });
  });
  discard.addEventListener("click", () => {
    shared = null;
    forgetShared();
    offerShared();
  });
  card.dataset.key = key;
  if (sharedShown) sharedShown.replaceWith(card);
  else document.querySelector("main").prepend(card);
  sharedShown = card;
}

// Desktop browsers can drop files; phones cannot, so the hint is for fine pointers only.
if (!window.matchMedia("(pointer: fine)").matches) $("drop-hint").hidden = true;

start();
registerShareWorker();
loadShared();
