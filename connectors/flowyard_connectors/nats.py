"""nats: a JetStream durable pull consumer as a source, JetStream publish as a target.

Source: a durable consumer (explicit acknowledgments) on a stream; messages are fetched
in batches and each one is acknowledged only after `accept` returned. If the store
refuses, the message is negatively acknowledged with a delay, so JetStream sends it
again later; nothing is acknowledged that was not stored. The durable consumer lives in
the server, so a restart of either side resumes where it stopped. nats-py reconnects by
itself while the source keeps fetching; a connection that cannot be made at all is
retried with back-off.

Target: publishes to a subject with the delivery's idempotency key as `Nats-Msg-Id`,
so JetStream drops a retried duplicate inside the stream's de-duplication window, and
waits for the stream's acknowledgment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from datetime import timedelta
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import api
from pydantic import Field, model_validator

from flowyard.connector import Accept, Connector, Health, Source, Target
from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.options import Duration, Options, SecretRef
from flowyard.sandbox import TextTemplate
from flowyard.secrets import redactor
from flowyard.step import FlowContext

from .backoff import keep_running
from .inflight import InFlight
from .tls import check_tls_files, client_context, describe_tls


class NatsConnection(Options):
    servers: list[str] = Field(["nats://127.0.0.1:4222"], description="server URLs, e.g. nats://nats.plant:4222")
    username: str | None = Field(None, description="user name")
    password: SecretRef | None = Field(None, description="password, as ${secret:NAME}")
    token: SecretRef | None = Field(None, description="authentication token, as ${secret:NAME}")
    credentials_file: str | None = Field(None, description="NATS .creds file (JWT and NKey), relative to the flow file")
    tls: bool = Field(False, description="connect with TLS (also implied by tls:// server URLs); the server's certificate is always verified")
    ca_file: str | None = Field(
        None, description="CA bundle that signed the server's certificate, relative to the flow file (default: system CAs)"
    )
    cert_file: str | None = Field(None, description="client certificate (PEM) for TLS client authentication")
    key_file: str | None = Field(None, description="private key (PEM) of the client certificate")
    timeout: Duration = Field(timedelta(seconds=10), description="time allowed to connect or to get an acknowledgment")

    @model_validator(mode="after")
    def _no_passwords_in_urls(self) -> NatsConnection:
        for server in self.servers:
            if "@" in server.split("//", 1)[-1]:
                raise ValueError("do not write credentials in server URLs; use username and password: ${secret:NAME}")
        check_tls_files(self, self.uses_tls, "`tls: true` (or tls:// server URLs)")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(server.startswith("tls://") for server in self.servers)


class NatsSourceOptions(NatsConnection):
    stream: str = Field(description="JetStream stream to read")
    subject: str = Field(description="subject filter, e.g. plant.mx01.>")
    durable: str = Field(description="durable consumer name: where reading resumes after a restart")
    create_stream: bool = Field(False, description="create the stream (file storage) for `subject` if missing")
    batch: int = Field(50, ge=1, le=10_000, description="messages fetched at a time")
    concurrency: int = Field(1, ge=1, le=1000, description="messages stored at once (1 keeps the stream's order)")
    ack_wait: Duration = Field(timedelta(seconds=60), description="time before an unacknowledged message is sent again")
    content_type: str | None = Field(
        None, description="content type of the payloads (default: header Content-Type, else bytes)"
    )


class NatsTargetOptions(NatsConnection):
    subject: str = Field(description="subject template (sandboxed Jinja: message, data, key)")


def describe(exc: BaseException, options: NatsConnection) -> tuple[str, bool]:
    where = f"NATS {', '.join(options.servers)}"
    if options.uses_tls and (tls_text := describe_tls(exc, where, options)):
        return tls_text, not isinstance(exc, ssl.SSLCertVerificationError)
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower():
        return f"{where} refused the credentials of user {options.username!r}", False
    if isinstance(exc, nats.js.errors.NotFoundError):
        return f"{where}: the stream or consumer does not exist ({exc})", False
    if isinstance(exc, nats.errors.NoRespondersError):
        return f"{where}: no stream takes this subject", False
    if isinstance(exc, nats.errors.NoServersError | OSError):
        return f"cannot reach {where}", True
    if isinstance(exc, nats.errors.TimeoutError | TimeoutError | asyncio.TimeoutError):
        return f"{where} did not answer in time", True
    return f"{where}: {type(exc).__name__}: {exc}", True


async def connect(options: NatsConnection, context: FlowContext, health: Health, name: str) -> NatsClient:
    errors: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        health.failed(redactor.redact(describe(exc, options)[0]))

    async def on_disconnect() -> None:
        health.failed(f"disconnected from NATS {', '.join(options.servers)}; reconnecting")

    async def on_reconnect() -> None:
        health.ok()

    kwargs: dict[str, Any] = {
        "name": name,
        "connect_timeout": options.timeout.total_seconds(),
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
    }
    if options.username:
        kwargs["user"] = options.username
    if options.password:
        kwargs["password"] = context.secrets.resolve(options.password)
    if options.token:
        kwargs["token"] = context.secrets.resolve(options.token)
    if options.credentials_file:
        kwargs["user_credentials"] = str(context.resolve_io_path(options.credentials_file))
    if options.uses_tls:
        kwargs["tls"] = client_context(options, context)
    try:
        # the first connection must succeed on its own: keep_running retries it
        return await nats.connect(options.servers, **{**kwargs, "allow_reconnect": False})
    except Exception as exc:
        raise (errors[-1] if errors else exc) from exc


async def reconnecting(options: NatsConnection, context: FlowContext, health: Health, name: str) -> NatsClient:
    """Connect once without retries (so bad credentials surface), then reconnect with
    the client's own loop on later drops."""
    client = await connect(options, context, health, name)
    client.options["allow_reconnect"] = True
    return client


