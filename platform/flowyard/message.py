"""The message that travels through a flow: a payload plus metadata.

A payload is either bytes with a content type, or structured data (JSON-like). The
correlation id is kept across splits, retries, replays and acknowledgments; the id is new
for each message a split or an acknowledgment creates.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

JSON_TYPES = ("application/json", "text/json")
DATA = "application/x-flowyard-data"


def new_id() -> str:
    return uuid.uuid4().hex


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

    def __post_init__(self) -> None:
        if not self.correlation_id:
            self.correlation_id = self.id

    @property
    def is_bytes(self) -> bool:
        return isinstance(self.payload, bytes | bytearray)

    def child(self, payload: Any, content_type: str | None = None, **headers: Any) -> Message:
        """A new message derived from this one (split, acknowledgment): new id, same
        correlation id, flow and source."""
        return Message(
            payload=payload,
            content_type=content_type or self.content_type,
            correlation_id=self.correlation_id,
            flow=self.flow,
            flow_version=self.flow_version,
            source=dict(self.source),
            attempt=self.attempt,
            headers={**self.headers, **headers},
            last_data=self.last_data,
        )

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
