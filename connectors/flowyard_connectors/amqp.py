"""amqp: consume a queue, publish to an exchange (aio-pika, AMQP 0-9-1 / RabbitMQ).

Source: consumes with manual acknowledgments and a prefetch window; a message is acked
only after `accept` returned. With `concurrency` above 1, the messages stored meanwhile
are acknowledged with one `multiple` ack for the last of a stored run (never past a
message still being stored). When the store refuses, the connection is closed on
purpose: RabbitMQ then puts every unacknowledged message back in the queue, in order,
and the source reconnects with back-off. The queue can be declared (durable) and bound.

Target: publishes persistent messages with publisher confirms and the `mandatory` flag,
so success means the broker has routed the message to a queue and taken responsibility
for it. The message id is the delivery's idempotency key, for consumers that de-duplicate.

TLS (`amqps://` or `tls: true`) uses the context and the failure texts of `tls`, shared
with MQTT and NATS; aiormq's own TLS query parameters are refused, so the certificate
is always verified and the files are named the same way as for the other brokers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ssl
from datetime import timedelta
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustConnection
from pydantic import Field, field_validator, model_validator
from yarl import URL

from flowyard.connector import Accept, Connector, Source, Target
from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.options import Duration, Options, SecretRef
from flowyard.sandbox import TextTemplate
from flowyard.secrets import redactor
from flowyard.step import FlowContext

from .backoff import keep_running
from .inflight import InFlight, until_failure
from .tls import check_tls_files, client_context, describe_tls, hung_up_without_certificate

# aiormq reads these from the URL; one of them turns verification off
TLS_QUERY = {"cafile", "capath", "cadata", "keyfile", "certfile", "no_verify_ssl"}


class AmqpConnection(Options):
    url: str = Field(
        description="broker URL without password, e.g. amqp://mx01@rabbit.plant:5672/erp (amqps:// for TLS)"
    )
    password: SecretRef | None = Field(None, description="password, as ${secret:NAME}")
    tls: bool = Field(
        False, description="connect with TLS (also implied by amqps:// URLs); the broker's certificate is always verified"
    )
    ca_file: str | None = Field(
        None, description="CA bundle that signed the broker's certificate, relative to the flow file (default: system CAs)"
    )
    cert_file: str | None = Field(None, description="client certificate (PEM) for TLS client authentication")
    key_file: str | None = Field(None, description="private key (PEM) of the client certificate")
    timeout: Duration = Field(timedelta(seconds=10), description="time allowed to connect or confirm a publish")

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("amqp", "amqps"):
            raise ValueError("the URL must start with amqp:// or amqps://")
        if url.password:
            raise ValueError("do not write the password in the URL; use password: ${secret:NAME}")
        if ssl_params := sorted(TLS_QUERY & set(url.query)):
            raise ValueError(f"do not set TLS in the URL ({', '.join(ssl_params)}); use ca_file, cert_file and key_file")
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> AmqpConnection:
        check_tls_files(self, self.uses_tls, "`tls: true` (or an amqps:// URL)")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or URL(self.url).scheme == "amqps"


class Binding(Options):
    exchange: str = Field(description="exchange to bind the queue to")
    routing_key: str = Field("#", description="routing key (pattern for topic exchanges)")


class AmqpSourceOptions(AmqpConnection):
    queue: str = Field(description="queue to consume")
    declare: bool = Field(True, description="declare the queue (durable) if it does not exist")
    bindings: list[Binding] = Field(default_factory=list, description="bindings to create for a declared queue")
    prefetch: int = Field(20, ge=1, le=10_000, description="messages in flight before acknowledgments")
    content_type: str | None = Field(None, description="content type (default: the message's own, else bytes)")
    concurrency: int = Field(1, ge=1, le=1000, description="messages stored at once (1 keeps the queue's order)")


class AmqpTargetOptions(AmqpConnection):
    exchange: str = Field("", description="exchange to publish to ('' is the default exchange: routing key = queue)")
    routing_key: str = Field(description="routing key template (sandboxed Jinja: message, data, key)")
    persistent: bool = Field(True, description="ask the broker to write the message to disk")
    mandatory: bool = Field(True, description="fail when no queue takes the message")


def full_url(options: AmqpConnection, context: FlowContext) -> str:
    url = URL(options.url)
    if options.uses_tls and url.scheme == "amqp":
        url = url.with_scheme("amqps")  # aiormq picks the TLS transport by the scheme
    if options.password:
        url = url.with_password(str(context.secrets.resolve(options.password)))
    return str(url)


async def connect(options: AmqpConnection, context: FlowContext, name: str) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(
        full_url(options, context),
        timeout=options.timeout.total_seconds(),
        client_properties={"connection_name": name},
        ssl_context=client_context(options, context) if options.uses_tls else None,
    )


def tls_cause(exc: BaseException) -> BaseException:
    """The `ssl` error behind aiormq's AMQPConnectionError, which keeps only its text."""
    visited: set[int] = set()  # a chain can loop (an error raised while handling itself)
    seen: BaseException | None = exc
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, ssl.SSLError):
            return seen
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return exc


