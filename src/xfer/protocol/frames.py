"""Binary chunk frames.

A chunk travels as one WebSocket binary frame: a fixed 28-byte header, then
the payload.

    offset  size  field
    0       1     kind (1 = chunk)
    1       3     reserved, zero
    4       4     from: the sending peer's id (the relay checks it)
    8       4     to: the receiving peer's id, 0 for everyone else in the room
    12      4     transfer id
    16      4     file index in the offer
    20      8     byte offset of the payload in the file
    28      ...   payload (at most ``MAX_CHUNK_PAYLOAD`` bytes)

All integers are big-endian and unsigned.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import FrameTooLarge, ProtocolError
from .message_fields import MAX_FILES_PER_OFFER

CHUNK = 1
HEADER = struct.Struct("!B3xIIIIQ")
HEADER_SIZE = HEADER.size  # 28
MAX_CHUNK_PAYLOAD = 1024 * 1024
MAX_BINARY_FRAME = HEADER_SIZE + MAX_CHUNK_PAYLOAD
# Bytes of file data in one chunk frame: the largest multiple of 4 KiB whose sealed payload
# (16 bytes longer) fits MAX_CHUNK_PAYLOAD. Each chunk costs Python on every hop (the sender's
# read and seal, the relay's framing, the receiver's open, hash and write): 1020 KiB chunks
# took 0.73x the CPU per GB of 256 KiB ones relayed (bench/README.md, issue 17).
DEFAULT_CHUNK_SIZE = 1020 * 1024


@dataclass(frozen=True, slots=True)
class Chunk:
    sender: int
    to: int
    transfer: int
    index: int
    offset: int
    payload: memoryview


def chunk_header(sender: int, to: int, transfer: int, index: int, offset: int) -> bytes:
    return HEADER.pack(CHUNK, sender, to, transfer, index, offset)


def encode_chunk(sender: int, to: int, transfer: int, index: int, offset: int, payload: bytes) -> bytes:
    if len(payload) > MAX_CHUNK_PAYLOAD:
        raise FrameTooLarge(f"chunk of {len(payload)} bytes is over the {MAX_CHUNK_PAYLOAD} byte limit")
    return chunk_header(sender, to, transfer, index, offset) + payload


def parse_header(data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """Check a binary frame's header; return (from, to, transfer). Cheap: the relay calls it per frame."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError("binary frame shorter than a chunk header")
    if len(data) > MAX_BINARY_FRAME:
        raise FrameTooLarge(f"binary frame of {len(data)} bytes is over the {MAX_BINARY_FRAME} byte limit")
    kind, sender, to, transfer, _index, _offset = HEADER.unpack_from(data)
    if kind != CHUNK:
        raise ProtocolError(f"unknown binary frame kind {kind}")
    return sender, to, transfer


def parse_chunk(data: bytes | bytearray | memoryview) -> Chunk:
    """Decode a binary frame into a ``Chunk``. Raises only ``ProtocolError``."""
    parse_header(data)
    _kind, sender, to, transfer, index, offset = HEADER.unpack_from(data)
    if sender == 0 or transfer == 0:
        raise ProtocolError("chunk without a sender or transfer id")
    if index >= MAX_FILES_PER_OFFER:
        raise ProtocolError("chunk for a file index past the offer limit")
    return Chunk(sender, to, transfer, index, offset, memoryview(data)[HEADER_SIZE:])
