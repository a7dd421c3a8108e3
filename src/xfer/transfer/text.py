"""Sending a line of text into a room (``xfer send --text``): wait until someone is
there to read it, send one ``text`` message to everyone else in the room, done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import PeerGone, UsageError
from ..protocol import PeerJoined, PeerLeft, Text
from ..protocol.messages import MAX_TEXT_CHARS
from .base import PeerTask, peer_dict


def check_text(text: str) -> str:
    """The text as it will travel, or a ``UsageError`` a person can act on."""
    if text.endswith("\n"):  # what `echo ... | xfer send --text -` adds
        text = text[:-1]
    if not text:
        raise UsageError("the text is empty; nothing to send")
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(f"the text has {len(text)} characters; at most {MAX_TEXT_CHARS} fit in one message")
    return text


class TextSender(PeerTask):
    """Sends ``text`` once somebody else is in the room.

    ``wait_forever``: true when we opened the room (the others come when they
    scan the code); otherwise nobody there after ``peer_timeout`` is an error.
    """

    def __init__(
        self, conn: Any, text: str, emit: Callable[..., None], *, wait_forever: bool = False, **options: Any
    ) -> None:
        super().__init__(conn, emit, **options)
        self.text = check_text(text)
        self.wait_forever = wait_forever

    async def handle(self, item: Any) -> None:
        if isinstance(item, PeerJoined):
            self.emit("peer-joined", peer=peer_dict(item.peer))
        elif isinstance(item, PeerLeft):
            self.emit("peer-left", peer={"id": item.peer_id})

    def _someone_here(self) -> bool:
        return self.connected and bool(self.conn.peers)

    async def main(self) -> dict[str, Any]:
        if not self._someone_here():
            self.emit("waiting", reason="receiver")
        deadline = None if self.wait_forever else asyncio.get_running_loop().time() + self.peer_timeout
        while True:
            await self.until(
                self._someone_here,
                deadline=deadline,
                breakable=False,
                timeout_error=lambda: PeerGone("nobody else is in the room to read the text"),
            )
            conn = self.conn
            for peer in list(conn.peers):  # each sealed for its own peer
                await self.send_or_reconnect(Text(to=peer, text=self.text))
            if not conn.lost:
                break  # sent; else the link was found gone: again once the reader is back
        peers = [peer_dict(p) for p in self.conn.peers.values()]
        summary = {"chars": len(self.text), "to": peers}
        self.emit("text-sent", **summary)
        return summary


__all__ = ["TextSender", "check_text"]
