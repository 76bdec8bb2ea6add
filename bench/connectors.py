"""Broker connectors: messages/s through Flowyard beside a bare client loop.

For MQTT (a private Mosquitto the bench starts on a free loopback port, so that an offline
session may queue all N messages; MQTT 5 on both sides with the same Receive Maximum),
AMQP (RabbitMQ 127.0.0.1:5672, guest) and NATS JetStream (127.0.0.1:4222): N messages are
published first, then

- bare: the broker's own client receives, decodes the JSON and acknowledges each one;
- flowyard: the connector's source hands each message to `accept`, which runs the flow's
  one jmespath step and writes the result with the file target (temporary file, flush,
  rename, folder flush: durable before `send` returns), and only then does the source
  acknowledge the broker. Once with `concurrency: 1` (broker order kept, one flush per
  message) and once with `--concurrency` hand-overs in flight (their writes share
  flushes: group commit; each message still acknowledged only after its own write);
- flowyard, append: the same with the file target in append mode (`append: true`: one
  JSON-lines file, each batch of sends one write and one flush, still durable before
  `send` returns and before the broker's ack).

"source only" runs the connector with an `accept` that only counts (the connector's own
cost); "disk" runs the file target alone with `--concurrency` sends in flight, the
ceiling the disk puts on the full path at that moment.

Rounds interleave the sides (bare, source only, c=1, c=N, c=N append, disk) and the medians are
printed with the ratios to the bare loop. The rate is measured from the first message
received to the last one done, so connection set-up is not counted. Not a test.

    .venv/bin/python bench/connectors.py [--n 5000] [--rounds 2] [--only mqtt,amqp,nats]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiomqtt
import nats
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from flowyard import registry
from flowyard.connector import Source
from flowyard.engine import Pipeline
from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.runner import open_target
from flowyard.secrets import Secrets
from flowyard.step import FlowContext
from flowyard_connectors.file import FileTarget, FileTargetOptions

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {{name: bench-{kind}}}
source:
  {kind}: {options}
steps:
  - jmespath: "{{line: line, good: good, at: at}}"
targets:
  - file: {file}
"""
ONE_FILE_PER_MESSAGE = '{path: out, name: "{{ key }}.json"}'
APPEND = '{path: out, name: "bench.jsonl", append: true}'



def payload(i: int) -> bytes:
    return json.dumps({"line": f"L{i % 7}", "good": i, "scrap": i % 3, "at": "2026-11-22T10:00:00Z"}).encode()


class Meter:
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()

    def tick(self) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self.n:
            self.done.set()

    @property
    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.count > 1 and self.last > self.first else 0.0


SOURCE_ONLY = {"on": False}
MODE = {"append": False}


async def through_flowyard(kind: str, options: dict[str, Any], n: int, folder: Path) -> float:
    """Run the connector's source with accept = jmespath step + file target (or, for the
    source-only figure, an accept that only counts)."""
    flow_dir = Path(tempfile.mkdtemp(dir=folder))
    path = flow_dir / "flow.yaml"
    target_options = APPEND if MODE["append"] else ONE_FILE_PER_MESSAGE
    path.write_text(FLOW.format(kind=kind, options=json.dumps(options), file=target_options), encoding="utf-8")
    flow = load_flow(path)
    pipeline = Pipeline(flow)
    target = open_target(flow, flow.targets[0])
    meter = Meter(n)

    async def accept(message: Message) -> None:
        if SOURCE_ONLY["on"]:
            meter.tick()
            return
        result = pipeline.run(message)
        for out in result.outputs:
            await target.send(out, out.id)
        meter.tick()

    cls = registry.connector_class(kind)
    assert cls.source_class is not None
    source: Source[Any] = cls.source_class(flow.source.options, FlowContext(flow_file=path, flow_name=flow.name, secrets=Secrets()))
    task = asyncio.create_task(source.run(accept))
    try:
        await asyncio.wait_for(meter.done.wait(), timeout=300)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()
        await target.close()
    out = flow_dir / "out"
    if MODE["append"]:
        written = len((out / "bench.jsonl").read_bytes().splitlines())
    else:
        written = len(list(out.iterdir())) if out.exists() else 0
    assert written == (0 if SOURCE_ONLY["on"] else n), f"{kind}: {written} files written, expected {n}"
    # the outputs stay until the benchmark ends: see bench/runtime.py's work_folder
    return meter.rate


# ---------------------------------------------------------------- MQTT


MQTT_WINDOW = 1000  # Receive Maximum of both sides: messages the broker sends ahead of acks
MQTT = {"port": 1883}


