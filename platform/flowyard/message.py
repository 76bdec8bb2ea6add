"""The message that travels through a flow: a payload plus metadata.

A payload is either bytes with a content type, or structured data (JSON-like). The
correlation id is kept across splits, retries, replays and acknowledgments; the id is new
for each message a split or an acknowledgment creates.

A message a source hands in gets a random id (the store's primary key). The messages
derived from it while its steps run (`child()`) are numbered instead: `ROOT-1`, `ROOT-2`,
... in the order the steps create them, one counter for the whole family however deeply
splits nest. That is cheap (a split of a 200 MB document gives hundreds of thousands of
messages, and a random id per message cost more than the rest of the engine's work) and
deterministic: running the same stored message again (a retry, a restart midway) gives
its outputs the same ids, so a target that keys on `message.id` sees the same output
twice, not two outputs. A replay stores a new message, hence a new root id.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

JSON_TYPES = ("application/json", "text/json")
DATA = "application/x-flowyard-data"


def _new_prefix() -> None:
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex(), itertools.count()


_prefix, _counter = "", itertools.count()
_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)  # a forked child must not repeat our ids


def new_id() -> str:
    """32 hex characters, as a uuid4's hex: 64 random bits drawn once per process, then
    a counter. Unique across processes and restarts (each draws its own), and no
    system call per message: uuid4 reads 16 random bytes from the kernel each time,
    a visible share of a broker source's cost per message."""
    return f"{_prefix}{next(_counter):016x}"


# Child ids stay within the store's 64-character output id column: a root id longer than
# this (an id a source took from upstream) is replaced by a random one as their prefix.
_MAX_ROOT = 48


class _Family:
    """The id counter shared by a root message and everything derived from it."""

    __slots__ = ("counter", "prefix")

    def __init__(self, root_id: str) -> None:
        self.prefix = (root_id if len(root_id) <= _MAX_ROOT else new_id()) + "-"
        self.counter = itertools.count(1)

    def next_id(self) -> str:
        return f"{self.prefix}{next(self.counter)}"


def is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    base = content_type.split(";", 1)[0].strip().lower()
    return base in JSON_TYPES or base.endswith("+json")


@dataclass(slots=True)
class Message:
    payload: Any
    content_type: str = "application/octet-stream"
    id: str = field(default_factory=new_id)
    correlation_id: str = ""
    flow: str = ""
    flow_version: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    headers: dict[str, Any] = field(default_factory=dict)
    last_data: Any = None  # the data before the last render, for targets' `when:`
    _family: _Family | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.correlation_id:
            self.correlation_id = self.id

    @property
    def is_bytes(self) -> bool:
        return isinstance(self.payload, bytes | bytearray)

    def child(self, payload: Any, content_type: str | None = None, **headers: Any) -> Message:
        """A new message derived from this one (split, acknowledgment): the family's next
        id, same correlation id, flow and source, its own copy of the headers.

        The source dict is shared with this message, not copied (a split may give a
        child per record of a huge document): it describes where the input came from,
        which a step has no reason to change, so treat it as read-only."""
        family = self._family
        if family is None:
            family = self._family = _Family(self.id)
        message = Message(
            payload,
            content_type or self.content_type,
            family.next_id(),
            self.correlation_id,
            self.flow,
            self.flow_version,
            self.source,
            self.attempt,
            {**self.headers, **headers},
            self.last_data,
        )
        message._family = family
        return message

    def metadata(self) -> dict[str, Any]:
        """What templates and expressions see as `message`."""
        return {
            "id": self.id,
            "correlation_id": self.correlation_id,
            "flow": self.flow,
            "flow_version": self.flow_version,
            "source": self.source,
            "content_type": self.content_type,
            "attempt": self.attempt,
            "headers": self.headers,
        }

    def payload_bytes(self) -> bytes:
        """The payload as bytes, serialising data as JSON (what a target writes)."""
        if isinstance(self.payload, bytes):
            return self.payload
        if isinstance(self.payload, bytearray):
            return bytes(self.payload)
        return json.dumps(self.payload, ensure_ascii=False, indent=2).encode()

    def payload_text(self, limit: int | None = None) -> str:
        """A readable rendering for traces and the UI, cut at `limit` characters."""
        if self.is_bytes:
            text = bytes(self.payload).decode("utf-8", errors="replace")
        else:
            text = json.dumps(self.payload, ensure_ascii=False, indent=2, default=str)
        if limit is not None and len(text) > limit:
            return text[:limit] + f"\n... ({len(text) - limit} more characters)"
        return text