class NatsSource(Source[NatsSourceOptions]):
    def __init__(self, options: NatsSourceOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.client: NatsClient | None = None

    async def session(self, accept: Accept) -> None:
        options = self.options
        client = await reconnecting(options, self.context, self.health, f"flowyard:{self.context.flow_name}")
        self.client = client
        try:
            js = client.jetstream(timeout=options.timeout.total_seconds())
            if options.create_stream:
                try:
                    await js.stream_info(options.stream)
                except nats.js.errors.NotFoundError:
                    await js.add_stream(name=options.stream, subjects=[options.subject], storage=api.StorageType.FILE)
            config = api.ConsumerConfig(
                ack_wait=options.ack_wait.total_seconds(),
                max_ack_pending=max(options.batch * 4, options.concurrency * 2, 1000),
            )
            subscription = await js.pull_subscribe(
                options.subject, durable=options.durable, stream=options.stream, config=config
            )
            self.health.ok()
            inflight = InFlight(options.concurrency)
            pending: dict[int, Any] = {}  # not yet acknowledged: sent back with a nak on failure

            async def store(message: Message, incoming: Any) -> None:
                try:
                    await accept(message)
                except Exception as exc:
                    raise RuntimeError(f"the store did not take a message from {incoming.subject}: {exc}") from exc
                await incoming.ack()
                pending.pop(id(incoming), None)
                self.health.ok()

            try:
                while True:
                    try:
                        batch = await subscription.fetch(options.batch, timeout=1.0)
                    except (nats.errors.TimeoutError, TimeoutError):
                        if client.is_closed:
                            raise ConnectionError("the NATS connection closed") from None
                        await inflight.drain()  # surfaces a failed hand-over while idle
                        continue
                    except (nats.errors.ConnectionReconnectingError, nats.errors.ConnectionClosedError):
                        if client.is_closed:
                            raise
                        await asyncio.sleep(0.5)
                        continue
                    for incoming in batch:
                        pending[id(incoming)] = incoming
                    for incoming in batch:
                        await inflight.submit(functools.partial(store, self.message(incoming), incoming))
            finally:
                await inflight.cancel()
                for incoming in pending.values():  # JetStream sends these again soon
                    with contextlib.suppress(Exception):
                        await incoming.nak(delay=2.0)
        finally:
            self.client = None
            with contextlib.suppress(Exception):
                await client.close()

    def message(self, incoming: Any) -> Message:
        headers = dict(incoming.headers or {})
        return Message(
            payload=bytes(incoming.data),
            content_type=self.options.content_type or headers.get("Content-Type", "application/octet-stream"),
            source={
                "connector": "nats",
                "subject": incoming.subject,
                "stream": self.options.stream,
                "sequence": incoming.metadata.sequence.stream,
                "key": f"{self.options.stream}:{incoming.metadata.sequence.stream}",
                "delivered": incoming.metadata.num_delivered,
                "headers": headers,
            },
        )

    async def run(self, accept: Accept) -> None:
        def text(exc: BaseException) -> str:
            return str(exc) if isinstance(exc, RuntimeError) else describe(exc, self.options)[0]

        await keep_running(lambda: self.session(accept), self.health, text)

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
        self.health.connected = False


class NatsTarget(Target[NatsTargetOptions]):
    def __init__(self, options: NatsTargetOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.subject = TextTemplate(options.subject)
        self.client: NatsClient | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> NatsClient:
        if self.client is None or self.client.is_closed:
            self.client = await reconnecting(
                self.options, self.context, self.health, f"flowyard:{self.context.flow_name}:out"
            )
        return self.client

    async def send(self, message: Message, idempotency_key: str) -> dict[str, Any]:
        try:
            subject = self.subject.render(
                message=message.metadata(),
                data=message.last_data if message.is_bytes else message.payload,
                key=idempotency_key,
            ).strip()
        except Exception as exc:
            raise DeliveryError(f"the subject template failed: {exc}", retryable=False) from exc
        if not subject or any(c in subject for c in " *>"):
            raise DeliveryError(f"cannot publish to subject {subject!r}: empty, spaces or wildcards", retryable=False)
        headers = {
            "Nats-Msg-Id": idempotency_key,
            "Content-Type": message.content_type if message.is_bytes else "application/json",
        }
        try:
            async with self._lock:
                client = await self.connect()
            ack = await client.jetstream().publish(
                subject, message.payload_bytes(), timeout=self.options.timeout.total_seconds(), headers=headers
            )
        except Exception as exc:
            text, retryable = describe(exc, self.options)
            text = redactor.redact(text)
            self.health.failed(text)
            raise DeliveryError(text, retryable=retryable) from exc
        self.health.ok()
        return {"subject": subject, "stream": ack.stream, "sequence": ack.seq, "duplicate": bool(ack.duplicate)}

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


class NatsConnector(Connector):
    """NATS JetStream: a durable consumer (acknowledged after storing), publish with de-duplication."""

    kind = "nats"
    SourceOptions = NatsSourceOptions
    TargetOptions = NatsTargetOptions
    source_class = NatsSource
    target_class = NatsTarget
