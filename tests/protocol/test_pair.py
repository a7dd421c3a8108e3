"""Sender ⇄ Room ⇄ receivers, end to end in memory (``pair.Pair``): what the socket tests
(test_transfer, test_fanout, test_folders, test_faults, test_hostile) check of a
transfer, with no socket, no disk and no clock; then Hypothesis on random offers and
random fault schedules."""

from __future__ import annotations

import os
import random
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pair import PAIR_LIMITS, Pair

from xfer.protocol.errors import (
    Declined,
    IntegrityFailure,
    LocalFileError,
    PeerGone,
    RelayGone,
    RemoteProtocolError,
)
from xfer.protocol.messages import Reject
from xfer.protocol.receiver import ReceiverState
from xfer.protocol.receiver_outputs import Accepted as ReceiverAccepted
from xfer.protocol.receiver_outputs import HashMismatch, Unresumable
from xfer.protocol.sender import SenderState
from xfer.protocol.sender_events import Accepted, Failed, OfferSent, ReceiverDeclined, ReceiverFailed

EXAMPLES = int(os.environ.get("XFER_FUZZ_EXAMPLES", "2000"))


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def holds_all(pair: Pair, entries: list[tuple[str, bytes | None]], who: int = 0) -> None:
    r = pair.receivers[who]
    assert r.m.state is ReceiverState.DONE, (r.m.state, r.error)
    assert r.files() == {i: data for i, (_, data) in enumerate(entries) if data is not None}
    assert set(r.folders) == {i for i, (_, data) in enumerate(entries) if data is None}


def sender_error(pair: Pair) -> Exception:
    failed = pair.events("sender", Failed)
    assert pair.sender.m.state is SenderState.FAILED and len(failed) == 1, pair.sender.events
    return failed[0].error  # type: ignore[attr-defined,no-any-return]


# -- honest transfers -------------------------------------------------------------------------


def test_one_file_arrives_byte_identical() -> None:
    entries: list[tuple[str, bytes | None]] = [("a.bin", blob(10_000))]
    pair = Pair(entries).start().run()
    holds_all(pair, entries)
    assert pair.sender.m.state is SenderState.DONE
    assert pair.sender.in_flight_max <= PAIR_LIMITS.window


def test_many_files_folders_and_empty_files() -> None:
    entries: list[tuple[str, bytes | None]] = [
        ("top/", None),
        ("top/a.txt", b"alpha" * 300),
        ("top/empty", b""),
        ("top/sub/", None),
        ("top/sub/b.bin", blob(3000, 1)),
        ("top/hollow/", None),  # an empty folder arrives too
        ("c.bin", blob(513, 2)),
    ]
    pair = Pair(entries).start().run()
    holds_all(pair, entries)
    assert pair.receivers[0].folders[5] == "/in/top/hollow"


def test_a_stream_arrives_and_gets_its_size_at_the_end() -> None:
    entries: list[tuple[str, bytes | None]] = [("stdin", blob(4321))]
    pair = Pair(entries, streams=[0]).start().run()
    holds_all(pair, entries)


def test_names_from_the_sender_are_made_safe() -> None:
    entries: list[tuple[str, bytes | None]] = [("../../etc/passwd", b"root"), ("CON", b"x")]
    pair = Pair(entries).start().run()
    paths = [pair.receivers[0].m.name(i) for i in range(2)]
    assert all(".." not in p.split("/") for p in paths) and "CON" not in paths
    holds_all(pair, entries)


# -- interruptions: resume from what the receiver holds -----------------------------------------


def _midway(pair: Pair, steps: int) -> Pair:
    for _ in range(steps):
        assert pair.step()
    return pair


def _until_chunks(pair: Pair) -> Pair:
    while not any(isinstance(f.data, bytes) for f in pair.wire):
        assert pair.step()
    return pair


def test_a_receiver_started_again_resumes_from_its_partial() -> None:
    entries: list[tuple[str, bytes | None]] = [("big.bin", blob(20_000, 3))]
    pair = _midway(Pair(entries).start(), 60)
    held = len(pair.receivers[0].disk.partials.get(0, b""))
    assert 0 < held < 20_000
    pair.restart("r0")
    pair.run()
    holds_all(pair, entries)
    resumed = [e.resumed for e in pair.events("sender", Accepted)]  # type: ignore[attr-defined]
    assert resumed[0] == 0 and resumed[-1] >= held - PAIR_LIMITS.window


