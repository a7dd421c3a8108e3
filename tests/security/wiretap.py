"""A relay in the middle, for the security tests: a WebSocket proxy on loopback that
forwards every frame between each peer and a real ``xfer serve``, records it, and can
rewrite, drop, replay or reorder what passes (``tamper``).

It runs its own event loop in a thread, so that a test can drive ``xfer`` processes
synchronously beside it. Close codes pass through both ways, as a relay's would.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

UP, DOWN = "up", "down"  # peer -> relay, relay -> peer


@dataclass
class Frame:
    conn: int  # which peer connection (in the order they came)
    role: str  # that peer's role, from its hello
    direction: str  # UP or DOWN
    data: str | bytes

    @property
    def kind(self) -> str:
        """A control frame's ``type``, or ``chunk`` for a binary frame."""
        if isinstance(self.data, bytes):
            return "chunk"
        try:
            return str(json.loads(self.data).get("type"))
        except (ValueError, AttributeError):
            return "?"

    def json(self) -> dict:
        assert isinstance(self.data, str)
        return json.loads(self.data)


# What to forward for a frame: [frame.data] passes it, [] drops it, two replay it.
Tamper = Callable[[Frame], list[str | bytes]]


@dataclass
class Wiretap:
    relay_port: int
    tamper: Tamper | None = None
    frames: list[Frame] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._conns = 0
        self.port = 0

    # -- life ------------------------------------------------------------------------

    def __enter__(self) -> Wiretap:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the wiretap did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    # -- one peer's connection ---------------------------------------------------------

    async def _handle(self, peer: ServerConnection) -> None:
        with self._lock:
            self._conns += 1
            number = self._conns
        path = peer.request.path if peer.request is not None else "/ws"
        upstream = await connect(
            f"ws://127.0.0.1:{self.relay_port}{path}", compression=None, max_size=None, ping_interval=None
        )
        state = {"role": "?"}

        async def pump(src, dst, direction: str) -> None:
            try:
                async for data in src:
                    if direction == UP and state["role"] == "?" and isinstance(data, str):
                        try:
                            state["role"] = str(json.loads(data).get("role", "?"))
                        except ValueError:
                            pass
                    frame = Frame(number, state["role"], direction, data)
                    with self._lock:
                        self.frames.append(frame)
                    for out in self.tamper(frame) if self.tamper is not None else [data]:
                        await dst.send(out)
            except ConnectionClosed:
                pass
            finally:
                code, reason = _close_of(src)
                try:
                    await dst.close(code, reason)
                except Exception:
                    pass

        await asyncio.gather(pump(peer, upstream, UP), pump(upstream, peer, DOWN))

    # -- what passed -------------------------------------------------------------------

    def seen(self) -> list[Frame]:
        with self._lock:
            return list(self.frames)

    def wait_for(self, check: Callable[[list[Frame]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self.seen()):
                return True
            time.sleep(0.05)
        return False


def _close_of(ws) -> tuple[int, str]:
    rcvd = ws.protocol.close_rcvd
    if rcvd is None or rcvd.code in (1005, 1006, 1015):
        return 1000, ""
    return rcvd.code, rcvd.reason


# -- what an observer can read in a frame ----------------------------------------------------

_B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{8,}")


def readings(data: str | bytes) -> Iterator[bytes]:
    """Every form in which a frame could carry something readable: its bytes; for a JSON
    frame, each string in it with JSON's escapes undone; and the bytes of every run that
    looks like base64 (standard or URL-safe, at each of the four alignments)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    yield raw
    if isinstance(data, str):
        try:
            yield from (s.encode() for s in _strings(json.loads(data)))
        except ValueError:
            pass
        for run in _B64_RUN.findall(raw):
            for shift in range(4):  # where the text begins need not be where the encoding did
                part = run[shift:]
                part = part[: len(part) - (1 if len(part) % 4 == 1 else 0)]
                part += b"=" * (-len(part) % 4)
                for alphabet in (None, b"-_"):
                    try:
                        yield base64.b64decode(part, altchars=alphabet) if alphabet else base64.b64decode(part)
                    except (binascii.Error, ValueError):
                        pass


def _strings(obj: object) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from _strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _strings(value)


def blocks_of(content: bytes, size: int = 16) -> set[bytes]:
    """The content's aligned ``size``-byte blocks: any run of ``2 * size`` bytes of it
    holds one whole, so a frame without any of them holds no such run."""
    return {content[i : i + size] for i in range(0, len(content) - size + 1, size)}


def holds_a_block(data: bytes, blocks: set[bytes], size: int = 16) -> bool:
    return any(data[i : i + size] in blocks for i in range(len(data) - size + 1))
