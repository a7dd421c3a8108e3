"""Every limit of xfer in one place, as websockets keeps its keyword arguments: one
frozen ``Limits`` with a documented default for each, handed to whatever enforces it
(the machines, the relay, the shells) as an argument, never patched.

``LIMITS`` holds the defaults. A test or a command that wants another value makes its
own: ``Limits(window=64 * 1024)``, ``dataclasses.replace(LIMITS, peer_timeout=2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .frames import DEFAULT_CHUNK_SIZE, MAX_BINARY_FRAME, MAX_CHUNK_PAYLOAD
from .message_fields import (
    MAX_CONTROL_FRAME,
    MAX_FILES_PER_OFFER,
    MAX_NAME_CHARS,
    MAX_NAMEPLATE,
    MAX_PEER_NAME_CHARS,
    MAX_REASON_CHARS,
    MAX_TEXT_CHARS,
)

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Limits:
    """Every limit, with its default. Sizes are bytes, times seconds."""

    # -- frames and messages (what the parsers accept) --
    max_control_frame: int = MAX_CONTROL_FRAME  # JSON in one text frame (an offer of many files)
    max_binary_frame: int = MAX_BINARY_FRAME  # a chunk frame, header included
    max_chunk_payload: int = MAX_CHUNK_PAYLOAD
    max_files_per_offer: int = MAX_FILES_PER_OFFER
    max_name_chars: int = MAX_NAME_CHARS  # a relative path as sent, before it is made safe
    max_peer_name_chars: int = MAX_PEER_NAME_CHARS
    max_text_chars: int = MAX_TEXT_CHARS
    max_reason_chars: int = MAX_REASON_CHARS

    # -- a transfer between peers --
    chunk_size: int = DEFAULT_CHUNK_SIZE  # bytes of file data in one chunk frame
    window: int = 8 * MiB  # unacknowledged bytes a sender may have in flight (its credit)
    ack_every: int = 1 * MiB  # a receiver acknowledges at least this often (and 4 times a window)
    space_margin: int = 16 * MiB  # free space a receiver leaves for the rest of the system (a stream stops there)
    # folders an offer's paths would make (each entry's parents, and its folders): each costs an
    # inode, and 1,000 entries 64 levels deep would make 64,000. An offer past it is refused
    max_offer_folders: int = 10_000
    inode_margin: int = 1_000  # free inodes a receiver leaves, where the file system counts them
    peer_timeout: float = 60.0  # how long a peer that left (or the relay) may take to come back
    reconnect_for: float = 60.0  # how long to keep trying to reach the relay again
    # a receiver holding every file waits this long for the sender's ``done`` (longer, up to
    # peer_timeout, when the sender's link dropped: our last verified may have been lost with it)
    done_wait: float = 2.0
    backoff_first: float = 0.2  # the first wait before reaching the relay again; it doubles...
    backoff_cap: float = 5.0  # ...up to this, each wait times a random 0.5 to 1.5
    keepalive: float = 20.0  # WebSocket pings: every this many seconds, and as long to answer
    receipts_for: float = 30 * 86400.0  # seconds a receiver remembers a finished room (for a rerun)
    wrong_codes: int = 3  # wrong codes a sender takes before it closes the room (the code is spent)

    # -- the relay --
    max_peers_per_room: int = 20
    max_rooms: int = 10_000
    max_rooms_per_address: int = 50
    max_memory: int = 1024 * MiB  # resident memory past which the relay opens no new rooms (0: no bound)
    joins_per_minute: int = 60  # per client address, a token bucket
    # per client address, a token bucket: joins that name a room that is not open. Past it the
    # address may not name rooms for a while, so scanning nameplates for open rooms is slow
    missed_joins_per_minute: int = 10
    # relays sharing Redis give a room opened without a nameplate the smallest free one among
    # the first this many, then try this many drawn at random up to 999999 (then: relay full)
    nameplates_in_order: int = 1000
    nameplate_draws: int = 32
    remembered_addresses: int = 100_000  # join buckets kept; past this they are all forgotten at once
    # connections open at once; the relay also keeps below its descriptor limit (relay/gate.py)
    # and refuses the newest past it, so an idle crowd cannot make it fail to accept at all
    max_connections: int = 10_000
    handshake_timeout: float = 10.0  # a new connection's first HTTP request (and its TLS handshake)
    hello_timeout: float = 10.0  # to send hello once the WebSocket opened
    send_timeout: float = 30.0  # a peer that takes longer to accept one frame is dropped
    # What one connection may send the relay each second (relay/budget.py); past it the relay
    # reads the connection's socket no faster (it waits, TCP slows the peer), nothing is dropped.
    # A burst always holds one frame of the largest size.
    control_messages_per_second: int = 500  # JSON messages (a receiver acks about 4 times a window)
    control_bytes_per_second: int = 512 * KiB  # bytes of JSON: offers of many files cost the most to check
    peer_bytes_per_second: int = 0  # every frame, chunks included; 0: no bound
    local_queue_frames: int = 16  # frames waiting for a peer in the relay's own process
    outbox_bytes: int = 64 * MiB  # queued for one peer through Redis before it counts as stalled
    redis_expiry: float = 10.0  # a relay silent this long is dead and its peers leave (it beats 4 times as often)
    redis_connections: int = 64  # to Redis from one relay, at most; commands beyond wait their turn
    redis_download_key: float = 24 * 3600.0  # a download's owner in Redis, unless deleted when the download ends

    # -- the page's download bridge --
    download_queue_chunks: int = 4  # chunks waiting per file between the sender and the HTTP response
    download_bus_bytes: int = 64 * MiB  # chunks that came through Redis, queued per file without waiting
    download_start_timeout: float = 60.0  # for the page to fetch a file once its chunks come
    download_head_timeout: float = 10.0  # for the page's relay to answer a download asked on another

    def __post_init__(self) -> None:
        # The parsers hold messages to these, and the wire format to its ceilings: a limit may
        # only lower a ceiling (a higher one would promise what the other side refuses).
        for name, ceiling in _CEILINGS.items():
            if not 1 <= getattr(self, name) <= ceiling:
                raise ValueError(f"{name} must be from 1 to {ceiling}")
        if not 1 <= self.chunk_size <= self.max_chunk_payload:
            raise ValueError(f"chunk_size must be from 1 to {self.max_chunk_payload}")
        if self.window < self.chunk_size:
            raise ValueError("window must hold at least one chunk")
        if self.joins_per_minute < 1 or self.missed_joins_per_minute < 1:
            raise ValueError("joins_per_minute and missed_joins_per_minute must be at least 1")
        if not 1 <= self.nameplates_in_order <= MAX_NAMEPLATE or not 0 <= self.nameplate_draws <= 1000:
            raise ValueError(f"nameplates_in_order must be from 1 to {MAX_NAMEPLATE}, nameplate_draws 0 to 1000")
        if self.ack_every < 1:
            raise ValueError("ack_every must be at least 1")
        if self.control_messages_per_second < 1 or self.control_bytes_per_second < 1:
            raise ValueError("control_messages_per_second and control_bytes_per_second must be at least 1")
        if self.max_memory < 0:
            raise ValueError("max_memory must be 0 (no bound) or more")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.peer_bytes_per_second < 0:
            raise ValueError("peer_bytes_per_second must be 0 (no bound) or more")
        if self.wrong_codes < 1:
            raise ValueError("wrong_codes must be at least 1")


_CEILINGS = {
    "max_control_frame": MAX_CONTROL_FRAME,
    "max_binary_frame": MAX_BINARY_FRAME,
    "max_chunk_payload": MAX_CHUNK_PAYLOAD,
    "max_files_per_offer": MAX_FILES_PER_OFFER,
    "max_name_chars": MAX_NAME_CHARS,
    "max_peer_name_chars": MAX_PEER_NAME_CHARS,
    "max_text_chars": MAX_TEXT_CHARS,
    "max_reason_chars": MAX_REASON_CHARS,
}

LIMITS = Limits()
