"""A receiver follows its sender's run, not a transfer id anyone in the room has seen.

In memory, with ``Guard``s wired by ``test_nonces.Room``: a sender's run proves itself
across its connections (``keys.Runs``), and a member of a group room who re-offers the
first sender's transfer id, as a modified client could, is refused by the receiver's
guard before its machine sees the offer."""

from __future__ import annotations

from test_nonces import CODE, SENDER, Room

from xfer.protocol import FileInfo, Offer
from xfer.protocol.guard import Guard, Impostor
from xfer.protocol.keys import Runs
from xfer.protocol.messages import Reject

MEMBER, VICTIM = 2, 3
FILES = (FileInfo(name="a.bin", size=1 << 20),)


def offers(room: Room, pid: int) -> list[Offer]:
    return [m for m in room.delivered[pid] if isinstance(m, Offer)]


def test_the_same_run_back_on_new_connections_is_taken_and_a_copy_of_its_id_is_not():
    runs = {SENDER: Runs(), VICTIM: Runs()}
    room = Room()
    room.join(SENDER, Guard("sender", "laptop", CODE, runs=runs[SENDER]))
    room.join(MEMBER, Guard("receiver", "member", CODE))
    room.join(VICTIM, Guard("receiver", "victim", CODE, runs=runs[VICTIM]))
    room.offer(MEMBER, 5)
    room.offer(VICTIM, 5)
    # The sender's link drops: back under a new peer id, new keys, its run the same.
    room.leave(SENDER)
    room.join(SENDER + 10, Guard("sender", "laptop", CODE, runs=runs[SENDER]))
    room.send(SENDER + 10, Offer(to=VICTIM, transfer=5, files=FILES))
    assert [o.sender for o in offers(room, VICTIM)] == [SENDER, SENDER + 10]
    # The victim's link drops too: its new guard still knows which run offered 5.
    room.leave(VICTIM)
    room.join(VICTIM + 10, Guard("receiver", "victim", CODE, runs=runs[VICTIM]))
    room.send(SENDER + 10, Offer(to=VICTIM + 10, transfer=5, files=FILES))
    assert [o.sender for o in offers(room, VICTIM + 10)] == [SENDER + 10]

    # The member, who was offered transfer 5 itself, runs a sender of its own (a modified
    # client): it re-offers transfer 5 and proves the one secret of the sender's run it
    # holds, the one it was given. Refused by the victim's guard, with a reason.
    member = Guard("sender", "member", CODE)
    held = room.guards[MEMBER].runs.offered[5]
    assert held is not None
    member.runs.given = [held]
    room.join(MEMBER + 10, member)
    room.send(MEMBER + 10, Offer(to=VICTIM + 10, transfer=5, files=FILES))
    assert [o.sender for o in offers(room, VICTIM + 10)] == [SENDER + 10]  # its machine never saw it
    rejects = [m for m in room.delivered[MEMBER + 10] if isinstance(m, Reject)]
    assert [(r.transfer, r.code) for r in rejects] == [(5, "other-sender")]
    # The sender's own next round still reaches the victim.
    room.send(SENDER + 10, Offer(to=VICTIM + 10, transfer=5, files=FILES))
    assert [o.sender for o in offers(room, VICTIM + 10)] == [SENDER + 10, SENDER + 10]


def test_an_impostor_is_shown_and_its_chunks_have_no_key():
    room = Room()
    room.join(SENDER, Guard("sender", "laptop", CODE))
    room.join(VICTIM, Guard("receiver", "victim", CODE))
    room.offer(VICTIM, 5)
    room.join(MEMBER, Guard("sender", "member", CODE))
    victim = room.guards[VICTIM]
    outputs = []
    real = victim.receive

    def watch(item):
        out = real(item)
        outputs.extend(out)
        return out

    victim.receive = watch  # type: ignore[method-assign]
    room.send(MEMBER, Offer(to=VICTIM, transfer=5, files=FILES))
    [shown] = [o for o in outputs if isinstance(o, Impostor)]
    assert shown.peer.id == MEMBER and "not the sender it began with" in shown.warning
    assert 5 not in victim.pairs[MEMBER].contents  # its chunks open nowhere: dropped, never written


def test_a_kept_run_comes_back_once_and_a_planted_one_is_ignored(tmp_path):
    """What a stopped sender keeps for its resume command (transfer/sender_runs.py): read
    once, then gone; a file that does not fit (planted, damaged) gives nothing."""
    import json
    from pathlib import Path

    from xfer.transfer import sender_runs
    from xfer.transfer.base import SourceFile

    files = [SourceFile(Path("a.bin"), "a.bin", 10, 1.0)]
    run = Runs()
    secret = run.give()
    sender_runs.keep("7-guitar-nebula", files, 1234, run, where=tmp_path)
    [kept] = list(tmp_path.glob("*.json"))
    assert kept.stat().st_mode & 0o777 == 0o600
    back = Runs()
    assert sender_runs.take("7-guitar-nebula", files, back, where=tmp_path) == 1234 and back.given == [secret]
    assert sender_runs.take("7-guitar-nebula", files, Runs(), where=tmp_path) is None  # once
    other = [SourceFile(Path("a.bin"), "a.bin", 11, 1.0)]  # the file changed: another run's
    sender_runs.keep("7-guitar-nebula", files, 1234, run, where=tmp_path)
    assert sender_runs.take("7-guitar-nebula", other, Runs(), where=tmp_path) is None
    for planted in ({"transfer": 0, "given": []}, {"transfer": 5, "given": ["c2hvcnQ="]}, {"transfer": 5}, [1]):
        kept.write_text(json.dumps(planted))
        got = Runs()
        assert sender_runs.take("7-guitar-nebula", files, got, where=tmp_path) is None and got.given == []
