"""The receiver's protocol decisions, driven in memory: no sockets, no disk.

These cover what the socket tests (test_transfer, test_hostile, test_folders,
test_faults, test_fanout) check of the receiver, one rule at a time, and Hypothesis
drives the machine with random inputs against its transition table.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from receiver_helpers import (
    ME,
    OTHER,
    SENDER,
    TRANSFER,
    Driver,
    accepted,
    cancel,
    chunk,
    end,
    left,
    offer,
    sha,
    start,
)

from xfer.protocol import (
    Accept,
    Ack,
    Cancel,
    Done,
    Error,
    FileInfo,
    Limits,
    LocalProtocolError,
    Offer,
    PeerInfo,
    PeerJoined,
    Reject,
    RemoteProtocolError,
    ResumePoint,
    Text,
    Verified,
)
from xfer.protocol.errors import IntegrityFailure, LocalFileError, PeerGone, RoomError
from xfer.protocol.receiver import TRANSITIONS, ReceiverMachine, ReceiverState
from xfer.protocol.receiver_outputs import (
    Accepted,
    Close,
    Completed,
    Discard,
    Failed,
    FileStarted,
    FileVerified,
    FolderMade,
    HashMismatch,
    Interrupted,
    OfferReceived,
    OfferRenewed,
    OpenPartial,
    OtherSender,
    PeerArrived,
    PeerDeparted,
    Progress,
    TextReceived,
    Unresumable,
    Write,
)

S = ReceiverState


# -- an honest transfer -------------------------------------------------------------------------


def test_an_offer_is_decided_then_each_file_verified_and_placed():
    d = Driver()
    d.feed(offer(("a.txt", 5), ("b.bin", 130)))
    assert d.machine.state is S.DECIDING
    [received] = d.events_of(OfferReceived)
    assert received.parts == (("a.txt",), ("b.bin",))
    d.carry(d.machine.accept())
    assert d.sent_of(Accept) == [Accept(to=SENDER, transfer=TRANSFER, resume=())]
    assert d.events_of(Accepted) == [Accepted(0)]
    d.receive_file(0, b"hello")
    data = bytes(range(130))
    d.receive_file(1, data)
    assert d.final == {0: b"hello", 1: data}
    assert [v.index for v in d.sent_of(Verified)] == [0, 1]
    assert [(e.index, e.size, e.sha256) for e in d.events_of(FileVerified)] == [
        (0, 5, sha(b"hello")),
        (1, 130, sha(data)),
    ]
    assert d.sent_of(Ack)[-1].bytes == 135  # every byte acknowledged, once written
    assert d.events_of(Completed) and d.machine.state is S.DONE and d.machine.complete


def test_outputs_come_in_the_order_a_shell_needs_them():
    d = accepted(Driver(), ("a.txt", 4))
    assert [type(o) for o in d.feed(start(0))] == [OpenPartial, FileStarted]
    assert [type(o) for o in d.machine.receive(chunk(0, 0, b"abcd"))] == [Write]
    d.machine.wrote(0, 4)
    kinds = [type(o).__name__ for o in d.machine.receive(end(0, 4, sha(b"abcd")))]
    assert kinds == ["Place"]
    out = d.machine.placed(0, "/in/a.txt")
    assert [type(o).__name__ for o in out] == ["Send", "Progress", "Send", "FileVerified", "Completed"]


def test_membership_and_text_pass_through():
    d = Driver()
    peer = PeerInfo(id=OTHER, name="x", role="sender")
    d.feed(PeerJoined(peer=peer), Text(sender=OTHER, text="hi"), left(OTHER))
    assert d.events == [PeerArrived(peer), TextReceived(OTHER, "hi"), PeerDeparted(OTHER)]
    assert d.machine.state is S.WAITING


def test_hostile_names_are_made_safe_once_in_the_machine():
    d = Driver()
    d.feed(offer(("../../escape.txt", 1), ("C:\\Windows\\evil.dll", 1), ("sub/../../up", 1), ("..", 1)))
    [received] = d.events_of(OfferReceived)
    assert received.parts == (("escape.txt",), ("Windows", "evil.dll"), ("sub", "up"), ("file",))


def test_declining_rejects_and_ends():
    d = Driver()
    d.feed(offer(("a", 1)))
    d.carry(d.machine.reject("declined"))
    assert d.sent_of(Reject) == [Reject(to=SENDER, transfer=TRANSFER, reason="declined")]
    assert d.machine.state is S.FAILED
    with pytest.raises(LocalProtocolError):
        d.machine.accept()


def test_no_space_reject_carries_its_code():
    d = Driver()
    d.feed(offer(("huge.iso", 2**52)))
    d.carry(d.machine.reject("needs 4 PB", "no-space"))
    assert d.sent_of(Reject)[0].code == "no-space"


# -- a sender that lies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "more-than-offered",
        "gap",
        "overlap",
        "unknown-file",
        "fewer-than-offered",
        "chunk-before-start",
        "unknown-transfer",
        "file-start-at-an-offset-never-offered",
        "file-start-twice",
        "file-start-past-the-offer",
        "file-end-for-another-file",
    ],
)
def test_lying_sizes_and_offsets_are_refused(case):
    d = accepted(Driver(), ("a.bin", 8))
    steps: dict[str, list[Any]] = {
        "more-than-offered": [start(0), chunk(0, 0, b"x" * 9)],
        "gap": [start(0), chunk(0, 4, b"xxxx")],
        "overlap": [start(0), chunk(0, 0, b"xxxx"), chunk(0, 2, b"xxxx")],
        "unknown-file": [start(0), chunk(3, 0, b"xxxx")],
        "fewer-than-offered": [start(0), chunk(0, 0, b"xxxx"), end(0, 8, sha(b"xxxx"))],
        "chunk-before-start": [chunk(0, 0, b"xxxx")],
        "unknown-transfer": [start(0), chunk(0, 0, b"xxxx", transfer=78)],
        "file-start-at-an-offset-never-offered": [start(0, offset=4)],
        "file-start-twice": [start(0), start(0)],
        "file-start-past-the-offer": [start(1)],
        "file-end-for-another-file": [start(0), end(1, 0, sha(b""))],
    }[case]
    with pytest.raises(RemoteProtocolError) as raised:
        d.feed(*steps)
    d.carry(d.machine.fail(raised.value))
    [error] = d.sent_of(Error)
    assert error.code == "protocol" and error.to == SENDER and error.transfer == TRANSFER
    assert "broke the protocol" in error.message
    assert d.machine.state is S.FAILED
    assert d.feed(chunk(0, 0, b"x")) == [] and d.machine.fail(raised.value) == []  # nothing more after failing
    assert not d.final


def test_a_file_end_that_does_not_match_a_stream_size():
    d = accepted(Driver(), ("-", None))
    d.feed(start(0), chunk(0, 0, b"abc"))
    with pytest.raises(RemoteProtocolError, match="ended at 3 bytes"):
        d.feed(end(0, 4, sha(b"abc")))


def test_hash_mismatch_discards_the_file_and_tells_the_sender():
    d = accepted(Driver(), ("report.pdf", 5))
    d.feed(start(0), chunk(0, 0, b"hello"))
    out = d.feed(end(0, 5, sha(b"HELLO")))
    assert [type(o).__name__ for o in out] == ["Discard", "Send", "HashMismatch"]
    [error] = d.sent_of(Error)
    assert error.code == "hash-mismatch" and error.index == 0 and "report.pdf" in error.message
    assert d.events_of(HashMismatch) == [HashMismatch(0, "report.pdf")]
    assert not d.final and not d.partials and d.machine.state is S.FAILED
    assert not d.sent_of(Verified)


def test_chunks_from_a_third_peer_are_ignored():
    """Only the peer whose offer was accepted may write into the receiver's files."""
    d = accepted(Driver(), ("a.txt", 4))
    d.feed(start(0))
    intruder = [
        chunk(0, 0, b"EVIL", sender=OTHER),
        start(0, sender=OTHER),
        Cancel(to=ME, sender=OTHER, transfer=TRANSFER),
    ]
    assert d.feed(*intruder) == []
    d.feed(chunk(0, 0, b"good"), end(0, 4, sha(b"good")))
    assert d.final == {0: b"good"} and d.machine.state is S.DONE


