"""Protocol 2.0's clear messages from the network: each parses to a valid message or
raises ``ProtocolError``, whatever a hostile peer or relay puts in its fields."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.protocol.errors import ProtocolError
from xfer.protocol.messages import Confirm, Hello, Hi, Pake, Sealed, Subscribe, Welcome, parse_message, serialize


def b64(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


GOOD = [
    Pake(to=1, nonce=b64(16), msg=b64(33)),
    Pake(to=1, nonce=b64(16), link=True),
    Confirm(to=1, tag=b64(32)),
    Sealed(to=1, box=b64(40)),
    Subscribe(to=1, transfer=5),
    Hi(name="Pixel 7", download="relay"),
    Hello(version="2.0", room="", role="sender", name="", create=True),
    Hello(version="2.0", room="999999", role="receiver", name=""),
    Welcome(version="2.0", peer_id=3, room="7"),
]


@pytest.mark.parametrize("message", GOOD, ids=lambda m: m.type)
def test_each_message_survives_the_wire(message):
    assert parse_message(serialize(message)) == message


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "pake", "nonce": b64(15), "msg": b64(33)},  # a short nonce
        {"type": "pake", "nonce": b64(16), "msg": b64(32)},  # a short PAKE message
        {"type": "pake", "nonce": b64(16)},  # neither a PAKE message nor a link
        {"type": "pake", "nonce": "not base64!", "link": True},
        {"type": "pake", "nonce": b64(16)[:-1], "link": True},  # padding cut
        {"type": "pake", "nonce": b64(16), "link": "yes"},
        {"type": "confirm", "tag": b64(31)},
        {"type": "sealed", "box": "AAAA"},  # too short to hold a tag
        {"type": "sealed", "box": 5},
        {"type": "subscribe", "transfer": 0},
        {"type": "hi", "name": "x" * 65},
        {"type": "hi", "name": "x", "download": "http"},
        {"type": "hello", "version": "2.0", "room": "", "role": "receiver", "name": ""},  # no nameplate, no create
        {"type": "hello", "version": "2.0", "room": "0", "role": "sender", "name": ""},
        {"type": "hello", "version": "2.0", "room": "1000000", "role": "sender", "name": ""},
        {"type": "hello", "version": "2.0", "room": "0" * 32, "role": "sender", "name": ""},  # a 1.0 room id
        {"type": "welcome", "version": "2.0", "peer_id": 1, "room": "07"},
    ],
)
def test_broken_fields_are_refused(obj):
    with pytest.raises(ProtocolError):
        parse_message(json.dumps(obj))


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["pake", "confirm", "sealed", "subscribe", "unsubscribe", "hi", "hello", "welcome"]),
    st.dictionaries(
        st.sampled_from(["nonce", "msg", "link", "tag", "box", "transfer", "name", "download", "room", "to"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=60),
            st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
        ),
    ),
)
def test_any_fields_parse_or_raise_protocol_error(kind, fields):
    try:
        message = parse_message(json.dumps({"type": kind, **fields}))
    except ProtocolError:
        return
    assert message.type == kind
