"""Retention: old traces, finished messages (with their deliveries, attempts and
resolved dead letters) and deduplication keys are purged; recent ones are kept; an
unresolved dead letter and its message are never purged, whatever their age."""

from __future__ import annotations

import time

from sqlalchemy import func, insert, select, update

from flowyard.message import Message
from flowyard.store.api import Store, write_transaction
from flowyard.store.models import (
    Attempt,
    DeadLetter,
    Delivery,
    MessageTrace,
    SourceKey,
    StoredMessage,
)
from flowyard.store.retention import purge

DAY = 86400.0


def add(store: Store, name: str, *, age_days: float, state: str,
        dead_letter: str | None = None, key: str | None = None) -> str:
    """A message `age_days` old in `state`, with a trace, an attempt, a delivery and
    optionally a dead letter (status `dead_letter`) and a source key."""
    message = Message(payload=b'{"n": 1}', content_type="application/json", flow="orders",
                      source={"key": key} if key else {})
    message.id = name
    store.accept(message)
    at = time.time() - age_days * DAY
    finished = at if state in ("done", "dropped", "dead") else None
    with write_transaction(store.engine) as c:
        c.execute(update(StoredMessage).where(StoredMessage.id == name).values(
            state=state, created_at=at, updated_at=at, finished_at=finished))
        c.execute(update(SourceKey).where(SourceKey.message_id == name).values(created_at=at))
        c.execute(insert(MessageTrace).values(message_id=name, at=at, steps=[
            {"step_index": 0, "step": "parse", "status": "ok", "duration": 0.0, "snapshot": "{}", "at": at}]))
        c.execute(insert(Attempt).values(message_id=name, kind="process", number=1,
                                         started_at=at, duration=0.0, ok=True))
        c.execute(insert(Delivery).values(
            message_id=name, output_index=0, output_id=name, target="t",
            idempotency_key=f"{name}.0.t", flow="orders", state="done" if finished else
            "pending", attempts=1, next_at=at, created_at=at, updated_at=at))
        if dead_letter:
            c.execute(insert(DeadLetter).values(
                message_id=name, flow="orders", kind="step", reason="bad", input=b"x",
                status=dead_letter, created_at=at))
    return name


def count(store: Store, table: type, **where: str) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(getattr(table, column) == value)
    with store.session() as session:
        return int(session.scalar(query) or 0)


def check_retention(store: Store) -> None:
    add(store, "old-done", age_days=40, state="done", key="old-file")
    add(store, "old-dropped", age_days=40, state="dropped")
    add(store, "old-dead-open", age_days=400, state="dead", dead_letter="open")
    add(store, "old-dead-replayed", age_days=40, state="dead", dead_letter="replayed")
    add(store, "old-dead-discarded", age_days=40, state="dead", dead_letter="discarded")
    add(store, "old-still-delivering", age_days=40, state="delivering")
    add(store, "mid-done", age_days=10, state="done", key="mid-file")  # traces, key go
    add(store, "new-done", age_days=1, state="done", key="new-file")
    add(store, "new-dead-open", age_days=1, state="dead", dead_letter="open")

    purged = purge(store.engine, time.time(), trace_days=7, message_days=30, dedup_days=7)

    kept = {m.id for m in store.list_messages(limit=100)}
    assert kept == {"old-dead-open", "old-still-delivering", "mid-done", "new-done",
                    "new-dead-open"}
    assert purged.messages == 4
    # unresolved dead letters stay, however old; resolved old ones went with their message
    assert count(store, DeadLetter, status="open") == 2
    assert count(store, DeadLetter) == 2
    assert {d.message_id for d in store.dead_letters(status="open")} == {
        "old-dead-open", "new-dead-open"}
    # traces (payload snapshots) older than 7 days: gone, also of kept messages
    with store.session() as session:
        traced = set(session.scalars(select(MessageTrace.message_id)))
        attempts = set(session.scalars(select(Attempt.message_id)))
        deliveries = set(session.scalars(select(Delivery.message_id)))
        keys = set(session.scalars(select(SourceKey.message_id)))
    assert traced == {"new-done", "new-dead-open"}
    assert attempts == deliveries == kept  # a purged message takes its rows along
    assert keys == {"new-done"}  # dedup keys older than 7 days purged
    assert purged.source_keys == 2
    detail = store.message("old-dead-open")
    assert detail is not None and detail.dead_letters[0].status == "open"
    # a second pass finds nothing more to do
    again = purge(store.engine, time.time(), trace_days=7, message_days=30, dedup_days=7)
    assert (again.messages, again.traces, again.source_keys, again.dead_letters) == (0, 0, 0, 0)


def test_retention_purge_on_sqlite(sqlite_store: Store) -> None:
    check_retention(sqlite_store)


def test_retention_purge_on_postgresql(pg_store: Store) -> None:
    check_retention(pg_store)