def test_control_messages_of_another_transfer_are_ignored():
    d = accepted(Driver(), ("a.txt", 4))
    other = Done(to=ME, sender=SENDER, transfer=TRANSFER + 1)
    assert d.feed(other, Done(to=ME, sender=SENDER, transfer=TRANSFER)) == []


def test_the_sender_cancelling_discards_what_is_written():
    d = accepted(Driver(), ("a.txt", 8))
    d.feed(start(0), chunk(0, 0, b"abcd"))
    out = d.feed(cancel("changed my mind"))
    assert isinstance(out[0], Discard) and not d.partials
    [failed] = d.events_of(Failed)
    assert isinstance(failed.error, PeerGone) and "changed my mind" in str(failed.error)
    assert d.machine.state is S.FAILED


def test_the_sender_stopping_with_an_error_is_its_error():
    d = accepted(Driver(), ("a.txt", 8))
    d.feed(Error(to=ME, sender=SENDER, transfer=TRANSFER, code="io-error", message="disk gone"))
    [failed] = d.events_of(Failed)
    assert isinstance(failed.error, RemoteProtocolError) and failed.error.code == "io-error"


def test_a_local_failure_is_sent_with_its_code():
    d = accepted(Driver(), ("a.txt", 8))
    d.carry(d.machine.fail(LocalFileError("the disk is full", "disk-full")))
    [error] = d.sent_of(Error)
    assert (error.code, error.message) == ("disk-full", "the disk is full")


