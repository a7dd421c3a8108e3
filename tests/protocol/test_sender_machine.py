"""The sender machine in memory: no socket, no file, no clock (see sender_helpers.py).

Covers what the socket tests cover of the sender (test_transfer, test_fanout,
test_hostile, test_faults, test_outages), and, with Hypothesis, that no sequence of
inputs raises anything but a protocol error, overruns the window, or moves the state
off its table."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sender_helpers import SMALL, TRANSFER, SenderDriver, sha

from xfer.protocol.errors import (
    Declined,
    IntegrityFailure,
    LocalFileError,
    LocalProtocolError,
    PeerGone,
    ProtocolError,
    RelayGone,
    RemoteProtocolError,
)
from xfer.protocol.messages import Cancel, Done, Error, FileEnd, FileStart, Offer
from xfer.protocol.sender import TRANSITIONS, SenderState
from xfer.protocol.sender_events import (
    Accepted,
    CheckPrefix,
    Completed,
    FileStarted,
    FileVerified,
    Interrupted,
    OfferSent,
    Progress,
    Read,
    ReceiverDeclined,
    ReceiverFailed,
    ResumeMismatch,
    TurnedAway,
    Waiting,
    Warning,
)

DATA = bytes(range(256)) * 40  # 10 240 bytes: 11 chunks of SMALL, more than two windows


# -- one receiver -------------------------------------------------------------------


def test_a_file_reaches_one_receiver_inside_the_window():
    d = SenderDriver([DATA])
    d.start()
    assert [type(m) for m in d.messages] == [Offer] and d.messages[0].to == 2
    assert d.m.state is SenderState.OFFERED
    d.accept()
    assert d.m.state is SenderState.SENDING
    assert d.sent_of(FileStart) == [FileStart(to=2, transfer=TRANSFER, index=0, offset=0)]
    assert d.m.sent == SMALL.window - SMALL.window % SMALL.chunk_size  # stops at the window
    d.ack(n=2000)
    assert d.m.sent - d.m.acked <= SMALL.window
    d.finish()
    assert d.data_sent() == DATA
    assert d.sent_of(FileEnd)[0].sha256 == sha(DATA)
    assert d.sent_of(Done) == [Done(to=2, transfer=TRANSFER)]
    assert d.events_of(FileVerified)[0].sha256 == sha(DATA)
    assert d.events_of(Completed)[0].peers[0].id == 2
    assert d.m.state is SenderState.DONE
    progress = d.events_of(Progress)
    assert progress[-1].total_bytes == len(DATA) == progress[-1].total_size


def test_waits_for_a_receiver_then_offers():
    d = SenderDriver([DATA], peers=())
    d.start()
    assert d.events_of(Waiting) == [Waiting("receiver")] and not d.messages
    assert d.m.deadline() is None  # the first receiver may take as long as it likes
    d.join(5)
    assert d.sent_of(Offer)[0].to == 5


def test_a_sender_in_the_room_is_not_a_receiver():
    d = SenderDriver([DATA], peers=())
    d.start()
    from xfer.protocol.messages import PeerInfo, PeerJoined

    d.recv(PeerJoined(peer=PeerInfo(id=9, name="s", role="sender")))
    assert not d.messages


def test_folders_are_made_on_accept_and_empty_files_cost_a_start_and_an_end():
    d = SenderDriver([None, b""])
    d.start()
    d.accept()
    assert d.m.verified[0] == ""
    assert [m.index for m in d.sent_of(FileStart)] == [1]
    d.verify(index=1)
    assert d.events_of(Completed)


@pytest.mark.parametrize(("code", "error", "exit_code"), [("declined", Declined, 6), ("no-space", LocalFileError, 8)])
def test_a_declined_offer_ends_the_run(code, error, exit_code):
    d = SenderDriver([DATA])
    d.start()
    d.reject(code=code, reason="nope")
    failure = d.failure()
    assert type(failure) is error and failure.exit_code == exit_code
    assert d.m.state is SenderState.FAILED
    assert not d.chunks


def test_acks_past_what_was_sent_or_backwards_break_the_protocol():
    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.ack(n=d.m.sent + 1)
    assert isinstance(d.failure(), RemoteProtocolError)

    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.ack(n=2000)
    d.ack(n=1000)
    assert "never sent" in str(d.failure())


def test_verified_against_the_wrong_hash_is_an_integrity_failure():
    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.ack()
    d.ack()
    d.ack()
    d.verify(digest="0" * 64)
    assert isinstance(d.failure(), IntegrityFailure)


@pytest.mark.parametrize(
    ("code", "error"),
    [("hash-mismatch", IntegrityFailure), ("disk-full", LocalFileError), ("odd", RemoteProtocolError)],
)
def test_an_error_from_the_receiver_ends_a_lone_transfer(code, error):
    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.error(code=code, index=0)
    assert type(d.failure()) is error
    assert "f0.bin" in str(d.failure())


def test_a_receiver_that_cancels_is_gone():
    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.cancel()
    assert isinstance(d.failure(), PeerGone)


def test_messages_from_strangers_and_other_transfers_are_ignored():
    d = SenderDriver([DATA], peers=(2, 3))
    d.start()
    d.accept(peer=3)  # not offered to
    from xfer.protocol.messages import Accept

    d.recv(Accept(sender=2, transfer=TRANSFER + 1))
    assert d.m.state is SenderState.OFFERED and not d.chunks


def test_a_short_read_means_the_file_changed():
    d = SenderDriver([DATA], auto=False)
    d.start()
    d.accept()
    d.answer_read(b"x" * 10)
    assert "changed while it was being sent" in str(d.failure())
    assert d.sent_of(Cancel)[0].to == 2


def test_an_unreadable_file_cancels_the_offer():
    d = SenderDriver([DATA], auto=False)
    d.start()
    d.accept()
    read = d.reads.popleft()
    d.run(d.m.read_failed(read, LocalFileError("cannot read f0.bin")))
    assert isinstance(d.failure(), LocalFileError)
    assert d.sent_of(Cancel)[0].reason == "cannot read f0.bin"


def test_reading_what_was_not_asked_for_is_our_own_bug():
    d = SenderDriver([DATA], auto=False)
    d.start()
    d.accept()
    with pytest.raises(LocalProtocolError):
        d.m.data_read(Read(d.m.epoch, 0, 5000, 10), b"x" * 10, 0.0)


# -- a room closed to newcomers --------------------------------------------------------


def test_a_receiver_that_comes_once_the_round_has_its_receiver_is_turned_away():
    """Issue 13: once the receiver it takes has joined (and proved the code), the room is
    closed: a second one with the right code is told so and never offered anything."""
    d = SenderDriver([DATA])
    d.start()
    d.join(3)  # before any answer: the offer went to 2 already
    d.accept()
    d.join(4)  # mid-transfer
    assert [(e.to, e.code) for e in d.sent_of(Error)] == [(3, "room-closed"), (4, "room-closed")]
    assert [e.peer.id for e in d.events_of(TurnedAway)] == [3, 4]  # type: ignore[attr-defined]
    assert [o.to for o in d.sent_of(Offer)] == [2]
    d.leave(2)  # our receiver goes: the turned-away are not offered to in its place
    assert [o.to for o in d.sent_of(Offer)] == [2] and d.m.state is SenderState.WAITING
    d.join(5)  # perhaps ours, back under a new id: the room is open to it
    assert [o.to for o in d.sent_of(Offer)] == [2, 5] and len(d.sent_of(Error)) == 2


def test_keep_open_lets_a_newcomer_wait_for_the_next_run():
    d = SenderDriver([DATA], turn_away=False)
    d.start()
    d.accept()
    d.join(3)
    assert d.sent_of(Error) == [] and d.events_of(TurnedAway) == []


def test_a_fanout_closes_the_room_once_it_has_its_receivers():
    d = SenderDriver([DATA], peers=(2,), receivers=2)
    d.start()
    d.join(3)  # the second receiver: the round starts
    d.join(4)
    assert [(e.to, e.code) for e in d.sent_of(Error)] == [(4, "room-closed")]
    assert sorted(o.to for o in d.sent_of(Offer)) == [2, 3]


# -- rounds: receivers that leave, links that drop ---------------------------------


def test_a_receiver_that_leaves_mid_file_is_taken_back_from_what_it_holds():
    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.ack(n=3000)
    d.leave(2)
    assert d.events_of(Interrupted) == [Interrupted("receiver-left", "f0.bin (3000 B of 10240 B)")]
    assert d.m.state is SenderState.WAITING and d.m.deadline() == SMALL.peer_timeout
    d.join(4)
    offers = d.sent_of(Offer)
    assert [o.to for o in offers] == [2, 4] and offers[1].transfer == TRANSFER
    d.accept(peer=4, resume=[(0, 3000, sha(DATA[:3000]))])
    assert d.sent_of(FileStart)[-1].offset == 3000
    assert d.events_of(Accepted)[-1].resumed == 3000
    d.finish(peers=[4])
    assert d.m.sent == len(DATA) - 3000
    assert d.events_of(Completed)[0].peers[0].id == 4


def test_a_receiver_that_does_not_come_back_ends_the_run_after_the_peer_timeout():
    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.leave(2)
    d.tick(SMALL.peer_timeout - 1)
    assert not d.m.finished
    d.tick(1)
    assert isinstance(d.failure(), PeerGone) and "did not come back" in str(d.failure())


def test_reads_asked_by_a_broken_round_are_dropped():
    d = SenderDriver([DATA], auto=False)
    d.start()
    d.accept()
    stale = d.reads.popleft()
    d.leave(2)
    assert d.m.data_read(stale, d.read_bytes(stale), 0.0) == []
    assert not d.chunks


def test_the_link_lost_and_back():
    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.ack(n=1000)
    d.lose_link()
    assert d.events_of(Interrupted)[-1].reason == "relay-lost"
    assert d.events_of(Waiting)[-1] == Waiting("receiver")
    d.join(3)  # cannot happen without a link, and still: no round starts while it is down
    assert len(d.sent_of(Offer)) == 1
    d.link_back(peers=[5])
    assert d.sent_of(Offer)[-1].to == 5
    d.accept(peer=5)
    assert d.chunks[-1].sender == 101  # our new id on the new link


def test_a_relay_blip_before_any_receiver_leaves_the_wait_without_a_deadline():
    """Issue 14: nobody had joined; the relay blipped; the sender said "the receiver left
    and did not come back" at --peer-timeout. A first receiver may take as long as it likes."""
    d = SenderDriver([DATA], peers=())
    d.start()
    d.lose_link()
    assert not d.events_of(Interrupted)  # nothing broke off
    d.link_back()
    d.tick(10 * SMALL.peer_timeout)
    assert not d.m.finished and d.m.deadline() is None
    d.join(5)
    d.accept(peer=5)
    d.finish(peers=(5,))
    assert d.m.state is SenderState.DONE


