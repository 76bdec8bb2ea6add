"""opcua: node values from a plant OPC UA server become messages (asyncua).

`mode: subscribe` asks the server to report value changes (a subscription with the
given publishing interval); `mode: poll` reads the nodes every interval and reports
those that changed. Each change is one JSON message (node, name, value, timestamps,
status), or, with `aggregate: interval`, one message per interval summarising every
node that changed (last, min, max, count) — what a dashboard or an MES counter wants
instead of every tick.

OPC UA has no acknowledgments: a change is handed over while connected, and after the
server comes back the source subscribes again and receives each node's current value,
so the latest state is never lost (values a dead server never produced cannot be).
A node id that does not exist is refused with the node named.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaStatusCodeError
from pydantic import Field, field_validator

from flowyard.connector import Accept, Connector, Source
from flowyard.message import Message
from flowyard.options import Duration, Options, SecretRef
from flowyard.secrets import redactor
from flowyard.step import FlowContext

from .backoff import ConnectError, keep_running


class NodeSpec(Options):
    node: str = Field(description="node id, e.g. ns=2;s=Line1.Count")
    name: str | None = Field(None, description="name used in messages (default: the node id)")


class OpcUaSourceOptions(Options):
    endpoint: str = Field(description="server endpoint, e.g. opc.tcp://plc.mx01:4840")
    nodes: list[NodeSpec | str] = Field(description="nodes to watch: node ids or {node, name}")
    mode: Literal["subscribe", "poll"] = Field("subscribe", description="value-change subscription or polling")
    interval: Duration = Field(timedelta(seconds=1), description="publishing interval (subscribe) or poll period")
    aggregate: Literal["none", "interval"] = Field(
        "none", description="one message per change, or one per aggregation window"
    )
    window: Duration | None = Field(None, description="aggregation window (default: interval)")
    username: str | None = Field(None, description="user name")
    password: SecretRef | None = Field(None, description="password, as ${secret:NAME}")
    security: str | None = Field(
        None, description="asyncua security string: Policy,Mode,client-cert,client-key (paths relative to the flow)"
    )
    timeout: Duration = Field(timedelta(seconds=10), description="time allowed for a request")
    content_type: Literal["application/json"] = Field("application/json", description="messages are JSON")

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: list[NodeSpec | str]) -> list[NodeSpec | str]:
        if not value:
            raise ValueError("give at least one node")
        for item in value:
            text = item.node if isinstance(item, NodeSpec) else item
            try:
                ua.NodeId.from_string(text)
            except Exception as exc:
                raise ValueError(f"{text!r} is not a node id (write it like ns=2;s=Line1.Count or i=2258)") from exc
        return value

    def specs(self) -> list[NodeSpec]:
        return [n if isinstance(n, NodeSpec) else NodeSpec(node=n) for n in self.nodes]


def plain(value: Any) -> Any:
    """A JSON-friendly rendering of an OPC UA value."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def stamp(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class Summary:
    last: Any = None
    minimum: Any = None
    maximum: Any = None
    count: int = 0
    first_at: str | None = None
    last_at: str | None = None

    def add(self, change: dict[str, Any]) -> None:
        value = change["value"]
        self.last = value
        self.count += 1
        self.first_at = self.first_at or change["source_timestamp"]
        self.last_at = change["source_timestamp"]
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.minimum = value if self.minimum is None else min(self.minimum, value)
            self.maximum = value if self.maximum is None else max(self.maximum, value)


@dataclass
class Window:
    opened: float = field(default_factory=time.time)
    nodes: dict[str, Summary] = field(default_factory=dict)


class _Handler:
    """asyncua calls this from its receive loop; changes go to a queue."""

    def __init__(self, queue: asyncio.Queue[tuple[str, Any, Any]]) -> None:
        self.queue = queue

    def datachange_notification(self, node: Node, value: Any, data: Any) -> None:
        self.queue.put_nowait((node.nodeid.to_string(), value, data.monitored_item.Value))

    def status_change_notification(self, status: Any) -> None:
        self.queue.put_nowait(("", None, status))


def describe(exc: BaseException, options: OpcUaSourceOptions) -> str:
    where = f"OPC UA server {options.endpoint}"
    if isinstance(exc, UaStatusCodeError):
        name = type(exc).__name__
        if "UserAccessDenied" in name or "IdentityTokenRejected" in name or "IdentityTokenInvalid" in name:
            return f"{where} refused the credentials of user {options.username!r}"
        return f"{where}: {name}: {exc}"
    if isinstance(exc, ConnectError):
        return str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"{where} did not answer in time"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return f"{where}: {type(exc).__name__}: {exc}"


