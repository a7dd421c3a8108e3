"""Sender and receiver over a real relay on loopback, and hostile peers speaking the protocol."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from conftest import make_file, run_async, sha256_of
from peers import Events, HostileSender, Room, listing, next_of, no, plant_partial, yes
from xfer.errors import Declined, LocalFileError, PeerGone
from xfer.protocol import (
    Accept,
    Ack,
    Chunk,
    Offer,
)
from xfer.protocol.keys import Runs
from xfer.transfer.receiver import Receiver
from xfer.transfer.sender import Sender, check_sources


def test_files_arrive_verified_with_events(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    paths = [
        make_file(src / "big.bin", 5_000_000 + 7, 1),
        make_file(src / "empty.txt", 0),
        make_file(src / "b.txt", 10, 2),
    ]
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
            await asyncio.gather(
                Sender(s, check_sources([src]), Events()).run(),
                Receiver(r, out, Events(), yes, overwrite=overwrite).run(),
            )

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
            results = await asyncio.gather(
                Sender(s, check_sources([src]), Events()).run(),
                Receiver(r, tmp_path / "x", Events(), no).run(),
                return_exceptions=True,
            )
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
            sender = Sender(
                s, check_sources([src]), Events(), chunk_size=256 * 1024, window=2 * 1024 * 1024, peer_timeout=0.5
            )
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
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "pipe")
    with pytest.raises(LocalFileError, match="not a regular file"):
        check_sources([tmp_path / "fifo" / "pipe"])


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


# -- resume from what a receiver already holds --------------------------------------------------------


def _transfer(src: Path, out: Path):
    async def main():
        async with Room() as room:
            s, r = await room.join("sender"), await room.join("receiver")
            sent, got = Events(), Events()
            await asyncio.gather(
                Sender(s, check_sources([src]), sent, chunk_size=64 * 1024).run(), Receiver(r, out, got, yes).run()
            )
            return sent, got

    return run_async(main())


def test_resume_sends_only_what_is_missing(tmp_path):
    src = make_file(tmp_path / "video.mp4", 3_000_000, 7)
    out = tmp_path / "out"
    out.mkdir()
    plant_partial(out, src, src.read_bytes()[:1_234_567])
    sent, got = _transfer(src, out)
    assert sent.named("accepted")[0]["resumed"] == 1_234_567
    assert sent.named("file-start")[0]["offset"] == 1_234_567
    assert sha256_of(out / "video.mp4") == sha256_of(src)
    assert listing(out) == ["video.mp4"]  # no partial or state file left


def test_resume_of_a_changed_file_starts_over(tmp_path):
    src = make_file(tmp_path / "video.mp4", 3_000_000, 7)
    out = tmp_path / "out"
    out.mkdir()
    plant_partial(out, src, b"not what the sender has" * 1000)  # same name, size and mtime, other bytes
    sent, got = _transfer(src, out)
    assert sent.named("resume-mismatch")[0]["name"] == "video.mp4"
    assert sent.named("file-start")[0]["offset"] == 0
    assert sha256_of(out / "video.mp4") == sha256_of(src)
    assert listing(out) == ["video.mp4"]


def test_a_partial_without_matching_state_is_discarded_with_a_message(tmp_path):
    src = make_file(tmp_path / "video.mp4", 3_000_000, 7)
    out = tmp_path / "out"
    out.mkdir()
    plant_partial(out, src, src.read_bytes()[:1000], with_state=False)
    sent, got = _transfer(src, out)
    assert "does not match" in got.named("resume-discarded")[0]["message"]
    assert sent.named("accepted")[0]["resumed"] == 0
    assert sha256_of(out / "video.mp4") == sha256_of(src)
    assert listing(out) == ["video.mp4"]


def test_a_partial_larger_than_the_file_is_discarded(tmp_path):
    src = make_file(tmp_path / "a.bin", 1000, 7)
    out = tmp_path / "out"
    out.mkdir()
    plant_partial(out, src, b"x" * 5000)
    sent, got = _transfer(src, out)
    assert "larger than the file" in got.named("resume-discarded")[0]["message"]
    assert sha256_of(out / "a.bin") == sha256_of(src)


def test_a_sender_that_comes_back_before_it_was_missed_is_taken_back(tmp_path):
    """A sender whose network vanished comes back on a new connection (a new peer id, its
    transfer id kept) while the receiver still sees the old one: the same files offered
    again replace the old round, no 'busy'. A new sender process (a new transfer id) is
    refused instead: it is a different sender."""
    src = make_file(tmp_path / "a.bin", 4_000_000, 5)
    out = tmp_path / "out"
    out.mkdir()

    async def main():
        async with Room() as room:
            run = Runs()  # the sender's run, across its connections
            old = await room.join("sender", runs=run)
            r = await room.join("receiver")
            events = Events()
            receiver = asyncio.create_task(Receiver(r, out, events, yes).run())
            first = Sender(old, check_sources([src]), Events(), window=1 << 20, rate=4_000_000)  # a second for the file
            stalled = asyncio.create_task(first.run())
            while not any(p.name.endswith(".xfer-part") for p in out.iterdir()):
                await asyncio.sleep(0.01)
            stalled.cancel()  # the old sender stops, its connection stays open
            other = await room.join("sender")
            with pytest.raises(Declined, match="only from the sender it began with"):
                await Sender(other, check_sources([src]), Events()).run()
            new = await room.join("sender", runs=run)
            back = Sender(new, check_sources([src]), Events(), transfer=first.transfer)  # the same run, reconnected
            sent = await back.run()
            got = await receiver
            await old.close()
            return sent, got, events

    sent, got, events = run_async(main())
    assert got["files"] == 1 and sha256_of(out / "a.bin") == sha256_of(src)
    assert listing(out) == ["a.bin"]
    assert [e["asking"] for e in events.named("other-sender")] == [False]


def test_a_partial_of_an_older_version_of_the_file_is_discarded(tmp_path):
    from xfer.protocol import FileInfo
    from xfer.transfer import store

    src = make_file(tmp_path / "report.pdf", 100_000, 7)
    out = tmp_path / "out"
    out.mkdir()
    old = store.slot_for(out, FileInfo(name="report.pdf", size=90_000, mtime=1.0), ["report.pdf"])
    store.write_state(old)
    old.partial.write_bytes(b"old" * 1000)
    sent, got = _transfer(src, out)
    assert "the file changed since" in got.named("resume-discarded")[0]["message"]
    assert listing(out) == ["report.pdf"] and sha256_of(out / "report.pdf") == sha256_of(src)


class _LosesVerified:
    """The sender's real link, which drops (really closed) as the receiver's last ``verified``
    reaches it: that message is lost with the connection, as when a Wi-Fi drops at the end."""

    def __init__(self, inner, last: int):
        self.inner, self.last, self.dropped = inner, last, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def recv(self):
        from xfer.errors import RelayGone
        from xfer.protocol import Verified

        item = await self.inner.recv()
        if not self.dropped and isinstance(item, Verified) and item.index == self.last:
            self.dropped = True
            await self.inner.close()
            raise RelayGone("the link dropped with the last verified on it")
        return item


def test_a_verified_lost_with_the_senders_link_is_heard_again_when_it_comes_back(tmp_path):
    """The receiver holds every file and waits for the sender's done; the sender, back on a
    new connection, offers the same files and hears every verified again (nothing is
    written twice). Before, the receiver left, and the sender failed although all arrived."""
    srcs = [make_file(tmp_path / "a.bin", 300_000, 3), make_file(tmp_path / "b.bin", 1000, 4)]
    out = tmp_path / "out"
    out.mkdir()

    async def main():
        async with Room() as room:
            run = Runs()
            link = _LosesVerified(await room.join("sender", runs=run), last=1)
            r = await room.join("receiver")
            got_events = Events()
            receiver = asyncio.create_task(Receiver(r, out, got_events, yes, peer_timeout=10).run())

            async def reconnect():
                return await room.join("sender", runs=run)

            sent_events = Events()
            sender = Sender(link, check_sources(srcs), sent_events, reconnect=reconnect, peer_timeout=10)
            sent = await asyncio.wait_for(sender.run(), 20)
            got = await asyncio.wait_for(receiver, 20)
            return sent, got, sent_events, got_events, link

    sent, got, sent_events, got_events, link = run_async(main())
    assert link.dropped
    assert sent["files"] == 2 and got["files"] == 2
    assert [e["index"] for e in sent_events.named("file-end")] == [0, 1]
    assert len(got_events.named("file-end")) == 2  # verified again, not saved again
    assert listing(out) == ["a.bin", "b.bin"] and all(sha256_of(out / p.name) == sha256_of(p) for p in srcs)