def test_an_offer_not_yet_answered_when_the_link_drops_is_made_again_without_a_deadline():
    d = SenderDriver([DATA])
    d.start()  # offered to 2, who has not answered (a person deciding)
    d.lose_link()
    assert d.events_of(Interrupted)[-1].reason == "relay-lost"
    d.link_back()
    d.tick(10 * SMALL.peer_timeout)
    assert not d.m.finished and d.m.deadline() is None
    d.join(6)
    assert d.sent_of(Offer)[-1].to == 6


def test_a_relay_that_stays_away_ends_the_run_as_relay_gone():
    d = SenderDriver([DATA])
    d.start()
    d.accept()
    d.now = 3.0
    d.lose_link()
    d.tick(SMALL.peer_timeout)  # counted from when the link was lost
    assert isinstance(d.failure(), RelayGone)
    assert d.m.deadline() is None


def test_a_stream_cannot_resume():
    d = SenderDriver([DATA], streams=[0])
    d.start()
    d.accept()
    d.leave(2)
    assert "stream cannot resume" in str(d.failure())


def test_a_stream_ends_when_its_input_does_and_counts_then():
    d = SenderDriver([DATA], streams=[0], auto=False)
    d.start()
    d.accept()
    assert d.m.total == 0
    d.answer_read(b"abc")
    d.answer_read(b"")
    end = d.sent_of(FileEnd)[0]
    assert end.size == 3 and end.sha256 == sha(b"abc") and d.m.total == 3


