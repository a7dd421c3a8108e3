"""Protocol 2.0's keys: a PAKE turns a short code into a strong key, and HKDF derives
every key the peers use from it. Nothing here is a primitive of our own: SPAKE2 comes
from the ``spake2`` package (magic-wormhole's, with published vectors), HKDF-SHA256,
HMAC and AES-256-GCM from ``cryptography``.

The schedule (docs/protocol.md draws it):

- ``Handshake``: SPAKE2 between one receiver (side B) and the sender (side A), with the
  code's words as the password and the nameplate bound into both identities. Each side
  also sends 16 fresh random bytes (its ``nonce``) beside its PAKE message.
- ``PairKeys``: from the PAKE key ``K`` and both nonces (the HKDF salt), one key per
  purpose and direction: a confirmation tag each side sends first (so a wrong code is
  known at once, before anything else), the control channel of each direction, and the
  ``--verify`` words. Fresh nonces on both sides mean fresh keys for every handshake, so
  a round (a reconnection, a resume) never reuses a key and nonce pair, and frames
  recorded in one round mean nothing in another.
- ``Channel``: AES-256-GCM with an implicit counter as the nonce (never sent), one per
  direction: a frame the relay drops, replays, reorders or rewrites fails to open.
- ``ContentKey``: the chunks of one round, under a random key that the sender draws
  for the round and gives each receiver inside its own control channel, so a fan-out
  still sends each chunk once. The nonce is the chunk's file index and offset (each
  sent once per round); the header the relay routes on is the associated data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import RemoteProtocolError
from .words import wordlist

Side = Literal["sender", "receiver"]
KEY_BYTES = 32
NONCE_BYTES = 16  # each side's fresh contribution to a handshake
TAG_BYTES = 16  # AES-GCM's authentication tag, added to every sealed frame
PAKE_MESSAGE_BYTES = 33  # SPAKE2 on Ed25519: a side byte and a point
_CONTEXT = b"xfer v2 "
_COUNTER = struct.Struct("!4xQ")  # 12-byte GCM nonce: zeros, then a 64-bit counter
_CHUNK_NONCE = struct.Struct("!IQ")  # 12-byte GCM nonce: file index, offset
MAX_COUNTER = 2**64 - 1
_NAMEPLATE_TEXT = re.compile(r"^[1-9][0-9]{0,5}$")
_LINK_SECRET = re.compile(r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")  # 32 bytes in base64url, no padding


class WrongCode(RemoteProtocolError):
    """The other side's key differs from ours: a mistyped code, or someone guessing."""

    code = "wrong-code"


class Tampered(RemoteProtocolError):
    """A sealed frame did not open: something between the peers changed, dropped,
    replayed or reordered it."""

    code = "tampered"


def hkdf(key: bytes, info: bytes, *, salt: bytes | None = None, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=_CONTEXT + info).derive(key)


def warm_up() -> None:
    """Import SPAKE2 now (its module computes constants in pure Python for ~20 ms): a shell
    runs this in a thread while it connects to the relay, so that the wait hides it."""
    import spake2  # noqa: F401


class Handshake:
    """One side of the PAKE between the sender and one receiver."""

    def __init__(
        self, password: bytes, nameplate: int, side: Side, *, entropy: Callable[[int], bytes] | None = None
    ) -> None:
        from spake2 import SPAKE2_A, SPAKE2_B  # here: importing it costs ~20 ms, which a waiting peer hides

        ids = {"idA": _CONTEXT + b"sender %d" % nameplate, "idB": _CONTEXT + b"receiver %d" % nameplate}
        kind = SPAKE2_A if side == "sender" else SPAKE2_B
        extra = {} if entropy is None else {"entropy_f": entropy}
        self.side: Side = side
        self._pake = kind(password, **ids, **extra)
        self.message = self._pake.start()  # to the other side, with ``nonce``
        self.nonce = (entropy or os.urandom)(NONCE_BYTES)

    def finish(self, message: bytes, nonce: bytes) -> PairKeys:
        """The keys, from the other side's PAKE message and nonce. A message that is not a
        PAKE message raises ``RemoteProtocolError``; a wrong code shows only later, when
        the confirmation tags differ (``PairKeys.check``)."""
        from spake2 import SPAKEError

        if len(message) != PAKE_MESSAGE_BYTES or len(nonce) != NONCE_BYTES:
            raise RemoteProtocolError("the peer's key exchange message has the wrong size", "protocol")
        try:
            key = self._pake.finish(message)
        except (SPAKEError, ValueError, AssertionError) as exc:
            raise RemoteProtocolError(f"the peer's key exchange message is broken: {exc}", "protocol") from None
        ours, theirs = (self.nonce, nonce) if self.side == "sender" else (nonce, self.nonce)
        return PairKeys(key, salt=ours + theirs, side=self.side)


