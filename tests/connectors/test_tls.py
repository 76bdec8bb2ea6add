"""TLS for the MQTT, NATS and AMQP connectors with certificates from a CA the test makes:
delivery with the CA given as an option, verification on by default (a CA we do not
trust is refused with a clear message), and client certificates.

MQTT and NATS: a Mosquitto and a nats-server the test starts with a TLS listener.
AMQP: the system RabbitMQ's configuration is not touched; a TLS-terminating proxy on
loopback (`tls_proxy`) forwards to its plaintext port, so the client does a real
handshake and then real AMQP with the real broker."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from brokers import TlsMosquitto, TlsNats
from certs import Pki, make_pki
from connector_helpers import Collector, Running, context, wait_for
from tls_proxy import TlsProxy

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard_connectors import amqp as amqp_connector
from flowyard_connectors import mqtt as mqtt_connector
from flowyard_connectors import nats as nats_connector
from flowyard_connectors.amqp import AmqpSource, AmqpSourceOptions, AmqpTarget, AmqpTargetOptions
from flowyard_connectors.mqtt import MqttSource, MqttSourceOptions, MqttTarget, MqttTargetOptions
from flowyard_connectors.nats import NatsSource, NatsSourceOptions, NatsTarget, NatsTargetOptions


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def flow_context(tmp_path: Path) -> Any:
    return context(tmp_path / "pki")  # paths in options are relative to the flow file, here the PKI folder


async def delivers_with_a_certificate(src: Any, target: Any) -> None:
    """With the client certificate the source connects and receives what the target sends."""
    store = Collector()
    async with Running(src, store):
        await wait_for(lambda: src.health.connected, what="the connection with a client certificate")
        await target.send(Message(payload=b"with-cert"), "k2")
        await wait_for(lambda: store.payloads == [b"with-cert"])
    await target.close()


# ---------------------------------------------------------------- MQTT


@pytest.fixture
async def mosquitto(require_service: Any, tmp_path: Path, pki: Pki) -> Any:
    require_service("mosquitto")  # the binary comes with the machine's service
    broker = await TlsMosquitto(tmp_path / "mosquitto", pki).start()
    yield broker
    await broker.stop()


def mqtt(broker: TlsMosquitto, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": broker.port, "tls": True, **extra}


async def test_mqtt_delivers_over_tls_with_the_ca_as_an_option(mosquitto: TlsMosquitto, tmp_path: Path) -> None:
    store = Collector()
    src = MqttSource(
        MqttSourceOptions(**mqtt(mosquitto, ca_file="ca.pem"), topics=["plant/+/count"], client_id="fy-tls"),
        flow_context(tmp_path),
    )
    target = MqttTarget(MqttTargetOptions(**mqtt(mosquitto, ca_file="ca.pem"), topic="plant/l1/count"),
                        flow_context(tmp_path))
    async with Running(src, store) as running:
        await wait_for(lambda: src.health.connected, what="the TLS connection")
        await target.send(Message(payload=b"42"), "k1")
        await wait_for(lambda: store.payloads == [b"42"], what="the message over TLS")
        running.check()
    await target.close()
    assert store.messages[0].source["topic"] == "plant/l1/count"


async def test_mqtt_refuses_a_broker_whose_ca_is_not_trusted(mosquitto: TlsMosquitto, tmp_path: Path) -> None:
    src = MqttSource(
        MqttSourceOptions(**mqtt(mosquitto, ca_file="other-ca.pem"), topics=["x"]), flow_context(tmp_path)
    )
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None)
    error = src.health.last_error or ""
    assert "TLS certificate is not trusted by the CA in other-ca.pem" in error
    assert "Traceback" not in error
    # no CA given: the system CAs do not know the test CA either (verification is on by default)
    target = MqttTarget(MqttTargetOptions(**mqtt(mosquitto), topic="x"), flow_context(tmp_path))
    with pytest.raises(DeliveryError, match="not trusted by the system CAs"):
        await target.send(Message(payload=b"x"), "k")
    assert not src.health.connected


async def test_mqtt_client_certificate(require_service: Any, tmp_path: Path, pki: Pki) -> None:
    require_service("mosquitto")
    broker = await TlsMosquitto(tmp_path / "mosquitto-mtls", pki, require_certificate=True).start()
    try:
        without = MqttTarget(MqttTargetOptions(**mqtt(broker, ca_file="ca.pem"), topic="t"), flow_context(tmp_path))
        with pytest.raises(DeliveryError) as refused:
            await without.send(Message(payload=b"x"), "k")
        assert f"MQTT broker 127.0.0.1:{broker.port}" in str(refused.value) and "cert_file" in str(refused.value)
        creds = {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key"}
        src = MqttSource(MqttSourceOptions(**mqtt(broker, **creds), topics=["t"], client_id="fy-mtls"),
                         flow_context(tmp_path))
        target = MqttTarget(MqttTargetOptions(**mqtt(broker, **creds), topic="t"), flow_context(tmp_path))
        await delivers_with_a_certificate(src, target)
    finally:
        await broker.stop()


def test_mqtt_tls_files_need_tls() -> None:
    with pytest.raises(ValueError, match="need `tls: true`"):
        MqttTargetOptions(host="h", topic="t", ca_file="ca.pem")


# ---------------------------------------------------------------- NATS


@pytest.fixture
async def nats_tls(require_service: Any, tmp_path: Path, pki: Pki) -> Any:
    require_service("nats")
    server = await TlsNats(tmp_path / "nats", pki).start()
    yield server
    await server.stop()


def nats(server: TlsNats, **extra: Any) -> dict[str, Any]:
    return {"servers": [f"tls://127.0.0.1:{server.port}"], **extra}


async def test_nats_delivers_over_tls_with_the_ca_as_an_option(nats_tls: TlsNats, tmp_path: Path) -> None:
    store = Collector()
    options = nats(nats_tls, ca_file="ca.pem")
    src = NatsSource(
        NatsSourceOptions(**options, stream="PLANT", subject="plant.>", durable="fy", create_stream=True),
        flow_context(tmp_path),
    )
    target = NatsTarget(NatsTargetOptions(**options, subject="plant.l1"), flow_context(tmp_path))
    async with Running(src, store) as running:
        await wait_for(lambda: src.health.connected, what="the TLS connection")
        detail = await target.send(Message(payload=b"7"), "k1")
        await wait_for(lambda: store.payloads == [b"7"], what="the message over TLS")
        running.check()
    await target.close()
    assert detail["stream"] == "PLANT"


async def test_nats_refuses_a_server_whose_ca_is_not_trusted(nats_tls: TlsNats, tmp_path: Path) -> None:
    src = NatsSource(
        NatsSourceOptions(**nats(nats_tls, ca_file="other-ca.pem"), stream="S", subject="s", durable="d"),
        flow_context(tmp_path),
    )
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None)
    error = src.health.last_error or ""
    assert "TLS certificate is not trusted by the CA in other-ca.pem" in error, error
    target = NatsTarget(NatsTargetOptions(**nats(nats_tls), subject="s"), flow_context(tmp_path))
    with pytest.raises(DeliveryError, match="not trusted by the system CAs"):
        await target.send(Message(payload=b"x"), "k")


async def test_nats_client_certificate(require_service: Any, tmp_path: Path, pki: Pki) -> None:
    require_service("nats")
    server = await TlsNats(tmp_path / "nats-mtls", pki, verify=True).start()
    try:
        without = NatsTarget(NatsTargetOptions(**nats(server, ca_file="ca.pem"), subject="s"), flow_context(tmp_path))
        with pytest.raises(DeliveryError) as refused:
            await without.send(Message(payload=b"x"), "k")
        assert f"NATS tls://127.0.0.1:{server.port}" in str(refused.value) and "cert_file" in str(refused.value)
        creds = nats(server, ca_file="ca.pem", cert_file="client.pem", key_file="client.key")
        src = NatsSource(
            NatsSourceOptions(**creds, stream="M", subject="m.>", durable="fy", create_stream=True),
            flow_context(tmp_path),
        )
        target = NatsTarget(NatsTargetOptions(**creds, subject="m.1"), flow_context(tmp_path))
        await delivers_with_a_certificate(src, target)
    finally:
        await server.stop()


# ---------------------------------------------------------------- AMQP (RabbitMQ behind a TLS proxy)


@pytest.fixture
def rabbit(require_service: Any) -> tuple[str, int]:
    host, port = require_service("rabbitmq")
    return host, port


@pytest.fixture
async def amqp_queue(rabbit: tuple[str, int]) -> Any:
    """A queue of its own in the default vhost (guest may only log in from loopback,
    which is where the proxy connects from), deleted afterwards."""
    name = f"fy-tls-{uuid.uuid4().hex[:8]}"
    yield name
    connection = await aio_pika.connect(f"amqp://guest:guest@{rabbit[0]}:{rabbit[1]}/")
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


@pytest.fixture
async def amqp_proxy(rabbit: tuple[str, int], pki: Pki) -> Any:
    proxy = await TlsProxy(pki, rabbit).start()
    yield proxy
    await proxy.stop()


def amqp(proxy: TlsProxy, scheme: str = "amqps", **extra: Any) -> dict[str, Any]:
    return {"url": f"{scheme}://guest@127.0.0.1:{proxy.port}/", "password": "${secret:RABBIT_PW}", **extra}


def amqp_context(tmp_path: Path) -> Any:
    return context(tmp_path / "pki", RABBIT_PW="guest")


async def test_amqp_delivers_over_tls_with_the_ca_as_an_option(
    amqp_proxy: TlsProxy, amqp_queue: str, tmp_path: Path
) -> None:
    store = Collector()
    src = AmqpSource(AmqpSourceOptions(**amqp(amqp_proxy, ca_file="ca.pem"), queue=amqp_queue), amqp_context(tmp_path))
    # `tls: true` with an amqp:// URL is the same as amqps://
    target = AmqpTarget(
        AmqpTargetOptions(**amqp(amqp_proxy, "amqp", tls=True, ca_file="ca.pem"), routing_key=amqp_queue),
        amqp_context(tmp_path),
    )
    async with Running(src, store) as running:
        await wait_for(lambda: src.health.connected, what="the TLS connection")
        detail = await target.send(Message(payload=b"42"), "k1")
        await wait_for(lambda: store.payloads == [b"42"], what="the message over TLS")
        running.check()
    await target.close()
    assert detail["routing_key"] == amqp_queue
    assert store.messages[0].source["message_id"] == "k1"
    assert amqp_proxy.connections >= 2  # both went through the TLS proxy, not straight to 5672


async def test_amqp_refuses_a_broker_whose_ca_is_not_trusted(
    amqp_proxy: TlsProxy, amqp_queue: str, tmp_path: Path
) -> None:
    src = AmqpSource(
        AmqpSourceOptions(**amqp(amqp_proxy, ca_file="other-ca.pem"), queue=amqp_queue), amqp_context(tmp_path)
    )
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None)
    error = src.health.last_error or ""
    assert "TLS certificate is not trusted by the CA in other-ca.pem" in error, error
    assert "Traceback" not in error
    assert not src.health.connected
    target = AmqpTarget(AmqpTargetOptions(**amqp(amqp_proxy), routing_key=amqp_queue), amqp_context(tmp_path))
    with pytest.raises(DeliveryError, match="not trusted by the system CAs") as refused:
        await target.send(Message(payload=b"x"), "k")
    assert f"AMQP broker 127.0.0.1:{amqp_proxy.port}" in str(refused.value)
    assert not refused.value.retryable
    await target.close()
    assert amqp_proxy.connections == 0


async def test_amqp_refuses_a_certificate_for_another_host(
    rabbit: tuple[str, int], amqp_queue: str, pki: Pki, tmp_path: Path
) -> None:
    proxy = await TlsProxy(pki, rabbit, cert=pki.elsewhere_cert, key=pki.elsewhere_key).start()
    try:
        target = AmqpTarget(
            AmqpTargetOptions(**amqp(proxy, ca_file="ca.pem"), routing_key=amqp_queue), amqp_context(tmp_path)
        )
        with pytest.raises(DeliveryError, match="TLS certificate is for another host name") as refused:
            await target.send(Message(payload=b"x"), "k")
        assert "127.0.0.1" in str(refused.value)
        await target.close()
    finally:
        await proxy.stop()


async def test_amqp_client_certificate(rabbit: tuple[str, int], amqp_queue: str, pki: Pki, tmp_path: Path) -> None:
    proxy = await TlsProxy(pki, rabbit, require_certificate=True).start()
    try:
        without = AmqpTarget(
            AmqpTargetOptions(**amqp(proxy, ca_file="ca.pem"), routing_key=amqp_queue), amqp_context(tmp_path)
        )
        with pytest.raises(DeliveryError) as refused:
            await without.send(Message(payload=b"x"), "k")
        assert f"AMQP broker 127.0.0.1:{proxy.port}" in str(refused.value)
        # With TLS 1.3 the server checks the certificate after the handshake: the client
        # reads either its alert ("requires a client certificate") or, when the reset wins
        # the race, a dropped connection with the hint. Either way the analyst is told what to set.
        assert "client certificate" in str(refused.value), refused.value
        assert "set cert_file and key_file" in str(refused.value), refused.value
        await without.close()
        creds = amqp(proxy, ca_file="ca.pem", cert_file="client.pem", key_file="client.key")
        src = AmqpSource(AmqpSourceOptions(**creds, queue=amqp_queue), amqp_context(tmp_path))
        target = AmqpTarget(AmqpTargetOptions(**creds, routing_key=amqp_queue), amqp_context(tmp_path))
        await delivers_with_a_certificate(src, target)
    finally:
        await proxy.stop()


def test_amqp_tls_options_are_checked() -> None:
    with pytest.raises(ValueError, match="need `tls: true`"):
        AmqpTargetOptions(url="amqp://u@h/", routing_key="k", ca_file="ca.pem")
    with pytest.raises(ValueError, match="do not set TLS in the URL"):
        AmqpTargetOptions(url="amqps://u@h/?no_verify_ssl=1", routing_key="k")
    with pytest.raises(ValueError, match="key_file needs cert_file"):
        AmqpTargetOptions(url="amqps://u@h/", routing_key="k", key_file="client.key")
    assert AmqpTargetOptions(url="amqps://u@h/", routing_key="k", ca_file="ca.pem").uses_tls


def test_amqp_tls_cause_survives_a_looping_exception_chain() -> None:
    """aiormq can leave an error whose context leads back to itself: finding the ssl
    error behind it must end (it once spun forever in the suite)."""
    from flowyard_connectors.amqp import tls_cause

    outer, inner = ConnectionError("closed"), OSError("reset")
    outer.__context__, inner.__context__ = inner, outer
    assert tls_cause(outer) is outer
    tls = ssl.SSLError("certificate required")
    inner.__cause__ = tls
    assert tls_cause(outer) is tls


def hang_up_texts(cert_file: str | None, exc: BaseException) -> list[str]:
    """What each broker connector says when the server hangs up on its TLS client."""
    files = {"cert_file": cert_file, "key_file": "client.key" if cert_file else None}
    return [
        nats_connector.describe(exc, NatsTargetOptions(servers=["tls://plant:4222"], subject="s", **files))[0],
        mqtt_connector.describe(exc, MqttTargetOptions(host="plant", port=8883, tls=True, topic="t", **files)),
        amqp_connector.describe(exc, AmqpTargetOptions(url="amqps://guest@plant/", routing_key="r", **files))[0],
    ]


@pytest.mark.parametrize("exc", [ConnectionResetError("Connection lost"), BrokenPipeError(32, "Broken pipe"),
                                 EOFError(), ssl.SSLEOFError()], ids=["reset", "broken-pipe", "eof", "ssl-eof"])
def test_a_hang_up_during_tls_without_a_client_certificate_says_to_set_one(exc: BaseException) -> None:
    """TLS 1.3: the server's 'certificate required' alert may reach the client as any of
    these, by timing (a CI run got a broken pipe where a reset had always come)."""
    for text in hang_up_texts(None, exc):
        assert "does it require a client certificate? set cert_file and key_file" in text, text
    for text in hang_up_texts("client.pem", exc):  # a certificate was given: no such hint
        assert "require a client certificate" not in text, text


def test_a_refused_connection_gets_no_certificate_hint() -> None:
    for text in hang_up_texts(None, ConnectionRefusedError(111, "Connection refused")):
        assert "cannot reach" in text and "certificate" not in text, text
