"""No key and nonce pair is ever used twice to seal, across rounds, resumes,
reconnections and receivers.

Twice over: in memory, with ``Guard``s wired by hand (every round, reconnection and
receiver of a group, the same offsets sealed again); and in real ``xfer`` processes
(a group, a receiver killed and run again, a relay killed mid-transfer), each process
recording what its AES-GCM seals with (recorder/sitecustomize.py). The recording only
observes: every call goes on to ``cryptography``'s AES-GCM.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import free_port, leftovers, make_file, serve, sha256_of, wait_progress
from xfer.protocol import Chunk, FileInfo, Offer, PeerInfo, PeerJoined, PeerLeft, keys
from xfer.protocol.frames import DEFAULT_CHUNK_SIZE, parse_chunk
from xfer.protocol.guard import Deliver, Guard, _Pair
from xfer.protocol.machine import Send
from xfer.protocol.message_keys import Pake, b64encode
from xfer.protocol.messages import Accept, Message, Text, parse_message, serialize
from xfer.protocol.words import parse_code

CODE = parse_code("7-guitar-nebula")
SENDER = 1
RECORDER = Path(__file__).resolve().parent / "recorder"


class Seals(list):
    """Every (key digest, nonce) sealed with, in order."""

    def aesgcm(self):
        real, seals = keys.AESGCM, self

        class Recording:
            generate_key = staticmethod(real.generate_key)

            def __init__(self, key: bytes) -> None:
                self._key = hashlib.sha256(bytes(key)).digest()
                self._real = real(key)

            def encrypt(self, nonce, data, associated):
                seals.append((self._key, bytes(nonce)))
                return self._real.encrypt(nonce, data, associated)

            def encrypt_into(self, nonce, data, associated, buf):
                seals.append((self._key, bytes(nonce)))
                return self._real.encrypt_into(nonce, data, associated, buf)

            def decrypt(self, nonce, data, associated):
                return self._real.decrypt(nonce, data, associated)

        return Recording


def _reused(seals) -> list:
    return [pair for pair, n in Counter(seals).items() if n > 1]


# -- in memory ------------------------------------------------------------------------------


class Room:
    """Guards that a tiny relay wires together: messages routed as a relay does (``from``
    stamped), each peer's items delivered in order; chunks fanned out to receivers."""

    def __init__(self) -> None:
        self.guards: dict[int, Guard] = {}
        self.roles: dict[int, str] = {}
        self.delivered: dict[int, list] = {}
        self.queue: list[tuple[int, object]] = []

    def info(self, pid: int) -> PeerInfo:
        return PeerInfo(id=pid, name="", role=self.roles[pid])

    def join(self, pid: int, guard: Guard) -> None:
        others = list(self.guards)
        self.guards[pid], self.roles[pid], self.delivered[pid] = guard, getattr(guard, "role", guard.side), []
        for other in others:
            self.queue.append((other, PeerJoined(peer=self.info(pid))))
        self.run(pid, guard.joined([self.info(o) for o in others]))

    def leave(self, pid: int) -> None:
        del self.guards[pid]
        for other in self.guards:
            self.queue.append((other, PeerLeft(peer_id=pid)))
        self.flush()

    def run(self, pid: int, outputs) -> None:
        for out in outputs:
            if isinstance(out, Send):
                text = serialize(dataclasses.replace(out.message, sender=pid))
                if out.message.to in self.guards:
                    self.queue.append((out.message.to, parse_message(text)))
            elif isinstance(out, Deliver):
                self.delivered[pid].append(out.item)
        self.flush()

    def flush(self) -> None:
        while self.queue:
            pid, item = self.queue.pop(0)
            if pid in self.guards:
                self.run(pid, self.guards[pid].receive(item))

    def send(self, pid: int, message: Message) -> None:
        self.run(pid, self.guards[pid].send(message))

    def chunks(self, transfer: int, offsets: range, to: int = 0) -> None:
        """The sender seals these chunks of file 0 (to everyone, or to one); they reach
        each receiver that has the round's key, and must open."""
        for offset in offsets:
            chunk = Chunk(SENDER, to, transfer, 0, offset, memoryview(b"%08d" % offset))
            for frame in self.guards[SENDER].seal_chunk(chunk):
                parsed = parse_chunk(frame)
                takers = [p for p in self.guards if self.roles[p] in ("receiver", "peer")]
                for pid in [parsed.to] if parsed.to else takers:
                    if pid in self.guards:
                        self.queue.append((pid, parsed))
        self.flush()

    def offer(self, pid: int, transfer: int) -> None:
        files = (FileInfo(name="a.bin", size=1 << 20),)
        self.send(SENDER, Offer(to=pid, transfer=transfer, files=files))
        self.send(pid, Accept(to=SENDER, transfer=transfer))


