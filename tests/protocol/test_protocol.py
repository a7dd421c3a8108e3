"""The sans-I/O protocol: messages, chunk frames and room codes, with malformed input."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xfer.protocol import (
    HEADER_SIZE,
    LIMITS,
    MAX_BINARY_FRAME,
    MAX_CHUNK_PAYLOAD,
    MAX_CONTROL_FRAME,
    Accept,
    Ack,
    Cancel,
    Done,
    Error,
    FileEnd,
    FileInfo,
    FileStart,
    FrameTooLarge,
    Hello,
    Limits,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Reject,
    ResumePoint,
    Text,
    Verified,
    VersionMismatch,
    Welcome,
    check_version,
    encode_chunk,
    parse_chunk,
    parse_header,
    parse_message,
    serialize,
)

ROOM = "7"  # a nameplate: all the relay knows of a code
SHA = "ab" * 32

EXAMPLES = [
    Hello(version="2.0", room=ROOM, role="sender", name="laptop", client="xfer/0.1.0", create=True),
    Hello(version="2.0", room="", role="sender", name="", create=True),  # the relay picks the nameplate
    Hello(version="2.0", room="999999", role="receiver", name=""),
    Welcome(version="2.0", peer_id=7, peers=(PeerInfo(id=8, name="Pixel 7", role="peer", client="page"),)),
    Welcome(version="2.0", peer_id=7, room="12"),
    PeerJoined(peer=PeerInfo(id=9, name="x", role="receiver")),
    PeerLeft(peer_id=9),
    Error(code="room-not-found", message="no room"),
    Offer(to=3, sender=4, transfer=5, files=(FileInfo(name="a.txt", size=3, mtime=1.5), FileInfo(name="b", size=0))),
    Offer(
        transfer=6,
        window=1 << 23,
        files=(
            FileInfo(name="photos", size=0, kind="dir"),
            FileInfo(name="photos/a.jpg", size=9),
            FileInfo(name="-", size=None),
        ),
    ),
    Accept(to=4, transfer=5),
    Reject(transfer=5, reason="no", code="no-space"),
    FileStart(transfer=5, index=1, offset=0),
    FileEnd(transfer=5, index=0, size=3, sha256=SHA),
    Ack(transfer=5, bytes=1 << 40),
    Verified(transfer=5, index=0, sha256=SHA),
    Done(transfer=5),
    Cancel(transfer=5, reason="bye"),
    Text(text="héllo \u202e"),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.type)
def test_round_trip(message):
    wire = serialize(message)
    assert json.loads(wire)["type"] == message.type
    assert parse_message(wire) == message
    assert parse_message(wire.encode()) == message


def test_from_travels_as_from():
    wire = serialize(Text(text="hi", sender=12, to=3))
    assert json.loads(wire) == {"type": "text", "from": 12, "to": 3, "text": "hi"}


def test_unknown_fields_are_ignored_for_minor_versions():
    assert parse_message('{"type":"done","transfer":2,"later":"field"}') == Done(transfer=2)


@pytest.mark.parametrize(
    "wire, fragment",
    [
        ("not json", "not valid JSON"),
        ("[1,2]", "must be an object"),
        ('"text"', "must be an object"),
        ("{}", "unknown message type"),
        ('{"type":"launch-missiles"}', "unknown message type"),
        ('{"type":7}', "unknown message type"),
        ('{"type":"offer","transfer":1}', "missing files"),
        ('{"type":"offer","transfer":true,"files":[{"name":"a","size":1}]}', "transfer"),
        ('{"type":"offer","transfer":1.0,"files":[{"name":"a","size":1}]}', "transfer"),
        ('{"type":"offer","transfer":0,"files":[{"name":"a","size":1}]}', "transfer"),
        ('{"type":"offer","transfer":1,"files":[]}', "files"),
        ('{"type":"offer","transfer":1,"files":{"name":"a"}}', "must be a list"),
        ('{"type":"offer","transfer":1,"files":[{"name":"a","size":-1}]}', "size"),
        ('{"type":"offer","transfer":1,"files":[{"name":"","size":1}]}', "name"),
        ('{"type":"offer","transfer":1,"files":[{"name":"a","size":"1"}]}', "size"),
        ('{"type":"offer","transfer":1,"files":["a"]}', "must be an object"),
        ('{"type":"offer","transfer":1,"files":[{"name":"a","size":9007199254740992}]}', "size"),
        ('{"type":"file-end","transfer":1,"index":0,"size":1,"sha256":"XYZ"}', "sha256"),
        ('{"type":"hello","version":"1","room":"%s","role":"sender","name":"a"}' % ROOM, "version"),
        ('{"type":"hello","version":"2.0","room":"CODE","role":"sender","name":"a"}', "room"),
        ('{"type":"hello","version":"2.0","room":"%s","role":"sender","name":"a"}' % ("a" * 32), "room"),
        ('{"type":"hello","version":"2.0","room":"0","role":"sender","name":"a"}', "room"),
        ('{"type":"hello","version":"2.0","room":"07","role":"sender","name":"a"}', "room"),
        ('{"type":"hello","version":"2.0","room":"1000000","role":"sender","name":"a"}', "room"),
        ('{"type":"hello","version":"2.0","room":"","role":"sender","name":"a"}', "room"),  # empty without create
        ('{"type":"hello","version":"2.0","room":"%s","role":"admin","name":"a"}' % ROOM, "role"),
        ('{"type":"hello","version":"2.0","room":"%s","role":"peer","name":"a","create":1}' % ROOM, "create"),
        ('{"type":"welcome","version":"2.0","peer_id":1,"room":"abc"}', "room"),
        ('{"type":"text","text":""}', "text"),
        ('{"type":"offer","transfer":1,"files":[{"name":"d","size":5,"kind":"dir"}]}', "folder"),
        ('{"type":"offer","transfer":1,"files":[{"name":"d","size":5,"kind":"link"}]}', "kind"),
        ('{"type":"text","text":"a","to":-1}', "to"),
        ('{"type":"ack","transfer":1,"bytes":NaN}', "not valid JSON"),
        ('{"type":"ack","transfer":1,"bytes":Infinity}', "not valid JSON"),
        ('{"type":"error","code":"BAD CODE"}', "code"),
    ],
)
def test_malformed_messages_raise_protocol_error(wire, fragment):
    with pytest.raises(ProtocolError, match=re.escape(fragment)):
        parse_message(wire)


def test_oversize_control_frame_is_refused_before_parsing():
    wire = json.dumps({"type": "text", "text": "x" * MAX_CONTROL_FRAME})  # over the frame limit before any check
    with pytest.raises(FrameTooLarge):
        parse_message(wire)


def test_too_many_files_in_an_offer():
    files = [{"name": f"f{i}", "size": 1} for i in range(10_001)]
    with pytest.raises(ProtocolError):
        parse_message(json.dumps({"type": "offer", "transfer": 1, "files": files}))


def test_deeply_nested_json_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        parse_message("[" * 100_000 + "]" * 100_000, max_size=1_000_000)


def test_invalid_utf8_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        parse_message(b'{"type":"text","text":"\xff\xfe"}')


def test_constructing_an_invalid_message_fails_locally():
    with pytest.raises(ProtocolError):
        Ack(transfer=1, bytes=-5)
    with pytest.raises(ProtocolError):
        Text(text="x" * (64 * 1024 + 1))


def test_version_check():
    check_version("2.0")
    check_version("2.7")
    for other in ("1.0", "3.0", "0.9", "one", "", "2"):
        with pytest.raises(VersionMismatch, match="protocol"):
            check_version(other)


# -- chunk frames ---------------------------------------------------------------------


def test_chunk_round_trip():
    frame = encode_chunk(11, 22, 33, 4, 5 << 32, b"payload")
    chunk = parse_chunk(frame)
    assert (chunk.sender, chunk.to, chunk.transfer, chunk.index, chunk.offset) == (11, 22, 33, 4, 5 << 32)
    assert bytes(chunk.payload) == b"payload"
    assert parse_header(frame) == (11, 22, 33)
    assert len(frame) == HEADER_SIZE + 7


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01" * (HEADER_SIZE - 1),
        b"\x02" + b"\x00" * (HEADER_SIZE - 1),  # unknown kind
        encode_chunk(1, 0, 1, 0, 0, b"x")[:4] + b"\x00" * 4 + encode_chunk(1, 0, 1, 0, 0, b"x")[8:],  # no sender
        encode_chunk(1, 0, 0, 0, 0, b"x"),  # no transfer id
        encode_chunk(1, 0, 1, 50_000, 0, b"x"),  # file index past the offer limit
    ],
)
def test_malformed_chunks(frame):
    with pytest.raises(ProtocolError):
        parse_chunk(frame)


def test_oversize_chunk():
    with pytest.raises(FrameTooLarge):
        encode_chunk(1, 0, 1, 0, 0, b"x" * (MAX_CHUNK_PAYLOAD + 1))
    with pytest.raises(FrameTooLarge):
        parse_header(b"\x01" + b"\x00" * MAX_BINARY_FRAME)


# -- fuzzing: bytes from the network never raise anything but ProtocolError ----------------

FUZZ_EXAMPLES = int(os.environ.get("XFER_FUZZ_EXAMPLES", "2000"))
_fuzz = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
message_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            sorted(
                [
                    "hello",
                    "welcome",
                    "peer-joined",
                    "peer-left",
                    "error",
                    "offer",
                    "accept",
                    "reject",
                    "file-start",
                    "file-end",
                    "ack",
                    "verified",
                    "done",
                    "cancel",
                    "text",
                    "nope",
                ]
            )
        )
    },
    optional={
        k: json_values
        for k in (
            "transfer",
            "files",
            "index",
            "size",
            "sha256",
            "bytes",
            "to",
            "from",
            "peer",
            "peers",
            "version",
            "room",
            "role",
            "name",
            "text",
            "code",
        )
    },
)


@_fuzz
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(data):
    for parse in (parse_message, parse_chunk):
        try:
            parse(data)
        except ProtocolError:
            pass


@settings(
    _fuzz, max_examples=max(FUZZ_EXAMPLES // 2, 1)
)  # its examples cost 10x those above: half keeps CI under 15 min
@given(message_like)
def test_fuzz_message_shaped_json(obj):
    try:
        message = parse_message(json.dumps(obj))
    except ProtocolError:
        return
    assert parse_message(serialize(message)) == message  # whatever parses, round-trips


# -- a reader's own Limits ------------------------------------------------------------

SMALL = Limits(
    max_control_frame=4096,
    max_files_per_offer=3,
    max_name_chars=10,
    max_peer_name_chars=5,
    max_text_chars=8,
    max_reason_chars=6,
)
TOO_BIG_FOR_SMALL = [
    Offer(transfer=1, files=tuple(FileInfo(name=f"f{i}", size=1) for i in range(4))),
    Offer(transfer=1, files=(FileInfo(name="a" * 11, size=1),)),
    Hello(version="2.0", room="7", role="sender", name="abcdef"),
    Welcome(version="2.0", peer_id=1, peers=(PeerInfo(id=2, name="abcdef", role="receiver"),)),
    PeerJoined(peer=PeerInfo(id=2, name="abcdef", role="receiver")),
    Text(text="123456789"),
    Error(code="x", message="1234567"),
    Reject(transfer=1, reason="1234567"),
    Cancel(transfer=1, reason="1234567"),
    FileStart(transfer=1, index=3),
    Accept(transfer=1, resume=(ResumePoint(index=3, offset=0, sha256="0" * 64),)),
]


@pytest.mark.parametrize("message", TOO_BIG_FOR_SMALL, ids=lambda m: m.type)
def test_a_reader_holds_messages_to_its_own_limits(message):
    data = serialize(message)
    assert parse_message(data) == message  # within the protocol's ceilings...
    with pytest.raises(ProtocolError):
        parse_message(data, limits=SMALL)  # ...but over this reader's limits


def test_the_client_names_a_program_and_keeps_the_protocols_ceiling():
    """A relay's shorter peer names do not refuse the page's ``client`` (xfer-web/VERSION)."""
    hello = Hello(version="2.0", room="7", role="receiver", name="phone", client="xfer-web/1.2.3")
    assert parse_message(serialize(hello), limits=SMALL) == hello


def test_the_control_frame_size_comes_from_limits_unless_given():
    data = serialize(Text(text="x" * 5000))
    with pytest.raises(ProtocolError):  # a given max_size lets it in; the text is still too long for SMALL
        parse_message(data, limits=SMALL, max_size=MAX_CONTROL_FRAME)
    assert parse_message(data, max_size=MAX_CONTROL_FRAME) == Text(text="x" * 5000)
    with pytest.raises(FrameTooLarge):
        parse_message(data, limits=replace(LIMITS, max_control_frame=4096))


def test_limits_only_lower_the_protocols_ceilings():
    assert LIMITS.max_control_frame == MAX_CONTROL_FRAME  # the defaults are the ceilings
    for name in ("max_control_frame", "max_files_per_offer", "max_text_chars", "max_binary_frame"):
        with pytest.raises(ValueError, match=name):
            replace(LIMITS, **{name: getattr(LIMITS, name) + 1})
        with pytest.raises(ValueError, match=name):
            replace(LIMITS, **{name: 0})


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=40))
def test_text_parses_exactly_when_within_the_readers_limit(text, limit):
    data = serialize(Text(text=text))
    limits = replace(LIMITS, max_text_chars=limit)
    if len(text) <= limit:
        assert parse_message(data, limits=limits) == Text(text=text)
    else:
        with pytest.raises(ProtocolError):
            parse_message(data, limits=limits)


_ROOMS = st.one_of(
    st.integers(min_value=-5, max_value=1_000_005).map(str),
    st.text(alphabet="0123456789abcdef -+", max_size=34),
    st.text(max_size=8),
)


@given(_ROOMS, st.booleans())
def test_a_hellos_room_is_a_nameplate_or_empty_to_open_one(room, create):
    """What the relay keys rooms by: 1 ... 999999 as written (no sign, no leading zero, no
    1.0 room id), or "" with create (the relay picks); anything else is refused."""
    wire = json.dumps({"type": "hello", "version": "2.0", "room": room, "role": "sender", "name": "", "create": create})
    valid = (room == "" and create) or (
        room.isascii() and room.isdigit() and str(int(room)) == room and 1 <= int(room) <= 999_999
    )
    if valid:
        assert parse_message(wire).room == room  # type: ignore[union-attr]
    else:
        with pytest.raises(ProtocolError, match="room"):
            parse_message(wire)
