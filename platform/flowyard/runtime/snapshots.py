"""Step snapshots and delivery metadata as JSON, made fast.

Every step of every message leaves a snapshot of its output when traces are on (the
default), so rendering one is on the hot path. `Message.payload_text` renders data with
`json.dumps(indent=2)`, which runs the pure-Python encoder (the C encoder does not
indent); msgspec gives that text several times faster.
Anything msgspec does not take falls back to `payload_text`. Two differences, both in
floats and both still the same number: a NaN or infinite float shows as null (json.dumps
writes NaN, which is not JSON either), and an exponent is written without `+` or a
leading zero (`1e16`, `1.5e-7` where json.dumps writes `1e+16`, `1.5e-07`). Snapshots
are for reading; the json.render step keeps json.dumps, whose text tests compare.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ..message import Message

_encode = msgspec.json.Encoder(enc_hook=str).encode
_format = msgspec.json.format
_decode = msgspec.json.decode


def snapshot_text(message: Message, cap: int) -> str:
    """`message.payload_text(cap)`: the same text but for the float details above."""
    if message.is_bytes or not isinstance(message.payload, dict | list):
        return message.payload_text(cap)
    try:
        text = _format(_encode(message.payload), indent=2).decode("utf-8")
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        return message.payload_text(cap)
    if len(text) > cap:
        return text[:cap] + f"\n... ({len(text) - cap} more characters)"
    return text


def json_copy(data: Any) -> Any:
    """A JSON-only copy of step data (what a delivery keeps for its retries), or None
    when the data does not convert."""
    if data is None:
        return None
    try:
        return _decode(msgspec.json.encode(data))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        pass
    try:
        return json.loads(json.dumps(data))
    except (TypeError, ValueError):
        return None