def test_in_memory_no_key_and_nonce_is_sealed_with_twice(monkeypatch):
    seals = Seals()
    monkeypatch.setattr(keys, "AESGCM", seals.aesgcm())
    room = Room()
    run = keys.Runs()  # the sender's run, across its connections
    room.join(SENDER, Guard("sender", "laptop", CODE, runs=run))
    room.join(2, Guard("receiver", "a", CODE))
    room.join(3, Guard("receiver", "b", CODE))
    offsets = range(0, 80, 8)
    for _round in range(3):  # rounds of one transfer to a group: the same offsets each time
        room.offer(2, 5)
        room.offer(3, 5)
        room.chunks(5, offsets)
        for pid in (2, 3):
            room.send(pid, Text(to=SENDER, text="ack"))
    got = [bytes(c.payload) for c in room.delivered[2] if isinstance(c, Chunk)]
    assert got == [b"%08d" % o for o in offsets] * 3  # every round opened: the keys were right
    # A receiver's link drops and comes back (a new connection: new keys); the transfer
    # resumes from the middle, to it alone, and then a second transfer to both.
    room.leave(2)
    room.join(2, Guard("receiver", "a", CODE))
    room.offer(2, 5)
    room.chunks(5, range(40, 80, 8), to=2)
    room.offer(2, 6)
    room.offer(3, 6)
    room.chunks(6, offsets)
    # The sender comes back too (a new connection of its run: new guard, same transfer ids).
    room.leave(SENDER)
    room.join(SENDER, Guard("sender", "laptop", CODE, runs=run))
    room.offer(2, 5)
    room.chunks(5, offsets, to=2)
    assert len([c for c in room.delivered[2] if isinstance(c, Chunk)]) == 5 + 10 + 10  # since it came back

    assert len(seals) > 30 + 5 + 10 + 10  # it saw every chunk, and the control channels
    assert _reused(seals) == []


class LinkPage(Guard):
    """A page that opens its chunks itself (web/sealed.js), as the sender's guard meets it: it
    proves the link's secret instead of the code (``pake {nonce, link: true}``, the same key
    ``K`` on every connection) and says ``hi`` without ``download``, so it gets its transfers
    sealed like a terminal."""

    role = "peer"

    def __init__(self, secret: bytes) -> None:
        super().__init__("receiver", "Pixel 7 (Chrome)", None, link=secret)

    def _greet(self, peer: PeerInfo) -> list:
        if not self.counterpart(peer) or peer.id in self.pairs:
            return []
        pair = self.pairs[peer.id] = _Pair(peer, self._handshake())  # only its fresh nonce is used
        return [Send(Pake(to=peer.id, nonce=b64encode(pair.handshake.nonce), link=True))]

    def _on_pake(self, pair: _Pair, pake: Pake) -> list:
        # the sender's SPAKE2 message is not for pages
        return super()._on_pake(pair, dataclasses.replace(pake, msg=None, link=True))


def test_in_memory_a_page_that_opens_its_chunks_itself_never_repeats_a_pair(monkeypatch):
    """A sealed page among terminal receivers, then reloaded three times (the link's secret each
    time: only the fresh nonces make its keys new), each time sent the transfer from 0 again."""
    seals = Seals()
    monkeypatch.setattr(keys, "AESGCM", seals.aesgcm())
    secret = keys.link_secret()
    room = Room()
    room.join(SENDER, Guard("sender", "laptop", CODE, link=secret))
    room.join(2, Guard("receiver", "a", CODE))
    room.join(3, LinkPage(secret))
    offsets = range(0, 80, 8)
    for _round in range(2):  # a group of a terminal and the page, the same offsets each round
        room.offer(2, 5)
        room.offer(3, 5)
        room.chunks(5, offsets)
    page = 3
    for again in (4, 6, 7):  # reloads: a new connection, a new peer id, the transfer again from 0
        room.leave(page)
        page = again
        room.join(page, LinkPage(secret))
        room.offer(page, 5)
        room.chunks(5, offsets, to=page)
    got = [bytes(c.payload) for c in room.delivered[page] if isinstance(c, Chunk)]
    assert got == [b"%08d" % o for o in offsets]  # it opened them: its keys were right
    assert len([c for c in room.delivered[2] if isinstance(c, Chunk)]) == 20
    assert len(seals) > 20 + 30
    assert _reused(seals) == []


