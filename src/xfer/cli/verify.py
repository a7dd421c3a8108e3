"""``--verify``: compare three words with the other side before anything moves.

``SecureLink`` emits ``secured`` (peer, name, verifier, page) when a peer proved the
code; right after, it hands up that peer's ``peer-joined``, and the sender offers
nothing to a peer before it saw that, nor does a receiver see an offer from a sender
before it. So ``Verifier.check``, the link's ``admit``, holds the ``peer-joined`` until
the person said yes: that holds the offer (sender) and the acceptance (receiver), with
no change to either machine.

The words come from the pair's key: a relay in the middle that ran two handshakes
(it would have had to guess the code) has two keys, and the words differ. A page
proved the QR link's secret, not the spoken code, and shows no words: it is not asked
about.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import XferError
from ..protocol import PeerInfo
from .status import EXIT_CODE

Emit = Callable[..., None]
Ask = Callable[[str], Awaitable[bool]]


class NotVerified(XferError):
    """The person said the verification words differ: someone may be in the middle."""

    exit_code = EXIT_CODE
    code = "not-verified"


def question(verifier: str) -> str:
    return f"Verify: {verifier} — do they match on the other side?"


class Verifier:
    """Between ``SecureLink``'s events and the display: remembers each peer's words, and
    asks about them (``--verify``) when the link hands that peer up."""

    def __init__(self, emit: Emit, ask: Ask | None) -> None:
        self.forward = emit
        self.ask = ask  # None: show the words in events only, ask nothing
        self.words: dict[int, str] = {}  # secured peers not yet asked about

    def emit(self, event: str, **fields: Any) -> None:
        if event == "secured" and self.ask is not None and not fields.get("page"):
            self.words[int(fields["peer"])] = str(fields["verifier"])
        self.forward(event, **fields)

    async def check(self, peer: PeerInfo) -> None:
        """Ask about ``peer``'s words, if it has some to ask about; ``NotVerified`` on a no."""
        words = self.words.pop(peer.id, None)
        if words is None or self.ask is None:
            return
        if not await self.ask(question(words)):
            raise NotVerified(
                "the verification words did not match: someone may be between you; "
                "nothing was sent. Start again with a new code"
            )
