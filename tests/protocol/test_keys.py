"""Protocol 2.0's key schedule, in memory: SPAKE2 from the spake2 package checked
against its published vector, then every key, channel and content key derived from it."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spake2 import SPAKE2_A, SPAKE2_B

from xfer.protocol.errors import RemoteProtocolError
from xfer.protocol.keys import (
    PAKE_MESSAGE_BYTES,
    TAG_BYTES,
    Channel,
    ContentKey,
    Handshake,
    Tampered,
    WrongCode,
    link_keys,
    link_secret,
)


def seeded(seed: bytes):
    """The deterministic entropy source of the spake2 package's published vectors:
    SHA-256 of "prng-<counter>-<seed>", block after block."""

    def blocks():
        for counter in itertools.count():
            yield from hashlib.sha256(b"prng-%d-%s" % (counter, seed)).digest()

    stream = blocks()
    return lambda n: bytes(next(stream) for _ in range(n))


def test_spake2_matches_its_published_vector():
    a, b = SPAKE2_A(b"password", entropy_f=seeded(b"A")), SPAKE2_B(b"password", entropy_f=seeded(b"B"))
    m_a, m_b = a.start(), b.start()
    assert m_a.hex() == "416fc960df73c9cf8ed7198b0c9534e2e96a5984bfc5edc023fd24dacf371f2af9"
    assert m_b.hex() == "42354e97b88406922b1df4bea1d7870f17aed3dba7c720b313edae315b00959309"
    key = a.finish(m_b)
    assert key == b.finish(m_a)
    assert key.hex() == "a480bca13fa04464bb644f10e340125e96c9494f7399fef7c2bda67eb0fdf06d"


def pair(sender_code=b"astronaut-avocado", receiver_code=b"astronaut-avocado", nameplate=7):
    s = Handshake(sender_code, nameplate, "sender")
    r = Handshake(receiver_code, nameplate, "receiver")
    assert len(s.message) == PAKE_MESSAGE_BYTES
    return s.finish(r.message, r.nonce), r.finish(s.message, s.nonce)


def test_the_same_code_gives_the_same_keys_and_confirms():
    s, r = pair()
    s.check(r.confirmation())
    r.check(s.confirmation())
    assert s.verifier() == r.verifier() and len(s.verifier().split()) == 3
    message = b'{"type":"offer"}'
    assert r.incoming().open(s.outgoing().seal(message)) == message
    assert s.incoming().open(r.outgoing().seal(message)) == message


@pytest.mark.parametrize(
    "receiver_code, nameplate_r", [(b"astronaut-avocada", 7), (b"avocado-astronaut", 7), (b"astronaut-avocado", 8)]
)
def test_a_wrong_code_or_nameplate_fails_the_confirmation(receiver_code, nameplate_r):
    s = Handshake(b"astronaut-avocado", 7, "sender")
    r = Handshake(receiver_code, nameplate_r, "receiver")
    sk, rk = s.finish(r.message, r.nonce), r.finish(s.message, s.nonce)
    with pytest.raises(WrongCode):
        sk.check(rk.confirmation())
    with pytest.raises(WrongCode):
        rk.check(sk.confirmation())
    assert sk.verifier() != rk.verifier()
    with pytest.raises(Tampered):
        rk.incoming().open(sk.outgoing().seal(b"names"))


def test_every_handshake_has_fresh_keys():
    """Same code, same nameplate, again (a reconnection): nothing of the first is reused."""
    first, second = pair(), pair()
    assert first[0].outgoing()._aead is not second[0].outgoing()._aead
    keys = {k.confirmation() for k in (*first, *second)}
    assert len(keys) == 4
    sealed = first[0].outgoing().seal(b"offer")
    with pytest.raises(Tampered):  # recorded in one round, replayed into the next
        second[1].incoming().open(sealed)


def test_directions_and_purposes_have_their_own_keys():
    s, r = pair()
    sealed = s.outgoing().seal(b"x")
    with pytest.raises(Tampered):  # reflected back to its sender
        s.incoming().open(sealed)


def test_a_channel_refuses_drops_replays_reorders_and_rewrites():
    s, r = pair()
    out = s.outgoing()
    frames = [out.seal(b"frame %d" % i) for i in range(4)]
    for attack in (
        [frames[0], frames[0]],  # replayed
        [frames[1]],  # the first dropped
        [frames[0], frames[2]],  # one in the middle dropped
        [frames[1], frames[0]],  # reordered
        [frames[0][:-1] + bytes([frames[0][-1] ^ 1])],  # one bit flipped
        [frames[0] + b"x"],  # lengthened
    ):
        inbound = r.incoming()
        with pytest.raises(Tampered):
            for frame in attack:
                inbound.open(frame)
    inbound = r.incoming()
    assert [inbound.open(f) for f in frames] == [b"frame %d" % i for i in range(4)]


def test_content_keys_bind_chunks_to_their_place():
    key = ContentKey()
    header = b"header:transfer=1"
    sealed = key.seal(2, 262144, b"data", header)
    assert len(sealed) == 4 + TAG_BYTES
    receiver = ContentKey(key.key)
    assert receiver.open(2, 262144, sealed, header) == b"data"
    for index, offset, hdr in ((3, 262144, header), (2, 0, header), (2, 262144, b"header:transfer=2")):
        with pytest.raises(Tampered):
            receiver.open(index, offset, sealed, hdr)
    with pytest.raises(Tampered):
        ContentKey().open(2, 262144, sealed, header)  # another round's key


def test_no_key_and_nonce_pair_repeats_across_rounds_and_receivers():
    """Chunk nonces repeat across rounds (a resume sends the same offsets again), so each
    round draws its own content key; control nonces restart per handshake, under new keys."""
    rounds = [ContentKey() for _ in range(50)]
    assert len({k.key for k in rounds}) == 50
    control = [k.outgoing()._aead for _ in range(10) for k in pair()]
    assert len({id(a) for a in control}) == len(control)
    pairs = [pair() for _ in range(10)]
    derived = {k._derive(b"control sender") for p in pairs for k in p}
    assert len(derived) == 10  # one per handshake, shared by its two ends only


@pytest.mark.parametrize("message, nonce", [(b"", b"\0" * 16), (b"\0" * 33, b"short"), (b"\xff" * 33, b"\0" * 16)])
def test_a_broken_pake_message_is_the_peers_error(message, nonce):
    with pytest.raises(RemoteProtocolError):
        Handshake(b"astronaut-avocado", 7, "receiver").finish(message, nonce)


@given(st.binary(max_size=40), st.binary(max_size=20))
def test_pake_messages_from_the_network_raise_only_protocol_errors(message, nonce):
    try:
        Handshake(b"astronaut-avocado", 7, "sender").finish(message, nonce)
    except RemoteProtocolError:
        pass


@given(st.lists(st.binary(max_size=200), max_size=8))
def test_a_channel_round_trips_any_messages(messages):
    key = bytes(range(32))
    out, inbound = Channel(key), Channel(key)
    assert [inbound.open(out.seal(m)) for m in messages] == messages


def test_a_link_secret_pairs_a_page_without_a_pake():
    secret = link_secret()
    s = link_keys(secret, b"s" * 16, b"p" * 16, "sender")
    p = link_keys(secret, b"s" * 16, b"p" * 16, "receiver")
    p.check(s.confirmation())
    assert p.incoming().open(s.outgoing().seal(b"hi")) == b"hi"
    with pytest.raises(WrongCode):
        link_keys(link_secret(), b"s" * 16, b"p" * 16, "receiver").check(s.confirmation())


def test_a_links_fragment_carries_the_nameplate_and_the_secret():
    from xfer.protocol.keys import link_fragment, parse_link_fragment

    secret = link_secret()
    fragment = link_fragment(7, secret)
    assert fragment.startswith("7.") and len(fragment) == 2 + 43 and "=" not in fragment
    assert parse_link_fragment(fragment) == (7, secret)
    for bad in (
        "0." + fragment[2:],
        "7." + "!" * 43,
        "7." + fragment[2:-1],
        "٣." + fragment[2:],
        "7" + fragment[1:] + "A",
    ):
        with pytest.raises(ValueError):
            parse_link_fragment(bad)


@given(st.text(max_size=80))
def test_any_fragment_is_a_link_or_a_value_error(text):
    from xfer.protocol.keys import parse_link_fragment

    try:
        nameplate, secret = parse_link_fragment(text)
    except ValueError:
        return
    assert 1 <= nameplate <= 999_999 and len(secret) == 32