class OpcUaSource(Source[OpcUaSourceOptions]):
    def __init__(self, options: OpcUaSourceOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.specs = options.specs()
        self.names = {ua.NodeId.from_string(s.node).to_string(): s.name or s.node for s in self.specs}
        self.window = Window()

    def change(self, node_id: str, value: Any, data_value: Any) -> dict[str, Any]:
        status = getattr(data_value, "StatusCode_", None) or getattr(data_value, "StatusCode", None)
        return {
            "node": node_id,
            "name": self.names.get(node_id, node_id),
            "value": plain(value),
            "source_timestamp": stamp(getattr(data_value, "SourceTimestamp", None)),
            "server_timestamp": stamp(getattr(data_value, "ServerTimestamp", None)),
            "status": status.name if status is not None and hasattr(status, "name") else "Good",
        }

    async def emit(self, accept: Accept, change: dict[str, Any]) -> None:
        if self.options.aggregate == "interval":
            self.window.nodes.setdefault(change["name"], Summary()).add(change)
            return
        await accept(self.message(change, {"node": change["node"]}))

    def message(self, payload: Any, extra: dict[str, Any]) -> Message:
        return Message(
            payload=json.dumps(payload, ensure_ascii=False).encode(),
            content_type="application/json",
            source={"connector": "opcua", "endpoint": self.options.endpoint, **extra},
        )

    async def flush(self, accept: Accept) -> None:
        """Hand over the aggregation window if it is due and holds anything."""
        length = (self.options.window or self.options.interval).total_seconds()
        now = time.time()
        if now - self.window.opened < length:
            return
        window, self.window = self.window, Window(opened=now)
        if not window.nodes:
            return
        payload = {
            "from": dt.datetime.fromtimestamp(window.opened, dt.UTC).isoformat(),
            "to": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
            "nodes": {
                name: {
                    "last": s.last,
                    "min": s.minimum,
                    "max": s.maximum,
                    "count": s.count,
                    "first_at": s.first_at,
                    "last_at": s.last_at,
                }
                for name, s in window.nodes.items()
            },
        }
        try:
            await accept(self.message(payload, {"window_seconds": length}))
        except Exception:
            # keep the window's values for the next try rather than dropping them
            for name, summary in window.nodes.items():
                self.window.nodes.setdefault(name, summary)
            self.window.opened = window.opened
            raise

    async def connect(self) -> Client:
        options = self.options
        client = Client(options.endpoint, timeout=options.timeout.total_seconds())
        if options.username:
            client.set_user(options.username)
        if options.password:
            client.set_password(str(self.context.secrets.resolve(options.password)))
        if options.security:
            parts = [p.strip() for p in options.security.split(",")]
            parts[2:] = [str(self.context.resolve_io_path(p)) for p in parts[2:]]
            await client.set_security_string(",".join(parts))
        await client.connect()
        return client

    async def nodes(self, client: Client) -> list[Node]:
        found = []
        for spec in self.specs:
            node = client.get_node(spec.node)
            try:
                await node.read_browse_name()
            except UaStatusCodeError as exc:
                raise ConnectError(
                    f"node {spec.node} ({spec.name or spec.node}) is not on {self.options.endpoint}: {type(exc).__name__}"
                ) from exc
            found.append(node)
        return found

    async def session(self, accept: Accept) -> None:
        client = await self.connect()
        try:
            nodes = await self.nodes(client)
            self.health.ok()
            if self.options.mode == "subscribe":
                await self.subscribed(client, nodes, accept)
            else:
                await self.polled(client, nodes, accept)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)

    async def subscribed(self, client: Client, nodes: list[Node], accept: Accept) -> None:
        queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        period = self.options.interval.total_seconds() * 1000
        subscription = await client.create_subscription(period, _Handler(queue))
        await subscription.subscribe_data_change(nodes)
        while True:
            try:
                node_id, value, data = await asyncio.wait_for(queue.get(), timeout=min(1.0, period / 1000))
            except TimeoutError:
                await client.check_connection()  # raises when the server went away
                await self.flush(accept)
                continue
            if not node_id:
                raise ConnectError(f"OPC UA server {self.options.endpoint} ended the subscription: {data}")
            await self.emit(accept, self.change(node_id, value, data))
            await self.flush(accept)
            self.health.ok()

    async def polled(self, client: Client, nodes: list[Node], accept: Accept) -> None:
        last: dict[str, Any] = {}
        while True:
            values = await client.read_attributes(nodes, AttributeIds.Value)
            for node, data in zip(nodes, values, strict=True):
                node_id = node.nodeid.to_string()
                value = data.Value.Value if data.Value is not None else None
                if node_id in last and last[node_id] == value:
                    continue
                await self.emit(accept, self.change(node_id, value, data))
                last[node_id] = value
            await self.flush(accept)
            self.health.ok()
            await asyncio.sleep(self.options.interval.total_seconds())

    async def run(self, accept: Accept) -> None:
        await keep_running(
            lambda: self.session(accept), self.health, lambda e: redactor.redact(describe(e, self.options))
        )

    async def close(self) -> None:
        self.health.connected = False


class OpcUaConnector(Connector):
    """OPC UA: node value changes (subscribed or polled, optionally aggregated) as messages."""

    kind = "opcua"
    SourceOptions = OpcUaSourceOptions
    source_class = OpcUaSource
