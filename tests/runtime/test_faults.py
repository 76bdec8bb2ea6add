"""Faults while the runtime works: the database restarts, the store refuses writes, the
target is slow. In each, count what was accepted and what was delivered: nothing lost,
nothing applied twice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
from rthelp import HTTP_TARGET, PG_ADMIN, RecordingServer, order, runtime_for, until, write_flow

from flowyard.message import Message
from flowyard.operations.snapshots import take
from flowyard.runtime.runtime import RuntimeConfig
from flowyard.store.api import Store


def admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(sql)


def terminate(database: str) -> None:
    admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
          f"WHERE datname = '{database}' AND pid <> pg_backend_pid()")


def config(flows: Path, **kw: object) -> RuntimeConfig:
    base: dict[str, object] = dict(flows_dir=flows, rescan=0.2, idle_poll=0.05, lease_ttl=5.0,
                                   grace=10.0, breaker_cooldown=0.3)
    base.update(kw)
    return RuntimeConfig(**base)  # type: ignore[arg-type]


def applied_orders(server: RecordingServer) -> list[int]:
    return sorted(json.loads(body)["order"] for body in server.applied.values())


async def test_database_restart_mid_run_loses_and_duplicates_nothing(
        tmp_path: Path, pg_store: Store, pg_url: str, http_target: RecordingServer) -> None:
    database = pg_url.rsplit("/", 1)[1]
    flows = tmp_path / "flows"
    path = write_flow(flows, targets=HTTP_TARGET.format(url=http_target.url, timeout="5s",
                                                         attempts=50))
    version = take(path).version
    count = 800
    pg_store.accept_many([Message(payload=order(n), content_type="application/json",
                                  flow="orders", flow_version=version) for n in range(count)])
    runtime = runtime_for(pg_store, config(flows, batch=20))
    await runtime.start()
    try:
        for threshold in (150, 450):
            await until(lambda t=threshold: pg_store.count_messages(state="done") >= t,
                        what=f"{threshold} done")  # type: ignore[misc]
            await asyncio.to_thread(terminate, database)  # every connection dropped
        await until(lambda: pg_store.count_messages(state="done") == count, timeout=120,
                    what="all done after the restarts")
    finally:
        await runtime.stop()
    assert len(http_target.applied) == count
    assert applied_orders(http_target) == list(range(count))
    assert pg_store.dead_letters() == []


async def test_store_refusing_writes_keeps_files_upstream_until_it_recovers(
        tmp_path: Path, pg_store: Store, pg_url: str, http_target: RecordingServer) -> None:
    database = pg_url.rsplit("/", 1)[1]
    flows = tmp_path / "flows"
    write_flow(flows, targets=HTTP_TARGET.format(url=http_target.url, timeout="5s",
                                                  attempts=10))
    runtime = runtime_for(pg_store, config(flows))
    await runtime.start()
    try:
        await until(lambda: "orders" in runtime.sources, what="source running")
        admin(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        await asyncio.to_thread(terminate, database)  # new sessions are read-only
        for n in range(25):
            (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
        await until(lambda: runtime.sources.get("orders") is not None
                    and runtime.sources["orders"][0].health.last_error, what="source failing")
        await asyncio.sleep(1.0)
        # nothing could be stored, so nothing was acknowledged: all files still upstream
        assert len(list((flows / "inbox").glob("*.json"))) == 25
        admin(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        # drop every session that may still carry the read-only default, including one
        # that was still connecting during the first sweep
        await asyncio.to_thread(terminate, database)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(terminate, database)
        await until(lambda: pg_store.count_messages(state="done") == 25, timeout=150,
                    what="all 25 done after the store recovered")
    finally:
        admin(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        await runtime.stop()
    assert pg_store.count_messages() == 25  # each file stored once
    assert applied_orders(http_target) == list(range(25))
    assert sorted(p.name for p in (flows / "inbox" / "archive").iterdir()) == sorted(
        f"o{n}.json" for n in range(25))


async def test_a_slow_target_times_out_is_retried_with_the_same_key_then_catches_up(
        tmp_path: Path, sqlite_store: Store, http_target: RecordingServer) -> None:
    flows = tmp_path / "flows"
    write_flow(flows, targets=HTTP_TARGET.format(url=http_target.url, timeout="300ms",
                                                  attempts=100))
    http_target.delay = 0.8  # slower than the target's timeout: every attempt times out
    for n in range(20):
        (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
    runtime = runtime_for(sqlite_store, config(flows, breaker_threshold=1000))
    await runtime.start()
    try:
        await until(lambda: sum(http_target.requests.values()) >= 20,
                    what="the slow target saw every message")
        await asyncio.sleep(1.0)
        http_target.delay = 0.0
        await until(lambda: sqlite_store.count_messages(state="done") == 20, timeout=90,
                    what="all done once the target is fast again")
    finally:
        await runtime.stop()
    assert sum(http_target.requests.values()) > 20  # timed-out attempts were repeated...
    assert applied_orders(http_target) == list(range(20))  # ...and applied once each


async def test_a_slow_target_within_its_timeout_keeps_the_lease_by_heartbeat(
        tmp_path: Path, sqlite_store: Store, http_target: RecordingServer) -> None:
    flows = tmp_path / "flows"
    write_flow(flows, targets=HTTP_TARGET.format(url=http_target.url, timeout="10s",
                                                  attempts=3))
    http_target.delay = 2.5  # longer than the lease; the heartbeat must keep it
    for n in range(5):
        (flows / "inbox" / f"o{n}.json").write_bytes(order(n))
    runtime = runtime_for(sqlite_store, config(flows, lease_ttl=1.0, heartbeat=0.2))
    await runtime.start()
    try:
        await until(lambda: sqlite_store.count_messages(state="done") == 5, timeout=60,
                    what="5 done")
        refused = runtime.metrics.refused._value.get()
    finally:
        await runtime.stop()
    assert refused == 0
    assert sum(http_target.requests.values()) == 5
    assert applied_orders(http_target) == list(range(5))
