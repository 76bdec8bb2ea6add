"""nats connector (JetStream) against the machine's NATS and a private nats-server the
test starts, stops and restarts (with a user and password)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from brokers import Nats
from connector_helpers import JSON_FLOW, Collector, FailsOnce, Running, context, pipeline_result, wait_for

from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard_connectors.nats import NatsSource, NatsSourceOptions, NatsTarget, NatsTargetOptions


@pytest.fixture
async def server(require_service: Any, tmp_path: Path) -> Any:
    require_service("nats")  # the binary comes with the machine's service
    instance = await Nats(tmp_path / "nats").start()
    yield instance
    await instance.stop()


def auth(server: Nats) -> dict[str, Any]:
    return {"servers": [f"nats://127.0.0.1:{server.port}"], "username": Nats.USER, "password": "${secret:NATS_PW}"}


SECRETS = {"NATS_PW": Nats.PASSWORD}


def source(server: Nats, tmp_path: Path, **extra: Any) -> NatsSource:
    values = {"stream": "PLANT", "subject": "plant.>", "durable": "flowyard-test", "create_stream": True, **extra}
    return NatsSource(NatsSourceOptions(**auth(server), **values), context(tmp_path, **SECRETS))


def target(server: Nats, tmp_path: Path, subject: str = "plant.counts") -> NatsTarget:
    return NatsTarget(NatsTargetOptions(**auth(server), subject=subject), context(tmp_path, **SECRETS))


async def test_end_to_end_on_the_machines_nats(require_service: Any, tmp_path: Path) -> None:
    host, port = require_service("nats")
    stream = f"FYTEST{uuid.uuid4().hex[:6].upper()}"
    subject = f"fytest.{stream.lower()}"
    servers = [f"nats://{host}:{port}"]
    store = Collector()
    src = NatsSource(
        NatsSourceOptions(servers=servers, stream=stream, subject=subject + ".>", durable="fy", create_stream=True),
        context(tmp_path),
    )
    t = NatsTarget(NatsTargetOptions(servers=servers, subject=subject + ".{{ data.line }}"), context(tmp_path))
    try:
        async with Running(src, store):
            await wait_for(lambda: src.health.connected)
            message = Message(payload=b'{"line": "L1"}', content_type="application/json")
            message.last_data = {"line": "L1"}
            first = await t.send(message, "key-1")
            again = await t.send(message, "key-1")  # a retried delivery: JetStream drops it
            await wait_for(lambda: len(store.messages) == 1)
            await asyncio.sleep(0.3)
        assert first["duplicate"] is False and again["duplicate"] is True
        assert store.payloads == [b'{"line": "L1"}']
        assert store.messages[0].content_type == "application/json"
        assert store.messages[0].source["subject"] == subject + ".L1"
    finally:
        await t.close()
        client = await nats.connect(servers)
        with contextlib.suppress(Exception):
            await client.jetstream().delete_stream(stream)
        await client.close()


async def test_server_restart_and_store_refusal_lose_nothing(server: Nats, tmp_path: Path) -> None:
    store = Collector()
    src = source(server, tmp_path)
    t = target(server, tmp_path)
    async with Running(src, store) as running:
        await wait_for(lambda: src.health.connected)
        await t.send(Message(payload=b"1"), "k1")
        await wait_for(lambda: store.payloads == [b"1"])
        store.fail = True
        await t.send(Message(payload=b"2"), "k2")
        await wait_for(lambda: store.refused >= 1)
        store.fail = False
        await wait_for(lambda: store.payloads == [b"1", b"2"], what="redelivery after a refusal")
        await server.stop()
        await wait_for(lambda: not src.health.connected, what="the source to notice")
        await server.start()
        await wait_for(lambda: src.health.connected, timeout=40, what="the source to reconnect")
        await t.send(Message(payload=b"3"), "k3")
        await wait_for(lambda: store.payloads[-1:] == [b"3"], timeout=40, what="a message after the restart")
        running.check()
    await t.close()
    assert store.payloads == [b"1", b"2", b"3"]


async def test_durable_consumer_resumes_after_the_source_was_away(server: Nats, tmp_path: Path) -> None:
    # A pull request of the stopped source may outlive its connection at the server for
    # up to its 1 s expiry; a message published meanwhile goes to it and comes again only
    # after the ack wait (60 s by default, longer than this test waits): 2 s here.
    ack_wait = {"ack_wait": timedelta(seconds=2)}
    first = Collector()
    async with Running(source(server, tmp_path, **ack_wait), first):
        await wait_for(lambda: first.refused == 0)
        t = target(server, tmp_path)
        await asyncio.sleep(0.5)
        await t.send(Message(payload=b"a"), "ka")
        await wait_for(lambda: first.payloads == [b"a"])
        await asyncio.sleep(0.3)
    await t.send(Message(payload=b"b"), "kb")  # nobody reading now
    await t.close()
    second = Collector()
    async with Running(source(server, tmp_path, **ack_wait), second):
        await wait_for(lambda: second.payloads == [b"b"],
                       what=lambda: f"only the message sent while away (got {second.payloads})")


async def test_bad_credentials_are_clear(server: Nats, tmp_path: Path) -> None:
    options = NatsSourceOptions(**auth(server), stream="PLANT", subject="plant.>", durable="x")
    src = NatsSource(options, context(tmp_path, NATS_PW="wrong-nats-pw"))
    async with Running(src, Collector()):
        await wait_for(lambda: src.health.last_error is not None)
    assert "refused the credentials of user 'plant'" in (src.health.last_error or "")
    t = NatsTarget(NatsTargetOptions(**auth(server), subject="plant.x"), context(tmp_path, NATS_PW="wrong-nats-pw"))
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b"x"), "k")
    assert "refused the credentials" in str(caught.value) and not caught.value.retryable
    assert "wrong-nats-pw" not in str(caught.value)


async def test_target_server_down_is_retryable(server: Nats, tmp_path: Path) -> None:
    src_store = Collector()
    async with Running(source(server, tmp_path), src_store):  # creates the stream
        await asyncio.sleep(0.5)
    t = NatsTarget(NatsTargetOptions(**auth(server), subject="plant.x", timeout="2s"), context(tmp_path, **SECRETS))
    await t.send(Message(payload=b"a"), "k1")
    await server.stop()
    with pytest.raises(DeliveryError) as caught:
        await t.send(Message(payload=b"b"), "k2")
    assert caught.value.retryable
    await server.start()
    await wait_for(lambda: t.client is not None and t.client.is_connected, timeout=30, what="reconnection")
    await t.send(Message(payload=b"b"), "k2")  # the runtime's retry
    await t.close()
    # the client may have sent the first try after reconnecting: the key keeps it single
    store = Collector()
    async with Running(source(server, tmp_path), store):
        await wait_for(lambda: len(store.messages) >= 2)
        await asyncio.sleep(0.5)
    assert store.payloads == [b"a", b"b"]


async def test_malformed_message_is_handed_over_for_the_dead_letters(server: Nats, tmp_path: Path) -> None:
    store = Collector()
    async with Running(source(server, tmp_path, content_type="application/json"), store):
        await asyncio.sleep(0.5)
        t = target(server, tmp_path)
        await t.send(Message(payload=b"{nope"), "k")
        await t.close()
        await wait_for(lambda: len(store.messages) == 1)
    result = pipeline_result(JSON_FLOW, tmp_path, store.messages[0])
    assert "invalid JSON" in str(result.failures[0].error)


async def test_concurrent_hand_overs_lose_nothing(server: Nats, tmp_path: Path) -> None:
    sent = [str(i).encode() for i in range(60)]
    store = FailsOnce(nth=10)
    async with Running(source(server, tmp_path, concurrency=8, batch=20), store):
        await asyncio.sleep(0.5)
        t = target(server, tmp_path)
        for i, body in enumerate(sent):
            await t.send(Message(payload=body), f"k{i}")
        await t.close()
        await wait_for(lambda: set(store.payloads) == set(sent), timeout=40, what="all 60 messages")
    assert store.refused == 1