def start_mosquitto(folder: Path) -> subprocess.Popen[bytes]:
    """The machine's Mosquitto queues at most 1000 messages for an offline session (its
    default), which made the MQTT runs 1000-message bursts; this one queues them all."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (folder / "mosquitto.conf").write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(folder / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            MQTT["port"] = port
            return broker
        except OSError:
            time.sleep(0.1)
    broker.kill()
    raise RuntimeError("the bench's Mosquitto did not start")


def mqtt_session(client_id: str) -> aiomqtt.Client:
    """MQTT 5 persistent session; the bare loop and the connector both use MQTT 5 (with
    3.1.1 Mosquitto sends at most 20 unacknowledged messages, which caps any consumer
    that acknowledges only after storing)."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = MQTT_WINDOW
    properties.SessionExpiryInterval = 3600
    return aiomqtt.Client("127.0.0.1", MQTT["port"], identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5,
                          clean_start=False, properties=properties)


async def mqtt_fill(client_id: str, topic: str, n: int) -> None:
    async with mqtt_session(client_id) as c:
        await c.subscribe(topic, qos=1)  # creates the persistent session that queues for us
    async with aiomqtt.Client("127.0.0.1", MQTT["port"]) as pub:
        for i in range(n):
            await pub.publish(topic, payload(i), qos=1)


async def mqtt_bare(n: int) -> float:
    client_id, topic = f"bench-bare-{uuid.uuid4().hex[:6]}", f"bench/{uuid.uuid4().hex[:6]}"
    await mqtt_fill(client_id, topic, n)
    meter = Meter(n)
    async with mqtt_session(client_id) as c:
        await c.subscribe(topic, qos=1)
        async for message in c.messages:  # paho acknowledges QoS 1 on receipt
            json.loads(message.payload)
            meter.tick()
            if meter.done.is_set():
                break
    return meter.rate


async def mqtt_flowyard(n: int, folder: Path, concurrency: int) -> float:
    client_id, topic = f"bench-fy-{uuid.uuid4().hex[:6]}", f"bench/{uuid.uuid4().hex[:6]}"
    await mqtt_fill(client_id, topic, n)
    options = {"host": "127.0.0.1", "port": MQTT["port"], "topics": [topic], "client_id": client_id,
               "content_type": "application/json", "concurrency": concurrency, "protocol": "5",
               "receive_maximum": MQTT_WINDOW}
    return await through_flowyard("mqtt", options, n, folder)


# ---------------------------------------------------------------- AMQP

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def amqp_fill(queue: str, n: int) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        for i in range(n):
            await channel.default_exchange.publish(aio_pika.Message(payload(i)), routing_key=queue)


async def amqp_delete(queue: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


async def amqp_bare(n: int) -> float:
    queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    await amqp_fill(queue, n)
    meter = Meter(n)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=20)
        q = await channel.declare_queue(queue, durable=True)
        async with q.iterator() as messages:
            async for message in messages:
                json.loads(message.body)
                await message.ack()
                meter.tick()
                if meter.done.is_set():
                    break
    await amqp_delete(queue)
    return meter.rate


async def amqp_flowyard(n: int, folder: Path, concurrency: int) -> float:
    queue = f"bench-fy-{uuid.uuid4().hex[:6]}"
    await amqp_fill(queue, n)
    options = {"url": "amqp://guest@127.0.0.1:5672/", "password": "${env:BENCH_AMQP_PASSWORD}", "queue": queue,
               "content_type": "application/json", "concurrency": concurrency}
    try:
        return await through_flowyard("amqp", options, n, folder)
    finally:
        await amqp_delete(queue)


# ---------------------------------------------------------------- NATS


async def nats_fill(stream: str, subject: str, n: int) -> None:
    client = await nats.connect("nats://127.0.0.1:4222")
    js = client.jetstream()
    await js.add_stream(name=stream, subjects=[subject])
    for i in range(n):
        await js.publish(subject, payload(i))
    await client.close()


async def nats_delete(stream: str) -> None:
    client = await nats.connect("nats://127.0.0.1:4222")
    await client.jetstream().delete_stream(stream)
    await client.close()


async def nats_bare(n: int) -> float:
    stream = f"BENCHBARE{uuid.uuid4().hex[:6].upper()}"
    subject = stream.lower()
    await nats_fill(stream, subject, n)
    meter = Meter(n)
    client = await nats.connect("nats://127.0.0.1:4222")
    sub = await client.jetstream().pull_subscribe(subject, durable="bare", stream=stream)
    while not meter.done.is_set():
        for message in await sub.fetch(50, timeout=5):
            json.loads(message.data)
            await message.ack()
            meter.tick()
    await client.close()
    await nats_delete(stream)
    return meter.rate


