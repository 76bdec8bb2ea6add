"""The processing commit writes the same rows on SQLite (one statement per table) and
on PostgreSQL (one set-based statement): messages' states, deliveries, attempts,
traces, step and delivery dead letters (linked to their delivery), binary payloads
byte for byte, and nothing at all for a message whose lease was lost."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from flowyard.message import Message
from flowyard.store import queue
from flowyard.store.api import Store, write_transaction
from flowyard.store.models import Attempt, DeadLetter, Delivery, MessageTrace, StoredMessage

BINARY = bytes(range(256))  # not UTF-8, every byte value


def delivery(c: queue.ClaimedMessage, target: str, state: str, payload: bytes) -> dict[str, Any]:
    now = time.time()
    return {"message_id": c.id, "output_index": 0, "output_id": f"{c.id}-1", "target": target,
            "endpoint": f"file:{target}", "idempotency_key": f"{c.id}.0.{target}",
            "flow": c.flow, "flow_version": c.flow_version, "state": state,
            "attempts": 1, "next_at": now + (5 if state == "pending" else 0),
            "content_type": "application/octet-stream", "payload": payload,
            "meta": {"id": f"{c.id}-1", "headers": {"h": "v"}, "last_data": {"n": [1, 2.5]}},
            "last_error": None if state == "done" else "refused: 'x'", "detail": {"k": 1},
            "created_at": now, "updated_at": now, "lease_token": 0}


def attempt(c: queue.ClaimedMessage, ok: bool) -> dict[str, Any]:
    return {"message_id": c.id, "delivery_id": None, "kind": "deliver", "target": "out",
            "number": 1, "worker": "host:1:a", "started_at": time.time(), "duration": 0.01,
            "ok": ok, "error": None if ok else "refused", "detail": {"key": f"{c.id}.0.out"}}


SNAPSHOT = "{\n  \"a\": \"ü\\u00e9\"\n}"
BINARY_SNAPSHOT = "\x00\x01PK\ufffd"  # a binary payload decoded for its snapshot
# SQLite keeps a NUL; PostgreSQL text cannot hold one: it reads U+FFFD there
AS_STORED = (BINARY_SNAPSHOT, BINARY_SNAPSHOT.replace("\x00", "\ufffd"))


def trace(c: queue.ClaimedMessage, *snapshots: str) -> dict[str, Any]:
    """The message's one trace row: a step per snapshot."""
    now = time.time()
    return {"message_id": c.id, "at": now, "steps": [
        {"step_index": i, "step": f"s{i}", "status": "ok", "duration": 0.001, "snapshot": snapshot,
         "at": now + i} for i, snapshot in enumerate(snapshots)]}


def dead(c: queue.ClaimedMessage, kind: str, key: str | None = None) -> dict[str, Any]:
    row = {"message_id": c.id, "correlation_id": c.correlation_id, "flow": c.flow,
           "flow_version": c.flow_version, "kind": kind, "reason": f"{kind} failed",
           "reason_kind": f"{kind} failed", "step": "s1" if kind == "step" else None,
           "target": "out" if kind == "delivery" else None, "input": BINARY,
           "input_content_type": "application/octet-stream",
           "trace": [{"step": "s0", "status": "ok", "snapshot": BINARY_SNAPSHOT}], "status": "open",
           "created_at": time.time()}
    if key:
        row["delivery_key"] = key
    return row


