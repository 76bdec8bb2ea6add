"""A claim reads the oldest open messages in index order and stops: its cost follows the
batch, not the history of done messages or the backlog (no sort of the open messages)."""

from __future__ import annotations

import time

import pytest
from rthelp import order
from sqlalchemy import text, update
from sqlalchemy.engine import Connection

from flowyard.message import Message
from flowyard.runtime import queue
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
    assert "Sort" not in shown and "Bitmap" not in shown, shown
    if statistics:  # with statistics the planner takes the index of open messages only
        assert OPEN_INDEX in shown, shown


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