# -- acknowledgements ---------------------------------------------------------------------------


def test_acks_come_every_ack_every_bytes_and_four_times_a_window():
    d = Driver(ReceiverMachine(Limits(ack_every=1024 * 1024)))
    d.feed(offer(("a", 64 * 1024), window=16 * 1024))
    assert d.machine.ack_every == 4 * 1024  # a quarter of the sender's window
    d.carry(d.machine.accept())
    d.receive_file(0, bytes(64 * 1024), size=1024)
    acks = [a.bytes for a in d.sent_of(Ack)]
    assert acks[:-1] == list(range(4096, 64 * 1024 + 1, 4096)) and acks[-1] == 64 * 1024
    progress = d.events_of(Progress)
    assert progress[-1].total_bytes == progress[-1].total_size == 64 * 1024


def test_acks_count_only_bytes_the_shell_wrote():
    d = Driver(ReceiverMachine(Limits(ack_every=1024)), writes_later=True)
    accepted(d, ("a", 4096))
    d.feed(start(0), *(chunk(0, at, bytes(512)) for at in range(0, 4096, 512)), end(0, 4096, sha(bytes(4096))))
    assert d.sent_of(Ack) == [] and d.sent_of(Verified) == []  # nothing written yet: no credit, no verification
    d.flush(limit=2)
    assert [a.bytes for a in d.sent_of(Ack)] == [1024]
    d.flush()
    assert [a.bytes for a in d.sent_of(Ack)] == [1024, 2048, 3072, 4096, 4096]
    assert len(d.sent_of(Verified)) == 1 and d.machine.state is S.DONE


def test_a_shell_cannot_report_bytes_never_received():
    d = accepted(Driver(), ("a", 8))
    d.feed(start(0), chunk(0, 0, b"abcd"))
    with pytest.raises(LocalProtocolError):
        d.machine.wrote(0, 5)
    with pytest.raises(LocalProtocolError):
        d.machine.placed(0, "/x")


def test_the_next_file_may_start_while_the_last_one_is_still_written():
    """The relay's download bridge writes behind the sender: file 1 arrives while file 0 waits."""
    d = Driver(writes_later=True)
    accepted(d, ("a", 4), ("b", 4))
    d.receive_file(0, b"aaaa")
    d.receive_file(1, b"bbbb")
    assert d.machine.state is S.RECEIVING and not d.final
    d.flush()
    assert d.final == {0: b"aaaa", 1: b"bbbb"} and d.machine.state is S.DONE


# -- resuming -----------------------------------------------------------------------------------


def _point(index: int, data: bytes) -> ResumePoint:
    return ResumePoint(index=index, offset=len(data), sha256=sha(data))


@pytest.mark.parametrize("offset", [0, 2, 4])
def test_a_file_start_may_use_any_offset_up_to_what_is_held(offset):
    d = Driver()
    d.partials[0] = bytearray(b"abcd")
    accepted(d, ("a", 8), points={0: _point(0, b"abcd")})
    assert d.sent_of(Accept)[0].resume == (_point(0, b"abcd"),)
    assert d.events_of(Accepted) == [Accepted(4)]
    data = b"abcdefgh"
    d.receive_file(0, data, size=3, offset=offset)
    assert d.final == {0: data} and d.sent_of(Verified)[0].sha256 == sha(data)


