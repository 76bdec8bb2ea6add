"""Leases and fencing: a worker whose lease lapsed cannot commit; a message whose
processing keeps being interrupted is recognised as poison."""

from __future__ import annotations

import time
from pathlib import Path

from rthelp import order, runtime_for, until, write_flow

from flowyard.message import Message
from flowyard.runtime.runtime import RuntimeConfig
from flowyard.store import queue
from flowyard.store.api import Store


def seed(store: Store, n: int, version: str = "v1") -> list[str]:
    return store.accept_many([Message(payload=order(i), content_type="application/json",
                                      flow="orders", flow_version=version) for i in range(n)])


def check_fencing(store: Store) -> None:
    [mid] = seed(store, 1)
    [a] = queue.claim_messages(store.engine, "host:1:a", ["orders"], 10, 1.5)
    assert queue.claim_messages(store.engine, "host:2:b", ["orders"], 10, 30) == []  # leased
    time.sleep(1.6)
    [b] = queue.claim_messages(store.engine, "host:2:b", ["orders"], 10, 30)  # taken over
    assert b.id == mid and b.token == a.token + 1
    late = queue.ProcessOutcome(message=a, state="done", deliveries=[])
    assert queue.commit_processing(store.engine, "host:1:a", [late]) == [mid]  # refused
    assert store.message(mid).summary.state == "processing"  # type: ignore[union-attr]
    ok = queue.ProcessOutcome(message=b, state="done")
    assert queue.commit_processing(store.engine, "host:2:b", [ok]) == []
    assert store.message(mid).summary.state == "done"  # type: ignore[union-attr]


def test_a_late_commit_from_an_expired_lease_is_refused_sqlite(sqlite_store: Store) -> None:
    check_fencing(sqlite_store)


def test_a_late_commit_from_an_expired_lease_is_refused_postgresql(pg_store: Store) -> None:
    check_fencing(pg_store)


def test_an_expired_lease_nobody_took_is_refused_too(sqlite_store: Store) -> None:
    [mid] = seed(sqlite_store, 1)
    [a] = queue.claim_messages(sqlite_store.engine, "host:1:a", ["orders"], 10, 0.1)
    time.sleep(0.2)
    outcome = queue.ProcessOutcome(message=a, state="done")
    assert queue.commit_processing(sqlite_store.engine, "host:1:a", [outcome]) == [mid]


def test_heartbeat_keeps_a_lease_alive(sqlite_store: Store) -> None:
    seed(sqlite_store, 1)
    [a] = queue.claim_messages(sqlite_store.engine, "host:1:a", ["orders"], 10, 0.3)
    for _ in range(4):
        time.sleep(0.15)
        assert queue.renew_leases(sqlite_store.engine, "host:1:a", 0.3, [a.id]) == 1
    assert queue.commit_processing(sqlite_store.engine, "host:1:a",
                                   [queue.ProcessOutcome(message=a, state="done")]) == []


async def test_a_poison_message_is_dead_lettered_after_repeated_interruptions(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    runtime = runtime_for(sqlite_store, RuntimeConfig(flows_dir=flows, processors=0, max_claims=3))
    await runtime.start()
    try:
        version = runtime.current["orders"].version
        [mid] = seed(sqlite_store, 1, version)
        for _ in range(3):  # three processes died while running it
            assert queue.claim_messages(sqlite_store.engine, "gone:1:x", ["orders"], 1, 0.0)
            time.sleep(0.01)
        [claimed] = queue.claim_messages(sqlite_store.engine, runtime.worker, ["orders"], 1, 30)
        assert claimed.token == 4
        await runtime.process_batch([claimed])
    finally:
        await runtime.stop()
    [dead] = sqlite_store.dead_letters()
    assert dead.message_id == mid and "poison message" in dead.reason
    assert sqlite_store.message(mid).summary.state == "dead"  # type: ignore[union-attr]
    assert not (flows / "out").exists()  # it never reached the steps or the target


async def test_back_pressure_holds_the_source(tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    for n in range(30):
        (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
    runtime = runtime_for(sqlite_store, RuntimeConfig(flows_dir=flows, processors=0,
                                                  backlog_limit=10, rescan=0.2))
    await runtime.start()
    try:
        await until(lambda: sqlite_store.count_messages() >= 10, what="10 stored")
        time.sleep(0.5)
        stored = sqlite_store.count_messages()
        assert stored == 10  # nothing processes, so the source waits at the bound
        assert len(list((flows / "inbox").glob("*.json"))) == 20  # the rest stays upstream
    finally:
        await runtime.stop()