# -- resume points ------------------------------------------------------------------


def test_resume_points_are_checked_once_per_file_and_ignored_when_impossible():
    d = SenderDriver([DATA, DATA[:100]], auto=False)
    d.start()
    with pytest.raises(ProtocolError, match="more than 1 point"):  # a hostile receiver: hash my file 499 times
        d.accept(resume=[(0, n, sha(DATA[:n])) for n in range(1, 500)])
    points = [(0, 499, sha(DATA[:499])), (1, 101, "a" * 64), (7, 1, "b" * 64)]  # past the end, past the offer
    d.accept(resume=points)
    assert list(d.checks) == [CheckPrefix(d.m.epoch, 0, 499, sha(DATA[:499]))]
    d.answer_check()
    assert d.sent_of(FileStart)[0].offset == 499


def test_a_resume_point_that_does_not_match_sends_the_file_whole():
    d = SenderDriver([DATA])
    d.start()
    d.accept(resume=[(0, 100, "c" * 64)])
    assert d.events_of(ResumeMismatch) == [ResumeMismatch(0, "f0.bin")]
    assert d.sent_of(FileStart)[0].offset == 0


def test_a_file_held_whole_costs_a_start_and_an_end():
    d = SenderDriver([DATA])
    d.start()
    d.accept(resume=[(0, len(DATA), sha(DATA))])
    assert not d.chunks
    assert d.sent_of(FileEnd)[0].sha256 == sha(DATA)