def test_a_file_start_past_what_is_held_is_refused():
    d = accepted(Driver(), ("a", 8), points={0: _point(0, b"abcd")})
    with pytest.raises(RemoteProtocolError, match="past what we hold"):
        d.feed(start(0, offset=5))


def test_a_resumed_file_needs_its_prefix_hashed_before_chunks():
    d = accepted(Driver(), ("a", 8), points={0: _point(0, b"abcd")})
    d.machine.receive(start(0, offset=4))  # the shell never calls opened()
    with pytest.raises(LocalProtocolError):
        d.machine.receive(chunk(0, 4, b"efgh"))


def test_a_file_placed_by_an_earlier_run_is_counted_not_written():
    d = Driver()
    d.feed(offer(("a", 4), ("b", 4)))
    d.carry(d.machine.accept({0: _point(0, b"aaaa")}, placed={0: "/in/a"}))
    out = d.feed(start(0))
    assert [type(o) for o in out] == [FileStarted]  # no partial opened
    d.feed(chunk(0, 0, b"aaaa"), end(0, 4, sha(b"aaaa")))
    assert 0 not in d.final and d.events_of(FileVerified)[0].path == "/in/a"
    assert d.sent_of(Verified)[0].index == 0 and d.sent_of(Ack)[-1].bytes == 4
    d.receive_file(1, b"bbbb")
    assert d.machine.state is S.DONE


def test_a_file_held_whole_with_another_hash_is_refused():
    d = Driver()
    d.feed(offer(("a", 4)))
    d.carry(d.machine.accept({0: _point(0, b"aaaa")}, placed={0: "/in/a"}))
    d.feed(start(0), chunk(0, 0, b"bbbb"))
    with pytest.raises(RemoteProtocolError, match="already here with another hash"):
        d.feed(end(0, 4, sha(b"bbbb")))


# -- the sender leaving and coming back -----------------------------------------------------------


def test_the_sender_leaves_and_comes_back_with_the_same_files():
    d = accepted(Driver(), ("a", 8), ("b", 4))
    d.receive_file(1, b"bbbb")  # (a sender may send in any order)
    d.feed(start(0), chunk(0, 0, b"abc"))
    out = d.feed(left())
    assert [type(o) for o in out] == [PeerDeparted, Interrupted, Close]
    assert d.events_of(Interrupted) == [Interrupted("sender-left", 0, "a", 3, 8)]
    assert d.machine.state is S.AWAY and d.machine.away
    with pytest.raises(RemoteProtocolError):  # nothing of the old round may go on
        d.feed(chunk(0, 3, b"d"))
    d = accepted(Driver(), ("a", 8), ("b", 4))
    d.receive_file(1, b"bbbb")
    d.feed(start(0), chunk(0, 0, b"abc"), left())
    d.feed(offer(("a", 8), ("b", 4), sender=OTHER))  # back, with a new peer id
    assert d.events_of(OfferRenewed) and d.machine.state is S.RESUMING and d.machine.sender == OTHER
    d.carry(d.machine.accept({0: _point(0, b"abc"), 1: _point(1, b"bbbb")}))
    assert d.machine.state is S.RECEIVING and not d.machine.away
    assert d.sent_of(Accept)[-1].to == OTHER
    d.feed(start(0, 3, sender=OTHER), chunk(0, 3, b"defgh", sender=OTHER), end(0, 8, sha(b"abcdefgh"), sender=OTHER))
    assert d.final == {1: b"bbbb", 0: b"abcdefgh"} and d.machine.state is S.DONE
    assert d.sent_of(Ack)[-1].bytes == 5  # acks count from the new round's start


def test_the_sender_back_while_the_person_decides_is_answered_not_refused():
    """A relay blip while the person is asked: the same files come again (from a new peer
    id); the answer goes to that offer, and no "busy" refusal ends the sender's run."""
    d = Driver()
    d.feed(offer(("a", 4)))
    d.machine.link_lost()
    d.feed(offer(("a", 4), sender=OTHER))
    assert not d.sent_of(Reject) and d.machine.state is S.DECIDING and not d.machine.away
    d.carry(d.machine.accept())
    assert d.sent_of(Accept)[-1].to == OTHER


