"""mqtt connector against the machine's Mosquitto and a private Mosquitto the test
starts, stops and restarts (with a password file)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from brokers import Mosquitto
from connector_helpers import JSON_FLOW, Collector, FailsOnce, Running, context, pipeline_result, wait_for

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard_connectors.mqtt import MqttSource, MqttSourceOptions, MqttTarget, MqttTargetOptions


@pytest.fixture
async def broker(require_service: Any, tmp_path: Path) -> Any:
    require_service("mosquitto")  # the binary comes with the machine's service
    instance = await Mosquitto(tmp_path / "mosquitto").start()
    yield instance
    await instance.stop()


def auth(broker: Mosquitto) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": broker.port, "username": Mosquitto.USER, "password": "${secret:MQTT_PW}"}


async def publish(
    port: int, topic: str, *payloads: bytes, username: str | None = None, password: str | None = None
) -> None:
    async with aiomqtt.Client("127.0.0.1", port, username=username, password=password) as client:
        for payload in payloads:
            await client.publish(topic, payload, qos=1)


async def test_end_to_end_on_the_machines_broker(require_service: Any, tmp_path: Path) -> None:
    host, port = require_service("mosquitto")
    topic = f"flowyard-test/{uuid.uuid4().hex[:8]}"
    store = Collector()
    src = MqttSource(
        MqttSourceOptions(
            host=host,
            port=port,
            topics=[topic + "/#"],
            content_type="application/json",
            client_id=f"fy-{uuid.uuid4().hex[:8]}",
        ),
        context(tmp_path),
    )
    target = MqttTarget(MqttTargetOptions(host=host, port=port, topic=topic + "/{{ data.line }}"), context(tmp_path))
    async with Running(src, store):
        await wait_for(lambda: src.health.connected)
        await asyncio.sleep(0.2)
        message = Message(payload=b'{"line": "L2", "count": 4}', content_type="application/json")
        message.last_data = {"line": "L2"}
        detail = await target.send(message, "k1")
        await wait_for(lambda: len(store.messages) == 1)
    await target.close()
    assert detail["topic"] == topic + "/L2"
    assert store.payloads == [b'{"line": "L2", "count": 4}']
    assert store.messages[0].source["topic"] == topic + "/L2"
    assert store.messages[0].content_type == "application/json"


async def test_broker_restart_and_store_down_lose_nothing(broker: Mosquitto, tmp_path: Path) -> None:
    store = Collector()
    src = MqttSource(
        MqttSourceOptions(**auth(broker), topics=["plant/+/count"], client_id="fy-restart"),
        context(tmp_path, MQTT_PW=Mosquitto.PASSWORD),
    )
    creds = {"username": Mosquitto.USER, "password": Mosquitto.PASSWORD}
    async with Running(src, store) as running:
        await wait_for(lambda: src.health.connected)
        await publish(broker.port, "plant/l1/count", b"1", **creds)
        await wait_for(lambda: store.payloads == [b"1"])
        store.fail = True  # the store refuses: no PUBACK, the broker keeps the message
        await publish(broker.port, "plant/l1/count", b"2", **creds)
        await wait_for(lambda: store.refused >= 1)
        store.fail = False
        await wait_for(lambda: store.payloads == [b"1", b"2"], what="redelivery after the refusal")
        await broker.stop()
        await wait_for(lambda: not src.health.connected)
        await broker.start()
        await publish(broker.port, "plant/l2/count", b"3", **creds)
        await wait_for(lambda: store.payloads[-1:] == [b"3"], timeout=40, what="a message after the restart")
        running.check()
    assert store.payloads == [b"1", b"2", b"3"]


async def test_messages_published_while_the_source_is_away_are_kept(broker: Mosquitto, tmp_path: Path) -> None:
    creds = {"username": Mosquitto.USER, "password": Mosquitto.PASSWORD}
    options = MqttSourceOptions(**auth(broker), topics=["plant/+/count"], client_id="fy-away")
    first = Collector()
    src = MqttSource(options, context(tmp_path, MQTT_PW=Mosquitto.PASSWORD))
    async with Running(src, first):
        await wait_for(lambda: src.health.connected)
    await publish(broker.port, "plant/l1/count", b"while-away", **creds)
    second = Collector()
    async with Running(MqttSource(options, context(tmp_path, MQTT_PW=Mosquitto.PASSWORD)), second):
        await wait_for(lambda: second.payloads == [b"while-away"], what="the queued message")


async def test_bad_credentials_are_clear(broker: Mosquitto, tmp_path: Path) -> None:
    src = MqttSource(MqttSourceOptions(**auth(broker), topics=["x"]), context(tmp_path, MQTT_PW="wrong-pw-mqtt"))
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None)
    assert "refused the connection for user 'plant'" in (src.health.last_error or "")
    assert "wrong-pw-mqtt" not in (src.health.last_error or "")
    target = MqttTarget(MqttTargetOptions(**auth(broker), topic="x"), context(tmp_path, MQTT_PW="wrong-pw-mqtt"))
    with pytest.raises(DeliveryError) as caught:
        await target.send(Message(payload=b"x"), "k")
    assert not caught.value.retryable and "refused" in str(caught.value)


async def test_target_broker_down_is_retryable_then_delivers(broker: Mosquitto, tmp_path: Path) -> None:
    target = MqttTarget(
        MqttTargetOptions(**auth(broker), topic="out/x", timeout="3s"), context(tmp_path, MQTT_PW=Mosquitto.PASSWORD)
    )
    await target.send(Message(payload=b"a"), "k1")
    await broker.stop()
    with pytest.raises(DeliveryError) as caught:
        await target.send(Message(payload=b"b"), "k2")
    assert caught.value.retryable
    await broker.start()
    store = Collector()
    src = MqttSource(MqttSourceOptions(**auth(broker), topics=["out/#"]), context(tmp_path, MQTT_PW=Mosquitto.PASSWORD))
    async with Running(src, store):
        await wait_for(lambda: src.health.connected)
        await asyncio.sleep(0.2)
        await target.send(Message(payload=b"b"), "k2")
        await wait_for(lambda: store.payloads == [b"b"])
    await target.close()


async def test_malformed_payload_is_handed_over_for_the_dead_letters(broker: Mosquitto, tmp_path: Path) -> None:
    store = Collector()
    src = MqttSource(
        MqttSourceOptions(**auth(broker), topics=["json/in"], content_type="application/json"),
        context(tmp_path, MQTT_PW=Mosquitto.PASSWORD),
    )
    async with Running(src, store):
        await wait_for(lambda: src.health.connected)
        await publish(broker.port, "json/in", b"{broken", username=Mosquitto.USER, password=Mosquitto.PASSWORD)
        await wait_for(lambda: len(store.messages) == 1)
    result = pipeline_result(JSON_FLOW, tmp_path, store.messages[0])
    assert "invalid JSON" in str(result.failures[0].error)
    assert result.failures[0].message.source["topic"] == "json/in"


async def test_concurrent_hand_overs_lose_nothing(broker: Mosquitto, tmp_path: Path) -> None:
    store = FailsOnce(nth=10)
    src = MqttSource(MqttSourceOptions(**auth(broker), topics=["many/+"], client_id="fy-many", concurrency=8),
                     context(tmp_path, MQTT_PW=Mosquitto.PASSWORD))
    sent = [str(i).encode() for i in range(60)]
    async with Running(src, store):
        await wait_for(lambda: src.health.connected)
        await publish(broker.port, "many/x", *sent, username=Mosquitto.USER, password=Mosquitto.PASSWORD)
        await wait_for(lambda: set(store.payloads) == set(sent), timeout=40, what="all 60 messages")
    assert store.refused == 1


async def test_protocol_5_session_and_a_window_wider_than_mosquittos_20(broker: Mosquitto, tmp_path: Path) -> None:
    creds = {"username": Mosquitto.USER, "password": Mosquitto.PASSWORD}
    options = MqttSourceOptions(**auth(broker), topics=["v5/+"], client_id="fy-v5", protocol="5", concurrency=32)
    first = Collector()
    async with Running(MqttSource(options, context(tmp_path, MQTT_PW=Mosquitto.PASSWORD)), first) as running:
        await wait_for(lambda: running.source.health.connected)
    sent = [str(i).encode() for i in range(200)]
    await publish(broker.port, "v5/x", *sent, **creds)  # queued in the session while the source is away
    second = FailsOnce(nth=50)
    src = MqttSource(options, context(tmp_path, MQTT_PW=Mosquitto.PASSWORD))
    async with Running(src, second):
        await wait_for(lambda: set(second.payloads) == set(sent), timeout=60, what="the 200 queued messages")
        # The refusal dropped the session, so the broker sends again what had no ack yet,
        # some of it already taken: a last message, in order behind those, marks the end
        # of that redelivery, and the source stops only once every store has returned.
        await publish(broker.port, "v5/x", b"end", **creds)
        await wait_for(
            lambda: b"end" in second.payloads and second.busy == 0, timeout=60, what="the redelivery to end"
        )
    assert second.refused == 1
    third = Collector()  # everything was acknowledged after the store took it: nothing comes again
    async with Running(MqttSource(options, context(tmp_path, MQTT_PW=Mosquitto.PASSWORD)), third) as running:
        await wait_for(lambda: running.source.health.connected)
        await asyncio.sleep(1.0)
    assert third.messages == []