def test_in_memory_a_receiver_back_under_a_new_id_gets_a_new_content_key(monkeypatch):
    seals = Seals()
    monkeypatch.setattr(keys, "AESGCM", seals.aesgcm())
    room = Room()
    room.join(SENDER, Guard("sender", "laptop", CODE))
    room.join(2, Guard("receiver", "a", CODE))
    room.offer(2, 5)
    room.chunks(5, range(0, 80, 8), to=2)
    room.leave(2)  # killed; run again, it joins as a new peer and resumes from offset 40
    room.join(4, Guard("receiver", "a", CODE))
    room.offer(4, 5)
    room.chunks(5, range(40, 80, 8), to=4)
    assert len([c for c in room.delivered[4] if isinstance(c, Chunk)]) == 5
    assert _reused(seals) == []


def test_the_recording_finds_a_reused_pair(monkeypatch):
    """The check is not blind: one content key used for two rounds is caught."""
    seals = Seals()
    monkeypatch.setattr(keys, "AESGCM", seals.aesgcm())
    key = keys.ContentKey()
    for _round in range(2):
        key.seal(0, 0, b"data", b"header")
    assert len(_reused(seals)) == 1


# -- in real processes ---------------------------------------------------------------------


def _recording(folder: Path) -> dict[str, str]:
    folder.mkdir(exist_ok=True)
    path = os.pathsep.join(p for p in (str(RECORDER), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "XFER_TEST_NONCES": str(folder)}


def _read(folder: Path) -> list[list[tuple[str, ...]]]:
    """Each process's seals (the sender's first: it seals the most)."""
    each = [
        [tuple(line.split()) for line in p.read_text().splitlines() if line.strip()] for p in folder.glob("*.seals")
    ]
    return sorted(each, key=len, reverse=True)


@pytest.mark.parametrize(
    "case",
    [
        "group",
        "relay-killed",
        "receiver-killed",
        "receiver-lost-its-tail",
    ],
)
def test_real_processes_never_seal_with_a_key_and_nonce_twice(tmp_path, procs, case):
    size = 12 * 1000 * 1000
    source = make_file(tmp_path / "film.mkv", size, 33)
    folder = tmp_path / "seals"
    env = _recording(folder)
    port = free_port()
    relay = serve(procs, tmp_path, port)
    url = f"ws://127.0.0.1:{port}/ws"
    fast = ["--json", "--keepalive", "1", "--peer-timeout", "30", "--relay", url]
    slow = ["--limit-rate", "4MB"] if case != "group" else []
    sender = procs(
        ["send", str(source), *fast, *slow, *(["--receivers", "2"] if case == "group" else [])],
        tmp_path,
        "send",
        env=env,
    )
    code = sender.first_event()["code"]
    outs = [tmp_path / "out0", tmp_path / "out1"]

    def receiver(n: int, out: Path):
        return procs(["receive", "--room", code, "--yes", "--dir", str(out), *fast], tmp_path, f"recv{n}", env=env)

    if case == "group":
        receivers = [receiver(0, outs[0]), receiver(1, outs[1])]
    elif case.startswith("receiver-"):
        first = receiver(0, outs[0])
        wait_progress(first, size // 4)
        first.proc.send_signal(signal.SIGKILL)
        first.wait(10)
        if case == "receiver-lost-its-tail":  # as a power cut loses what was not yet on disk
            [partial] = [p for p in outs[0].iterdir() if p.name.endswith(".xfer-part")]
            assert partial.stat().st_size >= 2 * DEFAULT_CHUNK_SIZE  # (a quarter of the file was written)
            with open(partial, "r+b") as f:
                f.truncate(2 * DEFAULT_CHUNK_SIZE)  # on a chunk boundary: the offsets of the first round again
        receivers = [receiver(1, outs[0])]
        outs = outs[:1]
    else:
        receivers = [receiver(0, outs[0])]
        wait_progress(receivers[0], size // 4)
        relay.proc.send_signal(signal.SIGKILL)
        relay.wait(10)
        time.sleep(0.5)
        serve(procs, tmp_path, port, "serve2")
        outs = outs[:1]
    for r in receivers:
        assert r.wait(90) == 0, r.stderr
    assert sender.wait(30) == 0, sender.stderr
    for out in outs:
        assert sha256_of(out / "film.mkv") == sha256_of(source)
        assert leftovers(out) == []
    if case == "relay-killed":
        assert "reconnected" in [e["event"] for e in receivers[0].events()]

    each = _read(folder)
    assert len(each) == 1 + len(receivers) + case.startswith("receiver-")  # every xfer process recorded
    seals = [seal for one in each for seal in one]
    assert len(each[0]) >= size // DEFAULT_CHUNK_SIZE  # the sender sealed at least every chunk
    # A control channel per handshake and a content key per round: after a kill, the
    # sender made new ones (two handshakes and two rounds), in a group one of each per receiver.
    assert _reused(seals) == []
    assert len({key for key, _nonce in each[0]}) >= (3 if case == "group" else 4)