def test_another_offer_while_busy_is_rejected_busy():
    d = Driver()
    d.feed(offer(("a", 4)))
    d.feed(offer(("a", 4), sender=OTHER))  # even the same files: the person is still deciding
    d.carry(d.machine.accept())
    d.feed(left())
    d.feed(offer(("other", 4), sender=OTHER))
    rejects = d.sent_of(Reject)
    assert [(r.to, r.code) for r in rejects] == [(OTHER, "busy"), (OTHER, "busy")]
    assert d.machine.state is S.AWAY and d.machine.sender == SENDER


def test_the_sender_back_under_a_new_peer_id_takes_over_its_own_transfer():
    """A sender that reconnected (a new peer id, its transfer id kept) before we noticed it had gone."""
    d = accepted(Driver(), ("a", 8))
    d.feed(start(0), chunk(0, 0, b"abcd"))
    d.feed(offer(("a", 8), sender=OTHER))
    assert d.events_of(Interrupted)[0].reason == "sender-replaced"
    assert d.feed(chunk(0, 4, b"efgh")) == []  # the old connection's chunks are ignored
    assert d.machine.state is S.RESUMING


def test_a_different_sender_with_the_same_files_is_refused_not_followed():
    """Another member of the room offers the same names under its own transfer id: the
    receiver goes on with the sender it began with and tells the other why it is refused."""
    d = accepted(Driver(), ("a", 8))
    d.feed(start(0), chunk(0, 0, b"abcd"))
    other = offer(("a", 8), sender=OTHER, transfer=TRANSFER + 1)
    d.feed(other)
    [reject] = d.sent_of(Reject)
    assert (reject.to, reject.transfer, reject.code) == (OTHER, TRANSFER + 1, "other-sender")
    assert "only from the sender it began with" in reject.reason
    assert not d.events_of(Interrupted) and not d.events_of(OfferRenewed)
    assert d.events_of(OtherSender) == [OtherSender(other, asking=False)]  # for the person to see
    assert d.feed(start(0, 4, sender=OTHER), chunk(0, 4, b"EFGH", sender=OTHER)) == []  # nothing of it is taken
    assert d.machine.sender == SENDER and d.machine.state is S.RECEIVING
    d.feed(chunk(0, 4, b"efgh"), end(0, 8, sha(b"abcdefgh")))
    assert d.final == {0: b"abcdefgh"}


def test_a_different_sender_after_ours_left_is_refused_too():
    d = accepted(Driver(), ("a", 8))
    d.feed(start(0), chunk(0, 0, b"abcd"), left())
    d.feed(offer(("a", 8), sender=OTHER, transfer=TRANSFER + 1))
    assert [(r.to, r.code) for r in d.sent_of(Reject)] == [(OTHER, "other-sender")]
    assert d.machine.state is S.AWAY and d.machine.sender == SENDER
    d.feed(offer(("a", 8)))  # ours comes back: it goes on from what is written
    assert d.events_of(OfferRenewed) and d.machine.sender == SENDER


def test_the_person_is_asked_about_a_different_sender_and_may_say_yes():
    d = Driver(ReceiverMachine(ask_other=True))
    accepted(d, ("a", 8))
    d.feed(start(0), chunk(0, 0, b"abcd"), left())
    other = offer(("a", 8), sender=OTHER, transfer=TRANSFER + 1)
    d.feed(other)
    assert d.events_of(OtherSender) == [OtherSender(other, asking=True)] and not d.sent_of(Reject)
    assert d.machine.sender == SENDER  # nothing changes before the person says yes
    d.carry(d.machine.switch(other))
    assert d.events_of(OfferRenewed) == [OfferRenewed(other)] and d.machine.sender == OTHER
    assert d.machine.state is S.RESUMING


def test_the_person_asked_about_a_different_sender_may_say_no():
    d = Driver(ReceiverMachine(ask_other=True))
    accepted(d, ("a", 8))
    d.feed(start(0), chunk(0, 0, b"abcd"))
    other = offer(("a", 8), sender=OTHER, transfer=TRANSFER + 1)
    d.feed(other)
    third = offer(("a", 8), sender=OTHER + 1, transfer=TRANSFER + 2)
    d.feed(third)  # one question at a time: a third is refused at once
    d.carry(d.machine.refuse_other(other))
    assert [(r.to, r.code) for r in d.sent_of(Reject)] == [(OTHER + 1, "other-sender"), (OTHER, "other-sender")]
    assert d.machine.sender == SENDER and d.machine.state is S.RECEIVING
    d.feed(chunk(0, 4, b"efgh"), end(0, 8, sha(b"abcdefgh")))
    assert d.final == {0: b"abcdefgh"}