def test_the_receivers_link_lost_and_back_resumes() -> None:
    entries: list[tuple[str, bytes | None]] = [("a", blob(9000, 4)), ("b", blob(7000, 5))]
    pair = _midway(Pair(entries).start(), 50)
    pair.lose_link("r0")
    pair.settle()  # the sender sees it leave and waits
    assert pair.sender.m.state is SenderState.WAITING
    pair.link_back("r0")
    pair.run()
    holds_all(pair, entries)
    assert pair.events("sender", Accepted)[-1].resumed > 0  # type: ignore[attr-defined]


def test_the_senders_link_lost_and_back_resumes() -> None:
    entries: list[tuple[str, bytes | None]] = [("a", blob(12_000, 6))]
    pair = _midway(Pair(entries).start(), 40)
    pair.lose_link("sender")
    pair.settle()
    assert pair.receivers[0].m.state is ReceiverState.AWAY
    pair.link_back("sender")
    pair.run()
    holds_all(pair, entries)


def test_a_sender_started_again_is_a_different_sender_until_the_receiver_starts_again() -> None:
    """A new sender process (a new transfer id) cannot be told from another member of the
    room offering the same names: the receiver refuses it. Started again, the receiver
    takes it as a new offer and resumes from what it holds."""
    entries: list[tuple[str, bytes | None]] = [("a", blob(12_000, 7)), ("b", b"")]
    pair = _midway(Pair(entries).start(), 40)
    pair.restart("sender")
    pair.run()
    assert [m.code for m in pair.receivers[0].disk.sent if isinstance(m, Reject)] == ["other-sender"]
    assert "only from the sender it began with" in str(sender_error(pair))
    assert isinstance(pair.receivers[0].error, PeerGone)  # it waited for its own sender, in vain
    held = len(pair.receivers[0].disk.partials.get(0, b""))
    pair.restart("r0")
    pair.sender.exit()
    pair.sender.start()  # run again by its person, as the receiver was
    pair.run()
    holds_all(pair, entries)
    assert pair.sender.transfer == 3 and held > 0
    assert [e.resumed for e in pair.events("r0", ReceiverAccepted)][-1] == held


def test_a_sender_that_never_comes_back_ends_both_sides() -> None:
    pair = _midway(Pair([("a", blob(12_000))]).start(), 40)
    pair.lose_link("sender")
    pair.run()
    assert isinstance(sender_error(pair), RelayGone)
    assert isinstance(pair.receivers[0].error, PeerGone)
    assert pair.receivers[0].files() == {}


def test_a_sender_whose_link_drops_as_the_last_file_is_verified_still_completes() -> None:
    # The receiver's last verified goes to the sender's old connection and is lost with it.
    # Holding everything, the receiver waits for the sender's done; the sender, back with a
    # new id, offers the same files, and a round of file-start and file-end (nothing written)
    # brings the verified again.
    entries: list[tuple[str, bytes | None]] = [("f0", b"")]
    pair = Pair(entries).start()
    pair.run(faults=[(5, lambda p: p.lose_link("sender")), (7, lambda p: p.link_back("sender"))])
    holds_all(pair, entries)
    assert pair.sender.m.state is SenderState.DONE


def test_a_stream_cannot_resume() -> None:
    pair = _midway(Pair([("stdin", blob(9000))], streams=[0]).start(), 30)
    pair.lose_link("r0")
    pair.link_back("r0")
    pair.run()
    assert isinstance(sender_error(pair), PeerGone)
    assert pair.events("r0", Unresumable) and pair.receivers[0].files() == {}


# -- fan-out ------------------------------------------------------------------------------------


def test_fan_out_sends_each_chunk_once_and_every_receiver_holds_it_all() -> None:
    entries: list[tuple[str, bytes | None]] = [("a", blob(8192, 8)), ("d/", None), ("d/b", blob(100, 9))]
    pair = Pair(entries, receivers=3).start().run()
    for i in range(3):
        holds_all(pair, entries, i)
    assert pair.sender.m.state is SenderState.DONE
    assert pair.sender.chunks_sent == 8192 // 512 + 1  # the relay fans them out