async def nats_flowyard(n: int, folder: Path, concurrency: int) -> float:
    stream = f"BENCHFY{uuid.uuid4().hex[:6].upper()}"
    subject = stream.lower()
    await nats_fill(stream, subject, n)
    options = {"servers": ["nats://127.0.0.1:4222"], "stream": stream, "subject": subject, "durable": "flowyard",
               "content_type": "application/json", "concurrency": concurrency}
    try:
        return await through_flowyard("nats", options, n, folder)
    finally:
        await nats_delete(stream)


BENCHES: dict[str, tuple[Callable[[int], Awaitable[float]], Callable[[int, Path, int], Awaitable[float]], int]] = {
    "mqtt": (mqtt_bare, mqtt_flowyard, 5000),
    "amqp": (amqp_bare, amqp_flowyard, 5000),
    "nats": (nats_bare, nats_flowyard, 5000),
}


async def disk_alone(n: int, folder: Path, concurrency: int) -> float:
    """The file target alone (no broker, no step): `concurrency` sends in flight, each
    durable on return. The ceiling the disk puts on the full path, in the same run."""
    flow_dir = Path(tempfile.mkdtemp(dir=folder))
    (flow_dir / "flow.yaml").write_text("", encoding="utf-8")
    target = FileTarget(FileTargetOptions(path="out", name="{{ key }}.json"),
                        FlowContext(flow_file=flow_dir / "flow.yaml", flow_name="disk"))
    meter = Meter(n)
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            await target.send(Message(payload=payload(i), content_type="application/json"), f"m{i}")
            meter.tick()

    await asyncio.gather(*(one(i) for i in range(n)))
    return meter.rate


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


async def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="messages per run (default per broker)")
    parser.add_argument("--n-ordered", type=int, default=500, help="messages for the concurrency 1 run (slow: one flush each)")
    parser.add_argument("--only", default="mqtt,amqp,nats")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per broker, sides interleaved; medians shown")
    parser.add_argument("--out", default=None, help="folder for the file target (default: a temporary folder)")
    parser.add_argument("--concurrency", type=int, default=256, help="the source's concurrency for the second run")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_AMQP_PASSWORD", "guest")
    folder = Path(args.out or tempfile.mkdtemp(prefix="flowyard-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"file target writes under {folder}; load average at start {os.getloadavg()}")
    c = args.concurrency
    print(f"{'broker':<6} {'n':>5} {'bare':>6} | {'source only':>11} {'ratio':>5} | {'full c=1':>8} {'ratio':>5}"
          f" | {f'full c={c}':>10} {'ratio':>5} | {'append':>7} {'ratio':>5} | {f'disk c={c}':>10}"
          f"   (msgs/s, medians of {args.rounds} rounds)")
    broker = start_mosquitto(folder) if "mqtt" in args.only else None
    try:
        for name in args.only.split(","):
            bare, flowyard, default_n = BENCHES[name]
            n = args.n or default_n
            rates: dict[str, list[float]] = {k: [] for k in ("bare", "alone", "ordered", "concurrent", "append", "disk")}
            for _ in range(args.rounds):
                rates["bare"].append(await bare(n))
                SOURCE_ONLY["on"] = True
                rates["alone"].append(await flowyard(n, folder, 1))
                SOURCE_ONLY["on"] = False
                rates["ordered"].append(await flowyard(min(n, args.n_ordered), folder, 1))
                rates["concurrent"].append(await flowyard(n, folder, c))
                MODE["append"] = True
                rates["append"].append(await flowyard(n, folder, c))
                MODE["append"] = False
                rates["disk"].append(await disk_alone(n, folder, c))
            bare_rate, alone, ordered, concurrent, append, disk = (median(rates[k]) for k in rates)
            print(
                f"{name:<6} {n:>5} {bare_rate:>6.0f} | {alone:>11.0f} {alone / bare_rate:>5.2f} | {ordered:>8.0f}"
                f" {ordered / bare_rate:>5.2f} | {concurrent:>10.0f} {concurrent / bare_rate:>5.2f}"
                f" | {append:>7.0f} {append / bare_rate:>5.2f} | {disk:>10.0f}",
                flush=True,
            )
            rounds = zip(rates["append"], rates["bare"], strict=True)  # the spread, not only the median
            print(f"{'':<13}append / bare per round: {', '.join(f'{a / b:.2f}' for a, b in rounds)}", flush=True)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait()
    print(f"took {time.perf_counter() - started:.0f} s; load average at end {os.getloadavg()}")
    if not args.out:  # only now: deleting earlier runs' files slows the next run's creates
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