@dataclass(frozen=True)
class PairKeys:
    """Every key one sender and one receiver share, from the PAKE key and both nonces
    (``salt`` is the sender's nonce, then the receiver's)."""

    key: bytes
    salt: bytes
    side: Side

    def _derive(self, purpose: bytes) -> bytes:
        return hkdf(self.key, purpose, salt=self.salt)

    @property
    def other(self) -> Side:
        return "receiver" if self.side == "sender" else "sender"

    def confirmation(self) -> bytes:
        """The tag this side sends first: proof that it holds the same key."""
        return self._derive(b"confirm " + self.side.encode())

    def check(self, tag: bytes) -> None:
        """Compare the other side's tag; raise ``WrongCode`` when the keys differ."""
        expected = self._derive(b"confirm " + self.other.encode())
        if not hmac.compare_digest(expected, tag):
            raise WrongCode("the code did not match (a typo, or someone else tried it)")

    def outgoing(self) -> Channel:
        return Channel(self._derive(b"control " + self.side.encode()))

    def incoming(self) -> Channel:
        return Channel(self._derive(b"control " + self.other.encode()))

    def binding(self) -> bytes:
        """What only this pair's two sides know, to bind a sender's proof of its run to (``Runs``)."""
        return self._derive(b"run")

    def verifier(self, words: int = 3) -> str:
        """Words both sides show for ``--verify``: the same on both only with the same key."""
        digest = self._derive(b"verify")
        choices = wordlist()
        picks = [int.from_bytes(digest[2 * i : 2 * i + 2], "big") % len(choices) for i in range(words)]
        return " ".join(choices[p] for p in picks)


class Runs:
    """What outlives one connection's keys, for one run of ``xfer`` (its guards share it).

    A sender draws a secret for each receiver it makes keys with, and with each later
    offer proves the others it gave, bound to the new pair's keys (``proofs``): a receiver
    back, or the sender back under a new peer id, sees the same run. A receiver records
    which run's secret came with each transfer id first (``claim``): another member of the
    room, who saw the offer and its id but holds another secret, cannot take it over.
    """

    def __init__(self, limit: int = 80) -> None:
        self.limit = limit  # secrets (a sender) and transfers (a receiver) kept, the newest
        self.given: list[bytes] = []
        self.offered: dict[int, bytes | None] = {}

    def give(self) -> bytes:
        secret = os.urandom(KEY_BYTES)
        self.given = [*self.given, secret][-self.limit :]
        return secret

    def proofs(self, binding: bytes, but: bytes) -> list[bytes]:
        return [_prove(secret, binding) for secret in self.given if secret != but]

    def claim(self, transfer: int, secret: bytes | None, binding: bytes, proofs: list[bytes]) -> bool:
        """Whether an offer of ``transfer`` that came with ``secret`` and ``proofs`` is from
        the run that offered it first (a transfer first offered without a secret, by a page,
        is taken on its id alone)."""
        if transfer not in self.offered:
            while len(self.offered) >= self.limit:
                del self.offered[next(iter(self.offered))]
            self.offered[transfer] = secret
            return True
        first = self.offered[transfer]
        if first is None or first == secret:
            return True
        expected = _prove(first, binding)
        return any(hmac.compare_digest(expected, proof) for proof in proofs)