def test_fan_out_with_one_failing_one_slow_one_leaving_and_coming_back() -> None:
    entries: list[tuple[str, bytes | None]] = [("a", blob(16_000, 10)), ("b", blob(3000, 11))]
    pair = _until_chunks(Pair(entries, receivers=4, options={2: {"slow": True}}).start())
    pair.receivers[1].space = 5000  # it accepted; then its disk fills up
    _midway(pair, 80)
    pair.lose_link("r3")
    pair.run(max_steps=5000, faults=[(pair.steps + 200, lambda p: p.link_back("r3"))])
    assert pair.sender.m.state is SenderState.DONE
    for i in (0, 2, 3):
        holds_all(pair, entries, i)
    failed = pair.events("sender", ReceiverFailed)
    assert any("disk is full" in e.reason for e in failed)  # type: ignore[attr-defined]
    assert pair.receivers[1].files() == {}


def test_fan_out_waits_again_for_one_that_leaves_before_answering_its_late_offer() -> None:
    # Found by the Hypothesis run below: the sender sat in OFFERED for ever, with no deadline.
    entries: list[tuple[str, bytes | None]] = [("a", blob(3000, 15))]
    pair = _until_chunks(Pair(entries, receivers=2).start())
    pair.restart("r0")  # left mid-transfer, back at once: the round goes on without it
    while len(pair.events("sender", OfferSent)) < 2:  # the others are served: it is offered alone
        assert pair.step()
    pair.restart("r0")  # and it goes again before it answers
    pair.run()
    holds_all(pair, entries, 0)
    holds_all(pair, entries, 1)
    assert pair.sender.m.state is SenderState.DONE


def test_fan_out_serves_each_receiver_back_late_even_when_they_come_back_one_by_one() -> None:
    # Found by the Hypothesis run below: the late round took the one back first and forgot the other.
    entries: list[tuple[str, bytes | None]] = [("a", blob(3000, 16))]
    pair = _until_chunks(Pair(entries, receivers=3).start())
    pair.lose_link("r0")
    pair.lose_link("r1")
    pair.link_back("r0")
    while len(pair.events("sender", OfferSent)) < 2:  # r0 is offered alone
        assert pair.step()
    pair.link_back("r1")
    pair.run()
    for i in range(3):
        holds_all(pair, entries, i)
    assert pair.sender.m.state is SenderState.DONE


def test_fan_out_drops_a_receiver_that_acknowledges_nothing() -> None:
    entries: list[tuple[str, bytes | None]] = [("a", blob(20_000, 12))]
    pair = Pair(entries, receivers=2, options={1: {"slow": True}})
    pair.receivers[1].stuck = True
    pair.start().run()
    holds_all(pair, entries, 0)
    assert pair.now >= PAIR_LIMITS.peer_timeout
    (failed,) = pair.events("sender", ReceiverFailed)
    assert "acknowledged nothing" in failed.reason  # type: ignore[attr-defined]


def test_fan_out_goes_on_without_one_that_declines() -> None:
    entries: list[tuple[str, bytes | None]] = [("a", blob(3000))]
    pair = Pair(entries, receivers=2, options={0: {"answer": "decline"}}).start().run()
    holds_all(pair, entries, 1)
    assert pair.events("sender", ReceiverDeclined)
    assert pair.receivers[0].files() == {}


# -- refusals and damage -----------------------------------------------------------------------


def test_a_lone_receiver_that_declines_ends_the_transfer() -> None:
    pair = Pair([("a", b"abc")], options={0: {"answer": "decline"}}).start().run()
    assert isinstance(sender_error(pair), Declined)
    assert isinstance(pair.receivers[0].error, Declined) and pair.receivers[0].files() == {}


def test_a_receiver_without_space_refuses_the_offer() -> None:
    pair = Pair([("a", blob(5000))], options={0: {"space": 1000}}).start().run()
    error = sender_error(pair)
    assert isinstance(error, LocalFileError) and error.code == "no-space"


def test_a_disk_that_fills_up_ends_the_transfer() -> None:
    pair = _midway(Pair([("a", blob(5000)), ("b", blob(5000, 1))]).start(), 3)
    assert pair.receivers[0].m.state is ReceiverState.RECEIVING
    pair.receivers[0].space = 6000  # the offer fitted; the data does not
    pair.run()
    error = sender_error(pair)
    assert isinstance(error, LocalFileError) and error.code == "disk-full"
    assert set(pair.receivers[0].files()) <= {0}


