"""Sender and receiver over a real relay on loopback, and hostile peers speaking the protocol."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from conftest import make_file, run_async, sha256_of
from xfer.errors import Declined, IntegrityFailure, LocalFileError, PeerGone, PeerProtocolError
from xfer.protocol import (
    Accept,
    Ack,
    Chunk,
    Error,
    FileEnd,
    FileInfo,
    FileStart,
    Offer,
    PeerJoined,
    Reject,
    Verified,
    encode_chunk,
    new_code,
    room_id,
)
from xfer.relay import RelayServer, bind_socket
from xfer.transfer.connection import open_room
from xfer.transfer.receiver import Receiver
from xfer.transfer.sender import Sender, check_sources


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
    """A relay on a loopback port 0 and a fresh room in it."""

    async def __aenter__(self):
        self.server = RelayServer(bind_socket("127.0.0.1", 0))
        await self.server.start()
        self.url = f"ws://127.0.0.1:{self.server.port}/ws"
        self.id = room_id(new_code())
        self.created = False
        return self

    async def __aexit__(self, *exc):
        await self.server.stop()

    async def join(self, role):
        create = not self.created
        self.created = True
        return await open_room(self.url, self.id, role=role, name=role, create=create)


async def next_of(conn, kind, timeout=5):
    """The next message of ``kind`` (skipping membership news)."""
    while True:
        item = await asyncio.wait_for(conn.recv(), timeout)
        if isinstance(item, kind):
            return item


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- honest peers ------------------------------------------------------------------------------


def test_files_arrive_verified_with_events(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    paths = [make_file(src / "big.bin", 5_000_000 + 7, 1), make_file(src / "empty.txt", 0), make_file(src / "b.txt", 10, 2)]
    out = tmp_path / "out"
    out.mkdir()

    async def main():
        async with Room() as room:
            send_conn = await room.join("sender")
            recv_conn = await room.join("receiver")
            sent, got = Events(), Events()
            sender = Sender(send_conn, check_sources(paths), sent, chunk_size=64 * 1024, window=512 * 1024)
            receiver = Receiver(recv_conn, out, got, yes)
            return await asyncio.gather(sender.run(), receiver.run()), sent, got

    (s_sum, r_sum), sent, got = run_async(main())
    assert listing(out) == ["b.txt", "big.bin", "empty.txt"]  # no partial files left behind
    for p in paths:
        assert sha256_of(out / p.name) == sha256_of(p)
    assert s_sum["files"] == r_sum["files"] == 3 and s_sum["bytes"] == r_sum["bytes"] == 5_000_017
    for events in (sent, got):
        for index in range(3):
            kinds = [e for e, f in events if f.get("index") == index]
            assert kinds[0] == "file-start" and kinds[-1] == "file-end" and "progress" in kinds
    ends = {f["name"]: f for f in got.named("file-end")}
    assert ends["big.bin"]["sha256"] == sha256_of(paths[0]) and ends["big.bin"]["path"] == str(out / "big.bin")
    assert sent.named("file-end")[0]["sha256"] == sha256_of(paths[0])
    assert got.named("offer")[0]["total"] == 5_000_017


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    src = make_file(tmp_path / "a.txt", 1000, 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("mine")

    async def transfer(overwrite):
        async with Room() as room:
            s, r = await room.join("sender"), await room.join("receiver")
            await asyncio.gather(Sender(s, check_sources([src]), Events()).run(),
                                 Receiver(r, out, Events(), yes, overwrite=overwrite).run())

    run_async(transfer(False))
    assert (out / "a.txt").read_text() == "mine"
    assert sha256_of(out / "a (1).txt") == sha256_of(src)
    run_async(transfer(True))
    assert sha256_of(out / "a.txt") == sha256_of(src)
    assert listing(out) == ["a (1).txt", "a.txt"]


def test_declined_offer(tmp_path):
    src = make_file(tmp_path / "a.txt", 10)

    async def main():
        async with Room() as room:
            s, r = await room.join("sender"), await room.join("receiver")
            results = await asyncio.gather(Sender(s, check_sources([src]), Events()).run(),
                                           Receiver(r, tmp_path / "x", Events(), no).run(), return_exceptions=True)
            return results

    (tmp_path / "x").mkdir()
    sent, received = run_async(main())
    assert isinstance(sent, Declined) and "declined" in str(sent)
    assert isinstance(received, Declined)
    assert listing(tmp_path / "x") == []


def test_sender_window_bounds_unacknowledged_bytes(tmp_path):
    """A receiver that never acknowledges gets exactly one window of data, then nothing."""
    src = make_file(tmp_path / "big.bin", 20 * 1024 * 1024)

    async def main():
        async with Room() as room:
            s = await room.join("sender")
            r = await room.join("receiver")
            sender = Sender(s, check_sources([src]), Events(), chunk_size=256 * 1024, window=2 * 1024 * 1024,
                            peer_timeout=0.5)
            task = asyncio.create_task(sender.run())
            offer = await next_of(r, Offer)
            await r.send(Accept(to=offer.sender, transfer=offer.transfer))
            received = 0
            try:
                while True:
                    chunk = await next_of(r, Chunk, timeout=1.0)
                    received += len(chunk.payload)
            except asyncio.TimeoutError:
                pass
            assert received == 2 * 1024 * 1024
            await r.send(Ack(to=offer.sender, transfer=offer.transfer, bytes=1024 * 1024))
            more = 0
            try:
                while True:
                    more += len((await next_of(r, Chunk, timeout=1.0)).payload)
            except asyncio.TimeoutError:
                pass
            assert more == 1024 * 1024  # credit returned, and no more than that
            await r.close()
            with pytest.raises(PeerGone, match="left during big.bin"):
                await task

    run_async(main())


def test_missing_source_fails_before_anything_opens(tmp_path):
    with pytest.raises(LocalFileError, match="no such file"):
        check_sources([tmp_path / "nope.txt"])
    with pytest.raises(LocalFileError, match="folder"):
        check_sources([tmp_path])


# -- hostile senders: the receiver keeps its folder safe -----------------------------------------


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


def test_hash_mismatch_leaves_no_file(tmp_path):
    async def main():
        async with Room() as room:
            h = HostileSender(room)
            assert isinstance(await h.offer([("report.pdf", 5)], tmp_path), Accept)
            await h.start(0)
            await h.chunk(0, 0, b"hello")
            await h.end(0, 5, _sha(b"HELLO"))
            error = await next_of(h.conn, Error)
            return error, await h.outcome()

    error, result = run_async(main())
    assert error.code == "hash-mismatch"
    assert isinstance(result, IntegrityFailure) and "report.pdf" in str(result)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("case", ["more-than-offered", "gap", "overlap", "unknown-file", "fewer-than-offered",
                                  "chunk-before-start"])
def test_lying_sizes_and_offsets_are_refused(tmp_path, case):
    async def main():
        async with Room() as room:
            h = HostileSender(room)
            await h.offer([("a.bin", 8)], tmp_path)
            if case != "chunk-before-start":
                await h.start(0)
            if case == "more-than-offered":
                await h.chunk(0, 0, b"x" * 9)
            elif case == "gap":
                await h.chunk(0, 4, b"xxxx")
            elif case == "overlap":
                await h.chunk(0, 0, b"xxxx")
                await h.chunk(0, 2, b"xxxx")
            elif case == "unknown-file":
                await h.chunk(3, 0, b"xxxx")
            elif case == "fewer-than-offered":
                await h.chunk(0, 0, b"xxxx")
                await h.end(0, 8, _sha(b"xxxx"))
            elif case == "chunk-before-start":
                await h.chunk(0, 0, b"xxxx")
            error = await next_of(h.conn, Error)
            return error, await h.outcome()

    error, result = run_async(main())
    assert error.code == "protocol"
    assert isinstance(result, PeerProtocolError)
    assert listing(tmp_path) == []


HOSTILE_NAMES = ["../../escape.txt", "/etc/passwd", "C:\\Windows\\evil.dll", "\\\\server\\share\\unc.txt",
                 "\x1b]8;;http://x\x07link\x1b]8;;\x07.txt", "CON", "trailing. . ", "a\x00b.txt", "..", "sub/../../up"]


def test_hostile_names_stay_inside_the_folder(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    os.symlink(outside / "keep", folder / "passwd")  # a planted symlink where a name would land

    async def main():
        async with Room() as room:
            h = HostileSender(room)
            await h.offer([(n, 3) for n in HOSTILE_NAMES], folder, overwrite=True)
            for i in range(len(HOSTILE_NAMES)):
                await h.start(i)
                await h.chunk(i, 0, b"bad")
                await h.end(i, 3, _sha(b"bad"))
                await next_of(h.conn, Verified)
            return await h.outcome()

    summary = run_async(main())
    assert summary["files"] == len(HOSTILE_NAMES)
    assert (outside / "keep").read_text() == "keep" and listing(outside) == ["keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox", "outside"]
    for entry in summary["saved"]:
        path = Path(entry["path"])
        assert path.parent == folder.resolve() and path.read_bytes() == b"bad"
        assert not any(c in path.name for c in "/\\\x00\x1b\x07")
    assert os.path.islink(folder / "passwd") is False or os.readlink(folder / "passwd") == str(outside / "keep")
    assert len(listing(folder)) == len(HOSTILE_NAMES) + (1 if os.path.islink(folder / "passwd") else 0)


def test_offer_larger_than_free_space_is_refused(tmp_path):
    async def main():
        async with Room() as room:
            h = HostileSender(room)
            answer = await h.offer([("huge.iso", 2**52)], tmp_path)
            return answer, await h.outcome()

    answer, result = run_async(main())
    assert isinstance(answer, Reject) and answer.code == "no-space"
    assert isinstance(result, LocalFileError) and "not enough space" in str(result)
    assert listing(tmp_path) == []


def test_chunks_from_a_third_peer_are_ignored(tmp_path):
    """Only the peer whose offer was accepted may write into the receiver's files."""

    async def main():
        async with Room() as room:
            h = HostileSender(room)
            await h.offer([("a.txt", 4)], tmp_path)
            await h.start(0)
            intruder = await room.join("sender")
            await intruder.send_frame(encode_chunk(intruder.peer_id, h.to, 77, 0, 0, b"EVIL"))
            await asyncio.sleep(0.2)
            await h.chunk(0, 0, b"good")
            await h.end(0, 4, _sha(b"good"))
            return await h.outcome()

    summary = run_async(main())
    assert (tmp_path / "a.txt").read_bytes() == b"good" and summary["files"] == 1


@pytest.mark.parametrize("resume", [True, False])
def test_sender_leaving_mid_transfer_keeps_the_partial_for_resume(tmp_path, resume):
    async def main():
        async with Room() as room:
            h = HostileSender(room)
            await h.offer([("movie.mkv", 10_000_000)], tmp_path, peer_timeout=0.5, resume=resume)
            await h.start(0)
            await h.chunk(0, 0, b"x" * 100_000)
            await asyncio.sleep(0.2)
            await h.conn.close()
            return await h.outcome()

    result = run_async(main())
    assert isinstance(result, PeerGone) and "movie.mkv" in str(result) and "100.0 kB of 10.0 MB" in str(result)
    assert "resume" in str(result)
    names = listing(tmp_path)
    if resume:
        assert len(names) == 2 and all(n.startswith(".movie.mkv.") for n in names)
        partial = next(tmp_path.glob("*.xfer-part"))
        assert partial.read_bytes() == b"x" * 100_000
    else:
        assert names == []
