"""A claim reads the oldest open messages in index order and stops: its cost follows the
batch, not the history of done messages or the backlog (no sort of the open messages)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from rthelp import order
from sqlalchemy import text, update
from sqlalchemy.engine import Connection

from flowyard.message import Message
from flowyard.store import queue
from flowyard.store.api import Store
from flowyard.store.models import OPEN_INDEX, StoredMessage


def history(store: Store, done: int, open_: int) -> None:
    """`done` finished messages, older than `open_` waiting ones."""
    store.accept_many([Message(payload=order(i), content_type="application/json", flow="orders",
                               flow_version="v1") for i in range(done + open_)])
    with store.engine.begin() as c:
        oldest = c.execute(text("SELECT id FROM fy_messages ORDER BY created_at LIMIT :n"), {"n": done})
        ids = [row[0] for row in oldest]
        c.execute(update(StoredMessage).where(StoredMessage.id.in_(ids)).values(state="done"))


def plan(connection: Connection, explain: str) -> str:
    statement = queue.claimable(["orders"], 50, time.time(), connection.dialect.name)
    compiled = statement.compile(connection, compile_kwargs={"literal_binds": True})
    return "\n".join(str(row[-1]) for row in connection.execute(text(f"{explain} {compiled}")))


@pytest.mark.parametrize("statistics", [False, True], ids=["new-store", "analysed"])
def test_a_postgresql_claim_is_an_ordered_index_scan(pg_store: Store, statistics: bool) -> None:
    history(pg_store, done=3000, open_=2000)
    with pg_store.engine.begin() as c:
        if statistics:
            c.execute(text("ANALYZE fy_messages"))
        queue.no_flush(c, ordered_scan=True)  # the claim's own transaction settings
        shown = plan(c, "EXPLAIN")
    assert OPEN_INDEX in shown and "Sort" not in shown and "Bitmap" not in shown, shown


def test_a_sqlite_claim_uses_the_index_of_open_messages(sqlite_store: Store) -> None:
    history(sqlite_store, done=300, open_=200)
    with sqlite_store.engine.begin() as c:
        shown = plan(c, "EXPLAIN QUERY PLAN")
    assert OPEN_INDEX in shown and "TEMP B-TREE" not in shown, shown


@pytest.mark.parametrize("backend", ["sqlite_store", "pg_store"])
def test_claims_take_the_oldest_open_messages_first(request: pytest.FixtureRequest, backend: str) -> None:
    store: Store = request.getfixturevalue(backend)
    history(store, done=30, open_=20)
    with store.engine.connect() as c:
        waiting = [r[0] for r in c.execute(text(
            "SELECT id FROM fy_messages WHERE state = 'received' ORDER BY created_at"))]
    first = queue.claim_messages(store.engine, "host:1:a", ["orders"], 5, 30)
    second = queue.claim_messages(store.engine, "host:2:b", ["orders"], 50, 30)
    assert sorted(c.id for c in first) == sorted(waiting[:5])
    assert sorted(c.id for c in second) == sorted(waiting[5:])


def hot_updates(store: Store, expected: int) -> tuple[int, int]:
    """(updates, HOT updates) of fy_messages, once the server's statistics show `expected`
    updates (a backend reports its counters when it goes idle, so they lag a little)."""
    deadline = time.monotonic() + 10
    while True:
        with store.engine.connect() as c:
            row = c.execute(text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                                 " WHERE relname = 'fy_messages'")).one()
        if row[0] >= expected or time.monotonic() > deadline:
            return int(row[0]), int(row[1])
        time.sleep(0.1)


def test_a_postgresql_claim_adds_no_index_entries(pg_store: Store) -> None:
    """A claim changes only the lease: PostgreSQL writes it as a HOT update, on the same
    page, with no new entry in any index of the table (before: 7 per message)."""
    pg_store.accept_many([Message(payload=order(i), content_type="application/json",
                                  flow="orders", flow_version="v1") for i in range(400)])
    before, _ = hot_updates(pg_store, 0)
    claimed = queue.claim_messages(pg_store.engine, "host:1:a", ["orders"], 400, 30)
    assert len(claimed) == 400
    updates, hot = hot_updates(pg_store, before + 400)
    assert (updates - before, hot) == (400, 400)


@pytest.mark.parametrize("backend", ["sqlite_store", "pg_store"])
def test_a_claimed_message_shows_as_processing(request: pytest.FixtureRequest, backend: str) -> None:
    """`processing` is not stored (the claim leaves `state` alone) but everything users see
    shows it: a message's state, the filters, the counts, the dashboard, the metrics."""
    from flowyard.runtime.metrics import Metrics

    store: Store = request.getfixturevalue(backend)
    ids = store.accept_many([Message(payload=order(i), content_type="application/json",
                                     flow="orders", flow_version="v1") for i in range(3)])
    claimed = queue.claim_messages(store.engine, "host:1:a", ["orders"], 2, 30)
    held = {c.id for c in claimed}
    waiting = set(ids) - held
    shown = {m.id: m.state for m in store.list_messages(limit=10)}
    assert shown == {**{i: "processing" for i in held}, **{i: "received" for i in waiting}}
    assert {m.id for m in store.list_messages(state="processing")} == held
    assert {m.id for m in store.list_messages(state="received")} == waiting
    assert {m.id for m in store.list_messages(state=["received", "processing"])} == set(ids)
    assert (store.count_messages(state="processing"), store.count_messages(state="received")) == (2, 1)
    assert store.dashboard().states == {"processing": 2, "received": 1}
    metrics = Metrics(store.engine).render().decode()
    assert 'flowyard_backlog_messages{flow="orders",state="processing"} 2.0' in metrics
    assert 'flowyard_backlog_messages{flow="orders",state="received"} 1.0' in metrics
    assert queue.backlog(store.engine) == {"orders": 3}
    with store.engine.connect() as c:  # stored: unchanged by the claim
        assert set(c.execute(text("SELECT DISTINCT state FROM fy_messages")).scalars()) == {"received"}
    assert queue.release(store.engine, ["host:1:a"]) == 2
    assert store.count_messages(state="received") == 3


