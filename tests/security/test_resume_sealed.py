"""Resume with encryption, through the wiretap: the receiver is killed mid-transfer and
run again with the same code; it makes new keys, the sender starts where the partial
file ends (fewer bytes the second time), and the file verifies. The second receiver
gets only what its partial file lacked, once; that an offset sent again goes under
another key is shown in memory, in test_nonces.py."""

from __future__ import annotations

import signal

from through import receive, send, tapped_relay
from wiretap import UP

from conftest import leftovers, make_file, sha256_of, wait_progress
from xfer.protocol.frames import HEADER, HEADER_SIZE

SIZE = 16 * 1000 * 1000
RATE = "4MB"  # about 4 s: the kill lands mid-transfer


def test_a_killed_receiver_run_again_resumes_under_new_keys(tmp_path, procs):
    source = make_file(tmp_path / "film.mkv", SIZE, 21)
    out = tmp_path / "out"
    tap = tapped_relay(procs, tmp_path)
    try:
        sender = send(procs, tmp_path, tap.url, str(source), extra=("--limit-rate", RATE, "--peer-timeout", "30"))
        code = sender.first_event()["code"]
        first = receive(procs, tmp_path, tap.url, code, out, name="recv1", extra=("--peer-timeout", "30"))
        before = wait_progress(first, SIZE // 4)
        first.proc.send_signal(signal.SIGKILL)
        first.wait(10)
        partial = [p for p in out.iterdir() if p.name.endswith(".xfer-part")]
        assert len(partial) == 1 and 0 < partial[0].stat().st_size < SIZE
        second = receive(procs, tmp_path, tap.url, code, out, name="recv2", extra=("--peer-timeout", "30"))
        assert second.wait(60) == 0, second.stderr
        assert sender.wait(30) == 0, sender.stderr
        frames = tap.seen()
    finally:
        tap.__exit__()
    assert 0 < before < SIZE
    assert sha256_of(out / "film.mkv") == sha256_of(source)
    assert leftovers(out) == []
    resumed = [e["resumed"] for e in second.events() if e["event"] == "accepted"]
    assert resumed and resumed[0] > 0

    # New keys: the second receiver made its own handshake, and the new round its own content key.
    pakes = [f for f in frames if f.kind == "pake" and f.role == "sender" and f.direction == UP]
    peers = list(dict.fromkeys(f.json()["to"] for f in pakes))
    assert len(peers) == 2
    first_id, second_id = peers

    # Chunks by the receiver they are addressed to (not by when the kill landed: a chunk
    # already on its way when the first receiver died still reaches the relay after it).
    chunks = [f for f in frames if f.role == "sender" and f.direction == UP and f.kind == "chunk"]
    early = [f for f in chunks if chunk_to(f) == first_id]
    late = [f for f in chunks if chunk_to(f) == second_id]
    assert early and late and len(early) + len(late) == len(chunks)
    sent_again = sum(len(f.data) - HEADER_SIZE - 16 for f in late)
    assert sent_again == SIZE - resumed[0]  # only what the partial file lacked, once
    assert sent_again < SIZE - before + 8 * 1024 * 1024


def chunk_to(frame) -> int:
    """The peer a chunk frame is addressed to, from its header."""
    _kind, _sender, to, _transfer, _index, _offset = HEADER.unpack_from(frame.data)
    return to