def test_a_tampered_chunk_fails_and_nothing_is_placed() -> None:
    entries: list[tuple[str, bytes | None]] = [("a", blob(4000, 13))]
    pair = _until_chunks(Pair(entries).start())
    assert pair.tamper(0, at=17)
    pair.run()
    assert pair.events("r0", HashMismatch)
    assert pair.receivers[0].files() == {} and 0 not in pair.receivers[0].disk.partials
    assert isinstance(sender_error(pair), IntegrityFailure)


def test_a_wrong_hash_at_file_end_fails_and_nothing_is_placed() -> None:
    entries: list[tuple[str, bytes | None]] = [("a", blob(1500, 14))]
    pair = Pair(entries).start()
    while not any('"file-end"' in f.data for f in pair.wire if isinstance(f.data, str)):
        assert pair.step()
    for frame in pair.wire:
        if isinstance(frame.data, str) and '"file-end"' in frame.data:
            frame.data = re.sub(r'"sha256": ?"[0-9a-f]{64}"', '"sha256": "' + "0" * 64 + '"', frame.data)
    pair.run()
    assert pair.events("r0", HashMismatch) and pair.receivers[0].files() == {}
    assert isinstance(sender_error(pair), IntegrityFailure)


def test_a_dropped_chunk_breaks_the_protocol_and_nothing_is_placed() -> None:
    pair = _until_chunks(Pair([("a", blob(4000))]).start())
    pair.drop(next(i for i, f in enumerate(pair.wire) if isinstance(f.data, bytes)))
    pair.run()
    assert isinstance(pair.receivers[0].error, RemoteProtocolError)
    assert pair.receivers[0].files() == {}
    assert pair.sender.m.state is SenderState.FAILED


# -- Hypothesis: random offers, random interleavings, random faults ----------------------------


@st.composite
def offers(draw: st.DrawFn, *, streams: bool = False) -> tuple[list[tuple[str, bytes | None]], list[int]]:
    """1 to 6 entries: files of 0 to 3000 bytes, some in a folder, perhaps an empty folder."""
    entries: list[tuple[str, bytes | None]] = []
    if draw(st.booleans()):
        entries.append(("d/", None))
    for i in range(draw(st.integers(1, 5))):
        folder = "d/" if entries and draw(st.booleans()) else ""
        size = draw(st.sampled_from([0, 1, 511, 512, 513, 2048, 3000]) | st.integers(0, 3000))
        entries.append((f"{folder}f{i}", blob(size, seed=i)))
    if draw(st.booleans()):
        entries.append(("empty/", None))
    stream = [i for i, (_, data) in enumerate(entries) if data is not None][-1:] if streams else []
    return entries, stream


WHO = st.sampled_from(["sender", "r0", "r1", "r2"])


def _bounce(who: str, gap: int) -> list[tuple[int, object]]:
    return [(0, lambda p: p.lose_link(who)), (gap, lambda p: p.link_back(who))]


@st.composite
def honest_faults(draw: st.DrawFn, receivers: int) -> list[tuple[int, object]]:
    """Links lost and back, processes started again: faults a transfer must survive."""
    schedule: list[tuple[int, object]] = []
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, 400))
        who = draw(WHO.filter(lambda w: w == "sender" or int(w[1:]) < receivers))
        if who == "sender" and receivers > 1:
            continue  # a fan-out sender back after one receiver finished and left waits for it in vain
        if draw(st.booleans()):
            schedule += [(at + d, f) for d, f in _bounce(who, draw(st.integers(0, 60)))]
        elif who == "sender":  # a new sender process is a different sender: its receivers run again too
            schedule.append((at, _restart_all))
        else:
            schedule.append((at, lambda p, who=who: p.restart(who)))
    return schedule


def _restart_all(pair: Pair) -> None:
    for r in pair.receivers:
        pair.restart(r.name)
    pair.restart("sender")


def _picker(picks: list[int]) -> object:
    it = iter(picks * 1000)
    return lambda: next(it, 0)


def check_invariants(pair: Pair, entries: list[tuple[str, bytes | None]]) -> None:
    """What holds whatever happened: nothing but the sender's bytes is ever placed, and
    the sender never has more than a window in flight."""
    assert pair.sender.in_flight_max <= pair.limits.window
    for r in pair.receivers:
        for index, data in r.files().items():
            assert data == entries[index][1], f"{r.name} placed a file that is not the sender's"