@pytest.mark.parametrize("backend", ["sqlite_store", "pg_store"])
def test_messages_a_store_before_0008_left_processing(request: pytest.FixtureRequest, backend: str) -> None:
    """A store upgraded while a worker of the previous version held messages has them
    with `state = 'processing'`: they show as such, and are taken over once their lease
    lapses, like any other."""
    store: Store = request.getfixturevalue(backend)
    live, lapsed = store.accept_many([Message(payload=order(i), content_type="application/json",
                                              flow="orders", flow_version="v1") for i in range(2)])
    now = time.time()
    with store.engine.begin() as c:
        for message_id, until in ((live, now + 60), (lapsed, now - 1)):
            c.execute(update(StoredMessage).where(StoredMessage.id == message_id)
                      .values(state="processing", lease_owner="old:1:x", lease_until=until))
    assert store.count_messages(state="processing") == 2
    assert [c.id for c in queue.claim_messages(store.engine, "host:1:a", ["orders"], 10, 30)] == [lapsed]


def generic_plan(connection: Connection, statement: Any) -> str:
    """EXPLAIN of `statement` as the server runs a prepared statement after a few
    executions: one generic plan for any parameter values (psycopg prepares repeated
    statements), so a partial index must be usable without knowing them."""
    compiled = statement.compile(connection, compile_kwargs={"render_postcompile": True})
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return f"${len(names)}"

    sql = re.sub(r"%\((\w+)\)s", placeholder, str(compiled.string))
    values = ", ".join(repr(compiled.params[n]) for n in names)  # str and number literals
    connection.execute(text(f"PREPARE q AS {sql}"))
    connection.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    try:
        return "\n".join(row[0] for row in connection.execute(text(f"EXPLAIN EXECUTE q({values})")))
    finally:
        connection.execute(text("DEALLOCATE q"))


def test_postgresql_claims_use_the_partial_indexes_in_a_generic_plan(pg_store: Store) -> None:
    history(pg_store, done=2000, open_=100)
    with pg_store.engine.begin() as c:  # 30,000 deliveries made, 100 waiting for a retry
        c.execute(text(
            "INSERT INTO fy_deliveries (message_id, output_index, output_id, target, endpoint,"
            " idempotency_key, flow, flow_version, state, attempts, next_at, content_type, meta,"
            " detail, created_at, updated_at, lease_token)"
            " SELECT (SELECT min(id) FROM fy_messages), 0, n, 'out', '', n, 'orders', '',"
            " CASE WHEN n % 300 = 0 THEN 'pending' ELSE 'done' END, 1, n, 'application/json',"
            " '{}', '{}', 0, 0, 0 FROM generate_series(1, 30000) AS n"))
        c.execute(text("ANALYZE"))
        queue.no_flush(c, ordered_scan=True)
        now = time.time()
        messages = generic_plan(c, queue.claimable(["orders"], 50, now, "postgresql"))
        deliveries = generic_plan(c, queue.retryable(["orders"], 50, now))
    assert OPEN_INDEX in messages and "Sort" not in messages, messages
    assert "ix_fy_deliveries_state_next" in deliveries and "Seq Scan" not in deliveries, deliveries
