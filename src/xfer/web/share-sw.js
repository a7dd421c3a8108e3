// The service worker of the installed page's share target (manifest.webmanifest): a photo
// shared from the gallery arrives as a POST to ./share, which this worker (scope ./share,
// nothing else) takes: it keeps the shared files and text in this browser's Cache Storage and
// sends the page to ./?shared, which offers them to the terminal in the room. The files never
// reach the relay in clear: they go from there as every upload does, sealed.
//
// Its own file and scope, apart from sw.js (the page's downloads, scope ./): each worker
// answers only its own requests.

const SHARED = "xfer-shared"; // the cache the page reads (shared.js)
const MAX_FILES = 100;
const MAX_TEXT = 65536;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const action = new URL("share", self.registration.scope);
  const url = new URL(request.url);
  if (request.method !== "POST" || url.origin !== action.origin || url.pathname !== action.pathname) return;
  event.respondWith(keep(request));
});

/** Keep what was shared (a new share replaces the last one not sent), then open the page. */
async function keep(request) {
  const page = new URL("./", self.registration.scope);
  let count = 0;
  try {
    const form = await request.formData();
    const cache = await caches.open(SHARED);
    for (const old of await cache.keys()) await cache.delete(old);
    const stamp = Date.now();
    for (const file of form.getAll("files")) {
      if (!(file instanceof File) || count >= MAX_FILES) continue;
      await cache.put(new Request(`shared/${stamp}/${count}`), new Response(file, {
        headers: {
          "content-type": file.type || "application/octet-stream",
          "x-name": encodeURIComponent(file.name || "shared"),
          "x-modified": String(file.lastModified || stamp),
        },
      }));
      count += 1;
    }
    const text = ["title", "text", "url"].map((k) => form.get(k)).filter((v) => typeof v === "string" && v.trim());
    if (text.length) {
      await cache.put(new Request(`shared/${stamp}/text`), new Response(text.join("\n").slice(0, MAX_TEXT), {
        headers: { "content-type": "text/plain; charset=utf-8", "x-text": "1" },
      }));
    }
  } catch {
    page.search = "?share=failed";
    return Response.redirect(page.href, 303);
  }
  page.search = "?shared";
  return Response.redirect(page.href, 303);
}