# -- fan-out ------------------------------------------------------------------------


def fanout(n: int = 3, **kw):
    d = SenderDriver([DATA], peers=range(2, 2 + n), receivers=n, **kw)
    d.start()
    assert [o.to for o in d.sent_of(Offer)] == list(range(2, 2 + n))
    return d


def test_fanout_sends_once_to_every_receiver():
    d = fanout()
    for peer in (2, 3, 4):
        d.accept(peer)
    assert {c.to for c in d.chunks} == {0}  # the relay fans out
    d.finish(peers=[2, 3, 4])
    assert d.m.sent == len(DATA)
    assert [p.id for p in d.events_of(Completed)[0].peers] == [2, 3, 4]
    assert d.events_of(Progress)[-1].peers == {2: len(DATA), 3: len(DATA), 4: len(DATA)}


def test_fanout_goes_on_without_a_receiver_that_declines_or_fails():
    d = fanout()
    d.reject(4)
    d.accept(2)
    d.accept(3)
    assert d.events_of(ReceiverDeclined)[0].peer.id == 4
    d.error(3, code="disk-full")
    assert d.events_of(ReceiverFailed)[0].peer_id == 3
    d.finish(peers=[2])
    assert [p.id for p in d.events_of(Completed)[0].peers] == [2]


def test_fanout_fails_when_every_receiver_fails():
    d = fanout(2)
    d.accept(2)
    d.accept(3)
    d.verify(2, digest="1" * 64)
    d.verify(3, digest="1" * 64)
    assert str(d.failure()) == "every receiver left or failed"


def test_fanout_drops_a_receiver_that_acknowledges_nothing_for_the_peer_timeout():
    d = fanout(2)
    d.accept(2)
    d.accept(3)
    d.ack(2)
    assert d.m.deadline() == SMALL.peer_timeout  # blocked on receiver 3
    d.tick(SMALL.peer_timeout - 0.5)
    assert not d.events_of(ReceiverFailed)
    d.tick(0.5)
    assert d.events_of(ReceiverFailed)[0].peer_id == 3
    assert "acknowledged nothing" in d.events_of(ReceiverFailed)[0].reason
    d.finish(peers=[2])
    assert d.events_of(Completed)


def test_fanout_resumes_from_the_least_any_receiver_holds():
    d = fanout(2)
    d.accept(2, resume=[(0, 5000, sha(DATA[:5000]))])
    d.accept(3, resume=[(0, 2000, sha(DATA[:2000]))])
    assert d.sent_of(FileStart)[0].offset == 2000
    d = fanout(2)
    d.accept(2, resume=[(0, 5000, sha(DATA[:5000]))])
    d.accept(3)  # holds none: from 0
    assert d.sent_of(FileStart)[0].offset == 0


