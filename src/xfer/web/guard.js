// Protocol 2.0 on the page: the keys it makes with each terminal in the room, and sealing
// and opening what passes between them (docs/protocol-2.md, docs/page.md). The page's side
// of xfer.protocol.guard, without the socket: the connection feeds it what the relay
// routes and sends what it posts, one at a time and in order.
//
// With each terminal (role sender or receiver; other pages make no keys with the page):
//   page  ── pake {nonce, link: true} ──▶ terminal   (16 fresh random bytes)
//   page  ◀── pake {nonce, msg} ───────── terminal   (its SPAKE2 message is for terminals only)
//   page  ── confirm {tag} ─────────────▶ terminal   keys from the link's secret and both nonces
//   page  ◀── confirm {tag} ───────────── terminal   a wrong tag: the link is not this room's
//   page  ── sealed hi {name, download} ▶ terminal   then every message is sealed, both ways
//   page  ◀── sealed hi {name} ────────── terminal   trusted: the page shows it, with that name
//
// A page that saves downloads itself (``sealedDownloads``: a secure context on a hosted relay,
// with its service worker, sealed.js) says ``hi {name}`` as a terminal does, and its
// transfers come sealed, the content key in the offer. Any other page says
// ``download: "relay"`` to a sender: it receives files through the relay's download bridge,
// so the sender sends it its transfers in clear (the page says so before anything is
// accepted). Everything that page sends itself is sealed but the accept, reject and cancel
// of a download, which the bridge reads.

import { PairKeys, Tampered, WrongLink, randomBytes } from "./e2e.js";

export { WrongLink };
import { MAX_PEER_NAME, b64decode, b64encode } from "./protocol.js";

const TERMINALS = new Set(["sender", "receiver"]);
const HANDSHAKE_NONCE = 16; // bytes each side adds to a handshake (keys.NONCE_BYTES)
const TAG_BYTES = 32; // a confirmation tag: an HKDF-SHA256 output
const MAX_EARLY = 16; // pakes kept from peers the relay has not announced yet (another relay's)
// What a terminal sender may send this page in clear: the transfers the relay's bridge reads
// (the page asked for them so in its hi). A text is sealed by protocol 2.0; this page also
// takes one in clear from such a sender, since xfer.protocol.guard sends a bridged page all in clear.
const CLEAR_FROM_SENDER = new Set(["offer", "file-start", "file-end", "ack", "verified", "done", "cancel", "error"]);
const SPENT = new Set(["wrong-code", "code-spent"]);

/** The other side broke the protocol (not the relay tampering: that is ``Tampered``). */
export class GuardError extends Error {
  constructor(message) {
    super(message);
    this.name = "GuardError";
  }
}

function field(msg, name, size) {
  let bytes;
  try {
    bytes = b64decode(msg[name]);
  } catch {
    throw new GuardError(`a ${msg.type} whose ${name} is not base64`);
  }
  if (bytes.length !== size) throw new GuardError(`a ${msg.type} whose ${name} is not ${size} bytes`);
  return bytes;
}

export class PageGuard {
  /**
   * secret: the link's 32 bytes; name: the page's device name (sent sealed);
   * post(msg, sealed): put ``msg`` on the wire, sealed for ``msg.to`` or in clear, after
   * everything posted before it (the connection's outbox calls ``seal`` in that order).
   */
  constructor({ secret, name, post, backend, sealedDownloads = false }) {
    this.secret = secret;
    this.sealedDownloads = sealedDownloads;
    this.name = name;
    this.post = post;
    this.backend = backend;
    this.pairs = new Map(); // peer id -> the pair's state
    this.early = new Map(); // peer id -> a pake that came before the relay's news of its peer
    this.refused = 0; // terminals whose keys were not the page's
  }

  /** The terminals that proved the link's secret, as {id, name, role, client}, by id. */
  get trusted() {
    const out = new Map();
    for (const [id, pair] of this.pairs) if (pair.trusted) out.set(id, pair.info);
    return out;
  }

  isTrusted(id) {
    return this.pairs.get(id)?.trusted === true;
  }

  /** A peer in the room (``welcome`` or ``peer-joined``): start the handshake with a terminal. */
  async greet(peer) {
    if (!peer || !Number.isInteger(peer.id) || !TERMINALS.has(peer.role) || this.pairs.has(peer.id)) return [];
    const pair = {
      info: { id: peer.id, role: peer.role, client: String(peer.client || ""), name: "" },
      side: peer.role === "sender" ? "receiver" : "sender", // the page's own side toward it
      nonce: randomBytes(HANDSHAKE_NONCE),
      keys: null,
      outgoing: null,
      incoming: null,
      trusted: false,
    };
    this.pairs.set(peer.id, pair);
    this.post({ type: "pake", to: peer.id, nonce: b64encode(pair.nonce), link: true }, false);
    const early = this.early.get(peer.id);
    this.early.delete(peer.id);
    return early ? this.receive(early) : [];
  }

