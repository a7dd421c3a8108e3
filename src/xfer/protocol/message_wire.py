"""The way in and the way out of control messages: ``parse_message`` is the only way
in from the network and raises nothing but ``ProtocolError``; ``serialize`` is the
only way out.

A message's classes check it against the protocol's ceilings; ``parse_message`` also
holds it to the ``Limits`` of whoever reads it (a relay may take shorter names or
fewer files than the protocol allows), so that both checks happen in one place.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .errors import FrameTooLarge, ProtocolError, VersionMismatch
from .limits import LIMITS, Limits
from .message_fields import PROTOCOL_MAJOR, PROTOCOL_VERSION, VERSION_PATTERN
from .message_keys import KEY_MESSAGE_TYPES
from .message_types import (
    _NESTED,
    Cancel,
    Error,
    FileInfo,
    Hello,
    Message,
    Offer,
    PeerInfo,
    Reject,
    Text,
)
from .message_types import (
    MESSAGE_TYPES as CORE_MESSAGE_TYPES,
)

MESSAGE_TYPES = {**CORE_MESSAGE_TYPES, **KEY_MESSAGE_TYPES}


def _build(cls: type, data: dict[str, Any], limits: Limits) -> Any:
    """Build ``cls`` from a decoded JSON object, ignoring unknown keys (minor versions add fields)."""
    what: str = getattr(cls, "type", cls.__name__)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        key = "from" if field.name == "sender" else field.name
        if key not in data:
            continue
        value = data[key]
        nested = _NESTED.get(field.name)
        if nested is not None:
            if field.name == "peer":
                value = _build(nested, _expect_object(value, field.name), limits)
            else:
                if type(value) is not list:
                    raise ProtocolError(f"{what}.{field.name}: must be a list")
                if len(value) > limits.max_files_per_offer:
                    raise ProtocolError(f"{what}.{field.name}: too many items")
                value = tuple(_build(nested, _expect_object(v, field.name), limits) for v in value)
        kwargs[field.name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs and f.default is dataclasses.MISSING]
        raise ProtocolError(f"{what}: missing {', '.join(missing) or 'fields'}") from exc


def _expect_object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise ProtocolError(f"{what}: must be an object")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _longer(what: str, field: str, value: str | None, max_chars: int) -> None:
    if value is not None and len(value) > max_chars:
        raise ProtocolError(f"{what}.{field}: must be text of at most {max_chars} characters")


def _peer_within(peer: PeerInfo, limits: Limits) -> None:
    # (``client`` names the program, not the person: a relay's shorter names do not cut it)
    _longer("peer", "name", peer.name, limits.max_peer_name_chars)


def _within(message: Message, limits: Limits) -> None:
    """Hold a message that passed the protocol's ceilings to the reader's own ``limits``."""
    if limits is LIMITS:  # the defaults are the ceilings, which the message's classes checked
        return
    what = message.type
    index = getattr(message, "index", None)
    if type(index) is int and index >= limits.max_files_per_offer:
        raise ProtocolError(f"{what}.index: must be below {limits.max_files_per_offer}")
    if isinstance(message, Hello):
        _longer(what, "name", message.name, limits.max_peer_name_chars)
    for peer in (*getattr(message, "peers", ()), getattr(message, "peer", None)):
        if isinstance(peer, PeerInfo):
            _peer_within(peer, limits)
    if isinstance(message, Offer):
        if len(message.files) > limits.max_files_per_offer:
            raise ProtocolError(f"{what}.files: more than {limits.max_files_per_offer} files")
        for f in message.files:
            _longer(FileInfo.type, "name", f.name, limits.max_name_chars)
    for resume in getattr(message, "resume", ()):
        if resume.index >= limits.max_files_per_offer:
            raise ProtocolError(f"{what}.resume: an index must be below {limits.max_files_per_offer}")
    if isinstance(message, Text):
        _longer(what, "text", message.text, limits.max_text_chars)
    elif isinstance(message, Error):
        _longer(what, "message", message.message, limits.max_reason_chars)
    elif isinstance(message, (Reject, Cancel)):
        _longer(what, "reason", message.reason, limits.max_reason_chars)


def parse_message(data: str | bytes, *, max_size: int | None = None, limits: Limits = LIMITS) -> Message:
    """Decode one text frame into a validated message. Raises only ``ProtocolError``.

    ``limits``: the reader's, to which the message is held (its ``max_control_frame``
    unless ``max_size`` says otherwise); by default the protocol's ceilings.
    """
    if max_size is None:
        max_size = limits.max_control_frame
    if len(data) > max_size:
        raise FrameTooLarge(f"control message of {len(data)} bytes is over the {max_size} byte limit")
    try:
        obj = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError("control message is not valid JSON") from exc
    obj = _expect_object(obj, "message")
    kind = obj.get("type")
    cls = MESSAGE_TYPES.get(kind) if type(kind) is str else None
    if cls is None:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}", code="unknown-type")
    message: Message = _build(cls, obj, limits)
    _within(message, limits)
    return message


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            k: _plain(v)
            for k, v in ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            if v is not None
        }
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def to_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"type": message.type}
    for key, value in _plain(message).items():
        out["from" if key == "sender" else key] = value
    return out


def serialize(message: Message) -> str:
    return json.dumps(to_dict(message), ensure_ascii=False, separators=(",", ":"))


def check_version(version: str) -> None:
    """Raise ``VersionMismatch`` unless ``version`` has our major number."""
    match = VERSION_PATTERN.match(version) if type(version) is str else None
    if match is None or int(match.group(1)) != PROTOCOL_MAJOR:
        raise VersionMismatch(
            f"the other side speaks xfer protocol {str(version)[:12]}, this one speaks "
            f"{PROTOCOL_VERSION}; update the older side"
        )