@settings(max_examples=min(EXAMPLES, 150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), offer=offers(), receivers=st.integers(1, 3), picks=st.lists(st.integers(0, 7), max_size=20))
def test_honest_runs_end_with_every_receiver_holding_every_file(
    data: st.DataObject, offer: tuple[list[tuple[str, bytes | None]], list[int]], receivers: int, picks: list[int]
) -> None:
    entries, _ = offer
    faults = data.draw(honest_faults(receivers))
    slow = data.draw(st.lists(st.booleans(), min_size=receivers, max_size=receivers))
    options = {i: {"slow": s} for i, s in enumerate(slow)}
    pair = Pair(entries, receivers=receivers, options=options).start()
    pair.run(20_000, picks=_picker(picks), faults=faults)  # type: ignore[arg-type]
    check_invariants(pair, entries)
    for i in range(receivers):
        holds_all(pair, entries, i)
    if pair.sender.transfer == 1:  # a sender started again may wait for receivers that finished and left
        # Every receiver holds every file; the sender may still fail if its link dropped while
        # the last verified was on its way (see the xfail test above).
        lost_verified = pair.sender.m.state is SenderState.FAILED and isinstance(sender_error(pair), PeerGone)
        assert pair.sender.m.state is SenderState.DONE or lost_verified


@settings(max_examples=min(EXAMPLES, 60), deadline=None)
@given(offer=offers(streams=True), receivers=st.integers(1, 3), picks=st.lists(st.integers(0, 7), max_size=20))
def test_honest_streams_arrive_whole(
    offer: tuple[list[tuple[str, bytes | None]], list[int]], receivers: int, picks: list[int]
) -> None:
    entries, streams = offer
    pair = Pair(entries, receivers=receivers, streams=streams).start().run(20_000, picks=_picker(picks))  # type: ignore[arg-type]
    check_invariants(pair, entries)
    for i in range(receivers):
        holds_all(pair, entries, i)
    assert pair.sender.m.state is SenderState.DONE


@st.composite
def any_faults(draw: st.DrawFn, receivers: int) -> list[tuple[int, object]]:
    """Honest faults and hostile ones: frames dropped, duplicated or changed, time passing,
    a receiver that declines, runs out of space or stops writing."""
    schedule: list[tuple[int, object]] = draw(honest_faults(receivers))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, 300))
        pick = draw(st.integers(0, 50))
        who = draw(st.integers(0, receivers - 1))
        fault = draw(st.sampled_from(["drop", "duplicate", "tamper", "advance", "full", "stuck", "lose"]))
        if fault == "drop":
            schedule.append((at, lambda p, n=pick: p.drop(n)))
        elif fault == "duplicate":
            schedule.append((at, lambda p, n=pick: p.duplicate(n)))
        elif fault == "tamper":
            schedule.append((at, lambda p, n=pick: p.tamper(n, at=n)))
        elif fault == "advance":
            schedule.append((at, lambda p, n=pick: p.advance(n)))
        elif fault == "full":
            schedule.append((at, lambda p, i=who, n=pick: setattr(p.receivers[i], "space", n * 100)))
        elif fault == "stuck":
            schedule.append((at, lambda p, i=who: setattr(p.receivers[i], "stuck", True)))
        else:  # a link lost for good, with what was in flight on it
            schedule.append((at, lambda p, w=f"r{who}": p.lose_link(w, abrupt=True)))
    return schedule


@settings(max_examples=min(EXAMPLES, 200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), offer=offers(), receivers=st.integers(1, 3), picks=st.lists(st.integers(0, 7), max_size=20))
def test_any_fault_schedule_ends_and_places_nothing_unverified(
    data: st.DataObject, offer: tuple[list[tuple[str, bytes | None]], list[int]], receivers: int, picks: list[int]
) -> None:
    entries, _ = offer
    faults = data.draw(any_faults(receivers))
    options = {
        i: {"answer": data.draw(st.sampled_from(["accept", "accept", "decline"])), "slow": data.draw(st.booleans())}
        for i in range(receivers)
    }
    pair = Pair(entries, receivers=receivers, options=options).start()
    # The receiver's shell turns the RemoteProtocolError a broken rule raises into an error to
    # the sender (pair.ReceiverEnd.deliver); the sender raises nothing. Anything else that
    # escapes, a LocalProtocolError included (a machine that misleads its own shell), fails.
    pair.run(20_000, picks=_picker(picks), faults=faults)  # type: ignore[arg-type]
    check_invariants(pair, entries)
    for r in pair.receivers:
        if r.done:
            holds_all(pair, entries, pair.receivers.index(r))
