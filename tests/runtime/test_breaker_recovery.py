"""Breakers let parked deliveries move soon after the endpoint recovers (issue 17 item 4):
a failed trial doubles the wait only up to `breaker_max_cooldown`, so a trial goes at
least that often however long the endpoint was down; a trial that goes through releases
every delivery parked behind the breaker in the store (whatever worker parked it), and a
worker whose shared breaker was closed by another's trial closes its own.

The intervals are scaled down (a 1 s cap standing for the default 30 s) so the tests
run in seconds; the bounds are generous."""

from __future__ import annotations

import logging
import time
from itertools import pairwise
from pathlib import Path

import pytest
from rthelp import HTTP_TARGET, RecordingServer, order, runtime_for, until, write_flow
from sqlalchemy import insert, select

from flowyard.operations.snapshots import take
from flowyard.runtime.policy import Breakers
from flowyard.runtime.runtime import RuntimeConfig
from flowyard.store.api import Store
from flowyard.store.breakers import PARKED, sync
from flowyard.store.models import Attempt, Delivery, StoredMessage

MAX_COOLDOWN = 1.0


def config(flows: Path, **kw: object) -> RuntimeConfig:
    base: dict[str, object] = dict(flows_dir=flows, rescan=0.2, idle_poll=0.05, lease_ttl=10.0, grace=5.0,
                                   run_sources=False, breaker_threshold=3, breaker_cooldown=0.1,
                                   breaker_max_cooldown=MAX_COOLDOWN, breaker_sync=0.2)
    base.update(kw)
    return RuntimeConfig(**base)  # type: ignore[arg-type]


def seed(store: Store, version: str, numbers: range) -> None:
    from flowyard.message import Message

    store.accept_many([Message(payload=order(n), content_type="application/json",
                               flow="orders", flow_version=version) for n in numbers])


def failed_attempt_times(store: Store) -> list[float]:
    with store.session() as session:
        return sorted(a.started_at for a in session.scalars(
            select(Attempt).where(Attempt.kind == "deliver", Attempt.ok.is_(False))))


async def test_parked_deliveries_move_within_the_cap_of_the_endpoint_recovering(
        tmp_path: Path, sqlite_store: Store, http_target: RecordingServer,
        caplog: pytest.LogCaptureFixture) -> None:
    flows = tmp_path / "flows"
    path = write_flow(flows, targets=HTTP_TARGET.format(url=http_target.url, timeout="5s", attempts=1000))
    version = take(path).version
    http_target.down = True
    runtime = runtime_for(sqlite_store, config(flows))
    await runtime.start()
    caplog.set_level(logging.INFO, logger="flowyard.runtime")
    try:
        seed(sqlite_store, version, range(30))
        endpoint = runtime.current["orders"].targets[0].endpoint
        breaker = runtime.breakers.get(endpoint)
        # down long enough for the wait to have doubled past the cap many times over
        await until(lambda: breaker.current_cooldown == MAX_COOLDOWN, what="the cooldown at its cap")
        # the first batch's 30 first attempts fail together; then one trial at a time
        await until(lambda: len(failed_attempt_times(sqlite_store)) >= 30 + 5, timeout=30,
                    what="several trials, the last ones at the cap")
        assert breaker.current_cooldown == MAX_COOLDOWN
        recovered = time.monotonic()
        http_target.down = False
        await until(lambda: sqlite_store.count_messages(state="done") == 30,
                    timeout=MAX_COOLDOWN + 15, what="all 30 delivered after the recovery")
        took = time.monotonic() - recovered
    finally:
        await runtime.stop()
    assert len(http_target.applied) == 30 and not sqlite_store.dead_letters()
    trials = failed_attempt_times(sqlite_store)[29:]  # from the first batch's last failure
    gaps = [b - a for a, b in pairwise(trials)]
    assert len(gaps) >= 5
    assert min(gaps) > 0.1  # one trial at a time: the parked deliveries spent no attempts
    assert max(gaps) < MAX_COOLDOWN + 3  # a trial at least every cap (plus slack)
    assert took < MAX_COOLDOWN + 10  # a generous bound; before, a trial could be 5 minutes away
    assert f"circuit closed for {endpoint}" in caplog.text


def parked_row(store: Store, message_id: str, endpoint: str, error: str, next_at: float) -> None:
    now = time.time()
    with store.engine.begin() as connection:
        connection.execute(insert(StoredMessage).values(
            id=message_id, correlation_id=message_id, flow="orders", flow_version="v", state="delivering",
            payload=b"{}", content_type="application/json", created_at=now, updated_at=now))
        connection.execute(insert(Delivery).values(
            message_id=message_id, output_id=message_id, target="erp", endpoint=endpoint,
            idempotency_key=message_id, flow="orders", flow_version="v", state="pending", attempts=1,
            next_at=next_at, last_error=error, created_at=now, updated_at=now))


def test_a_closing_releases_only_the_deliveries_parked_behind_that_breaker(sqlite_store: Store) -> None:
    later = time.time() + 3600
    parked_row(sqlite_store, "m1", "http:erp", f"{PARKED} for http:erp", later)
    parked_row(sqlite_store, "m2", "http:erp", "HTTP 500 from http:erp", later)  # its own back-off
    parked_row(sqlite_store, "m3", "http:other", f"{PARKED} for http:other", later)
    opened = sync(sqlite_store.engine, "w1", [("http:erp", later, 30.0), ("http:other", later, 30.0)], [])
    assert {e for e, _u, _c in opened} == {"http:erp", "http:other"}
    before = time.time()
    still_open = sync(sqlite_store.engine, "w2", [], ["http:erp"])
    assert [e for e, _u, _c in still_open] == ["http:other"]
    with sqlite_store.session() as session:
        due = {d.message_id: d.next_at for d in session.scalars(select(Delivery))}
    assert before <= due["m1"] <= time.time()  # due now
    assert due["m2"] == later and due["m3"] == later


def test_a_breaker_closed_by_another_worker_closes_here_and_the_wait_is_capped() -> None:
    breakers = Breakers(threshold=2, cooldown=1.0, max_cooldown=4.0)
    burst = breakers.get("http:burst")
    for _ in range(30):  # a batch's first attempts failing together open it once
        burst.failure(50.0)
    assert burst.state == "open" and burst.current_cooldown == 1.0 and burst.open_until == 51.0
    erp, mes, fresh, old = (breakers.get(e) for e in ("http:erp", "http:mes", "http:new", "http:old"))
    for breaker, at in ((erp, 100.0), (mes, 115.9), (fresh, 115.9), (old, 100.0)):
        breaker.failure(at)
        breaker.failure(at)
    assert erp.state == "open" and erp.open_until == 101.0
    for at in (101.0, 103.0, 107.0, 111.0, 115.0):  # failed trials: 2, 4, then at most 4
        assert erp.allow(at)
        erp.failure(at)
    assert erp.current_cooldown == 4.0 and erp.open_until == 119.0
    breakers.opened.clear()
    breakers.opened["http:new"] = fresh  # opened here, not yet told to the store
    closed = breakers.closed_elsewhere({"http:mes"}, now=116.0)
    assert closed == ["http:erp"] and erp.state == "closed" and erp.allow(116.0)
    assert mes.state == "open"  # the store holds it open
    assert fresh.state == "open"  # opened here and not yet told: kept
    assert old.state == "open" and old.allow(116.0)  # past its time: it sends its own trial
