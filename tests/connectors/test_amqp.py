"""amqp connector against the machine's RabbitMQ, in a virtual host and user of its own
(created and deleted by the test) so dropping connections touches nobody else."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from connector_helpers import JSON_FLOW, Collector, FailsOnce, Running, context, pipeline_result, wait_for

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard_connectors.amqp import AmqpSource, AmqpSourceOptions, AmqpTarget, AmqpTargetOptions

VHOST = f"fy-test-{uuid.uuid4().hex[:6]}"
USER, PASSWORD = f"fy-{uuid.uuid4().hex[:6]}", "rabbit-pw-4"


def ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def vhost(service_unavailable: Callable[[str], None]) -> Iterator[str]:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        service_unavailable("rabbitmq is not running on 127.0.0.1:5672; start it with: rabbitmq-server -detached")
    if shutil.which("rabbitmqctl") is None:
        service_unavailable("rabbitmqctl is not installed (it comes with the rabbitmq-server package)")
    ctl("add_vhost", VHOST)
    ctl("add_user", USER, PASSWORD)
    ctl("set_permissions", "-p", VHOST, USER, ".*", ".*", ".*")
    yield VHOST
    ctl("delete_vhost", VHOST)
    ctl("delete_user", USER)


def drop_connections() -> None:
    ctl("close_all_connections", "--vhost", VHOST, "--limit", "100", "dropped by the test")


URL = f"amqp://{USER}@127.0.0.1:5672/{VHOST}"
SECRETS = {"RABBIT_PW": PASSWORD}


@pytest.fixture
def queue(vhost: str) -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def source(queue: str, tmp_path: Path, **extra: Any) -> AmqpSource:
    options = AmqpSourceOptions(url=URL, password="${secret:RABBIT_PW}", queue=queue, **extra)
    return AmqpSource(options, context(tmp_path, **SECRETS))


def target(tmp_path: Path, **extra: Any) -> AmqpTarget:
    options = AmqpTargetOptions(url=URL, password="${secret:RABBIT_PW}", **extra)
    return AmqpTarget(options, context(tmp_path, **SECRETS))


async def publish(queue: str, *bodies: bytes) -> None:
    connection = await aio_pika.connect(f"amqp://{USER}:{PASSWORD}@127.0.0.1:5672/{VHOST}")
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        for body in bodies:
            await channel.default_exchange.publish(aio_pika.Message(body=body), routing_key=queue)


async def test_end_to_end_with_confirms_and_routing(queue: str, tmp_path: Path) -> None:
    store = Collector()
    src = source(queue, tmp_path)
    t = target(tmp_path, routing_key="{{ data.queue }}")
    async with Running(src, store):
        await wait_for(lambda: src.health.connected)
        message = Message(payload=b'{"po": 1}', content_type="application/json", flow="po-out")
        message.last_data = {"queue": queue}
        detail = await t.send(message, "key-1")
        await wait_for(lambda: len(store.messages) == 1)
        nowhere = target(tmp_path, routing_key="no-such-queue-here")
        with pytest.raises(DeliveryError) as unroutable:
            await nowhere.send(Message(payload=b"x"), "key-2")
        await nowhere.close()
    await t.close()
    assert detail["routing_key"] == queue
    got = store.messages[0]
    assert got.payload == b'{"po": 1}' and got.content_type == "application/json"
    assert got.source["message_id"] == "key-1" and got.source["headers"] == {"flowyard-flow": "po-out"}
    assert "did not route" in str(unroutable.value) and not unroutable.value.retryable


async def test_store_refusal_requeues_in_order(queue: str, tmp_path: Path) -> None:
    await publish(queue, b"1", b"2", b"3")
    store = Collector()
    store.fail = True
    src = source(queue, tmp_path)
    async with Running(src, store):
        await wait_for(lambda: store.refused >= 1)
        store.fail = False
        await wait_for(lambda: len(store.messages) == 3, what="all three after the store came back")
    assert store.payloads == [b"1", b"2", b"3"]
    assert store.messages[0].source["redelivered"] is True


async def test_broker_drops_connections_nothing_lost(queue: str, tmp_path: Path) -> None:
    store = Collector()
    src = source(queue, tmp_path)
    t = target(tmp_path, routing_key=queue)
    async with Running(src, store) as running:
        await wait_for(lambda: src.health.connected)
        await t.send(Message(payload=b"before"), "k1")
        await wait_for(lambda: store.payloads == [b"before"])
        await asyncio.to_thread(drop_connections)
        await wait_for(lambda: not src.health.connected, what="the source to notice")
        await publish(queue, b"during")
        await t.send(Message(payload=b"after"), "k2")  # the target reconnects by itself
        await wait_for(lambda: len(store.messages) == 3, timeout=40, what="messages after the drop")
        running.check()
    await t.close()
    assert store.payloads == [b"before", b"during", b"after"]


async def test_bad_credentials_are_clear(queue: str, tmp_path: Path) -> None:
    options = AmqpSourceOptions(url=URL, password="${secret:RABBIT_PW}", queue=queue)
    src = AmqpSource(options, context(tmp_path, RABBIT_PW="wrong-rabbit-pw"))
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None)
    assert f"refused the credentials of user '{USER}'" in (src.health.last_error or "")
    assert "wrong-rabbit-pw" not in (src.health.last_error or "")
    t = AmqpTarget(
        AmqpTargetOptions(url=URL, password="${secret:RABBIT_PW}", routing_key=queue),
        context(tmp_path, RABBIT_PW="wrong-rabbit-pw"),
    )
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b"x"), "k")
    assert "refused the credentials" in str(caught.value) and not caught.value.retryable


async def test_malformed_message_is_handed_over_for_the_dead_letters(queue: str, tmp_path: Path) -> None:
    await publish(queue, b"{not json")
    store = Collector()
    async with Running(source(queue, tmp_path, content_type="application/json"), store):
        await wait_for(lambda: len(store.messages) == 1)
        await asyncio.sleep(0.2)
    result = pipeline_result(JSON_FLOW, tmp_path, store.messages[0])
    assert "invalid JSON" in str(result.failures[0].error)
    # acknowledged once handed over: a second consumer finds the queue empty
    again = Collector()
    async with Running(source(queue, tmp_path), again):
        await asyncio.sleep(1.0)
    assert again.messages == []


def test_options_refuse_passwords_in_urls() -> None:
    with pytest.raises(ValueError, match="password"):
        AmqpTargetOptions(url="amqp://u:pw@h/v", routing_key="x")


async def test_concurrent_hand_overs_lose_nothing(queue: str, tmp_path: Path) -> None:
    sent = [str(i).encode() for i in range(60)]
    await publish(queue, *sent)
    store = FailsOnce(nth=10)
    async with Running(source(queue, tmp_path, concurrency=8), store):
        await wait_for(lambda: set(store.payloads) == set(sent), timeout=40, what="all 60 messages")
    assert store.refused == 1


class GroupCommitting(Collector):
    """Takes every message, finishing them in groups and out of order, as a store's group
    commit does: many acknowledgments become due at the same moment."""

    def __init__(self) -> None:
        super().__init__()
        self.commit = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        await self.commit.wait()
        for _ in range(int(message.payload) * 7 % 5):  # finish out of order, within the same moment
            await asyncio.sleep(0)
        await super().__call__(message)

    async def commits(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            self.commit.set()
            self.commit = asyncio.Event()


async def test_many_in_flight_are_acked_in_runs_exactly_once(queue: str, tmp_path: Path) -> None:
    sent = [str(i).encode() for i in range(300)]
    await publish(queue, *sent)
    store = GroupCommitting()
    committer = asyncio.create_task(store.commits())
    src = source(queue, tmp_path, concurrency=64)
    async with Running(src, store) as running:
        await wait_for(lambda: len(store.messages) >= 300, timeout=60, what="all 300 messages")
        await asyncio.sleep(0.5)  # a channel error from a bad multiple-ack would redeliver by now
        running.check()
    committer.cancel()
    assert sorted(store.payloads, key=int) == sent  # each exactly once: no ack overtook another
    assert src.health.last_error is None
    again = Collector()  # every message was acknowledged: the queue is empty
    async with Running(source(queue, tmp_path), again):
        await asyncio.sleep(1.0)
    assert again.messages == []
