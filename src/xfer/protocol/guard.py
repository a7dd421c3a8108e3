"""The layer of protocol 2.0 between a peer's machine and its link, without I/O: the
handshake with each counterpart, and sealing and opening everything after it
(docs/protocol.md). The machines above it never see a key.

- A sender's counterparts are the receivers (and pages); a receiver's, the senders (and
  pages). With each, one ``pake`` each way, then one ``confirm`` each way; a wrong tag is
  a wrong code. Only then is the peer *trusted*: it reaches the machine as a
  ``peer-joined`` (with the name from its sealed ``hi``), and messages to it leave sealed.
  Messages the machine sends before that wait here.
- ``sealed`` boxes open in the channel of the peer that sent them; anything else a peer
  sends in clear (but the handshake and fan-out messages) is refused. The relay's own
  messages (``welcome``, ``peer-joined``/``peer-left``, its errors) pass as they are.
- Each round's offer carries a fresh content key, under which the round's chunks are
  sealed: one frame per chunk whatever the number of receivers.
- A page that asked to receive through the relay's download bridge (``hi.download``) gets
  its transfers in clear, as the page told its user before (docs/page.md).

Errors: on a receiver, anything wrong with its sender's handshake or boxes raises. On
a sender, a wrong code drops that peer (``PeerRefused``) and counts; at ``Limits.wrong_codes``
the code is spent (``CodeSpent``) and the room must close, so that guessing online
cannot win. A box that does not open raises on both sides: the relay tampered.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import LocalProtocolError, RemoteProtocolError
from .frames import HEADER, HEADER_SIZE, Chunk
from .keys import KEY_BYTES, TAG_BYTES, Channel, ContentKey, Handshake, PairKeys, Runs, Side, WrongCode, link_keys
from .limits import LIMITS, Limits
from .machine import Event, Output, Send
from .message_keys import (
    CLEAR_BETWEEN_PEERS,
    Confirm,
    Hi,
    Pake,
    Sealed,
    Subscribe,
    Unsubscribe,
    b64decode,
    b64encode,
)
from .message_types import (
    Accept,
    Cancel,
    Done,
    Error,
    Message,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Reject,
    Text,
)
from .message_wire import parse_message, to_dict
from .words import SpokenCode

RELAYED = "relay"  # ``hi.download``: this page receives through the relay's bridge, in clear


class CodeSpent(WrongCode):
    """Too many wrong codes were tried: the room closes and the code is spent."""

    code = "code-spent"


@dataclass(frozen=True)
class Deliver(Event):
    """Pass this message or chunk up to the machine."""

    item: Message | Chunk


@dataclass(frozen=True)
class PeerTrusted(Event):
    """The handshake with ``peer`` is done: ``verifier`` are the words ``--verify`` shows."""

    peer: PeerInfo
    verifier: str
    link: bool  # the peer proved the QR link's secret (a page), not the spoken code


@dataclass(frozen=True)
class Impostor(Event):
    """A peer offered a transfer that another sender's run began with us: refused."""

    peer: PeerInfo
    warning: str


@dataclass(frozen=True)
class PeerRefused(Event):
    """A peer failed its handshake (``wrong`` counts the wrong codes so far)."""

    peer_id: int
    error: RemoteProtocolError
    wrong: int


@dataclass(eq=False)
class _Pair:
    info: PeerInfo
    handshake: Handshake
    keys: PairKeys | None = None
    link: bool = False
    trusted: bool = False  # its sealed ``hi`` came: the machine knows it
    relayed: bool = False  # a page receiving through the relay's bridge
    confirmed: bool = False  # its tag checked out: the code matches
    outgoing: Channel | None = None  # once we have the key
    incoming: Channel | None = None
    held: list[Message] = field(default_factory=list)
    contents: dict[int, ContentKey] = field(default_factory=dict)  # its transfers' keys (it sends)
    run: bytes | None = None  # the secret of our run we gave it (a sender's, ``Runs``)


@dataclass(eq=False)
class _Round:
    """A sender's round of one transfer: its content key and whom it was offered to."""

    key: ContentKey = field(default_factory=ContentKey)
    sealed: set[int] = field(default_factory=set)
    relayed: set[int] = field(default_factory=set)
    chunks: bool = False  # a chunk was sealed under its key: the round's offers are all out


