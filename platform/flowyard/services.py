"""What the process running a flow lends its steps and connectors.

A step or connector that keeps state beyond one message (X12 control numbers and the
interchanges seen, a source's watermark) or takes requests (a webhook source) asks its
context's `Services` for it instead of reaching for a store or a server, so steps and
connectors stay below the store and the runtime. The runtime lends its store's; a try
of a flow (the playground, the deploy gate) lends a scratch store's. Where nothing was
lent (`flowyard run`, a test of one step), the default registered under the
`flowyard.services` entry points is used: the embedded store's, looked up each time, so
it follows FLOWYARD_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, Protocol

SERVICES_GROUP = "flowyard.services"


@dataclass
class DuplicateCheck:
    """Whether an interchange was received before (within the partner's window)."""

    duplicate: bool
    first_seen: datetime | None = None


class ControlNumbers(Protocol):
    """X12 control numbers per partner, interchanges received, outbound sets awaiting
    their acknowledgment."""

    def next_number(self, partner: str, kind: str) -> int: ...

    def claim_interchange(self, partner: str, sender: str, control_number: str, window: timedelta,
                          correlation_id: str) -> DuplicateCheck: ...

    def record_outbound(self, *, partner: str, receiver: str, interchange_control: str, group_control: str,
                        set_control: str, transaction: str, deadline: timedelta | None,
                        correlation_id: str) -> None: ...

    def reconcile(self, receiver: str, group_control: str, set_control: str, status: str) -> bool: ...

    def release_interchange(self, partner: str, sender: str, control_number: str, correlation_id: str) -> None: ...


class KeyValueState(Protocol):
    """Small state a source keeps between polls (a watermark). Plain or async methods."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: str) -> Any: ...


class WebhookRoutes:
    """The webhook endpoints of the running http sources of one process, by flow name;
    the runtime's HTTP server hands each request to its flow's endpoint."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Any] = {}

    def register(self, flow: str, endpoint: Any) -> None:
        self.endpoints[flow] = endpoint

    def unregister(self, flow: str, endpoint: Any) -> None:
        if self.endpoints.get(flow) is endpoint:
            del self.endpoints[flow]

    def get(self, flow: str) -> Any:
        return self.endpoints.get(flow)

    def __contains__(self, flow: object) -> bool:
        return flow in self.endpoints


@dataclass
class Services:
    x12_control: ControlNumbers | None = None
    connector_state: KeyValueState | None = None
    webhooks: WebhookRoutes = field(default_factory=WebhookRoutes)

    def control_numbers(self) -> ControlNumbers:
        found: ControlNumbers = self.x12_control or registered("x12_control")
        return found

    def state(self) -> KeyValueState:
        found: KeyValueState = self.connector_state or registered("connector_state")
        return found


def registered(name: str) -> Any:
    """The default service `name`, made by the factory registered for it."""
    for entry in entry_points(group=SERVICES_GROUP, name=name):
        return entry.load()()
    raise LookupError(f"no {name!r} service is registered (entry point group {SERVICES_GROUP})")


class SourceState:
    """A source's async access to the lent state: plain methods run off the event loop
    (a store's are blocking calls), async ones are awaited."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store: KeyValueState | None = None
        self.kind = "the runtime's state service" if services.connector_state is not None else "connector_state table"

    async def call(self, method: str, *args: str) -> Any:
        if self.store is None:
            self.store = await asyncio.to_thread(self.services.state)
        function = getattr(self.store, method)
        if inspect.iscoroutinefunction(function):
            return await function(*args)
        result = await asyncio.to_thread(function, *args)
        return await result if inspect.isawaitable(result) else result

    async def get(self, key: str) -> str | None:
        value = await self.call("get", key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str) -> None:
        await self.call("set", key, value)
