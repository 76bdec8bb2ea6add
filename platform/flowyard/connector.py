"""The one interface every connector implements.

A connector is registered by name under the entry point group `flowyard.connectors`.
It declares its source options and/or target options once, as typed models, and opens
sources and targets from them. Sources hand each message to `accept`, which returns only
once the message is durably stored; only then may the source acknowledge upstream (move
the file, ack the broker, answer 202). Targets send one message at a time with an
idempotency key, so a retried delivery does not duplicate at targets that honour it.
"""

from __future__ import annotations

import mimetypes
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from .message import Message
from .options import Options
from .step import FlowContext

Accept = Callable[[Message], Awaitable[None]]

OptionsT = TypeVar("OptionsT", bound=Options)


@dataclass
class Health:
    """What the UI and /metrics show about one connector instance."""

    connected: bool = False
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def ok(self) -> None:
        self.connected = True
        self.last_success = time.time()

    def failed(self, error: str) -> None:
        self.connected = False
        self.last_error = error
        self.last_error_at = time.time()


class Source(ABC, Generic[OptionsT]):
    def __init__(self, options: OptionsT, context: FlowContext) -> None:
        self.options = options
        self.context = context
        self.health = Health()

    @abstractmethod
    async def run(self, accept: Accept) -> None:
        """Deliver messages until cancelled; reconnect with back-off on failures."""

    async def close(self) -> None:
        """Release connections; called on shutdown and undeploy."""


class Target(ABC, Generic[OptionsT]):
    # how many of a batch's first deliveries the runtime may run at once for this target;
    # None: the runtime's `send_concurrency` (32), which spares a remote endpoint a flood
    send_concurrency: ClassVar[int | None] = None

    def __init__(self, options: OptionsT, context: FlowContext) -> None:
        self.options = options
        self.context = context
        self.health = Health()

    @abstractmethod
    async def send(self, message: Message, idempotency_key: str) -> dict[str, Any] | None:
        """Deliver one message; raise DeliveryError when the target refused or was down.
        Returns details worth recording (status code, remote file name, ...)."""

    async def close(self) -> None:
        """Release connections."""


class Connector:
    """A named connector: which options it takes as a source and as a target."""

    kind: ClassVar[str]
    SourceOptions: ClassVar[type[Options] | None] = None
    TargetOptions: ClassVar[type[Options] | None] = None
    source_class: ClassVar[type[Source[Any]] | None] = None
    target_class: ClassVar[type[Target[Any]] | None] = None

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return " ".join(doc.split("\n\n", 1)[0].split())

    @classmethod
    def input_message(cls, options: Any, payload: bytes, name: str) -> Message:
        """The message this source would deliver for `payload` (used by `flowyard run`
        and the playground): content type from an explicit option or the file name."""
        content_type = getattr(options, "content_type", None) or guess_content_type(name)
        return Message(payload=payload, content_type=content_type, source={"file": name})


_EXTRA_TYPES = {
    ".edi": "application/edi-x12",
    ".x12": "application/edi-x12",
    ".850": "application/edi-x12",
    ".855": "application/edi-x12",
    ".856": "application/edi-x12",
    ".810": "application/edi-x12",
    ".997": "application/edi-x12",
    ".csv": "text/csv",
    ".json": "application/json",
    ".xml": "application/xml",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
}


def guess_content_type(name: str) -> str:
    lower = name.lower()
    for suffix, content_type in _EXTRA_TYPES.items():
        if lower.endswith(suffix):
            return content_type
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"