def check_commit(store: Store) -> None:
    ids = store.accept_many([Message(payload=b"{}", content_type="application/json",
                                     flow="orders", flow_version="v1") for _ in range(4)])
    claimed = {c.id: c for c in queue.claim_messages(store.engine, "host:1:a", ["orders"], 10,
                                                     30)}
    done, step_dead, delivery_dead, lost = (claimed[i] for i in ids)
    with write_transaction(store.engine) as c:  # another worker took this one over
        c.execute(StoredMessage.__table__.update().where(StoredMessage.id == lost.id)
                  .values(lease_owner="host:2:b", lease_token=lost.token + 1))
    outcomes = [
        queue.ProcessOutcome(message=done, state="done", outputs=1,
                             deliveries=[delivery(done, "out", "done", BINARY)],
                             attempts=[attempt(done, True)],
                             traces=[trace(done, SNAPSHOT, SNAPSHOT)]),
        queue.ProcessOutcome(message=step_dead, state="dead", error=f"bad data: {BINARY_SNAPSHOT}",
                             error_step="s1", traces=[trace(step_dead, BINARY_SNAPSHOT)],
                             dead_letters=[dead(step_dead, "step")]),
        queue.ProcessOutcome(message=delivery_dead, state="delivering", outputs=1,
                             deliveries=[delivery(delivery_dead, "out", "dead", b"x"),
                                         delivery(delivery_dead, "later", "pending", b"y")],
                             attempts=[attempt(delivery_dead, False)],
                             dead_letters=[dead(delivery_dead, "delivery",
                                                f"{delivery_dead.id}.0.out")]),
        queue.ProcessOutcome(message=lost, state="done", outputs=1,
                             deliveries=[delivery(lost, "out", "done", b"z")],
                             attempts=[attempt(lost, True)], traces=[trace(lost, SNAPSHOT)],
                             dead_letters=[dead(lost, "step")]),
    ]
    assert queue.commit_processing(store.engine, "host:1:a", outcomes) == [lost.id]

    states = {m.id: (m.state, m.attempt, m.outputs, m.error, m.error_step,
                     m.finished_at is not None) for m in store.list_messages(limit=10)}
    error = states[step_dead.id][3]
    assert error in {f"bad data: {s}" for s in AS_STORED}
    assert states == {
        done.id: ("done", 1, 1, None, None, True),
        step_dead.id: ("dead", 1, 0, error, "s1", True),
        delivery_dead.id: ("delivering", 1, 1, None, None, False),
        lost.id: ("processing", 0, 0, None, None, False),  # untouched: another worker has it
    }
    with store.session() as session:
        deliveries = {d.idempotency_key: d for d in session.scalars(select(Delivery))}
        attempts = list(session.scalars(select(Attempt)))
        traces = {t.message_id: t.steps for t in session.scalars(select(MessageTrace))}
        dead_letters = {d.kind: d for d in session.scalars(select(DeadLetter))}
        lease = session.get(StoredMessage, done.id)
        assert lease is not None and lease.lease_owner is None and lease.lease_until is None
    assert set(deliveries) == {f"{done.id}.0.out", f"{delivery_dead.id}.0.out",
                               f"{delivery_dead.id}.0.later"}
    first = deliveries[f"{done.id}.0.out"]
    assert first.payload == BINARY and first.state == "done"
    assert first.meta == {"id": f"{done.id}-1", "headers": {"h": "v"},
                          "last_data": {"n": [1, 2.5]}}
    assert first.detail == {"k": 1} and first.lease_token == 0
    assert deliveries[f"{delivery_dead.id}.0.later"].state == "pending"
    assert sorted((a.message_id, a.ok) for a in attempts) == sorted(
        [(done.id, True), (delivery_dead.id, False)])
    assert set(traces) == {done.id, step_dead.id}  # one row each, none for the lost one
    assert [(s["step"], s["snapshot"]) for s in traces[done.id]] == [("s0", SNAPSHOT), ("s1", SNAPSHOT)]
    assert [s["snapshot"] for s in traces[step_dead.id]] == [error[len("bad data: "):]]
    assert set(dead_letters) == {"step", "delivery"}
    assert dead_letters["step"].message_id == step_dead.id
    assert dead_letters["step"].delivery_id is None and dead_letters["step"].input == BINARY
    assert dead_letters["step"].trace == [{"step": "s0", "status": "ok", "snapshot": error[len("bad data: "):]}]
    assert dead_letters["delivery"].delivery_id == deliveries[f"{delivery_dead.id}.0.out"].id


def test_commit_on_sqlite(sqlite_store: Store) -> None:
    check_commit(sqlite_store)


def test_commit_on_postgresql(pg_store: Store) -> None:
    check_commit(pg_store)
