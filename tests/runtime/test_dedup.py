"""Source deduplication: an item handed in again (same `source["key"]`) is stored once.

The fault test runs real `flowyard worker` processes with a real file source and a real
NATS JetStream source; `FLOWYARD_FAULT=exit-after-commit` makes each run die right after
a commit that stored something new, before the source acknowledged it (file still in
the inbox, JetStream message unacknowledged). After a clean restart every upstream item
must be stored exactly once and applied exactly once at the target."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from rthelp import HTTP_TARGET, RecordingServer, order, wait_sync, write_flow
from sqlalchemy import func, select

from flowyard.message import Message
from flowyard.store.api import Store
from flowyard.store.models import Delivery, SourceKey

FLOWYARD = str(Path(sys.executable).parent / "flowyard")


def keyed(n: int, key: str | None, flow: str = "orders") -> Message:
    source: dict[str, Any] = {"connector": "test"}
    if key is not None:
        source["key"] = key
    return Message(payload=order(n), content_type="application/json", flow=flow,
                   source=source)


def check_dedup(store: Store) -> None:
    first = keyed(1, "inbox/a.json:12:1700000000")
    assert store.accept(first) == first.id
    again = keyed(1, "inbox/a.json:12:1700000000")
    assert store.accept(again) == first.id  # success, the stored message's id
    assert again.id == first.id
    other_flow = keyed(1, "inbox/a.json:12:1700000000", flow="other")
    assert store.accept(other_flow) != first.id  # keys are per flow
    # in one batch: a key already stored, the same new key twice, and unkeyed messages
    batch = [keyed(2, "inbox/a.json:12:1700000000"), keyed(3, "b"), keyed(4, "b"),
             keyed(5, None), keyed(6, None)]
    ids = store.accept_many(batch)
    assert ids[0] == first.id and ids[1] == ids[2] and len(set(ids)) == 4
    assert store.count_messages(flow="orders") == 4  # a, b and the two unkeyed
    assert store.count_messages(flow="other") == 1
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(SourceKey)) == 3
    replay = keyed(1, "inbox/a.json:12:1700000000")
    replay.headers["replay_of"] = first.id
    assert store.accept(replay) != first.id  # a replay is a deliberate second run


def test_accept_stores_a_keyed_item_once_on_sqlite(sqlite_store: Store) -> None:
    check_dedup(sqlite_store)


def test_accept_stores_a_keyed_item_once_on_postgresql(pg_store: Store) -> None:
    check_dedup(pg_store)


# -- the fault test ----------------------------------------------------------------

NATS_FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {{name: counts}}
source:
  nats:
    servers: ["nats://{host}:{port}"]
    stream: {stream}
    subject: "{subject}"
    durable: fy-dedup
    ack_wait: 1s
    batch: 10
steps:
  - json.parse: {{}}
  - name: render
    jinja:
      template: '{{"order": {{{{ id }}}}, "qty": {{{{ qty }}}}}}'
      content_type: application/json
targets:
{targets}
"""


@pytest.fixture
def nats_stream(require_service: Any) -> Iterator[tuple[str, int, str, str]]:
    host, port = require_service("nats")
    stream = f"FYDEDUP{uuid.uuid4().hex[:6].upper()}"
    subject = f"fydedup.{stream.lower()}"

    async def make() -> None:
        client = await nats.connect(f"nats://{host}:{port}")
        try:
            await client.jetstream().add_stream(name=stream, subjects=[subject])
        finally:
            await client.close()

    asyncio.run(make())
    yield host, port, stream, subject

    async def drop() -> None:
        client = await nats.connect(f"nats://{host}:{port}")
        try:
            await client.jetstream().delete_stream(stream)
        finally:
            await client.close()

    asyncio.run(drop())


def publish(host: str, port: int, subject: str, numbers: range) -> None:
    async def send() -> None:
        client = await nats.connect(f"nats://{host}:{port}")
        try:
            js = client.jetstream()
            for n in numbers:
                await js.publish(subject, order(n))
        finally:
            await client.close()

    asyncio.run(send())


def run_worker(tmp: Path, url: str, flows: Path, fault: bool,
               name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWYARD_DATABASE_URL": url, "FLOWYARD_DATA_DIR": str(tmp / "data")}
    env.pop("FLOWYARD_FAULT", None)
    if fault:
        env["FLOWYARD_FAULT"] = "exit-after-commit"
    log = open(tmp / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen([FLOWYARD, "worker", "--deploy-new", "--flows", str(flows), "--lease", "3",
                             "--text-logs"], env=env, stdout=log, stderr=log)


@pytest.mark.slow
def test_a_crash_between_commit_and_acknowledgment_stores_each_item_once(
        tmp_path: Path, sqlite_store: Store, sqlite_url: str, http_target: RecordingServer,
        nats_stream: tuple[str, int, str, str]) -> None:
    host, port, stream, subject = nats_stream
    flows = tmp_path / "flows"
    targets = HTTP_TARGET.format(url=http_target.url, timeout="5s", attempts=20)
    write_flow(flows, targets=targets)
    (flows / "counts.yaml").write_text(NATS_FLOW.format(
        host=host, port=port, stream=stream, subject=subject, targets=targets))
    files = range(0, 6)
    messages = range(100, 106)
    for n in files:
        (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
    publish(host, port, subject, messages)
    items = len(files) + len(messages)

    crashes = 0
    for run in range(4):  # each run dies right after storing something new
        proc = run_worker(tmp_path, sqlite_url, flows, True, f"fault{run}")
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        assert code == 70, (tmp_path / f"fault{run}.log").read_text()[-3000:]
        crashes += 1
        stored = sqlite_store.count_messages()
        assert 0 < stored < items
        if run == 0:  # the hazard is real: stored, yet nothing was acknowledged upstream
            assert len(list((flows / "inbox").glob("*.json"))) == len(files)
    proc = run_worker(tmp_path, sqlite_url, flows, False, "clean")
    try:
        wait_sync(lambda: sqlite_store.count_messages(state="done") >= items, timeout=120,
                  what=f"all {items} items done")
        wait_sync(lambda: not list((flows / "inbox").glob("*.json")), timeout=30,
                  what="every file acknowledged (archived)")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert crashes == 4
    assert sqlite_store.count_messages() == items  # each upstream item stored once
    payloads = [sqlite_store.payload(s.id) for s in sqlite_store.list_messages(limit=100)]
    assert sorted(json.loads(p[0])["id"] for p in payloads if p) == [*files, *messages]
    applied = sorted(json.loads(body)["order"] for body in http_target.applied.values())
    assert applied == [*files, *messages]  # each delivered (applied) once
    with sqlite_store.session() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)
                              .where(Delivery.state == "done")) == items
    assert sqlite_store.dead_letters() == []