def test_a_yes_for_a_different_sender_that_left_meanwhile_changes_nothing():
    d = Driver(ReceiverMachine(ask_other=True))
    accepted(d, ("a", 8))
    other = offer(("a", 8), sender=OTHER, transfer=TRANSFER + 1)
    d.feed(other, left(OTHER))
    assert d.carry(d.machine.switch(other)) == [] and d.machine.sender == SENDER


def test_a_sender_that_turns_us_away_ends_the_wait_in_our_words():
    d = Driver()
    out = d.feed(Error(to=ME, sender=OTHER, code="room-closed", message="\x1b]0;pwned\x07"))
    [failed] = [o for o in out if isinstance(o, Failed)]
    assert isinstance(failed.error, RoomError) and failed.error.code == "room-closed"
    assert str(failed.error).startswith("the sender already has its receiver and takes nobody else; ask")
    assert d.machine.state is S.FAILED and d.sent == []


def test_a_link_lost_keeps_what_is_written():
    d = accepted(Driver(), ("a", 8))
    d.feed(start(0), chunk(0, 0, b"abcd"))
    d.carry(d.machine.link_lost())
    assert d.events_of(Interrupted)[0].reason == "relay-lost" and d.partials == {0: bytearray(b"abcd")}


def test_a_stream_broken_off_cannot_resume():
    d = accepted(Driver(), ("-", None))
    d.feed(start(0), chunk(0, 0, b"abc"))
    out = d.feed(left())
    assert [type(o) for o in out] == [PeerDeparted, Discard, Unresumable]
    assert d.events_of(Unresumable) == [Unresumable(0, "-", 3)] and d.machine.state is S.FAILED


def test_standard_output_cannot_resume_either():
    d = Driver(ReceiverMachine(rewindable=False))
    accepted(d, ("a", 8))
    d.feed(start(0), chunk(0, 0, b"abc"))
    d.carry(d.machine.link_lost())
    assert d.machine.state is S.FAILED and d.events_of(Unresumable)


def test_a_stream_takes_its_size_from_its_file_end():
    d = accepted(Driver(), ("-", None))
    d.receive_file(0, b"x" * 1000, size=100)
    [verified] = d.events_of(FileVerified)
    assert verified.size == 1000 and d.machine.state is S.DONE


def test_offers_after_the_end_are_for_another_receive():
    d = accepted(Driver(), ("a", 1))
    d.receive_file(0, b"a")
    assert d.feed(offer(("a", 1), sender=OTHER, transfer=TRANSFER + 1), left()) == [PeerDeparted(SENDER)]
    assert d.feed(offer(("b", 1))) == []  # other files, from our own sender too
    assert d.machine.state is S.DONE


def test_our_sender_back_after_the_end_hears_every_verified_again_then_says_done():
    # Its link dropped as our last verified travelled: it is back under a new peer id (its
    # transfer id kept) with the same files. A round of file-start and file-end, nothing
    # written, answers it; its done lets the shell go.
    d = accepted(Driver(), ("a", 3), ("b", 2))
    d.receive_file(0, b"abc")
    d.receive_file(1, b"de")
    assert d.machine.state is S.DONE and not d.machine.sender_done
    d.feed(left(), offer(("a", 3), ("b", 2), sender=OTHER))
    assert d.events_of(OfferRenewed) and d.machine.state is S.RESUMING
    d.carry(d.machine.accept({0: _point(0, b"abc"), 1: _point(1, b"de")}))
    assert d.machine.state is S.RECEIVING  # not complete until this round's verified are sent again
    writes = len(d.final)
    d.feed(start(0, 3, sender=OTHER), end(0, 3, sha(b"abc"), sender=OTHER))
    assert d.machine.state is S.RECEIVING
    d.feed(start(1, 2, sender=OTHER), end(1, 2, sha(b"de"), sender=OTHER))
    assert d.machine.state is S.DONE and len(d.final) == writes
    assert [(v.to, v.index) for v in d.sent_of(Verified)][-2:] == [(OTHER, 0), (OTHER, 1)]
    assert len(d.events_of(FileVerified)) == 2  # saved once: no second event
    d.feed(Done(sender=SENDER, to=ME, transfer=TRANSFER))  # the old id's is not its
    assert not d.machine.sender_done
    d.feed(Done(sender=OTHER, to=ME, transfer=TRANSFER))
    assert d.machine.sender_done