def test_a_fanout_receiver_that_leaves_is_taken_back_once_the_others_are_done():
    d = fanout(2)
    d.accept(2)
    d.accept(3)
    d.ack(2, 1000)
    d.ack(3, 1000)
    d.leave(3)
    assert d.events_of(ReceiverFailed)[0].reason == "left"
    d.finish(peers=[2])
    assert d.m.state is SenderState.RETURNING
    assert d.events_of(Waiting)[-1] == Waiting("receiver-back", receivers=1, seconds=SMALL.peer_timeout)
    d.join(2)  # not taken back: it was served already (and would be excluded anyway)
    d.join(9)
    assert d.sent_of(Offer)[-1].to == 9
    d.accept(9)
    d.finish(peers=[9])
    assert [p.id for p in d.events_of(Completed)[0].peers] == [2, 9]


def test_a_fanout_receiver_that_does_not_come_back_is_a_warning():
    d = fanout(2)
    d.accept(2)
    d.accept(3)
    d.leave(3)
    d.finish(peers=[2])
    d.tick(SMALL.peer_timeout)
    assert "did not come back" in d.events_of(Warning)[0].message
    assert [p.id for p in d.events_of(Completed)[0].peers] == [2]


def test_keep_open_does_not_offer_to_peers_served_before():
    d = SenderDriver([DATA], peers=(2, 3), exclude={2})
    d.start()
    assert [o.to for o in d.sent_of(Offer)] == [3]


# -- the table and random inputs -------------------------------------------------------


def test_the_table_reaches_every_state_from_waiting():
    reached, frontier = {SenderState.WAITING}, [SenderState.WAITING]
    while frontier:
        state = frontier.pop()
        for (src, _), dst in TRANSITIONS.table.items():
            if src is state and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(SenderState)
    with pytest.raises(RemoteProtocolError):
        TRANSITIONS.next(SenderState.DONE, "offer", remote=True)


PEERS = st.integers(2, 5)
HONEST = st.one_of(
    st.tuples(st.just("accept"), st.sampled_from([2, 3]), st.integers(0, len(DATA) + 5)),
    st.tuples(st.just("check")),
    st.tuples(st.just("pump")),
    st.tuples(st.just("finish")),
)
STEP = st.one_of(
    *[HONEST] * 12,  # often enough that rounds get far, between the hostile inputs
    st.tuples(st.just("join"), PEERS),
    st.tuples(st.just("leave"), PEERS),
    st.tuples(st.just("accept"), PEERS, st.integers(0, len(DATA) + 5)),
    st.tuples(st.just("reject"), PEERS, st.sampled_from(["declined", "no-space"])),
    st.tuples(st.just("ack"), PEERS, st.integers(0, 3 * SMALL.window)),
    st.tuples(st.just("ack-all"), PEERS),
    st.tuples(st.just("verify"), PEERS, st.integers(0, 2), st.booleans()),
    st.tuples(st.just("error"), PEERS),
    st.tuples(st.just("cancel"), PEERS),
    st.tuples(st.just("lost")),
    st.tuples(st.just("back"), st.lists(PEERS, max_size=3)),
    st.tuples(st.just("tick"), st.floats(0, 2 * SMALL.peer_timeout)),
    st.tuples(st.just("read"), st.booleans()),
    st.tuples(st.just("check")),
    st.tuples(st.just("deadline")),
)


