// The page's service worker: it turns what the page decrypted into an ordinary download
// that the browser's own downloader saves, streamed, so a file is never whole in memory
// and a hosted relay never holds it in clear (docs/page.md, "Receiving sealed").
//
// The page opens a save with {type: "open", id, name, size} and a MessagePort; the
// worker answers "ready" on the port, and the page then follows a link to
// save/ID (in this worker's scope). The worker answers that request once with a stream
// that asks the page for each piece ("pull"); the page answers {type: "data", bytes},
// {type: "end"} or {type: "error"}. The page holds the file's last piece back until the
// sender's sealed file-end matched its SHA-256, and errors the stream otherwise: with
// Content-Length set, the browser then marks the download failed instead of keeping it.
// The worker holds no key and sees only what the page chose to save.

const PREFIX = "save/";
const ID = /^[0-9a-f]{32}$/;
const MAX_WAITING = 64; // saves opened and not fetched yet
const waiting = new Map(); // id -> {port, name, size}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  const data = event.data;
  const port = event.ports && event.ports[0];
  if (!data || data.type !== "open" || typeof data.id !== "string" || !ID.test(data.id) || !port) return;
  if (waiting.size >= MAX_WAITING) waiting.delete(waiting.keys().next().value);
  const size = Number.isSafeInteger(data.size) && data.size >= 0 ? data.size : null;
  waiting.set(data.id, { port, name: String(data.name || "file"), size });
  port.postMessage({ type: "ready" });
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const base = new URL(self.registration.scope);
  const prefix = base.pathname + PREFIX;
  if (url.origin !== base.origin || !url.pathname.startsWith(prefix)) return; // everything else goes to the relay
  const id = url.pathname.slice(prefix.length);
  const save = waiting.get(id);
  waiting.delete(id); // each link works once
  if (!save) {
    event.respondWith(new Response("This download link is not valid (any more).", {
      status: 404, headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    }));
    return;
  }
  let finished;
  const done = new Promise((resolve) => { finished = resolve; });
  event.respondWith(new Response(pieces(save, finished), { headers: headers(save) }));
  event.waitUntil(done); // the worker lives while the download runs
});

function headers(save) {
  const out = {
    "content-type": "application/octet-stream",
    "content-disposition": contentDisposition(save.name),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
  };
  if (save.size !== null) out["content-length"] = String(save.size);
  return out;
}

/** ``attachment`` with an ASCII fallback and the name as RFC 5987 ``filename*`` (as the relay's
 * bridge sends it; the page already made the name safe). */
function contentDisposition(name) {
  let fallback = "";
  for (const c of name) fallback += c >= " " && c <= "~" && !'"\\%;'.includes(c) ? c : "_";
  return `attachment; filename="${fallback || "file"}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/** The body: each pull asks the page for the next piece. */
function pieces(save, finished) {
  const port = save.port;
  let answer = null;
  let early = null; // an error the page sent before the stream asked
  port.onmessage = (event) => {
    const resolve = answer;
    answer = null;
    if (resolve) resolve(event.data);
    else early = event.data;
  };
  return new ReadableStream({
    pull(controller) {
      return new Promise((resolve) => {
        if (early) {
          resolve(early);
          return;
        }
        answer = resolve;
        port.postMessage({ type: "pull" });
      }).then((msg) => {
        if (msg && msg.type === "data" && msg.bytes instanceof Uint8Array) {
          controller.enqueue(msg.bytes);
        } else if (msg && msg.type === "end") {
          controller.close();
          port.postMessage({ type: "closed" });
          finished();
        } else {
          controller.error(new Error(msg && typeof msg.message === "string" ? msg.message : "failed"));
          finished();
        }
      });
    },
    cancel() {
      port.postMessage({ type: "cancelled" }); // the person stopped the download
      finished();
    },
  });
}