# -- folders ------------------------------------------------------------------------------------------


def _folder_offer() -> Offer:
    files = (FileInfo(name="photos", kind="dir", size=0), FileInfo(name="photos/a.jpg", size=3))
    return Offer(to=ME, sender=SENDER, transfer=TRANSFER, files=files)


def test_folders_are_made_at_accept_and_never_streamed():
    d = Driver()
    d.feed(_folder_offer())
    d.carry(d.machine.accept(folders={0: "/in/photos"}))
    assert d.events_of(FolderMade) == [FolderMade(0, "photos", "/in/photos")]
    assert [type(o).__name__ for o in d.outputs[-3:]] == ["FolderMade", "Send", "Accepted"]
    with pytest.raises(RemoteProtocolError, match="folder"):
        d.feed(start(0))


def test_an_offer_of_folders_only_is_complete_when_accepted():
    d = Driver()
    d.feed(Offer(to=ME, sender=SENDER, transfer=TRANSFER, files=(FileInfo(name="empty", kind="dir", size=0),)))
    d.carry(d.machine.accept(folders={0: "/in/empty"}))
    assert d.events_of(Completed) and d.machine.state is S.DONE


def test_a_folder_entry_is_made_once_across_rounds():
    d = Driver()
    d.feed(_folder_offer())
    d.carry(d.machine.accept(folders={0: "/in/photos"}))
    d.feed(left(), _folder_offer())
    d.carry(d.machine.accept(folders={0: "/in/photos"}))
    assert len(d.events_of(FolderMade)) == 1


# -- Hypothesis: the table is the law -----------------------------------------------------------------

FILES = (("a", 6), ("b", None), ("c/", 0))
DATA = {0: b"abcdef", 1: b"stream"}

message = st.one_of(
    st.builds(lambda s, o: offer(*o, sender=s), st.sampled_from([SENDER, OTHER]), st.sampled_from([FILES, FILES[:1]])),
    st.builds(start, st.integers(0, 3), st.integers(0, 7), st.sampled_from([SENDER, OTHER])),
    st.builds(
        lambda i, at, n, s, t: chunk(i, at, DATA.get(i, b"zzzzzz")[at : at + n] or b"q", s, t),
        st.integers(0, 3),
        st.integers(0, 6),
        st.integers(1, 6),
        st.sampled_from([SENDER, OTHER]),
        st.sampled_from([TRANSFER, TRANSFER + 1]),
    ),
    st.builds(
        lambda i, n, good: end(i, n, sha(DATA.get(i, b"")[:n]) if good else "0" * 64),
        st.integers(0, 3),
        st.integers(0, 7),
        st.booleans(),
    ),
    st.builds(left, st.sampled_from([SENDER, OTHER])),
    st.just(cancel()),
    st.just(Error(to=ME, sender=SENDER, transfer=TRANSFER, code="io-error")),
    st.just(Done(to=ME, sender=SENDER, transfer=TRANSFER)),
    st.just(Text(sender=OTHER, text="hi")),
)
local = st.one_of(
    st.just(("accept",)),
    st.just(("accept-resumed",)),
    st.just(("reject",)),
    st.tuples(st.just("wrote"), st.integers(0, 3), st.integers(1, 6)),
    st.tuples(st.just("placed"), st.integers(0, 3)),
    st.tuples(st.just("opened"), st.integers(0, 3)),
    st.just(("link-lost",)),
    st.just(("fail",)),
)


def _local(m: ReceiverMachine, step: tuple[Any, ...]) -> list[Any]:
    kind = step[0]
    if kind == "accept":
        return m.accept(folders={2: "/in/c"})
    if kind == "accept-resumed":
        return m.accept({0: ResumePoint(index=0, offset=3, sha256=sha(b"abc"))})
    if kind == "reject":
        return m.reject("declined")
    if kind == "wrote":
        return m.wrote(step[1], step[2])
    if kind == "placed":
        return m.placed(step[1], "/in/x")
    if kind == "opened":
        return m.opened(step[1], hashlib.sha256(b"abc"))
    if kind == "link-lost":
        return m.link_lost()
    return m.fail(IntegrityFailure("no"))


