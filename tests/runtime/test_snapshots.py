"""Step snapshots rendered the fast way are the text `Message.payload_text` gives."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from flowyard.message import Message
from flowyard.runtime.snapshots import json_copy, snapshot_text

SAMPLES: list[Any] = [
    {"id": 5, "qty": 6.5, "item": "ITEM-é005", "note": "x" * 200},
    {"nested": [1, {"a": None, "b": True, "c": False}], "empty": {}, "none": [],
     "big": 2**70, "neg": -0.0, "tiny": 1e-300, "tab\t": "quote \" \\ \n \u2028 \x00"},
    [{"line": n, "ü": "日本"} for n in range(400)],  # longer than the cap
    [],
    {"k": dt.date(2026, 11, 23)},  # not JSON: both render it with str()
]


@pytest.mark.parametrize("data", SAMPLES)
def test_snapshot_is_the_payload_text(data: Any) -> None:
    message = Message(payload=data, content_type="application/json")
    for cap in (4000, 50):
        assert snapshot_text(message, cap) == message.payload_text(cap)


def test_bytes_snapshot_and_json_copy() -> None:
    message = Message(payload=b"\xff\xfeplain", content_type="text/plain")
    assert snapshot_text(message, 10) == message.payload_text(10)
    assert json_copy({"a": (1, 2), 3: "x"}) == {"a": [1, 2], "3": "x"}
    assert json_copy(None) is None
    assert json_copy({"o": object()}) is None  # no JSON form: the delivery keeps none
