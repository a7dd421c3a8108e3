"""A group room through the wiretap: ``xfer send --receivers 2`` and two receivers. Each
receiver makes its own keys with the sender (two handshakes), both get the file, and
each chunk leaves the sender once, sealed, for the relay to fan out."""

from __future__ import annotations

import math

from through import receive, send, tapped_relay
from wiretap import DOWN, UP

from conftest import make_file, sha256_of
from xfer.protocol.frames import DEFAULT_CHUNK_SIZE

SIZE = 1_500_000


def test_two_receivers_each_make_keys_and_chunks_leave_the_sender_once(tmp_path, procs):
    source = make_file(tmp_path / "talk.mp4", SIZE, 12)
    outs = [tmp_path / "out0", tmp_path / "out1"]
    tap = tapped_relay(procs, tmp_path)
    try:
        sender = send(procs, tmp_path, tap.url, str(source), extra=("--receivers", "2"))
        code = sender.first_event()["code"]
        receivers = [receive(procs, tmp_path, tap.url, code, out, name=f"recv{i}") for i, out in enumerate(outs)]
        for r in receivers:
            assert r.wait(60) == 0, r.stderr
        assert sender.wait(30) == 0, sender.stderr
        frames = tap.seen()
    finally:
        tap.__exit__()
    for out in outs:
        assert sha256_of(out / "talk.mp4") == sha256_of(source)

    mine = [f for f in frames if f.role == "sender" and f.direction == UP]
    pakes = [f.json()["to"] for f in mine if f.kind == "pake"]
    confirms = [f.json()["to"] for f in mine if f.kind == "confirm"]
    ids = {f.json()["peer_id"] for f in frames if f.kind == "welcome" and f.role == "receiver"}
    assert sorted(pakes) == sorted(ids) == sorted(confirms) and len(ids) == 2  # one handshake with each
    nonces = {f.json()["nonce"] for f in frames if f.kind == "pake" and f.direction == UP}
    assert len(nonces) == 4  # fresh on both sides of both

    # Each receiver's keys are its own: the verify words differ, and each box is different.
    verifiers = [[e["verifier"] for e in r.events() if e["event"] == "secured"] for r in receivers]
    assert len(verifiers[0]) == len(verifiers[1]) == 1 and verifiers[0] != verifiers[1]
    boxes = [f.json()["box"] for f in mine if f.kind == "sealed"]
    assert len(set(boxes)) == len(boxes)

    chunks = math.ceil(SIZE / DEFAULT_CHUNK_SIZE)
    sent = [f for f in mine if f.kind == "chunk"]
    assert len(sent) == chunks  # once, for everyone
    assert all(int.from_bytes(f.data[8:12], "big") == 0 for f in sent)  # to 0: the relay fans it out
    for conn in {f.conn for f in frames if f.role == "receiver"}:
        got = [f for f in frames if f.conn == conn and f.direction == DOWN and f.kind == "chunk"]
        assert [g.data[28:] for g in got] == [s.data[28:] for s in sent]  # the same sealed bytes


def test_a_member_offering_the_same_names_mid_transfer_is_refused(tmp_path, procs, relay_process):
    """Issue 13's replacement sender: in a room of several, a member who holds the code
    re-offers the same name, size and time with other bytes, under its own transfer id.
    Each receiver goes on with the sender it began with, says so, and refuses the other."""
    import os

    from conftest import wait_progress

    size = 12_000_000
    source = make_file(tmp_path / "movie.mkv", size, 3)
    (tmp_path / "fake").mkdir()
    fake = make_file(tmp_path / "fake" / "movie.mkv", size, 4)
    os.utime(fake, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
    relay = f"127.0.0.1:{relay_process.port}"
    fast = ["--keepalive", "1", "--peer-timeout", "5"]
    args = ["send", str(source), "--relay", relay, "--json", "--receivers", "2", "--limit-rate", "3MB", *fast]
    sender = procs(args, tmp_path, "send")
    code = sender.first_event()["code"]
    outs = [tmp_path / "out0", tmp_path / "out1"]
    receivers = [
        procs(["receive", code, "--relay", relay, "--yes", "--json", "--dir", str(out), *fast], tmp_path, f"recv{i}")
        for i, out in enumerate(outs)
    ]
    wait_progress(receivers[0], 1_000_000)
    other = procs(["send", str(fake), "--room", code, "--relay", relay, "--receivers", "2", *fast], tmp_path, "other")
    assert other.wait(30) != 0
    assert "only from the sender it began with" in other.stderr
    for r, out in zip(receivers, outs):
        assert r.wait(60) == 0, r.stderr
        assert sha256_of(out / "movie.mkv") == sha256_of(source)
        [seen] = [e for e in r.events() if e["event"] == "other-sender"]
        assert seen["asking"] is False and seen["from"]["id"] != seen["began_with"]["id"]
    assert sender.wait(30) == 0, sender.stderr


def test_one_receiver_closes_the_room_and_the_sender_says_who_received(tmp_path, procs, relay_process):
    """Issue 13: a second receiver with the right code, after the first joined, is turned
    away with a clear message; the sender names who received (the name from its sealed hi)."""
    import json

    from conftest import wait_progress

    size = 8_000_000
    source = make_file(tmp_path / "movie.mkv", size, 5)
    relay = f"127.0.0.1:{relay_process.port}"
    sender = procs(["send", str(source), "--relay", relay, "--json", "--limit-rate", "4MB"], tmp_path, "send")
    code = sender.first_event()["code"]

    def receive(name: str, *extra: str):
        args = ["receive", code, "--relay", relay, "--yes", "--name", name, "--dir", str(tmp_path / name), *extra]
        return procs(args, tmp_path, name)

    first = receive("kitchen", "--json")
    wait_progress(first, 1_000_000)
    second = receive("intruder")
    assert second.wait(30) == 4, second.stderr
    assert "the sender already has its receiver and takes nobody else" in second.stderr
    assert not (tmp_path / "intruder" / "movie.mkv").exists()
    assert first.wait(60) == 0, first.stderr
    assert sender.wait(30) == 0, sender.stderr
    assert sha256_of(tmp_path / "kitchen" / "movie.mkv") == sha256_of(source)
    events = [json.loads(line) for line in sender.stdout.splitlines()]
    [accepted] = [e for e in events if e["event"] == "accepted"]
    [away] = [e for e in events if e["event"] == "turned-away"]
    [done] = [e for e in events if e["event"] == "done"]
    assert accepted["peer"]["name"] == "kitchen" and away["peer"]["name"] == "intruder"
    assert [p["name"] for p in done["peers"]] == ["kitchen"]
