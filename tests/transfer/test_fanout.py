"""One sender, many receivers: the data leaves the sender once and the relay fans it out."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest

from conftest import bounded, make_file, run_async, sha256_of
from peers import Events, Room, no, plant_partial, yes
from xfer.protocol import Chunk
from xfer.transfer.receiver import Receiver
from xfer.transfer.sender import Sender, check_sources


def test_three_receivers_get_identical_copies_from_one_stream(tmp_path):
    src = make_file(tmp_path / "talk.mp4", 12_000_000, 4)
    outs = [tmp_path / f"out{i}" for i in range(3)]
    for out in outs:
        out.mkdir()

    async def main():
        async with Room() as room:
            s = await room.join("sender")
            conns = [await room.join("receiver") for _ in outs]
            bystander = await room.join("sender")  # in the room, not a receiver: must get no chunks
            seen = []

            async def watch():
                while True:
                    item = await bystander.recv()
                    if isinstance(item, Chunk):
                        seen.append(len(item.payload))

            watching = asyncio.create_task(watch())
            events = Events()
            sender = Sender(s, check_sources([src]), events, receivers=3, window=2 << 20)
            results = await asyncio.gather(
                sender.run(), *(Receiver(c, o, Events(), yes).run() for c, o in zip(conns, outs))
            )
            watching.cancel()
            return sender, events, results, seen

    sender, events, results, seen = run_async(main(), timeout=60)
    assert seen == []  # the relay fanned the chunks out to the three that accepted, no one else
    for out in outs:
        assert sha256_of(out / "talk.mp4") == sha256_of(src)
    assert sender.sent == 12_000_000  # crossed the sender's link once, not three times
    assert len(results[0]["peers"]) == 3
    assert any(len(e.get("peers", {})) == 3 for e in events.named("progress"))


def test_a_receiver_that_leaves_or_declines_does_not_stop_the_others(tmp_path):
    src = make_file(tmp_path / "talk.mp4", 20_000_000, 4)
    outs = [tmp_path / f"out{i}" for i in range(3)]
    for out in outs:
        out.mkdir()
    decliner = tmp_path / "declined"
    decliner.mkdir()

    async def main():
        async with Room() as room:
            s = await room.join("sender")
            conns = [await room.join("receiver") for _ in range(4)]
            events = Events()
            sender = asyncio.create_task(
                Sender(
                    s, check_sources([src]), events, receivers=4, window=1 << 20, rate=10_000_000, peer_timeout=1.0
                ).run()
            )
            receivers = [
                asyncio.create_task(Receiver(c, o, Events(), yes, peer_timeout=0.5).run()) for c, o in zip(conns, outs)
            ]
            declining = asyncio.create_task(Receiver(conns[3], decliner, Events(), no).run())
            while not any(p.name.endswith(".xfer-part") for p in outs[2].iterdir()):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            receivers[2].cancel()  # this one vanishes mid-transfer
            await conns[2].close()
            summary = await sender
            done = await asyncio.gather(*receivers[:2])
            declined = await asyncio.gather(declining, return_exceptions=True)
            return events, summary, done, declined

    events, summary, done, declined = run_async(main(), timeout=60)
    assert [d["files"] for d in done] == [1, 1]
    for out in outs[:2]:
        assert sha256_of(out / "talk.mp4") == sha256_of(src)
    assert not (outs[2] / "talk.mp4").exists()
    assert len(summary["peers"]) == 2
    assert len(events.named("declined")) == 1 and len(events.named("receiver-failed")) == 1
    # the one that left was waited for (peer_timeout), and did not come back
    assert [w["reason"] for w in events.named("waiting")][-1] == "receiver-back"
    assert "did not come back" in events.named("warning")[-1]["message"]
    assert "declined" in str(declined[0])
    assert list(decliner.iterdir()) == []


def test_keep_open_serves_receivers_one_after_another(tmp_path, procs, relay_process):
    src = make_file(tmp_path / "a.bin", 2_000_000, 8)
    relay = f"127.0.0.1:{relay_process.port}"
    sender = procs(["send", str(src), "--relay", relay, "--json", "--keep-open"], tmp_path, "send")
    code = sender.first_event()["code"]
    for i in range(2):
        out = tmp_path / f"out{i}"
        result = subprocess.run(
            ["xfer", "receive", "--room", code, "--relay", relay, "--yes", "--dir", str(out)],
            capture_output=True,
            text=True,
            timeout=bounded(60),
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert result.returncode == 0, result.stderr
        assert sha256_of(out / "a.bin") == sha256_of(src)
    deadline = time.monotonic() + bounded(10)
    while sum(e["event"] == "done" for e in sender.events()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(e["event"] == "done" for e in sender.events()) == 2
    assert sender.proc.poll() is None  # still open for the next one


def test_one_sender_three_cli_receivers_one_killed(tmp_path, procs, relay_process):
    import signal

    from conftest import wait_progress

    src = make_file(tmp_path / "movie.mkv", 40_000_000, 6)
    relay = f"127.0.0.1:{relay_process.port}"
    sender = procs(
        [
            "send",
            str(src),
            "--relay",
            relay,
            "--json",
            "--receivers",
            "3",
            "--limit-rate",
            "10MB",
            "--keepalive",
            "1",
            "--peer-timeout",
            "2",
        ],
        tmp_path,
        "send",
    )
    code = sender.first_event()["code"]
    receivers = [
        procs(
            [
                "receive",
                "--room",
                code,
                "--relay",
                relay,
                "--yes",
                "--json",
                "--dir",
                str(tmp_path / f"out{i}"),
                "--keepalive",
                "1",
                "--peer-timeout",
                "2",
            ],
            tmp_path,
            f"recv{i}",
        )
        for i in range(3)
    ]
    held = wait_progress(receivers[1], 8_000_000)
    receivers[1].proc.send_signal(signal.SIGKILL)
    assert sender.wait(90) == 0, sender.stderr
    for i in (0, 2):
        assert receivers[i].wait(30) == 0, receivers[i].stderr
        assert sha256_of(tmp_path / f"out{i}" / "movie.mkv") == sha256_of(src)
    assert 0 < held < 40_000_000
    done = [e for e in sender.events() if e["event"] == "done"][0]
    assert len(done["peers"]) == 2
    assert any(e["event"] == "receiver-failed" for e in sender.events())


def test_a_fanout_resumes_from_what_every_receiver_holds(tmp_path):

    src = make_file(tmp_path / "talk.mp4", 6_000_000, 4)
    data = src.read_bytes()
    outs = []
    for i, held in enumerate((4_000_000, 1_500_000)):  # an earlier, interrupted run left these behind
        out = tmp_path / f"out{i}"
        out.mkdir()
        plant_partial(out, src, data[:held])
        outs.append(out)

    async def main():
        async with Room() as room:
            s = await room.join("sender")
            conns = [await room.join("receiver") for _ in outs]
            sender = Sender(s, check_sources([src]), Events(), receivers=2)
            await asyncio.gather(sender.run(), *(Receiver(c, o, Events(), yes).run() for c, o in zip(conns, outs)))
            return sender

    sender = run_async(main(), timeout=60)
    assert sender.sent == 6_000_000 - 1_500_000  # one stream from the least any receiver held
    for out in outs:
        assert sha256_of(out / "talk.mp4") == sha256_of(src)
        assert sorted(p.name for p in out.iterdir()) == ["talk.mp4"]


def _raw_receiver_that(behaviour):
    """A receiver speaking the protocol directly: accepts the offer, then ``behaviour(conn, offer)``."""
    from peers import next_of
    from xfer.protocol import Accept, Offer

    async def run(conn):
        offer = await next_of(conn, Offer, timeout=10)
        await conn.send(Accept(to=offer.sender, transfer=offer.transfer))
        await behaviour(conn, offer)

    return run


@pytest.mark.parametrize("how", ["fails-then-leaves", "never-acknowledges"])
def test_a_bad_receiver_is_dropped_and_the_good_one_finishes(tmp_path, how):
    from xfer.protocol import Error

    src = make_file(tmp_path / "a.bin", 6_000_000, 2)
    out = tmp_path / "out"
    out.mkdir()

    async def fails_then_leaves(conn, offer):
        await asyncio.sleep(0.2)
        await conn.send(Error(to=offer.sender, code="io-error", message="broken pipe", transfer=offer.transfer))
        await asyncio.sleep(0.2)
        await conn.close()

    async def never_acknowledges(conn, offer):
        await asyncio.sleep(30)  # reads nothing more, acknowledges nothing

    behaviour = fails_then_leaves if how == "fails-then-leaves" else never_acknowledges

    async def main():
        async with Room() as room:
            s = await room.join("sender")
            good = await room.join("receiver")
            bad = await room.join("receiver")
            events = Events()
            sender = Sender(s, check_sources([src]), events, receivers=2, window=1 << 20, peer_timeout=1.0)
            bad_task = asyncio.create_task(_raw_receiver_that(behaviour)(bad))
            summary, _ = await asyncio.gather(sender.run(), Receiver(good, out, Events(), yes).run())
            bad_task.cancel()
            return summary, events

    summary, events = run_async(main(), timeout=60)
    assert len(summary["peers"]) == 1 and sha256_of(out / "a.bin") == sha256_of(src)
    assert len(events.named("receiver-failed")) == 1


def test_a_fanout_where_one_receiver_already_has_the_file(tmp_path):
    from xfer.protocol import FileInfo
    from xfer.transfer import store

    src = make_file(tmp_path / "talk.mp4", 4_000_000, 4)
    st = src.stat()
    info = FileInfo(name="talk.mp4", size=st.st_size, mtime=st.st_mtime)
    whole, part = tmp_path / "whole", tmp_path / "part"
    for out in (whole, part):
        out.mkdir()
    (whole / "talk.mp4").write_bytes(src.read_bytes())  # saved by an earlier, interrupted run
    store.write_state(
        store.slot_for(whole, info, ["talk.mp4"]), done={"path": str(whole / "talk.mp4"), "sha256": sha256_of(src)}
    )
    plant_partial(part, src, src.read_bytes()[:1_000_000])

    async def main():
        async with Room() as room:
            s = await room.join("sender")
            conns = [await room.join("receiver") for _ in range(2)]
            sender = Sender(s, check_sources([src]), Events(), receivers=2)
            await asyncio.gather(
                sender.run(), *(Receiver(c, o, Events(), yes).run() for c, o in zip(conns, (whole, part)))
            )
            return sender

    sender = run_async(main(), timeout=60)
    assert sender.sent == 3_000_000  # from what the one with a part holds
    for out in (whole, part):
        assert sorted(p.name for p in out.iterdir()) == ["talk.mp4"]  # no "talk (1).mp4", no state left
        assert sha256_of(out / "talk.mp4") == sha256_of(src)


def test_the_relay_forgets_a_fanout_once_it_is_done(tmp_path):
    src = make_file(tmp_path / "a.bin", 100_000, 2)
    outs = [tmp_path / f"out{i}" for i in range(2)]
    for out in outs:
        out.mkdir()

    async def main():
        async with Room() as room:
            s = await room.join("sender")
            conns = [await room.join("receiver") for _ in outs]
            await asyncio.gather(
                Sender(s, check_sources([src]), Events(), receivers=2).run(),
                *(Receiver(c, o, Events(), yes).run() for c, o in zip(conns, outs)),
            )
            await asyncio.sleep(0.2)
            return dict(room.server.hub.rooms[room.id].fanout)

    assert run_async(main()) == {}