def apply(d: SenderDriver, step: tuple) -> None:
    kind, *args = step
    if kind == "join":
        d.join(args[0])
    elif kind == "leave":
        d.leave(args[0])
    elif kind == "accept":
        d.accept(args[0], resume=[(0, args[1], sha(DATA[: args[1]]))])
    elif kind == "reject":
        d.reject(args[0], code=args[1])
    elif kind == "ack":
        d.ack(args[0], args[1])
    elif kind == "ack-all":
        d.ack(args[0])
    elif kind == "verify":
        peer, index, good = args
        digest = d.m.hashes.get(index) if good else None
        d.verify(peer, index, digest or "d" * 64)
    elif kind == "error":
        d.error(args[0])
    elif kind == "cancel":
        d.cancel(args[0])
    elif kind == "lost":
        d.lose_link()
    elif kind == "back":
        d.link_back(args[0])
    elif kind == "tick":
        d.tick(args[0])
    elif kind == "deadline" and d.m.deadline() is not None:
        d.now = max(d.now, d.m.deadline() or 0.0)
        d.run(d.m.tick(d.now))
        deadline = d.m.deadline()
        assert deadline is None or deadline > d.now  # dealt with: the shell never spins on a deadline
    elif kind == "read" and d.reads:
        read = d.reads[0]
        d.answer_read(None if args[0] else d.read_bytes(read)[: read.n // 2])
    elif kind == "check" and d.checks:
        d.answer_check()
    elif kind == "pump":  # what honest receivers do: every read answered, everything acknowledged
        for _ in range(20):
            while d.reads:
                d.answer_read()
            for peer in list(d.m.round.members):
                d.ack(peer)
    elif kind == "finish":
        for peer in list(d.m.round.members):
            for index in d.m.round.files:
                if index in d.m.hashes:
                    d.verify(peer, index, d.m.hashes[index])


@pytest.mark.parametrize("receivers", [1, 2])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, max_size=60), stream=st.booleans(), auto_checks=st.booleans())
def test_random_inputs_keep_the_machine_on_its_table(receivers, steps, stream, auto_checks):
    d = SenderDriver(
        [DATA, b"xyz"],
        peers=(2, 3),
        receivers=receivers,
        auto=False,
        auto_checks=auto_checks,
        streams=[1] if stream else [],
    )
    d.start()
    for step in steps:
        try:
            apply(d, step)
        except (RemoteProtocolError, LocalProtocolError):
            pass
        # every change of state went through the table, one legal move after another
        state = SenderState.WAITING
        for before, trigger, after in d.moves:
            assert before is state and TRANSITIONS.table[(before, trigger)] is after, d.moves
            state = after
        assert d.m.state is state
        if not d.m.finished:  # (a failed sender owes nobody: its last receiver may be gone, acks and all)
            assert d.m.sent - d.m.acked <= SMALL.window
        assert sum(r.epoch == d.m.epoch for r in d.reads) <= 1  # one read at a time
        if d.m.finished:
            assert d.m.deadline() is None


def test_limits_come_from_limits():
    d = SenderDriver([DATA], limits=replace(SMALL, window=2048, chunk_size=512))
    d.start()
    d.accept()
    assert d.m.sent == 2048 and all(len(c.payload) == 512 for c in d.chunks)
    assert d.sent_of(Offer)[0].window == 2048
    with pytest.raises(ValueError):
        SenderDriver([DATA], limits=replace(SMALL, window=1000, chunk_size=100))


def test_offered_events_say_who_and_what():
    d = fanout(2)
    offered = d.events_of(OfferSent)[0]
    assert [p.id for p in offered.peers] == [2, 3] and offered.total == len(DATA)
    d.accept(2)
    d.accept(3)
    assert d.events_of(FileStarted)[0] == FileStarted(0, "f0.bin", len(DATA), 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["ack", "ack", "ack", "verify", "leave", "lost"]), max_size=40))
def test_an_honest_receiver_gets_everything_whatever_breaks_on_the_way(steps):
    d = SenderDriver([DATA, b"xyz", None, DATA[:3000]])
    d.start()
    peer, next_peer = 2, 10

    def come_back(new: int) -> None:
        index = d.m.round.files[0] if d.m.round.files else 0
        d.join(new) if d.m.link_up else d.link_back([new])
        held = min(d.m.acked if index == 0 else 0, len(DATA))
        d.accept(new, resume=[(0, held, sha(DATA[:held]))] if index == 0 else [])

    d.accept(peer)
    for step in steps:
        if d.m.finished:
            break
        if step == "ack":
            d.ack(peer)
        elif step == "verify":  # what it has whole: the files whose end was sent this round
            for index in d.m.round.files[: d.m.round.position]:
                if index in d.m.hashes:
                    d.verify(peer, index, d.m.hashes[index])
        else:
            d.leave(peer) if step == "leave" else d.lose_link()
            assert d.m.state is SenderState.WAITING
            assert d.events_of(Interrupted)[-1].reason == ("receiver-left" if step == "leave" else "relay-lost")
            peer, next_peer = next_peer, next_peer + 1
            come_back(peer)
        assert d.m.sent - d.m.acked <= SMALL.window
    d.finish(peers=[peer])
    assert not [e for e in d.events if type(e).__name__ == "Failed"]
    assert d.events_of(Completed)[0].peers[0].id == peer
    assert set(d.m.verified) == {0, 1, 2, 3} and d.m.verified[0] == sha(DATA)