  /** A peer left: forget its keys. True when the page had trusted it (the app knew it). */
  left(id) {
    this.early.delete(id);
    const pair = this.pairs.get(id);
    this.pairs.delete(id);
    return pair?.trusted === true;
  }

  /**
   * A message a peer sent (``from`` set by the relay). Resolves to what the page should act
   * on: [{kind: "message", msg}] (opened, with from/to), [{kind: "trusted", peer}],
   * [{kind: "refused", peer}] (its keys are not the page's: it is forgotten), or [].
   * Throws ``Tampered`` (a box did not open) or ``GuardError``.
   */
  async receive(msg) {
    const pair = this.pairs.get(msg.from);
    if (!pair) {
      if (msg.type === "pake" && this.early.size < MAX_EARLY) this.early.set(msg.from, msg);
      return []; // not a terminal the page knows: nothing of the page's
    }
    switch (msg.type) {
      case "pake":
        return this._pake(pair, msg);
      case "confirm":
        return this._confirm(pair, msg);
      case "sealed":
        return this._sealed(pair, msg);
      case "subscribe":
      case "unsubscribe":
        return []; // for the relay
      case "error":
        if (!pair.trusted && SPENT.has(msg.code)) return this._refused(pair);
        break;
      default:
    }
    if (pair.trusted && pair.info.role === "sender" && !this.sealedDownloads && CLEAR_FROM_SENDER.has(msg.type)) {
      return [{ kind: "message", msg }];
    }
    return []; // clear from a terminal, where it had to be sealed: never shown
  }

  async _pake(pair, msg) {
    if (pair.keys) throw new GuardError("a terminal started the key exchange twice");
    const theirs = field(msg, "nonce", HANDSHAKE_NONCE);
    const [senderNonce, receiverNonce] = pair.side === "sender" ? [pair.nonce, theirs] : [theirs, pair.nonce];
    pair.keys = await PairKeys.fromLink(this.secret, senderNonce, receiverNonce, pair.side, this.backend);
    this.post({ type: "confirm", to: pair.info.id, tag: b64encode(await pair.keys.confirmation()) }, false);
    return [];
  }

  /** A terminal whose keys are not the page's: a room that is not the link's (its nameplate was
   * given to another room since), or a terminal that joined by its code and holds no link. */
  _refused(pair) {
    this.pairs.delete(pair.info.id);
    this.refused += 1;
    return [{ kind: "refused", peer: pair.info }];
  }

  /** Handshakes still under way (not trusted, not refused). */
  get pending() {
    let n = 0;
    for (const pair of this.pairs.values()) if (!pair.trusted) n += 1;
    return n;
  }

  async _confirm(pair, msg) {
    if (!pair.keys || pair.outgoing) throw new GuardError("a confirmation out of turn");
    try {
      await pair.keys.check(field(msg, "tag", TAG_BYTES));
    } catch (err) {
      if (err instanceof WrongLink) return this._refused(pair);
      throw err;
    }
    pair.outgoing = await pair.keys.outgoing();
    pair.incoming = await pair.keys.incoming();
    const hi = { type: "hi", to: pair.info.id, name: this.name };
    if (pair.info.role === "sender" && !this.sealedDownloads) hi.download = "relay";
    this.post(hi, true);
    return [];
  }

  async _sealed(pair, msg) {
    if (!pair.incoming) throw new GuardError("a sealed message before the key exchange");
    let box;
    try {
      box = b64decode(msg.box);
    } catch {
      throw new Tampered();
    }
    const plain = await pair.incoming.open(box); // Tampered if it does not open
    let inner;
    try {
      inner = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain));
    } catch {
      throw new GuardError("a sealed message is not JSON");
    }
    if (!inner || typeof inner !== "object" || Array.isArray(inner) || typeof inner.type !== "string") {
      throw new GuardError("a sealed message is not a message");
    }
    if ("to" in inner || "from" in inner) throw new GuardError("a sealed message names its own route");
    // An offer's content key: for a page that opens its chunks itself; a bridged page gets none sealed.
    if (inner.type !== "offer" || !this.sealedDownloads) delete inner.key;
    if (inner.type === "hi") {
      if (pair.trusted) throw new GuardError("a second hi");
      if (typeof inner.name !== "string") throw new GuardError("a hi without a name");
      pair.trusted = true;
      pair.info = { ...pair.info, name: inner.name.slice(0, MAX_PEER_NAME) };
      return [{ kind: "trusted", peer: pair.info }];
    }
    if (!pair.trusted) throw new GuardError(`${inner.type} before hi`);
    return [{ kind: "message", msg: { ...inner, from: pair.info.id, to: msg.to } }];
  }

  /** ``msg`` as the relay may see it: {type: "sealed", to, box}. Call in the order of sending. */
  async seal(msg) {
    const pair = this.pairs.get(msg.to);
    if (!pair?.outgoing) throw new GuardError("nobody to seal for");
    const { to, from, ...rest } = msg;
    const box = await pair.outgoing.seal(new TextEncoder().encode(JSON.stringify(rest)));
    return { type: "sealed", to, box: b64encode(box) };
  }
}