class Guard:
    """One peer's side of protocol 2.0's keys, for one connection to its room.

    ``code``: the spoken code (its nameplate is the room). ``link``: the QR link's secret,
    held by the peer that printed the QR (a page proves it instead of the code).
    """

    def __init__(
        self,
        side: Side,
        name: str,
        code: SpokenCode | None,
        *,
        link: bytes | None = None,
        limits: Limits = LIMITS,
        entropy: Callable[[int], bytes] | None = None,
        runs: Runs | None = None,
    ) -> None:
        """``runs``: what the run's guards share across its connections (one per connection
        otherwise, and then nothing is proved across them)."""
        self.side: Side = side
        self.name = name
        self.code = code
        self.link = link
        self.limits = limits
        self.entropy = entropy
        self.wrong = 0
        self.runs = runs if runs is not None else Runs(4 * limits.max_peers_per_room)
        self.pairs: dict[int, _Pair] = {}
        self.peers: dict[int, PeerInfo] = {}  # trusted peers, as the machine knows them
        self._rounds: dict[int, _Round] = {}  # a sender's transfers: the current round of each
        self._early: dict[int, Pake] = {}  # pakes from peers the relay has not announced yet
        self._spare: Handshake | None = None  # a handshake started ahead (``prepare``)

    # -- who to talk to -----------------------------------------------------------------

    def counterpart(self, peer: PeerInfo) -> bool:
        """A peer this side makes keys with: the other role, or a page."""
        wanted = "receiver" if self.side == "sender" else "sender"
        return peer.role in (wanted, "peer")

    def joined(self, peers: Iterable[PeerInfo]) -> list[Output]:
        """Peers in the room when the link opened (``welcome``): greet each counterpart."""
        out: list[Output] = []
        for peer in peers:
            out += self._greet(peer)
        return out

    def _greet(self, peer: PeerInfo) -> list[Output]:
        if not self.counterpart(peer) or peer.id in self.pairs:
            return []
        handshake, self._spare = self._spare or self._handshake(), None
        pair = self.pairs[peer.id] = _Pair(peer, handshake)
        out: list[Output] = [Send(Pake(to=peer.id, msg=b64encode(handshake.message), nonce=b64encode(handshake.nonce)))]
        early = self._early.pop(peer.id, None)  # its pake overtook the relay's news of it (another relay)
        return out + (self._guarded(pair, early) if early is not None else [])

    def _handshake(self) -> Handshake:
        password = self.code.password if self.code is not None else b""
        nameplate = self.code.nameplate if self.code is not None else 0
        return Handshake(password, nameplate, self.side, entropy=self.entropy)

    def prepare(self) -> None:
        """Start the next handshake ahead (SPAKE2's first step costs milliseconds of CPU):
        for a peer that waits for the other side, so that the wait hides it."""
        if self._spare is None:
            self._spare = self._handshake()

    # -- from the link ------------------------------------------------------------------

    def receive(self, item: Message | Chunk) -> list[Output]:
        """A message or chunk from the link. Raises ``RemoteProtocolError`` when this run
        must end (a sender's wrong code or tampering on a receiver, any tampering)."""
        if isinstance(item, Chunk):
            return self._open_chunk(item)
        if item.sender is None:  # the relay's own
            if isinstance(item, PeerJoined):
                return self._greet(item.peer)
            if isinstance(item, PeerLeft):
                self._early.pop(item.peer_id, None)
                pair = self.pairs.pop(item.peer_id, None)
                if pair is not None and pair.trusted:
                    self.peers.pop(item.peer_id, None)
                    return [Deliver(item)]
                return []
            return [Deliver(item)]
        pair = self.pairs.get(item.sender)
        if pair is None:
            if isinstance(item, Pake) and len(self._early) < self.limits.max_peers_per_room:
                self._early[item.sender] = item
            return []  # not a counterpart (another receiver, a stranger): nothing of ours
        return self._guarded(pair, item)

    def _guarded(self, pair: _Pair, item: Message) -> list[Output]:
        try:
            if isinstance(item, Pake):
                return self._on_pake(pair, item)
            if isinstance(item, Confirm):
                return self._on_confirm(pair, item)
            if isinstance(item, Sealed):
                return self._on_sealed(pair, item)
            if pair.relayed and pair.trusted and isinstance(item, Message) and item.type not in CLEAR_BETWEEN_PEERS:
                return [Deliver(item)]  # a page's bridge speaks for it in clear
        except WrongCode as exc:
            return self._refuse(pair, exc)
        if item.type in CLEAR_BETWEEN_PEERS or not pair.trusted:
            # subscribe/unsubscribe are for the relay; a peer without keys has no say, not even
            # with an error (anyone with the nameplate could write one): a wrong code shows in
            # the tag, which the sender sends before it checks ours
            return []
        raise RemoteProtocolError(f"a peer sent {item.type} without sealing it", "protocol")

    def _on_pake(self, pair: _Pair, pake: Pake) -> list[Output]:
        if pair.keys is not None:
            raise RemoteProtocolError("a peer started the key exchange twice", "protocol")
        nonce = b64decode(pake.nonce)
        if pake.link:
            if self.link is None:  # we printed no QR code: the page is for someone else in the room
                self.pairs.pop(pair.info.id, None)
                return []
            ours = pair.handshake.nonce
            salt = (ours, nonce) if self.side == "sender" else (nonce, ours)
            pair.keys = link_keys(self.link, salt[0], salt[1], self.side)
            pair.link = True
        else:
            assert pake.msg is not None
            pair.keys = pair.handshake.finish(b64decode(pake.msg), nonce)
        # Our hi goes right behind our tag, without waiting for theirs: a peer with another
        # key cannot open it, and learns nothing it could not from the tag (one online guess).
        pair.outgoing, pair.incoming = pair.keys.outgoing(), pair.keys.incoming()
        confirm = Confirm(to=pair.info.id, tag=b64encode(pair.keys.confirmation()))
        return [Send(confirm), *self._sealed(pair, Hi(name=self.name))]

    def _on_confirm(self, pair: _Pair, confirm: Confirm) -> list[Output]:
        if pair.keys is None or pair.confirmed:
            raise RemoteProtocolError("a confirmation out of turn", "protocol")
        pair.keys.check(b64decode(confirm.tag))
        pair.confirmed = True
        return []

    def _on_sealed(self, pair: _Pair, sealed: Sealed) -> list[Output]:
        if pair.incoming is None or not pair.confirmed:
            raise RemoteProtocolError("a sealed message before the key exchange", "protocol")
        plain = pair.incoming.open(b64decode(sealed.box))  # Tampered when it does not open
        try:
            obj = json.loads(plain)
        except ValueError:
            raise RemoteProtocolError("a sealed message is not JSON", "protocol") from None
        key = obj.pop("key", None) if type(obj) is dict else None
        run, proofs = (obj.pop("run", None), obj.pop("proofs", [])) if type(obj) is dict else (None, [])
        if type(obj) is not dict or obj.pop("to", None) is not None or obj.pop("from", None) is not None:
            raise RemoteProtocolError("a sealed message names its own route", "protocol")
        inner = parse_message(json.dumps(obj), limits=self.limits)
        if not inner.routed or inner.type in CLEAR_BETWEEN_PEERS or isinstance(inner, Sealed):
            raise RemoteProtocolError(f"{inner.type} cannot be sealed", "protocol")
        inner = dataclasses.replace(inner, sender=pair.info.id, to=sealed.to)
        if isinstance(inner, Hi):
            return self._on_hi(pair, inner)
        if not pair.trusted:
            raise RemoteProtocolError(f"{inner.type} before hi", "protocol")
        out: list[Output] = []
        if isinstance(inner, Offer):
            if type(key) is not str:
                raise RemoteProtocolError("an offer without its content key", "protocol")
            assert pair.keys is not None
            secret, proved = self._run_fields(run, proofs)
            if not self.runs.claim(inner.transfer, secret, pair.keys.binding(), proved):
                return self._impostor(pair, inner)
            try:
                pair.contents[inner.transfer] = ContentKey(b64decode(key))
            except ValueError:
                raise RemoteProtocolError("an offer's content key is not base64", "protocol") from None
        elif isinstance(inner, (Done, Cancel)):
            pair.contents.pop(inner.transfer, None)
            out.append(Send(Unsubscribe(to=pair.info.id, transfer=inner.transfer)))
        return [Deliver(inner), *out]

    def _run_fields(self, run: object, proofs: object) -> tuple[bytes | None, list[bytes]]:
        """An offer's ``run`` (the secret its sender gives us) and ``proofs`` (of the others it gave)."""
        limit = self.runs.limit
        if (run is not None and type(run) is not str) or type(proofs) is not list or len(proofs) > limit:
            raise RemoteProtocolError("an offer's run or proofs are malformed", "protocol")
        try:
            secret = b64decode(run) if run is not None else None
            proved = [b64decode(p) for p in proofs if type(p) is str]
        except ValueError:
            raise RemoteProtocolError("an offer's run or proofs are not base64", "protocol") from None
        if (secret is not None and len(secret) != KEY_BYTES) or len(proved) != len(proofs):
            raise RemoteProtocolError("an offer's run or proofs are malformed", "protocol")
        return secret, proved

    def _impostor(self, pair: _Pair, offer: Offer) -> list[Output]:
        """An offer of a transfer that another run of a sender began with us: refused here,
        before the machine could take it for its sender back (docs/guarantees.md)."""
        reason = "this receiver takes the files only from the sender it began with"
        refuse = Reject(to=pair.info.id, transfer=offer.transfer, code="other-sender", reason=reason)
        warning = f"{pair.info.name or 'a peer'} offered this transfer but is not the sender it began with; refused"
        return [Impostor(pair.info, warning), *self.send(refuse)]

    def _on_hi(self, pair: _Pair, hi: Hi) -> list[Output]:
        if pair.trusted:
            raise RemoteProtocolError("a second hi", "protocol")
        pair.trusted = True
        pair.relayed = pair.link and hi.download == RELAYED and self.side == "sender"
        info = dataclasses.replace(pair.info, name=hi.name)
        pair.info = self.peers[info.id] = info
        assert pair.keys is not None
        out: list[Output] = [PeerTrusted(info, pair.keys.verifier(), pair.link), Deliver(PeerJoined(peer=info))]
        held, pair.held = pair.held, []
        for message in held:
            out += self.send(message)
        return out

    def receive_chunk(self, chunk: Chunk, into: bytearray) -> list[Output]:
        """``receive`` for a chunk, opened into ``into`` (``MAX_CHUNK_PAYLOAD`` bytes or more,
        reused by the caller: the chunk delivered is valid until ``into`` is used again)."""
        return self._open_chunk(chunk, into)

    def _open_chunk(self, chunk: Chunk, into: bytearray | None = None) -> list[Output]:
        pair = self.pairs.get(chunk.sender)
        content = pair.contents.get(chunk.transfer) if pair is not None else None
        if content is None:
            return []  # from no trusted sender of an offered transfer: dropped, never written
        routed = HEADER.pack(1, 0, 0, chunk.transfer, chunk.index, chunk.offset)  # what the relay may not change
        if into is None:
            plain = memoryview(content.open(chunk.index, chunk.offset, chunk.payload, routed))
        else:
            plain = memoryview(into)[: max(len(chunk.payload) - TAG_BYTES, 0)]
            content.open_into(chunk.index, chunk.offset, chunk.payload, routed, plain)
        opened = Chunk(chunk.sender, chunk.to, chunk.transfer, chunk.index, chunk.offset, plain)
        return [Deliver(opened)]

    def _refuse(self, pair: _Pair, error: WrongCode) -> list[Output]:
        """A wrong code. A receiver stops; a sender drops the peer and counts."""
        if self.side == "receiver" and pair.info.role != "peer":
            raise error
        self.pairs.pop(pair.info.id, None)
        self.wrong += 1
        if self.wrong >= self.limits.wrong_codes:
            raise CodeSpent(
                f"{_tried(self.wrong)}; the room is closed so that nobody can keep guessing. "
                "Start again for a new code."
            )
        tell = Error(to=pair.info.id, code="wrong-code", message="the code did not match")
        return [PeerRefused(pair.info.id, error, self.wrong), Send(tell)]

    # -- to the link --------------------------------------------------------------------

    def send(self, message: Message) -> list[Output]:
        """What to send on the link for ``message`` from the machine: sealed to a trusted
        peer, held until the handshake with one still under way, dropped for a stranger."""
        to = message.to
        pair = self.pairs.get(to) if to else None
        if pair is None:
            if to:
                return []  # the peer left or failed its handshake: nobody to send to
            raise RemoteProtocolError(f"{message.type} to everyone cannot be sealed", "protocol")
        if not pair.trusted:
            pair.held.append(message)
            return []
        extra: list[Output] = []
        if isinstance(message, Accept):
            extra.append(Send(Subscribe(to=to, transfer=message.transfer)))
        elif isinstance(message, (Reject, Cancel, Done)):  # the pair's part of the fan-out is over
            extra.append(Send(Unsubscribe(to=to, transfer=message.transfer)))
        fields: dict[str, object] = {}
        if isinstance(message, Offer):
            current = self._round(pair.info.id, message.transfer)
            (current.relayed if pair.relayed else current.sealed).add(pair.info.id)
            if not pair.relayed:
                fields = {"key": b64encode(current.key.key), **self._run_proof(pair)}
        if pair.relayed and not isinstance(message, Text):  # texts stay sealed: the bridge needs only files
            return [Send(message)]
        return [*self._sealed(pair, message, fields), *extra]

    def _run_proof(self, pair: _Pair) -> dict[str, object]:
        """Our run's secret for this pair, and proof of the others we gave, bound to its keys."""
        assert pair.keys is not None
        if pair.run is None:
            pair.run = self.runs.give()
        proofs = self.runs.proofs(pair.keys.binding(), but=pair.run)
        return {"run": b64encode(pair.run), "proofs": [b64encode(p) for p in proofs]}

    def _round(self, to: int, transfer: int) -> _Round:
        """The current round of ``transfer``: a new one (a new content key) once a chunk was
        sealed under the last one, or ``to`` had an offer of it, so that no key seals two
        rounds' chunks (a receiver that comes back has a new peer id: that is not enough)."""
        current = self._rounds.get(transfer)
        if current is None or current.chunks or to in current.sealed or to in current.relayed:
            current = self._rounds[transfer] = _Round()
        return current

    def _sealed(self, pair: _Pair, message: Message, fields: dict[str, object] | None = None) -> list[Output]:
        assert pair.outgoing is not None
        obj = to_dict(message)
        obj.pop("to", None)
        obj.pop("from", None)
        obj.update(fields or {})  # beside the message: an offer's content key and run
        plain = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        return [Send(Sealed(to=pair.info.id, box=b64encode(pair.outgoing.seal(plain))))]

    def seal_chunk(self, chunk: Chunk) -> list[bytes | bytearray]:
        """The frames for a chunk: its payload sealed under its round's content key, in one
        frame that the relay fans out. A page that receives through the relay's bridge gets
        it in clear, in a frame of its own (and then every receiver does: one fan-out
        cannot carry both)."""
        current = self._rounds.get(chunk.transfer)
        if current is None:
            raise LocalProtocolError("a chunk of a transfer never offered")
        current.chunks = True
        payload = chunk.payload  # sealed without a copy first
        routed = HEADER.pack(1, 0, 0, chunk.transfer, chunk.index, chunk.offset)
        mixed = chunk.to == 0 and bool(current.relayed)
        if not mixed and chunk.to not in current.relayed:  # the usual case: one frame, sealed in place
            frame = bytearray(HEADER_SIZE + len(payload) + TAG_BYTES)
            HEADER.pack_into(frame, 0, 1, chunk.sender, chunk.to, chunk.transfer, chunk.index, chunk.offset)
            current.key.seal_into(chunk.index, chunk.offset, payload, routed, memoryview(frame)[HEADER_SIZE:])
            return [frame]
        sealed = current.key.seal(chunk.index, chunk.offset, payload, routed)
        targets = [chunk.to] if not mixed else sorted(current.sealed | current.relayed)
        frames: list[bytes | bytearray] = []
        for to in targets:
            header = HEADER.pack(1, chunk.sender, to, chunk.transfer, chunk.index, chunk.offset)
            frames.append(header + (bytes(payload) if to in current.relayed else sealed))
        return frames


def _tried(wrong: int) -> str:
    return "a wrong code was tried" if wrong == 1 else f"{wrong} wrong codes were tried"
