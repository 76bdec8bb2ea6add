"""mqtt: subscribe to topics, publish messages (aiomqtt, MQTT 3.1.1).

Source: a persistent session (clean_session off, a stable client id) at QoS 1, with
acknowledgments sent by hand: PUBACK goes to the broker only after `accept` returned,
so a message the store did not take is sent again by the broker when we reconnect. If
the store refuses, the connection is dropped on purpose for exactly that redelivery.
The connection is reopened with back-off whenever it drops.

Target: publishes each message to a topic (a template) at QoS 1 by default and waits for
the broker's PUBACK before reporting success.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ssl
import uuid
from datetime import timedelta
from typing import Any, Literal

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, field_validator, model_validator

from flowyard.connector import Accept, Connector, Source, Target
from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.options import Duration, Options, SecretRef
from flowyard.sandbox import TextTemplate
from flowyard.secrets import redactor
from flowyard.step import FlowContext

from .backoff import keep_running
from .inflight import InFlight, until_failure
from .tls import check_tls_files, client_context, describe_tls

REFUSALS = {
    4: "bad user name or password",
    5: "not authorised",
    134: "bad user name or password",
    135: "not authorised",
}


class MqttConnection(Options):
    host: str = Field(description="broker host name")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 with TLS)")
    username: str | None = Field(None, description="user name")
    password: SecretRef | None = Field(None, description="password, as ${secret:NAME}")
    client_id: str | None = Field(
        None, description="client id (source default: flowyard-FLOW, stable for its persistent session)"
    )
    protocol: Literal["3.1.1", "5"] = Field(
        "3.1.1", description="MQTT version; with 5 the source tells the broker how many messages may await an ack"
    )
    tls: bool = Field(False, description="connect with TLS (the broker's certificate is always verified)")
    ca_file: str | None = Field(
        None, description="CA bundle that signed the broker's certificate, relative to the flow file (default: system CAs)"
    )
    cert_file: str | None = Field(None, description="client certificate (PEM) for TLS client authentication")
    key_file: str | None = Field(None, description="private key (PEM) of the client certificate")
    keepalive: int = Field(30, ge=5, le=3600, description="seconds between keep-alive pings")
    timeout: Duration = Field(timedelta(seconds=10), description="time allowed to connect or publish")


    @model_validator(mode="after")
    def _tls_files(self) -> MqttConnection:
        check_tls_files(self, self.tls)
        return self


class MqttSourceOptions(MqttConnection):
    topics: list[str] = Field(description="topic filters to subscribe to, e.g. plant/mx01/+/status")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the subscription (1 or 2: nothing lost)")
    clean_session: bool = Field(False, description="start a fresh session (messages sent while away are lost)")
    content_type: str | None = Field(None, description="content type of the payloads, e.g. application/json")
    concurrency: int = Field(1, ge=1, le=1000, description="messages stored at once (1 keeps the broker's order)")
    receive_maximum: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="protocol 5: messages the broker may send ahead of our acks (default: 4 x concurrency, at least 100)",
    )

    @field_validator("topics")
    @classmethod
    def _some(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one topic filter")
        return value


class MqttTargetOptions(MqttConnection):
    topic: str = Field(description="topic template (sandboxed Jinja: message, data, key)")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the publish")
    retain: bool = Field(False, description="ask the broker to keep the last message of the topic")


def describe(exc: BaseException, options: MqttConnection) -> str:
    where = f"MQTT broker {options.host}:{options.port}"
    text = str(exc)
    if options.tls and (tls_text := describe_tls(exc, where, options, peer="broker")):
        return tls_text
    if isinstance(exc, MqttConnectError):
        code = getattr(exc.rc, "value", exc.rc)
        if isinstance(code, int) and code in REFUSALS:
            return f"{where} refused the connection for user {options.username!r}: {REFUSALS[code]}"
        return f"{where}: {exc}"
    if isinstance(exc, aiomqtt.MqttError):
        if options.tls and not options.cert_file and "timed out" in text:
            return f"{where}: {exc} (does the broker require a client certificate? set cert_file and key_file)"
        return f"{where}: {exc}"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return f"{where}: {type(exc).__name__}: {exc}"


def is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, MqttConnectError) and getattr(exc.rc, "value", exc.rc) in REFUSALS


def tls_context(options: MqttConnection, context: FlowContext) -> ssl.SSLContext | None:
    return client_context(options, context) if options.tls else None


def make_client(
    options: MqttConnection, context: FlowContext, clean_session: bool | None, default_id: str, receive: int = 20
) -> aiomqtt.Client:
    extra: dict[str, Any] = {"clean_session": clean_session}
    if options.protocol == "5":
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = min(receive, 65535)  # messages the broker may send before our acks
        if not clean_session:
            properties.SessionExpiryInterval = 0xFFFFFFFF  # keep the session (and its queue) while away
        extra = {"protocol": aiomqtt.ProtocolVersion.V5, "clean_start": bool(clean_session), "properties": properties}
    return aiomqtt.Client(
        options.host,
        options.port,
        username=options.username,
        password=context.secrets.resolve(options.password) if options.password else None,
        identifier=(options.client_id or default_id)[:64],
        keepalive=options.keepalive,
        timeout=options.timeout.total_seconds(),
        tls_context=tls_context(options, context),
        **extra,
    )


class StoreRefused(Exception):
    """`accept` failed: drop the connection so the broker sends the message again."""


class MqttSource(Source[MqttSourceOptions]):
    async def session(self, accept: Accept) -> None:
        client = make_client(
            self.options,
            self.context,
            self.options.clean_session,
            f"flowyard-{self.context.flow_name}",
            receive=self.options.receive_maximum or max(100, 4 * self.options.concurrency),
        )
        # acknowledge by hand, after the store took the message (paho supports it; aiomqtt
        # does not expose it, hence the private attribute)
        client._client.manual_ack_set(True)
        async with client:
            for topic in self.options.topics:
                await client.subscribe(topic, qos=self.options.qos)
            self.health.ok()
            inflight = InFlight(self.options.concurrency)
            order: collections.deque[list[Any]] = collections.deque()  # [mid, qos, stored]

            async def store(entry: list[Any], message: Message) -> None:
                try:
                    await accept(message)
                except Exception as exc:
                    topic = message.source["topic"]
                    raise StoreRefused(f"the store did not take a message from {topic}: {exc}") from exc
                entry[2] = True
                while order and order[0][2]:  # MQTT wants PUBACKs in the order of arrival
                    mid, qos, _ = order.popleft()
                    if qos > 0:
                        client._client.ack(mid, qos)
                self.health.ok()

            async def intake() -> None:
                async for incoming in client.messages:
                    payload = incoming.payload
                    data = (
                        payload if isinstance(payload, bytes) else str(payload if payload is not None else "").encode()
                    )
                    message = Message(
                        payload=bytes(data),
                        content_type=self.options.content_type or "application/octet-stream",
                        source={
                            "connector": "mqtt",
                            "topic": str(incoming.topic),
                            "qos": incoming.qos,
                            "retain": incoming.retain,
                        },
                    )
                    entry = [incoming.mid, incoming.qos, False]
                    order.append(entry)
                    await inflight.submit(functools.partial(store, entry, message))

            await until_failure(intake(), inflight)

    async def run(self, accept: Accept) -> None:
        await keep_running(
            lambda: self.session(accept),
            self.health,
            lambda e: redactor.redact(describe(e, self.options) if not isinstance(e, StoreRefused) else str(e)),
        )

    async def close(self) -> None:
        self.health.connected = False


class MqttTarget(Target[MqttTargetOptions]):
    def __init__(self, options: MqttTargetOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.topic = TextTemplate(options.topic)
        self.client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> aiomqtt.Client:
        if self.client is None:
            # a publisher needs no session: its own id, never the source's
            default_id = f"flowyard-{self.context.flow_name}-pub-{uuid.uuid4().hex[:8]}"
            client = make_client(self.options, self.context, True, default_id)
            await client.__aenter__()
            self.client = client
        return self.client

    async def drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                await client.__aexit__(None, None, None)

    async def send(self, message: Message, idempotency_key: str) -> dict[str, Any]:
        try:
            topic = self.topic.render(
                message=message.metadata(),
                data=message.last_data if message.is_bytes else message.payload,
                key=idempotency_key,
            ).strip()
        except Exception as exc:
            raise DeliveryError(f"the topic template failed: {exc}", retryable=False) from exc
        if not topic or "+" in topic or "#" in topic:
            raise DeliveryError(f"cannot publish to topic {topic!r}: it is empty or has wildcards", retryable=False)
        async with self._lock:
            try:
                client = await self.connect()
                await client.publish(
                    topic,
                    message.payload_bytes(),
                    qos=self.options.qos,
                    retain=self.options.retain,
                    timeout=self.options.timeout.total_seconds(),
                )
            except (aiomqtt.MqttError, OSError) as exc:
                await self.drop()
                text = redactor.redact(describe(exc, self.options))
                self.health.failed(text)
                raise DeliveryError(text, retryable=not is_refusal(exc)) from exc
        self.health.ok()
        return {"topic": topic, "qos": self.options.qos}

    async def close(self) -> None:
        await self.drop()


class MqttConnector(Connector):
    """MQTT: subscribe to topics (QoS 1, acknowledged after storing), publish to a topic."""

    kind = "mqtt"
    SourceOptions = MqttSourceOptions
    TargetOptions = MqttTargetOptions
    source_class = MqttSource
    target_class = MqttTarget
