"""Protocol 2.0's guard, in memory: two or more guards wired through a tiny relay that
routes what they send, so that every handshake, box and chunk is real, and a relay in
the middle can read, drop, replay, reorder or rewrite what passes."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.protocol import Chunk, FileInfo, Offer, PeerInfo, PeerJoined, PeerLeft
from xfer.protocol.errors import RemoteProtocolError
from xfer.protocol.frames import parse_chunk
from xfer.protocol.guard import CodeSpent, Deliver, Guard, PeerRefused, PeerTrusted
from xfer.protocol.keys import Tampered, WrongCode, link_secret
from xfer.protocol.machine import Send
from xfer.protocol.messages import (
    Accept,
    Confirm,
    Done,
    Error,
    Hi,
    Message,
    Pake,
    Sealed,
    Subscribe,
    Text,
    Unsubscribe,
    parse_message,
    serialize,
)
from xfer.protocol.words import parse_code

CODE = parse_code("7-guitar-nebula")
SENDER, RECEIVER, OTHER = 11, 22, 33


class Wire:
    """Routes what guards send, as the relay does: stamps ``from``, keeps what passes
    (serialized, as on the wire) so that a test can look at it or play with it."""

    def __init__(self, guards: dict[int, Guard], roles: dict[int, str]) -> None:
        self.guards = guards
        self.infos = {pid: PeerInfo(id=pid, name="", role=roles[pid]) for pid in guards}
        self.seen: list[str] = []  # every control frame as the relay saw it
        self.delivered: dict[int, list[object]] = {pid: [] for pid in guards}
        self.events: dict[int, list[object]] = {pid: [] for pid in guards}
        self.queue: list[tuple[int, Message]] = []
        self.errors: dict[int, RemoteProtocolError] = {}  # the peers that stopped, and why
        self.busy = False

    def start(self) -> None:
        """Everyone joins: the first has the room, the others join in turn."""
        ids = list(self.guards)
        self.run(ids[0], self.guards[ids[0]].joined([]))
        for i, pid in enumerate(ids[1:], 1):
            for p in ids[:i]:  # the relay tells those in the room first, then welcomes the newcomer
                self.feed(p, PeerJoined(peer=self.infos[pid]))
            self.run(pid, self.guards[pid].joined([self.infos[p] for p in ids[:i]]))

    def run(self, pid: int, outputs: list[object]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.route(pid, out.message)
            elif isinstance(out, Deliver):
                self.delivered[pid].append(out.item)
            else:
                self.events[pid].append(out)
        if not self.busy:  # in order, one at a time, as a relay's links are
            self.busy = True
            try:
                while self.queue:
                    self.feed(*self.queue.pop(0))
            finally:
                self.busy = False

    def route(self, pid: int, message: Message) -> None:
        text = serialize(dataclasses.replace(message, sender=pid))
        self.seen.append(text)
        if message.to in self.guards:
            self.queue.append((message.to, parse_message(text)))

    def feed(self, pid: int, item: Message | Chunk) -> None:
        if pid in self.errors:
            return  # it stopped
        try:
            outputs = self.guards[pid].receive(item)
        except RemoteProtocolError as exc:
            self.errors[pid] = exc
            return
        self.run(pid, outputs)

    def send(self, pid: int, message: Message) -> None:
        self.run(pid, self.guards[pid].send(message))

    def of(self, pid: int, kind: type) -> list:
        return [m for m in self.delivered[pid] if isinstance(m, kind)]


def pair(code=CODE, receiver_code=CODE, **kw) -> Wire:
    guards = {SENDER: Guard("sender", "laptop", code, **kw), RECEIVER: Guard("receiver", "desk", receiver_code)}
    wire = Wire(guards, {SENDER: "sender", RECEIVER: "receiver"})
    wire.start()
    return wire


_ONE_PAIR: list[Wire] = []


def paired() -> Wire:
    """What ``pair()`` gives, without its key exchange (80 ms, and a Hypothesis test wants a
    fresh pair for each of hundreds of examples): a deep copy of one pair made once. Its
    AES-GCM objects, which cannot be copied and hold nothing but their key, are shared; every
    other part (the channels' counters included) is the copy's own."""
    if not _ONE_PAIR:
        _ONE_PAIR.append(pair())
    wire = _ONE_PAIR[0]
    memo: dict[int, object] = {}
    for guard in wire.guards.values():
        for p in guard.pairs.values():
            for holder in (p.outgoing, p.incoming, *p.contents.values()):
                if holder is not None:
                    memo[id(holder._aead)] = holder._aead
    return copy.deepcopy(wire, memo)


OFFER = Offer(to=RECEIVER, transfer=5, files=(FileInfo(name="secret-plans.txt", size=10),))


def test_both_sides_trust_each_other_and_learn_names_only_sealed():
    wire = pair()
    [joined] = wire.of(SENDER, PeerJoined)
    assert joined.peer.id == RECEIVER and joined.peer.name == "desk"
    assert wire.of(RECEIVER, PeerJoined)[0].peer.name == "laptop"
    [a] = [e for e in wire.events[SENDER] if isinstance(e, PeerTrusted)]
    [b] = [e for e in wire.events[RECEIVER] if isinstance(e, PeerTrusted)]
    assert a.verifier == b.verifier and len(a.verifier.split()) == 3
    assert not any("desk" in t or "laptop" in t for t in wire.seen)  # the relay never saw a name
    kinds = [json.loads(t)["type"] for t in wire.seen]
    assert kinds.count("pake") == 2 and kinds.count("confirm") == 2 and kinds.count("sealed") == 2


def test_an_offer_and_its_chunks_arrive_sealed_and_open_with_the_rounds_key():
    wire = pair()
    wire.send(SENDER, OFFER)
    [offer] = wire.of(RECEIVER, Offer)
    assert offer.files[0].name == "secret-plans.txt" and offer.sender == SENDER and offer.to == RECEIVER
    assert not any("secret-plans" in t for t in wire.seen)
    [frame] = wire.guards[SENDER].seal_chunk(Chunk(SENDER, RECEIVER, 5, 0, 0, memoryview(b"0123456789")))
    assert b"0123456789" not in frame and len(frame) == 28 + 10 + 16
    wire.feed(RECEIVER, parse_chunk(frame))
    [chunk] = wire.of(RECEIVER, Chunk)
    assert bytes(chunk.payload) == b"0123456789"


def test_the_receivers_accept_subscribes_in_clear_and_done_unsubscribes():
    wire = pair()
    wire.send(SENDER, OFFER)
    wire.send(RECEIVER, Accept(to=SENDER, transfer=5))
    kinds = [json.loads(t)["type"] for t in wire.seen[-2:]]
    assert kinds == ["sealed", "subscribe"]
    assert wire.of(SENDER, Accept)[0].transfer == 5
    wire.send(SENDER, Done(to=RECEIVER, transfer=5))
    assert json.loads(wire.seen[-1])["type"] == "unsubscribe"
    assert wire.of(RECEIVER, Done)


def test_messages_the_machine_sends_before_the_handshake_wait_for_it():
    guards = {SENDER: Guard("sender", "laptop", CODE), RECEIVER: Guard("receiver", "desk", CODE)}
    wire = Wire(guards, {SENDER: "sender", RECEIVER: "receiver"})
    wire.run(SENDER, guards[SENDER].joined([]))
    wire.run(SENDER, guards[SENDER].receive(PeerJoined(peer=wire.infos[RECEIVER])))
    wire.send(SENDER, OFFER)  # before the receiver's pake: held
    assert not wire.of(RECEIVER, Offer)
    wire.run(RECEIVER, guards[RECEIVER].joined([wire.infos[SENDER]]))
    assert wire.of(RECEIVER, Offer)[0].transfer == 5


def test_a_wrong_code_fails_the_receiver_and_counts_at_the_sender():
    wire = pair(receiver_code=parse_code("7-guitar-nectar"))
    assert isinstance(wire.errors[RECEIVER], WrongCode)
    assert not wire.of(SENDER, PeerJoined) and not wire.of(RECEIVER, PeerJoined)
    [refused] = [e for e in wire.events[SENDER] if isinstance(e, PeerRefused)]
    assert refused.wrong == 1 and refused.peer_id == RECEIVER
    errors = [json.loads(t) for t in wire.seen if json.loads(t)["type"] == "error"]
    assert [(e["code"], e["to"]) for e in errors] == [("wrong-code", RECEIVER)]


def test_the_receiver_with_a_wrong_code_raises_wrong_code():
    guards = {
        SENDER: Guard("sender", "laptop", CODE),
        RECEIVER: Guard("receiver", "desk", parse_code("7-guitar-nectar")),
    }
    wire = Wire(guards, {SENDER: "sender", RECEIVER: "receiver"})
    wire.start()
    assert isinstance(wire.errors[RECEIVER], WrongCode) and SENDER not in wire.errors


def test_three_wrong_codes_spend_the_code():
    sender = Guard("sender", "laptop", CODE)
    sender.joined([])
    for attempt, pid in enumerate((31, 32, 33), 1):
        guesser = Guard("receiver", "x", parse_code("7-atlas-attic"))
        info = PeerInfo(id=pid, name="", role="receiver")
        out = sender.receive(PeerJoined(peer=info))
        [pake] = [o.message for o in out if isinstance(o, Send)]
        theirs = guesser.joined([PeerInfo(id=SENDER, name="", role="sender")])
        [their_pake] = [o.message for o in theirs if isinstance(o, Send)]
        confirm = [o.message for o in guesser.receive(dataclasses.replace(pake, sender=SENDER)) if isinstance(o, Send)][
            0
        ]
        sender.receive(dataclasses.replace(their_pake, sender=pid))
        if attempt < 3:
            out = sender.receive(dataclasses.replace(confirm, sender=pid))
            assert [o.wrong for o in out if isinstance(o, PeerRefused)] == [attempt]
        else:
            with pytest.raises(CodeSpent, match="3 wrong codes"):
                sender.receive(dataclasses.replace(confirm, sender=pid))


def _box(text: str) -> bytes:
    return base64.b64decode(json.loads(text)["box"])


@pytest.mark.parametrize("attack", ["flip", "replay", "reorder", "drop"])
def test_a_relay_that_plays_with_sealed_messages_makes_it_fail(attack):
    wire = pair()
    receiver = wire.guards[RECEIVER]
    sealed = []
    for n in range(3):
        sealed.append(wire.guards[SENDER].send(Text(to=RECEIVER, text=f"line {n}"))[0].message)
    first, second, third = (dataclasses.replace(m, sender=SENDER) for m in sealed)
    if attack == "flip":
        box = bytearray(base64.b64decode(first.box))
        box[3] ^= 1
        items = [dataclasses.replace(first, box=base64.b64encode(bytes(box)).decode())]
    elif attack == "replay":
        items = [first, first]
    elif attack == "reorder":
        items = [second, first]
    else:
        items = [first, third]
    with pytest.raises(Tampered):
        for item in items:
            receiver.receive(item)


def test_a_chunk_moved_to_another_offset_or_file_or_rewritten_does_not_open():
    wire = pair()
    wire.send(SENDER, OFFER)
    [frame] = wire.guards[SENDER].seal_chunk(Chunk(SENDER, RECEIVER, 5, 0, 0, memoryview(b"0123456789")))
    good = parse_chunk(frame)
    for bad in (
        dataclasses.replace(good, offset=10),
        dataclasses.replace(good, index=1),
        dataclasses.replace(good, payload=memoryview(bytes(good.payload)[:-1] + bytes([good.payload[-1] ^ 1]))),
    ):
        with pytest.raises(Tampered):
            wire.guards[RECEIVER].receive(bad)


def test_clear_peer_messages_and_chunks_from_strangers_never_reach_the_machine():
    wire = pair()
    receiver = wire.guards[RECEIVER]
    with pytest.raises(RemoteProtocolError, match="without sealing"):
        receiver.receive(dataclasses.replace(OFFER, sender=SENDER))
    assert receiver.receive(Text(to=RECEIVER, sender=OTHER, text="hi")) == []  # a stranger: not a counterpart
    assert receiver.receive(Chunk(SENDER, RECEIVER, 9, 0, 0, memoryview(b"x" * 20))) == []  # no offer of 9


def test_hi_and_offers_cannot_come_in_clear_and_a_sealed_box_cannot_reroute():
    wire = pair()
    with pytest.raises(RemoteProtocolError):
        wire.guards[RECEIVER].receive(Hi(to=RECEIVER, sender=SENDER, name="evil"))
    channel = wire.guards[SENDER].pairs[RECEIVER].outgoing
    box = channel.seal(json.dumps({"type": "text", "text": "x", "to": 99}).encode())
    with pytest.raises(RemoteProtocolError, match="route"):
        wire.guards[RECEIVER].receive(Sealed(to=RECEIVER, sender=SENDER, box=base64.b64encode(box).decode()))


def test_every_round_has_a_new_content_key_and_no_chunk_nonce_repeats_under_one():
    wire = pair()
    keys = []
    for _round in range(3):
        wire.send(SENDER, OFFER)
        keys.append(wire.guards[SENDER]._rounds[5].key.key)
    assert len(set(keys)) == 3
    assert len({o.files[0].name for o in wire.of(RECEIVER, Offer)}) == 1


def test_a_group_shares_one_content_key_and_each_receiver_its_own_channel():
    guards = {
        SENDER: Guard("sender", "laptop", CODE),
        RECEIVER: Guard("receiver", "a", CODE),
        OTHER: Guard("receiver", "b", CODE),
    }
    wire = Wire(guards, {SENDER: "sender", RECEIVER: "receiver", OTHER: "receiver"})
    wire.start()
    assert {p.peer.id for p in wire.of(SENDER, PeerJoined)} == {RECEIVER, OTHER}
    assert not wire.of(RECEIVER, PeerJoined)[1:]  # receivers make no keys with each other
    for pid in (RECEIVER, OTHER):
        wire.send(SENDER, dataclasses.replace(OFFER, to=pid))
    [frame] = wire.guards[SENDER].seal_chunk(Chunk(SENDER, 0, 5, 0, 0, memoryview(b"abc")))
    for pid in (RECEIVER, OTHER):
        wire.feed(pid, parse_chunk(frame))
        assert bytes(wire.of(pid, Chunk)[0].payload) == b"abc"
    boxes = [_box(t) for t in wire.seen if json.loads(t)["type"] == "sealed" and json.loads(t)["to"] != SENDER]
    assert len(set(boxes)) == len(boxes)


def test_a_page_joins_with_the_links_secret_instead_of_the_code():
    secret = link_secret()
    guards = {SENDER: Guard("sender", "laptop", CODE, link=secret), RECEIVER: Guard("receiver", "desk", CODE)}
    wire = Wire(guards, {SENDER: "sender", RECEIVER: "receiver"})
    wire.start()
    page_id = 44
    sender = guards[SENDER]
    out = sender.receive(PeerJoined(peer=PeerInfo(id=page_id, name="", role="peer")))
    ours = [o.message for o in out if isinstance(o, Send)][0]
    # the page's side, by hand, as web/e2e.js does it
    from xfer.protocol.keys import link_keys

    page_nonce = bytes(range(16))
    keys = link_keys(secret, base64.b64decode(ours.nonce), page_nonce, "receiver")
    out = sender.receive(Pake(to=SENDER, sender=page_id, nonce=base64.b64encode(page_nonce).decode(), link=True))
    confirm, hi = [o.message for o in out if isinstance(o, Send)]  # its hi comes right behind its tag
    keys.check(base64.b64decode(confirm.tag))
    assert json.loads(keys.incoming().open(base64.b64decode(hi.box))) == {"type": "hi", "name": "laptop"}
    sender.receive(Confirm(to=SENDER, sender=page_id, tag=base64.b64encode(keys.confirmation()).decode()))
    box = keys.outgoing().seal(json.dumps({"type": "hi", "name": "Pixel", "download": "relay"}).encode())
    out = sender.receive(Sealed(to=SENDER, sender=page_id, box=base64.b64encode(box).decode()))
    [trusted] = [o for o in out if isinstance(o, PeerTrusted)]
    assert trusted.link and trusted.peer.name == "Pixel"
    # it asked to receive through the relay's bridge: its transfers go in clear, its texts sealed
    out = sender.send(dataclasses.replace(OFFER, to=page_id))
    assert [type(o.message) for o in out if isinstance(o, Send)] == [Offer]
    out = sender.send(Text(to=page_id, text="for the phone only"))
    assert [type(o.message) for o in out if isinstance(o, Send)] == [Sealed]


def test_a_wrong_link_secret_is_a_wrong_code():
    sender = Guard("sender", "laptop", CODE, link=link_secret())
    sender.joined([])
    sender.receive(PeerJoined(peer=PeerInfo(id=44, name="", role="peer")))
    out = sender.receive(Pake(to=SENDER, sender=44, nonce=base64.b64encode(bytes(16)).decode(), link=True))
    from xfer.protocol.keys import link_keys

    keys = link_keys(link_secret(), bytes(16), bytes(16), "receiver")
    out = sender.receive(Confirm(to=SENDER, sender=44, tag=base64.b64encode(keys.confirmation()).decode()))
    assert [o.wrong for o in out if isinstance(o, PeerRefused)] == [1]


def test_a_peer_that_leaves_is_forgotten_and_nothing_is_sent_to_it():
    wire = pair()
    out = wire.guards[SENDER].receive(PeerLeft(peer_id=RECEIVER))
    assert [type(o) for o in out] == [Deliver]
    assert wire.guards[SENDER].send(OFFER) == []
    assert RECEIVER not in wire.guards[SENDER].peers


def test_a_clear_error_from_a_peer_without_keys_cannot_stop_the_receiver():
    receiver = Guard("receiver", "desk", CODE)
    receiver.joined([PeerInfo(id=SENDER, name="", role="sender")])
    for code in ("wrong-code", "code-spent", "protocol"):  # anyone with the nameplate could write these
        assert receiver.receive(Error(to=RECEIVER, sender=SENDER, code=code, message="stop")) == []
    assert SENDER in receiver.pairs and receiver.wrong == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_box_from_a_trusted_peer_that_was_not_sealed_by_it_is_refused(data):
    wire = paired()
    item = Sealed(to=RECEIVER, sender=SENDER, box=base64.b64encode(data + bytes(24)).decode())
    with pytest.raises(RemoteProtocolError):
        wire.guards[RECEIVER].receive(item)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=20)), max_size=5))
def test_any_json_sealed_by_the_sender_is_a_message_or_a_protocol_error(obj):
    wire = paired()
    channel = wire.guards[SENDER].pairs[RECEIVER].outgoing
    box = base64.b64encode(channel.seal(json.dumps(obj).encode())).decode()
    try:
        wire.guards[RECEIVER].receive(Sealed(to=RECEIVER, sender=SENDER, box=box))
    except RemoteProtocolError:
        pass


def test_subscribe_and_unsubscribe_are_for_the_relay_and_change_nothing_here():
    wire = pair()
    assert wire.guards[SENDER].receive(Subscribe(to=SENDER, sender=RECEIVER, transfer=5)) == []
    assert wire.guards[SENDER].receive(Unsubscribe(to=SENDER, sender=RECEIVER, transfer=5)) == []


def test_a_peer_that_never_made_keys_cannot_stop_the_sender_with_clear_frames():
    sender = Guard("sender", "laptop", CODE)
    sender.joined([])
    sender.receive(PeerJoined(peer=PeerInfo(id=OTHER, name="", role="receiver")))
    for item in (
        Accept(to=SENDER, sender=OTHER, transfer=5),
        Error(to=SENDER, sender=OTHER, code="protocol", message="stop"),
        Text(to=SENDER, sender=OTHER, text="hello"),
    ):
        assert sender.receive(item) == []
    assert sender.wrong == 0 and not sender.peers


def test_a_trusted_peer_that_sends_in_clear_is_refused_loudly():
    wire = pair()
    with pytest.raises(RemoteProtocolError, match="without sealing"):
        wire.guards[SENDER].receive(Accept(to=SENDER, sender=RECEIVER, transfer=5))


def test_a_page_is_no_wrong_code_for_a_peer_that_printed_no_qr_code():
    receiver = Guard("receiver", "desk", CODE)  # joined by the code: holds no link secret
    receiver.joined([PeerInfo(id=44, name="", role="peer")])
    out = receiver.receive(Pake(to=RECEIVER, sender=44, nonce=base64.b64encode(bytes(16)).decode(), link=True))
    assert out == [] and 44 not in receiver.pairs and receiver.wrong == 0


def test_the_number_of_wrong_codes_a_sender_takes_is_a_limit():
    from xfer.protocol.limits import Limits

    guards = {
        SENDER: Guard("sender", "laptop", CODE, limits=Limits(wrong_codes=1)),
        RECEIVER: Guard("receiver", "x", parse_code("7-atlas-attic")),
    }
    wire = Wire(guards, {SENDER: "sender", RECEIVER: "receiver"})
    wire.start()
    assert isinstance(wire.errors[SENDER], CodeSpent) and "a wrong code was tried" in str(wire.errors[SENDER])
