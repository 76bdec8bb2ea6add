"""Circuit breakers are shared through the store: an endpoint one worker found down is
held back by every worker, without each spending attempts of its own to find out."""

from __future__ import annotations

from pathlib import Path

from rthelp import HTTP_TARGET, RecordingServer, order, runtime_for, until, write_flow
from sqlalchemy import select

from flowyard.message import Message
from flowyard.operations.snapshots import take
from flowyard.runtime.runtime import RuntimeConfig
from flowyard.store.api import Store
from flowyard.store.models import Attempt, Breaker


def config(flows: Path) -> RuntimeConfig:
    return RuntimeConfig(flows_dir=flows, rescan=0.2, idle_poll=0.05, lease_ttl=10.0,
                         grace=5.0, run_sources=False, processors=1, breaker_threshold=3,
                         breaker_cooldown=120.0, breaker_sync=0.1)


def seed(store: Store, version: str, numbers: range) -> None:
    store.accept_many([Message(payload=order(n), content_type="application/json",
                               flow="orders", flow_version=version) for n in numbers])


def deliver_attempts(store: Store) -> list[tuple[str, bool]]:
    with store.session() as session:
        return [(a.worker, a.ok) for a in session.scalars(
            select(Attempt).where(Attempt.kind == "deliver"))]


async def test_a_breaker_one_worker_opened_holds_back_the_other_worker(
        tmp_path: Path, pg_store: Store, http_target: RecordingServer) -> None:
    flows = tmp_path / "flows"
    path = write_flow(flows, targets=HTTP_TARGET.format(url=http_target.url, timeout="5s",
                                                         attempts=50))
    version = take(path).version
    http_target.down = True  # the ERP is dead
    first = runtime_for(pg_store, config(flows))
    second = runtime_for(pg_store, config(flows))
    await first.start()
    try:
        seed(pg_store, version, range(5))
        await until(lambda: pg_store.count_messages(state="delivering") == 5,
                    what="the first worker processed 5")
        endpoint = first.current["orders"].targets[0].endpoint
        assert first.breakers.get(endpoint).state == "open"
        with pg_store.session() as session:
            row = session.get(Breaker, endpoint)
            assert row is not None and row.opened_by == first.worker
        await first.stop()  # the second worker alone takes the next messages
        await second.start()
        await until(lambda: second.breakers.get(endpoint).state == "open",
                    what="the second worker adopted the open breaker")
        seed(pg_store, version, range(5, 15))
        await until(lambda: pg_store.count_messages(state="delivering") == 15,
                    what="the second worker processed 10")
    finally:
        await first.stop()
        await second.stop()
    attempts = deliver_attempts(pg_store)
    # failures only by the first worker (its first batch went out at once, before the
    # breaker opened); the second worker made no attempt at all
    assert attempts and {a for a in attempts} == {(first.worker, False)}
    assert not [a for a in attempts if a[0] == second.worker]
    detail = pg_store.list_messages(limit=1)[0]  # the newest: one of the second worker's
    message = pg_store.message(detail.id)
    assert message is not None
    assert "circuit open" in (message.deliveries[0].last_error or "")
    assert http_target.applied == {}  # nothing lost either: all 15 wait as pending
    assert sum(1 for m in pg_store.list_messages(limit=100)
               if m.state == "delivering") == 15
