"""What one connection may ask of the relay each second, without I/O.

Every frame a peer sends costs the relay work before it goes anywhere: a control
message is read as JSON and checked field by field (an offer of many files takes
milliseconds), a chunk is read and forwarded. ``Budget`` holds a connection to
``Limits.control_messages_per_second``, ``control_bytes_per_second`` and
``peer_bytes_per_second`` with token buckets that may run into debt: ``charge``
says how long the connection must wait before its frame is handled. The relay's
shell waits that long without reading the connection's socket, so a peer over its
budget is slowed (TCP backpressure), never dropped, and costs the others nothing
more than its budget.
"""

from __future__ import annotations

from ..protocol.limits import Limits


class _Bucket:
    """``rate`` tokens a second, at most ``capacity`` saved up; a charge may leave it in debt."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def charge(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens; the seconds until the bucket is out of debt again."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= cost
        return -self.tokens / self.rate if self.tokens < 0 else 0.0


class Budget:
    """One connection's budget. A burst may always hold one frame of the largest size
    allowed, so an honest peer's biggest offer or chunk never waits on an idle budget."""

    __slots__ = ("_messages", "_control", "_all")

    def __init__(self, limits: Limits, now: float) -> None:
        messages = limits.control_messages_per_second
        control = limits.control_bytes_per_second
        self._messages = _Bucket(messages, messages, now)
        self._control = _Bucket(control, max(control, limits.max_control_frame), now)
        rate = limits.peer_bytes_per_second
        self._all = _Bucket(rate, max(rate, limits.max_binary_frame), now) if rate else None

    def charge(self, text: str | None, data: bytes | None, now: float) -> float:
        """Charge one frame (``text`` for a control message, ``data`` for a chunk) and
        return how long to wait before handling it (0: at once)."""
        wait = 0.0
        size = len(data) if data is not None else 0
        if text is not None:
            size = len(text)
            wait = max(self._messages.charge(1, now), self._control.charge(size, now))
        if self._all is not None:
            wait = max(wait, self._all.charge(size, now))
        return wait