def describe(exc: BaseException, options: AmqpConnection) -> tuple[str, bool]:
    """Text for the analyst, and whether another try may help."""
    url = URL(options.url)
    port = url.port or (5671 if options.uses_tls else 5672)
    where = f"AMQP broker {url.host}:{port} (vhost {url.path[1:] or '/'})"
    if options.uses_tls and (tls_text := describe_tls(tls_cause(exc), where, options, peer="broker")):
        return tls_text, not isinstance(tls_cause(exc), ssl.SSLCertVerificationError)
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError):
        return f"{where} refused the credentials of user {url.user!r}", False
    if isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
        return f"{where}: {exc.args[0] if exc.args else exc}", False
    if isinstance(exc, aiormq.exceptions.ChannelAccessRefused | aiormq.exceptions.ConnectionNotAllowed):
        return f"{where} refused access: {exc}", False
    if isinstance(exc, aio_pika.exceptions.DeliveryError):
        return f"{where} did not route the message to any queue", False
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"{where} did not answer in time", True
    if isinstance(exc, OSError):
        hint = ""
        hung_up = "unexpectedly closed" in str(exc) or "reset" in str(exc).lower()  # aiormq may say it in text only
        if options.uses_tls and hung_up and hung_up_without_certificate(ConnectionResetError(), options):
            hint = " (the broker hung up during TLS: does it require a client certificate? set cert_file and key_file)"
        return f"cannot reach {where}: {exc.strerror or exc}{hint}", True
    return f"{where}: {type(exc).__name__}: {exc}", True


class StoreRefused(Exception):
    """`accept` failed: close the connection so the broker requeues what was not acked."""


