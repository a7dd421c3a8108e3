"""The relay's rooms, driven in memory: no sockets, no clock (``now`` is passed in).

What tests/test_relay.py and test_hostile.py check of the relay over sockets (limits,
refusals, the joins-per-minute bucket, session replacement, fan-out, leaving) is
checked here on ``Room`` itself; Hypothesis runs random sequences of joins, leaves
and subscriptions against the invariants.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.protocol import Error, PeerJoined, PeerLeft, Text, serialize
from xfer.protocol.closes import Close, Refusal
from xfer.protocol.errors import RemoteProtocolError
from xfer.protocol.frames import encode_chunk
from xfer.protocol.limits import Limits
from xfer.protocol.messages import PeerInfo
from xfer.protocol.room import Joined, Left, Member, Refused, Room
from xfer.protocol.view import RoomView

ROOM_A = "7"  # nameplates: all the relay knows of a code
ROOM_B = "8"


def counter() -> itertools.count[int]:
    return itertools.count(1)


def make_room(**limits: int) -> Room[str]:
    ids = counter()
    return Room(Limits(**limits), new_id=lambda: next(ids))


def join(
    room: Room[str],
    room_id: str = ROOM_A,
    *,
    create: bool = True,
    address: str = "1.2.3.4",
    now: float = 0.0,
    session: str | None = None,
    name: str = "p",
) -> Joined[str] | Refused:
    return room.join(
        room_id, create=create, address=address, name=name, role="sender", client="test",
        handle=f"handle-{name}", now=now, session=session,
    )  # fmt: skip


def joined(result: Joined[str] | Refused) -> Joined[str]:
    assert isinstance(result, Joined), result
    return result


def refused(result: Joined[str] | Refused) -> Refused:
    assert isinstance(result, Refused), result
    return result


def test_join_opens_a_room_and_tells_who_is_there() -> None:
    room = make_room()
    first = joined(join(room, name="one"))
    second = joined(join(room, create=False, name="two"))
    assert first.others == ()
    assert second.others == (first.peer,)
    assert second.peer.name == "two" and second.peer.id != first.peer.id
    assert room.peer_count == 2
    assert room.local_peers(ROOM_A, but=first.peer.id) == ["handle-two"]


def test_a_room_that_is_not_open_is_not_found() -> None:
    result = refused(join(make_room(), create=False))
    assert (result.code, result.close) == ("room-not-found", Close.ROOM_NOT_FOUND)
    assert result.message == "no room with this code is open"


def test_a_full_room_refuses() -> None:
    room = make_room(max_peers_per_room=2)
    join(room, name="one")
    join(room, name="two")
    result = refused(join(room, name="three"))
    assert (result.code, result.close) == ("room-full", Close.ROOM_FULL)
    assert room.peer_count == 2


def test_rooms_per_address_and_rooms_in_all() -> None:
    room = make_room(max_rooms_per_address=2, max_rooms=3)
    for i in range(2):
        joined(join(room, f"{i + 10}", address="10.0.0.1"))
    assert refused(join(room, "12", address="10.0.0.1")).refusal is Refusal.TOO_MANY_ROOMS
    assert refused(join(room, "", address="10.0.0.1")).refusal is Refusal.TOO_MANY_ROOMS  # nor one it picks
    joined(join(room, "13", address="10.0.0.2"))  # another address may open one
    assert refused(join(room, "14", address="10.0.0.3")).refusal is Refusal.RELAY_FULL
    assert refused(join(room, "", address="10.0.0.3")).refusal is Refusal.RELAY_FULL
    # joining an open room is no new room
    joined(join(room, "10", create=False, address="10.0.0.1"))


def test_joins_per_minute_is_a_token_bucket() -> None:
    room = make_room(joins_per_minute=3)
    for _ in range(3):
        joined(join(room, now=0.0))
    result = refused(join(room, now=0.0))
    assert (result.code, result.close) == ("rate-limited", Close.RATE_LIMITED)
    assert isinstance(join(room, now=10.0), Refused)  # half a token after 10 s
    joined(join(room, now=20.0))  # one token a 20 s at 3 a minute
    joined(join(room, address="another", now=20.0))  # each address has its own bucket


def test_a_room_opened_without_a_nameplate_gets_the_smallest_free_one() -> None:
    room = make_room()
    one = joined(join(room, "", name="one"))
    two = joined(join(room, "", name="two"))
    assert (one.room, two.room) == ("1", "2")  # a new room each time, not a join of the last
    assert two.others == () and set(room.rooms) == {"1", "2"}
    joined(join(room, "3", name="three"))  # a nameplate a peer named is taken too
    assert joined(join(room, "", name="four")).room == "4"
    room.leave("1", one.peer.id)  # the room closes: its nameplate is free again
    assert joined(join(room, "", name="five")).room == "1"
    assert joined(join(room, "", name="six")).room == "5"
    joined(join(room, "2", create=False, name="seven"))  # a join with a nameplate joins that room
    assert [m.info.name for m in room.rooms["2"].peers.values()] == ["two", "seven"]


def test_a_room_that_stays_open_through_a_leave_keeps_its_nameplate() -> None:
    room = make_room()
    first = joined(join(room, "", name="one"))
    joined(join(room, "1", create=False, name="two"))
    room.leave("1", first.peer.id)
    assert joined(join(room, "", name="three")).room == "2"


def test_naming_rooms_that_are_not_open_is_limited_per_address() -> None:
    """A scan of nameplates runs out of misses; then the address may name no room, open
    or not, until its bucket refills; opening a room the relay names stays allowed."""
    room = make_room(missed_joins_per_minute=3)
    joined(join(room, "500", address="owner"))
    for nameplate in ("1", "2"):
        assert refused(join(room, nameplate, create=False, address="scanner")).refusal is Refusal.ROOM_NOT_FOUND
    joined(join(room, "500", create=False, address="scanner"))  # hits cost nothing
    assert refused(join(room, "3", create=False, address="scanner")).refusal is Refusal.ROOM_NOT_FOUND
    result = refused(join(room, "500", create=False, address="scanner"))  # the open room too: nothing learnt
    assert (result.code, result.close) == ("rate-limited", Close.RATE_LIMITED)
    assert "rooms that are not open" in result.message
    assert refused(join(room, "4", create=False, address="scanner")).code == "rate-limited"
    assert refused(join(room, "4", address="scanner")).code == "rate-limited"  # a create that names one, too
    assert joined(join(room, "", address="scanner")).room == "1"  # the relay names it: no probe
    joined(join(room, "500", create=False, address="someone else"))  # each address has its own bucket
    assert refused(join(room, "500", create=False, address="scanner", now=19.0)).code == "rate-limited"
    joined(join(room, "500", create=False, address="scanner", now=21.0))  # a miss back every 20 s at 3 a minute
    joined(join(room, "6", address="scanner", now=21.0))  # spent on opening a room it named
    assert refused(join(room, "7", address="scanner", now=21.0)).code == "rate-limited"
    assert "7" not in room.rooms


def test_a_peer_that_reconnects_with_its_session_replaces_its_stale_connection() -> None:
    room = make_room(max_peers_per_room=2)
    old = joined(join(room, session="s" * 32, name="old"))
    joined(join(room, name="other"))
    new = joined(join(room, session="s" * 32, name="new"))  # the room is full, but the stale seat frees
    assert new.replaced is not None and new.replaced.info == old.peer
    assert new.replaced.handle == "handle-old"
    assert old.peer not in new.others
    assert room.member(ROOM_A, old.peer.id) is None
    assert room.peer_count == 2


def test_leaving_tells_who_remains_and_forgets_an_empty_room() -> None:
    room = make_room()
    one = joined(join(room, name="one"))
    two = joined(join(room, name="two"))
    left = room.leave(ROOM_A, one.peer.id)
    assert isinstance(left, Left)
    assert [m.handle for m in left.remaining] == ["handle-two"] and not left.forgotten
    assert room.leave(ROOM_A, one.peer.id) is None  # leaving twice is no error
    left = room.leave(ROOM_A, two.peer.id)
    assert left is not None and left.forgotten
    assert room.rooms == {} and room.rooms_of("1.2.3.4") == 0


def test_a_room_whose_peers_are_all_on_other_relays_is_forgotten() -> None:
    room = make_room()
    mine = joined(join(room))
    info = PeerInfo(id=777, name="far", role="receiver")
    room.seat(ROOM_A, Member(info, "remote", relay_id="r" * 16), "1.2.3.4")
    assert room.peer_count == 1 and room.relays_of(ROOM_A) == {"r" * 16}
    left = room.leave(ROOM_A, mine.peer.id)
    assert left is not None and left.forgotten and ROOM_A not in room.rooms


def test_targets() -> None:
    room = make_room()
    a, b, c = (joined(join(room, name=n)).peer.id for n in "abc")
    assert sorted(room.targets(ROOM_A, a, None) or []) == ["handle-b", "handle-c"]
    assert room.targets(ROOM_A, a, b) == ["handle-b"]
    assert room.targets(ROOM_A, a, a) is None  # not to oneself
    assert room.targets(ROOM_A, a, 9999) is None  # not in the room
    assert room.targets(ROOM_B, a, None) is None


def test_fan_out_goes_to_the_receivers_that_accepted() -> None:
    room = make_room()
    s, r1, r2 = (joined(join(room, name=n)).peer.id for n in ("s", "r1", "r2"))
    room.subscribe(ROOM_A, s, 5, r1, True)
    assert room.targets(ROOM_A, s, None, 5) == ["handle-r1"]  # a chunk to everyone of transfer 5
    assert sorted(room.targets(ROOM_A, s, None, 6) or []) == ["handle-r1", "handle-r2"]  # another transfer
    room.subscribe(ROOM_A, s, 5, r2, True)
    room.subscribe(ROOM_A, s, 5, r1, False)  # r1 rejected after all
    assert room.targets(ROOM_A, s, None, 5) == ["handle-r2"]
    room.finished(ROOM_A, s, 5, r2)
    assert room.rooms[ROOM_A].fanout == {}
    room.subscribe(ROOM_A, s, 7, r1, True)
    room.leave(ROOM_A, r1)
    assert room.targets(ROOM_A, s, None, 7) == []  # its only receiver left: nobody, not everyone
    room.leave(ROOM_A, s)
    assert room.rooms[ROOM_A].fanout == {}  # the sender's transfers go with it


def test_fan_out_bookkeeping_is_bounded() -> None:
    room = make_room(max_peers_per_room=2)
    s, r = (joined(join(room, name=n)).peer.id for n in "sr")
    for transfer in range(1, 100):
        room.subscribe(ROOM_A, s, transfer, r, True)
    assert len(room.rooms[ROOM_A].fanout) == 8


# -- random sequences --------------------------------------------------------------

ROOMS = ["1", "2", "3"]
ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
SESSIONS = [None, "a" * 32, "b" * 32]

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("join"), st.sampled_from(ROOMS), st.booleans(), st.sampled_from(ADDRESSES),
            st.sampled_from(SESSIONS), st.floats(0, 5),
        ),
        st.tuples(st.just("leave"), st.sampled_from(ROOMS), st.integers(0, 20)),
        st.tuples(st.just("seat"), st.sampled_from(ROOMS), st.integers(1000, 1010)),
        st.tuples(
            st.just("subscribe"), st.sampled_from(ROOMS), st.integers(0, 20), st.integers(1, 3),
            st.integers(0, 20), st.booleans(),
        ),
        st.tuples(st.just("finished"), st.sampled_from(ROOMS), st.integers(0, 20), st.integers(1, 3), st.integers(0, 20)),
    ),
    max_size=80,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 10), st.integers(1, 5))
def test_random_sequences_keep_the_invariants(
    sequence: list[tuple[object, ...]], peers: int, rooms: int, per_address: int, rate: int, misses: int
) -> None:
    room = make_room(
        max_peers_per_room=peers,
        max_rooms=rooms,
        max_rooms_per_address=per_address,
        joins_per_minute=rate,
        missed_joins_per_minute=misses,
    )
    now = 0.0
    ids: list[int] = [0]
    for step in sequence:
        if step[0] == "join":
            _, room_id, create, address, session, later = step
            now += float(later)  # type: ignore[arg-type]
            before = len(room.rooms[room_id].peers) if room_id in room.rooms else 0  # type: ignore[index]
            result = join(room, room_id, create=bool(create), address=str(address), now=now, session=session)  # type: ignore[arg-type]
            if isinstance(result, Joined):
                ids.append(result.peer.id)
                assert room.member(room_id, result.peer.id) is not None  # type: ignore[arg-type]
                assert len(result.others) == before - (result.replaced is not None)
            else:
                assert result.code in {r.code for r in Refusal}
        elif step[0] == "leave":
            _, room_id, pick = step
            room.leave(room_id, ids[int(pick) % len(ids)])  # type: ignore[arg-type, call-overload]
        elif step[0] == "seat":
            _, room_id, pid = step
            if room_id in room.rooms:  # other relays' peers join rooms that are open
                info = PeerInfo(id=int(pid), name="far", role="receiver")  # type: ignore[call-overload]
                room.seat(room_id, Member(info, "remote", relay_id="f" * 16), "remote")  # type: ignore[arg-type]
        else:
            _, room_id, s, transfer, r, *accepted = step
            sender, receiver = ids[int(s) % len(ids)], ids[int(r) % len(ids)]  # type: ignore[call-overload]
            if step[0] == "subscribe":
                room.subscribe(room_id, sender, transfer, receiver, bool(accepted[0]))  # type: ignore[arg-type]
            else:
                room.finished(room_id, sender, transfer, receiver)  # type: ignore[arg-type]
        check_invariants(room)


def check_invariants(room: Room[str]) -> None:
    limits = room.limits
    assert len(room.rooms) <= limits.max_rooms
    by_address: dict[str, int] = {}
    for room_id, open_room in room.rooms.items():
        here = [m for m in open_room.peers.values() if m.here]
        assert here, "a room with no peer here is forgotten"
        assert len(here) <= limits.max_peers_per_room
        assert open_room.id == room_id
        assert all(pid == m.info.id for pid, m in open_room.peers.items())
        assert len(open_room.fanout) <= 4 * limits.max_peers_per_room
        for sender, _transfer in open_room.fanout:
            assert sender in open_room.peers, "a sender's transfers go with it"
        by_address[open_room.creator_address] = by_address.get(open_room.creator_address, 0) + 1
    for address in ADDRESSES + ["remote"]:
        assert room.rooms_of(address) == by_address.get(address, 0) >= 0
        assert room.rooms_of(address) <= limits.max_rooms_per_address or address == "remote"


# -- a peer's view of its room (protocol.view) ---------------------------------------


def test_the_view_keeps_the_peer_list_from_what_the_relay_sends() -> None:

    alice = PeerInfo(id=1, name="alice", role="sender")
    bob = PeerInfo(id=2, name="bob", role="receiver")
    view = RoomView(3, {1: alice})
    assert view.receive(serialize(PeerJoined(peer=bob))) == PeerJoined(peer=bob)
    assert view.peers == {1: alice, 2: bob}
    view.receive(serialize(PeerLeft(peer_id=1)))
    assert view.peers == {2: bob}
    assert view.receive(serialize(Text(sender=2, text="hi"))) == Text(sender=2, text="hi")
    chunk = view.receive(encode_chunk(2, 3, 7, 0, 0, b"data"))
    assert bytes(chunk.payload) == b"data"  # type: ignore[union-attr]


def test_the_view_turns_the_relays_own_errors_and_broken_frames_into_remote_errors() -> None:

    view = RoomView(1)
    with pytest.raises(RemoteProtocolError, match="closed the connection: too slow") as caught:
        view.receive(serialize(Error(code="too-slow", message="too slow")))
    assert caught.value.code == "too-slow"
    # an error from a peer, or "no such peer" from the relay, is a message like any other
    assert view.receive(serialize(Error(code="declined", sender=2))).code == "declined"  # type: ignore[union-attr]
    assert view.receive(serialize(Error(code="no-such-peer"))).code == "no-such-peer"  # type: ignore[union-attr]
    with pytest.raises(RemoteProtocolError, match="broken"):
        view.receive("{not json")
    with pytest.raises(RemoteProtocolError, match="broken"):
        view.receive(b"\x00")


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_the_view_reads_anything_or_raises_a_remote_error(data: str | bytes) -> None:

    view = RoomView(1)
    try:
        view.receive(data)
    except RemoteProtocolError:
        pass