def _moves() -> dict[S, set[S]]:
    moves: dict[S, set[S]] = {state: {state} for state in S}
    for (state, _), after in TRANSITIONS.table.items():
        moves[state].add(after)
    return moves


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(message, local), max_size=40), st.booleans())
def test_random_inputs_raise_only_protocol_errors_and_follow_the_table(steps, auto):
    """Whatever comes (and whatever a buggy shell does), the machine raises nothing but
    Remote/LocalProtocolError, and each input moves its state along one edge of the table."""
    d = Driver()
    moves = _moves()
    for step in steps:
        before = d.machine.state
        try:
            if isinstance(step, tuple):
                out = _local(d.machine, step)
                if auto:
                    d.carry(out)
            elif auto:
                d.feed(step)
            else:
                d.machine.receive(step)
        except (RemoteProtocolError, LocalProtocolError) as exc:
            if isinstance(exc, RemoteProtocolError):
                assert d.machine.state is before  # a peer's breach changes nothing until the shell fails
        after = d.machine.state
        assert after in moves[before] or (before, after) in _chained(moves), (before, step, after)
        m = d.machine
        assert m.round_written >= m.last_ack and m.round_written - m.last_ack < m.ack_every or m.placing
        if m.current is not None:
            assert m.current.written <= m.current.received <= (m.current.size or 2**63)


def _chained(moves: dict[S, set[S]]) -> set[tuple[S, S]]:
    """States two edges apart: one input may pass through two (the last file placed completes the offer)."""
    return {(a, c) for a, bs in moves.items() for b in bs for c in moves[b]}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 20_000), min_size=1, max_size=4),
    st.integers(64, 4096),
    st.integers(1024, 8192),
    st.booleans(),
)
def test_any_honest_transfer_is_verified_whole_with_acks_in_cadence(sizes, size, window, later):
    """For any files, chunk size and window, every file arrives whole and verified, acks never
    go back, never pass what was written, and never leave more than a quarter window unacknowledged."""
    files = [random.Random(n).randbytes(n) for n in sizes]
    d = Driver(writes_later=later)
    d.feed(offer(*((f"f{i}", len(data)) for i, data in enumerate(files)), window=window))
    d.carry(d.machine.accept())
    acks: list[int] = []
    for i, data in enumerate(files):
        d.feed(start(i))
        for at in range(0, len(data), size):
            d.feed(chunk(i, at, data[at : at + size]))
            d.flush()
            acks = [a.bytes for a in d.sent_of(Ack)]
            assert d.machine.round_written - (acks[-1] if acks else 0) < window // 4
        d.feed(end(i, len(data), sha(data)))
        d.flush()
    acks = [a.bytes for a in d.sent_of(Ack)]
    assert d.final == dict(enumerate(files)) and d.machine.state is S.DONE
    assert acks == sorted(acks) and acks[-1] == sum(map(len, files))


# -- the relay's download bridge ----------------------------------------------------------------------


def test_the_bridge_takes_a_first_chunk_as_the_file_start():
    d = Driver(ReceiverMachine(implicit_start=True))
    accepted(d, ("a", 8))
    out = d.feed(chunk(0, 0, b"abcd"))
    assert [type(o) for o in out] == [OpenPartial, FileStarted, Write]
    d.feed(chunk(0, 4, b"efgh"), end(0, 8, sha(b"abcdefgh")))
    assert d.final == {0: b"abcdefgh"} and d.machine.state is S.DONE


def test_the_bridge_still_refuses_a_first_chunk_past_the_start():
    d = Driver(ReceiverMachine(implicit_start=True))
    accepted(d, ("a", 8))
    with pytest.raises(RemoteProtocolError):
        d.feed(chunk(0, 4, b"efgh"))
    with pytest.raises(RemoteProtocolError):
        d.feed(chunk(5, 0, b"abcd"))  # a file that was not offered


PURE = {"__future__", "collections", "dataclasses", "enum", "hashlib", "re", "typing", "unicodedata"}


def test_the_receiver_machine_and_the_name_rules_do_no_io():
    """protocol/ imports nothing of ours outside protocol/, and no asyncio, sockets, files or rich."""
    import ast
    from pathlib import Path

    import xfer.protocol

    folder = Path(xfer.protocol.__file__).parent
    for name in ("receiver.py", "receiver_outputs.py", "receiver_states.py", "names.py"):
        tree = ast.parse((folder / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                continue  # protocol/ itself
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for module in modules:
                assert module.split(".")[0] in PURE, (name, module)