def _prove(secret: bytes, binding: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT + b"run " + binding, hashlib.sha256).digest()


class Channel:
    """One direction of a control channel: AES-256-GCM, the nonce a counter that both
    ends keep (never sent). Seal on one end, open in the same order on the other."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.counter = 0

    def _next(self) -> bytes:
        if self.counter >= MAX_COUNTER:
            raise RemoteProtocolError("too many messages under one key", "protocol")
        nonce = _COUNTER.pack(self.counter)
        self.counter += 1
        return nonce

    def seal(self, plaintext: bytes, associated: bytes = b"") -> bytes:
        return self._aead.encrypt(self._next(), plaintext, associated)

    def open(self, sealed: bytes, associated: bytes = b"") -> bytes:
        """The plaintext; ``Tampered`` if the frame was changed, dropped, replayed or reordered."""
        try:
            return self._aead.decrypt(self._next(), sealed, associated)
        except InvalidTag:
            raise Tampered("a message between the peers was changed on the way; the transfer stops") from None


class ContentKey:
    """The chunks of one round: a random key, nonces from (file index, offset)."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key if key is not None else AESGCM.generate_key(bit_length=256)
        if len(self.key) != KEY_BYTES:
            raise RemoteProtocolError("a content key has 32 bytes", "protocol")
        self._aead = AESGCM(self.key)

    def seal(self, index: int, offset: int, data: bytes | memoryview, header: bytes) -> bytes:
        return self._aead.encrypt(_CHUNK_NONCE.pack(index, offset), data, header)

    def seal_into(self, index: int, offset: int, data: bytes | memoryview, header: bytes, out: memoryview) -> None:
        """``seal`` written into ``out`` (``len(data) + TAG_BYTES`` bytes): a frame built
        around its header, with no sealed copy made first."""
        self._aead.encrypt_into(_CHUNK_NONCE.pack(index, offset), data, header, out)

    def open(self, index: int, offset: int, sealed: bytes | memoryview, header: bytes) -> bytes:
        try:
            return self._aead.decrypt(_CHUNK_NONCE.pack(index, offset), sealed, header)
        except InvalidTag:
            raise Tampered("a chunk was changed on the way; the transfer stops") from None

    def open_into(self, index: int, offset: int, sealed: bytes | memoryview, header: bytes, out: memoryview) -> None:
        """``open`` written into ``out`` (``len(sealed) - TAG_BYTES`` bytes): a receiver opens
        each chunk into one buffer it reuses, with no bytes object made per chunk."""
        try:
            self._aead.decrypt_into(_CHUNK_NONCE.pack(index, offset), sealed, header, out)
        except InvalidTag:
            raise Tampered("a chunk was changed on the way; the transfer stops") from None


def link_secret() -> bytes:
    """The secret a QR code's link carries in its fragment (the page needs no PAKE)."""
    return os.urandom(KEY_BYTES)


def link_fragment(nameplate: int, secret: bytes) -> str:
    """What follows ``#`` in the page's link: the nameplate, then the secret (base64url,
    43 characters). Browsers never send a fragment to a server."""
    return f"{nameplate}.{base64.urlsafe_b64encode(secret).decode().rstrip('=')}"


def parse_link_fragment(fragment: str) -> tuple[int, bytes]:
    """The nameplate and secret of a page link's fragment; ``ValueError`` if it is none."""
    number, _, text = fragment.partition(".")
    if not _NAMEPLATE_TEXT.match(number) or not 1 <= int(number) <= 999_999 or not _LINK_SECRET.match(text):
        raise ValueError("not an xfer link")
    secret = base64.urlsafe_b64decode(text + "=")
    return int(number), secret


def link_keys(secret: bytes, sender_nonce: bytes, page_nonce: bytes, side: Side) -> PairKeys:
    """A page's keys with the sender, from the link's secret instead of a PAKE."""
    if len(secret) != KEY_BYTES:
        raise RemoteProtocolError("a link secret has 32 bytes", "protocol")
    return PairKeys(hashlib.sha256(_CONTEXT + b"link " + secret).digest(), sender_nonce + page_nonce, side)