class AmqpSource(Source[AmqpSourceOptions]):
    def __init__(self, options: AmqpSourceOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.connection: aio_pika.abc.AbstractConnection | None = None

    async def session(self, accept: Accept) -> None:
        options = self.options
        connection = await connect(options, self.context, f"flowyard:{self.context.flow_name}")
        self.connection = connection
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=max(options.prefetch, options.concurrency))
            if options.declare:
                queue = await channel.declare_queue(options.queue, durable=True)
                for binding in options.bindings:
                    await queue.bind(binding.exchange, binding.routing_key)
            else:
                queue = await channel.get_queue(options.queue, ensure=True)
            self.health.ok()
            closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def on_close(*_: Any) -> None:
                if not closed.done():
                    closed.set_result(None)

            connection.close_callbacks.add(on_close)
            consuming = asyncio.create_task(self.consume(queue, accept))
            try:
                await asyncio.wait({consuming, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not consuming.done():
                    consuming.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await consuming
            if consuming.done() and not consuming.cancelled() and consuming.exception():
                raise consuming.exception()  # type: ignore[misc]
            raise ConnectionError("the broker closed the connection")
        finally:
            self.connection = None
            with contextlib.suppress(Exception):
                await connection.close()

    async def consume(self, queue: aio_pika.abc.AbstractQueue, accept: Accept) -> None:
        options = self.options
        inflight = InFlight(options.concurrency)
        # deliveries in channel order, [message, stored]; an ack with `multiple` covers
        # every earlier delivery tag, so it is sent only for the end of a stored prefix
        order: collections.deque[list[Any]] = collections.deque()
        acking = asyncio.Lock()

        async def store(entry: list[Any], message: Message) -> None:
            try:
                await accept(message)
            except Exception as exc:
                raise StoreRefused(f"the store did not take a message from {options.queue}: {exc}") from exc
            entry[1] = True
            async with acking:  # acks leave in tag order: a later ack must not overtake this one
                last = None
                while order and order[0][1]:
                    last = order.popleft()[0]
                if last is not None:  # one frame for all the messages stored meanwhile
                    await last.ack(multiple=True)
            self.health.ok()

        async def intake() -> None:
            async with queue.iterator() as messages:
                async for incoming in messages:
                    message = Message(
                        payload=bytes(incoming.body),
                        content_type=options.content_type or incoming.content_type or "application/octet-stream",
                        source={
                            "connector": "amqp",
                            "queue": options.queue,
                            "exchange": incoming.exchange,
                            "routing_key": incoming.routing_key,
                            "message_id": incoming.message_id,
                            "key": incoming.message_id,  # none without one: see flowyard.runtime.sources
                            "redelivered": incoming.redelivered,
                            "headers": {k: str(v) for k, v in (incoming.headers or {}).items()},
                        },
                    )
                    entry = [incoming, False]
                    order.append(entry)
                    await inflight.submit(functools.partial(store, entry, message))

        await until_failure(intake(), inflight)

    async def run(self, accept: Accept) -> None:
        def text(exc: BaseException) -> str:
            return str(exc) if isinstance(exc, StoreRefused) else describe(exc, self.options)[0]

        await keep_running(lambda: self.session(accept), self.health, lambda e: redactor.redact(text(e)))

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
        self.health.connected = False


class AmqpTarget(Target[AmqpTargetOptions]):
    def __init__(self, options: AmqpTargetOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.routing_key = TextTemplate(options.routing_key)
        self.connection: aio_pika.abc.AbstractConnection | AbstractRobustConnection | None = None
        self.exchange: aio_pika.abc.AbstractExchange | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> aio_pika.abc.AbstractExchange:
        stale = self.channel is None or self.channel.is_closed
        if self.exchange is None or self.connection is None or self.connection.is_closed or stale:
            await self.drop()
            self.connection = await connect(self.options, self.context, f"flowyard:{self.context.flow_name}:out")
            channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
            self.channel = channel
            if self.options.exchange:
                self.exchange = await channel.get_exchange(self.options.exchange, ensure=True)
            else:
                self.exchange = channel.default_exchange
        return self.exchange

    async def publish(self, outgoing: aio_pika.Message, key: str) -> None:
        exchange = await self.connect()
        await exchange.publish(
            outgoing, routing_key=key, mandatory=self.options.mandatory, timeout=self.options.timeout.total_seconds()
        )

    async def drop(self) -> None:
        connection, self.connection, self.exchange, self.channel = self.connection, None, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def send(self, message: Message, idempotency_key: str) -> dict[str, Any]:
        try:
            key = self.routing_key.render(
                message=message.metadata(),
                data=message.last_data if message.is_bytes else message.payload,
                key=idempotency_key,
            ).strip()
        except Exception as exc:
            raise DeliveryError(f"the routing key template failed: {exc}", retryable=False) from exc
        outgoing = aio_pika.Message(
            body=message.payload_bytes(),
            content_type=message.content_type if message.is_bytes else "application/json",
            message_id=idempotency_key,
            correlation_id=message.correlation_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            if self.options.persistent
            else aio_pika.DeliveryMode.NOT_PERSISTENT,
            headers={"flowyard-flow": message.flow} if message.flow else None,
        )
        async with self._lock:
            try:
                try:
                    await self.publish(outgoing, key)
                except aiormq.exceptions.ChannelInvalidStateError:
                    # the broker closed our channel since the last send; nothing was sent
                    await self.drop()
                    await self.publish(outgoing, key)
            except Exception as exc:
                text, retryable = describe(exc, self.options)
                if not isinstance(exc, aio_pika.exceptions.DeliveryError):
                    await self.drop()
                text = redactor.redact(text)
                self.health.failed(text)
                raise DeliveryError(text, retryable=retryable) from exc
        self.health.ok()
        return {"exchange": self.options.exchange, "routing_key": key, "message_id": idempotency_key}

    async def close(self) -> None:
        await self.drop()


class AmqpConnector(Connector):
    """AMQP (RabbitMQ): consume a queue (acknowledged after storing), publish with confirms."""

    kind = "amqp"
    SourceOptions = AmqpSourceOptions
    TargetOptions = AmqpTargetOptions
    source_class = AmqpSource
    target_class = AmqpTarget
