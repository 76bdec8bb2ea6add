"""Workers on PostgreSQL wake at once for work another process stores or hands back
(LISTEN/NOTIFY), instead of at their next poll: here the poll never comes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from rthelp import PG_ADMIN, order, until, write_flow

from flowyard.message import Message
from flowyard.operations import deployments
from flowyard.runtime.runtime import Runtime, RuntimeConfig
from flowyard.store import queue
from flowyard.store.api import Store
from flowyard.store.database import make_engine


class Setup:
    def __init__(self, flows: Path, pg_store: Store, pg_url: str) -> None:
        self.version = deployments.deploy(pg_store, write_flow(flows), who="test").version
        self.runtime = Runtime(pg_store, RuntimeConfig(
            flows_dir=flows, rescan=0.2, idle_poll=3600.0, lease_ttl=5.0, grace=5.0))
        self.store = pg_store
        self.other = Store(make_engine(pg_url))  # another process's: it cannot set our wake
        self.database = pg_url.rsplit("/", 1)[1]

    def store_elsewhere(self, *numbers: int) -> list[str]:
        return self.other.accept_many([Message(payload=order(n), content_type="application/json",
                                               flow="orders", flow_version=self.version)
                                       for n in numbers])

    def listeners(self, terminate: bool = False) -> int:
        action = "pg_terminate_backend(pid)" if terminate else "pid"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            return len(admin.execute(
                f"SELECT {action} FROM pg_stat_activity WHERE datname = %s"
                " AND query = 'LISTEN flowyard_work'", (self.database,)).fetchall())

    def done(self) -> int:
        return self.store.count_messages(state="done")


@pytest.fixture
async def setup(tmp_path: Path, pg_store: Store, pg_url: str) -> AsyncIterator[Setup]:
    s = Setup(tmp_path / "flows", pg_store, pg_url)
    try:
        yield s
    finally:
        await s.runtime.stop()
        s.other.engine.dispose()


async def asleep(s: Setup) -> None:
    await s.runtime.start()
    await until(lambda: "orders" in s.runtime.current and s.listeners() == 1, what="listening")
    await until(lambda: not s.runtime.wake.is_set(), what="loops asleep")


async def test_a_worker_wakes_for_messages_another_process_stores(setup: Setup) -> None:
    await asleep(setup)
    setup.store_elsewhere(1, 2, 3)
    await until(lambda: setup.done() == 3, timeout=30, what="three messages done")


async def test_a_worker_wakes_for_work_another_worker_hands_back(setup: Setup) -> None:
    setup.store_elsewhere(1)
    held = queue.claim_messages(setup.other.engine, "elsewhere:1:x", ["orders"], 10, 3600)
    assert len(held) == 1
    await asleep(setup)  # nothing it may claim: the one message is leased for an hour
    assert setup.done() == 0
    assert queue.release(setup.other.engine, ["elsewhere:1:x"]) == 1  # a graceful stop
    await until(lambda: setup.done() == 1, timeout=30, what="the handed-back message done")


async def test_a_lost_listening_connection_is_opened_again(setup: Setup) -> None:
    await asleep(setup)
    assert setup.listeners(terminate=True) == 1
    await until(lambda: setup.listeners() == 1, what="listening again")
    setup.store_elsewhere(1)
    await until(lambda: setup.done() == 1, timeout=30, what="the message done")
