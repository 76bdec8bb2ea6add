"""Claiming work with leases, and fenced commits.

A worker claims messages (and delivery retries) with one UPDATE over a sub-select that
PostgreSQL runs `FOR UPDATE SKIP LOCKED`, so concurrent workers take disjoint rows
without waiting for each other (SQLite has a single writer; the same statement is
atomic there). A claim sets `lease_owner`, `lease_until` and increments
`lease_token`; it leaves `state` alone (see `StoredMessage.shown_state`). The heartbeat
pushes `lease_until` forward while the worker lives.

Every commit is fenced: the row is updated only `WHERE lease_token = <claimed token>
AND lease_owner = <me> AND lease_until >= now`. A worker that was paused or cut off
past its lease finds zero rows updated; its whole result for that message is dropped
(refused), because another worker has taken the message over and will commit instead.
Targets get the same idempotency key on both tries, so the only visible effect of a
takeover is a repeated delivery that an idempotent target ignores.

Lease times come from this process's clock: keep workers' clocks in sync (NTP); a
skew well below the lease time (default 30 s) is harmless.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.selectable import TextualSelect

from .api import announce_work, write_transaction
from .models import (
    CLAIMABLE_SQL,
    CLAIMABLE_STATES,
    OPEN_DELIVERIES_SQL,
    OPEN_INDEX,
    Attempt,
    DeadLetter,
    Delivery,
    MessageTrace,
    StoredMessage,
    Worker,
)
from .records import AttemptRow, DeadLetterRow, DeliveryRow, TraceRow

FINAL_DELIVERY = ("done", "dead")


@dataclass
class ClaimedMessage:
    id: str
    token: int
    correlation_id: str
    flow: str
    flow_version: str
    content_type: str
    payload: bytes
    source: dict[str, Any]
    headers: dict[str, Any]
    attempt: int
    replay_of: str | None
    plant: str = ""
    partner: str = ""


@dataclass
class ClaimedDelivery:
    id: int
    token: int
    message_id: str
    output_id: str
    target: str
    endpoint: str
    idempotency_key: str
    flow: str
    flow_version: str
    attempts: int
    content_type: str
    payload: bytes | None
    meta: dict[str, Any]


@dataclass
class ProcessOutcome:
    """What processing one message produced, committed in one fenced transaction."""

    message: ClaimedMessage
    state: str  # delivering | done | dead | dropped
    outputs: int = 0
    error: str | None = None
    error_step: str | None = None
    deliveries: list[DeliveryRow] = field(default_factory=list)
    attempts: list[AttemptRow] = field(default_factory=list)
    traces: list[TraceRow] = field(default_factory=list)  # its steps: one row, or none
    dead_letters: list[DeadLetterRow] = field(default_factory=list)


@dataclass
class DeliveryOutcome:
    delivery: ClaimedDelivery
    state: str  # pending | done | dead
    attempts: int
    next_at: float = 0.0
    last_error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    attempt: AttemptRow | None = None
    dead_letter: DeadLetterRow | None = None


def worker_id() -> str:
    import socket
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# -- claiming ---------------------------------------------------------------------


def no_flush(connection: Connection, ordered_scan: bool = False) -> None:
    """On PostgreSQL, let this transaction commit without waiting for its WAL flush (a
    disk flush per claim, half the flushes of a batch). Only for writes whose loss in a
    database crash is harmless: a lost claim or lease renewal leaves the row as it was
    (claimable, or with its old lease), and the worker's later commit is then refused by
    the fencing (owner and token no longer match), so no result is lost or doubled.
    Stored messages and processing results always wait for their flush.

    `ordered_scan`: a claim must read the oldest open messages in index order and stop
    after `limit`. Where the planner has no statistics yet (a new or truncated store:
    autovacuum analyses a minute later) it chose a bitmap scan of every message of the
    flow and a sort, 6-10 ms of server CPU per claim of 50; bitmap scans are turned
    off for the claim's transaction only."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(
            "SELECT set_config('synchronous_commit', 'off', true)"
            + (", set_config('enable_bitmapscan', 'off', true)" if ordered_scan else "")))


def claimable(flows: Sequence[str], limit: int, now: float, dialect: str) -> Select[str] | TextualSelect:
    """The ids of the oldest open messages of these flows that nobody holds, locked.

    It must read the index of open messages (`OPEN_INDEX`) in order and stop after
    `limit`: the flow's own index would walk every done message of the flow first (30
    days of them under the default retention), the others sort the whole backlog.
    SQLite is told so (`INDEXED BY`: its planner prefers `flow = ?` or `state = ?` and a
    sort, whatever its statistics say). PostgreSQL is given no other ordered path: the
    flow is compared as `flow || ''`, which its flow index cannot serve (without
    statistics, in a new or truncated store, it took that index and walked the flow's
    done messages, 2,900 of them for the last claims of a 3,000-message backlog), and
    `no_flush` turns bitmap scans off. The index's condition is repeated literally:
    SQLite uses a partial index only for a query that says it that way."""
    m = StoredMessage
    if dialect == "sqlite":
        return text(
            f"SELECT id FROM {m.__tablename__} INDEXED BY {OPEN_INDEX} WHERE flow IN :flows"
            f" AND {CLAIMABLE_SQL} AND (lease_owner IS NULL OR lease_until < :now)"
            " ORDER BY created_at LIMIT :limit"
        ).bindparams(bindparam("flows", list(flows), expanding=True), now=now, limit=limit).columns(m.id)
    return select(m.id).where(
        (m.flow + "").in_(list(flows)),
        text(CLAIMABLE_SQL),
        or_(m.lease_owner.is_(None), m.lease_until < now),
    ).order_by(m.created_at).limit(limit).with_for_update(skip_locked=True)


def claim_messages(
    engine: Engine, worker: str, flows: Sequence[str], limit: int, ttl: float
) -> list[ClaimedMessage]:
    if not flows or limit <= 0:
        return []
    now = time.time()
    m = StoredMessage
    stmt = (
        update(m)
        .where(m.id.in_(claimable(flows, limit, now, engine.dialect.name)))
        .values(lease_owner=worker, lease_until=now + ttl,  # not `state`: see shown_state
                lease_token=m.lease_token + 1, updated_at=now)
        .returning(m.id, m.lease_token, m.correlation_id, m.flow, m.flow_version,
                   m.content_type, m.payload, m.source, m.headers, m.attempt, m.replay_of,
                   m.plant, m.partner)
        .execution_options(synchronize_session=False)
    )
    with write_transaction(engine) as connection:
        no_flush(connection, ordered_scan=True)
        rows = connection.execute(stmt).all()
    claimed = [ClaimedMessage(*tuple(row)) for row in rows]
    claimed.sort(key=lambda c: c.id)
    return claimed


def retryable(flows: Sequence[str], limit: int, now: float) -> Select[int]:
    """The ids of the deliveries due for an attempt (or whose lease lapsed), locked. The
    open states are written out (`OPEN_DELIVERIES_SQL`): on PostgreSQL only the open
    deliveries are indexed, and a prepared statement's generic plan can use that index
    only where the query names its condition literally."""
    d = Delivery
    return select(d.id).where(
        d.flow.in_(list(flows)),
        text(OPEN_DELIVERIES_SQL),
        or_(and_(d.state == "pending", d.next_at <= now),
            and_(d.state == "sending", d.lease_until < now)),
    ).order_by(d.next_at).limit(limit).with_for_update(skip_locked=True)


def claim_deliveries(
    engine: Engine, worker: str, flows: Sequence[str], limit: int, ttl: float
) -> list[ClaimedDelivery]:
    if not flows or limit <= 0:
        return []
    now = time.time()
    d = Delivery
    stmt = (
        update(d)
        .where(d.id.in_(retryable(flows, limit, now).scalar_subquery()))
        .values(state="sending", lease_owner=worker, lease_until=now + ttl,
                lease_token=d.lease_token + 1, updated_at=now)
        .returning(d.id, d.lease_token, d.message_id, d.output_id, d.target, d.endpoint,
                   d.idempotency_key, d.flow, d.flow_version, d.attempts, d.content_type,
                   d.payload, d.meta)
        .execution_options(synchronize_session=False)
    )
    with write_transaction(engine) as connection:
        no_flush(connection)
        rows = connection.execute(stmt).all()
    return [ClaimedDelivery(*tuple(row)) for row in rows]


# -- committing -------------------------------------------------------------------


def commit_processing(
    engine: Engine, worker: str, outcomes: Sequence[ProcessOutcome]
) -> list[str]:
    """Commit the outcomes whose lease still holds; returns the ids refused."""
    refused: list[str] = []
    now = time.time()
    if engine.dialect.name == "postgresql":  # the same work as one statement
        from . import pgcommit

        with write_transaction(engine) as connection:
            held = pgcommit.commit(connection, worker, now, outcomes)
        return [o.message.id for o in outcomes if o.message.id not in held]
    m = StoredMessage
    deliveries: list[DeliveryRow] = []
    attempts: list[AttemptRow] = []
    traces: list[TraceRow] = []
    dead: list[DeadLetterRow] = []
    with write_transaction(engine) as connection:
        held = _still_held(connection, m, worker, now,
                           {o.message.id: o.message.token for o in outcomes})
        updates = []
        for o in outcomes:
            if o.message.id not in held:
                refused.append(o.message.id)
                continue
            final = o.state in ("done", "dead", "dropped")
            updates.append({"b_id": o.message.id, "state": o.state, "attempt": o.message.attempt + 1,
                            "outputs": o.outputs, "error": o.error, "error_step": o.error_step,
                            "updated_at": now, "finished_at": now if final else None})
            deliveries.extend(o.deliveries)
            attempts.extend(o.attempts)
            traces.extend(o.traces)
            dead.extend(o.dead_letters)
        if updates:
            connection.execute(
                update(m).where(m.id == bindparam("b_id"))
                .values(state=bindparam("state"), lease_owner=None, lease_until=None,
                        attempt=bindparam("attempt"), outputs=bindparam("outputs"),
                        error=bindparam("error"), error_step=bindparam("error_step"),
                        updated_at=bindparam("updated_at"),
                        finished_at=bindparam("finished_at"))
                .execution_options(synchronize_session=False),
                updates,
            )
        if deliveries:
            connection.execute(insert(Delivery), deliveries)
        if attempts:
            connection.execute(insert(Attempt), attempts)
        if traces:
            connection.execute(insert(MessageTrace), traces)
        if dead:
            _insert_dead_letters(connection, dead)
    return refused


def _still_held(connection: Connection, table: Any, worker: str, now: float,
                tokens: dict[Any, int]) -> set[Any]:
    """The ids whose lease this worker still holds with the claimed token (locked for
    the rest of the transaction on PostgreSQL; SQLite has one writer at a time)."""
    if not tokens:
        return set()
    rows = connection.execute(
        select(table.id, table.lease_token, table.lease_owner, table.lease_until)
        .where(table.id.in_(list(tokens))).with_for_update()
    ).all()
    return {row[0] for row in rows
            if row[2] == worker and row[1] == tokens[row[0]] and (row[3] or 0) >= now}


def _insert_dead_letters(connection: Connection, rows: list[DeadLetterRow]) -> None:
    keys = [r["delivery_key"] for r in rows if r.get("delivery_key")]
    ids: dict[str, int] = {}
    if keys:
        ids = dict(connection.execute(
            select(Delivery.idempotency_key, Delivery.id).where(Delivery.idempotency_key.in_(keys))
        ).all())
    clean: list[dict[str, Any]] = []
    for row in rows:
        plain: dict[str, Any] = dict(row)
        key = plain.pop("delivery_key", None)
        # every row names delivery_id: an executemany takes its columns from the first row
        plain["delivery_id"] = ids.get(key) if key else plain.get("delivery_id")
        clean.append(plain)
    connection.execute(insert(DeadLetter), clean)


def commit_deliveries(
    engine: Engine, worker: str, outcomes: Sequence[DeliveryOutcome]
) -> list[int]:
    """Commit delivery attempts whose lease still holds; close messages whose every
    delivery is final. Returns the delivery ids refused."""
    refused: list[int] = []
    now = time.time()
    d = Delivery
    touched: set[str] = set()
    attempts: list[AttemptRow] = []
    dead: list[DeadLetterRow] = []
    with write_transaction(engine) as connection:
        for o in outcomes:
            result = connection.execute(
                update(d)
                .where(d.id == o.delivery.id, d.lease_token == o.delivery.token,
                       d.lease_owner == worker, d.lease_until >= now)
                .values(state=o.state, attempts=o.attempts, next_at=o.next_at,
                        last_error=o.last_error, detail=o.detail, lease_owner=None,
                        lease_until=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                refused.append(o.delivery.id)
                continue
            if o.attempt:
                attempts.append(o.attempt)
            if o.dead_letter:
                dead.append(o.dead_letter)
            if o.state in FINAL_DELIVERY:
                touched.add(o.delivery.message_id)
        if attempts:
            connection.execute(insert(Attempt), attempts)
        if dead:
            connection.execute(insert(DeadLetter), dead)
        for message_id in sorted(touched):
            close_message(connection, message_id, now)
    return refused


def close_message(connection: Connection, message_id: str, now: float) -> None:
    """Mark a `delivering` message done (or dead) once none of its deliveries is open."""
    d = Delivery
    counts = dict(connection.execute(
        select(d.state, func.count()).where(d.message_id == message_id).group_by(d.state)
    ).all())
    if counts.get("pending") or counts.get("sending"):
        return
    m = StoredMessage
    error = connection.execute(select(m.error).where(m.id == message_id)).scalar()
    state = "dead" if counts.get("dead") or error else "done"
    connection.execute(
        update(m).where(m.id == message_id, m.state == "delivering")
        .values(state=state, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


# -- leases -----------------------------------------------------------------------


def renew_leases(engine: Engine, worker: str, ttl: float, message_ids: Sequence[str] = (),
                 delivery_ids: Sequence[int] = ()) -> int:
    """Push forward the leases of the work this worker is doing right now (only that:
    a claim whose answer was lost with a dropped connection must lapse, not be kept
    alive forever); also records the worker's heartbeat."""
    now = time.time()
    renewed = 0
    leased: tuple[tuple[type[StoredMessage] | type[Delivery], Sequence[str], Sequence[Any]], ...] = (
        (StoredMessage, CLAIMABLE_STATES, message_ids), (Delivery, ("sending",), delivery_ids))
    with write_transaction(engine) as connection:
        no_flush(connection)
        for table, states, ids in leased:
            if ids:
                renewed += connection.execute(
                    update(table)
                    .where(table.lease_owner == worker, table.state.in_(states),
                           table.id.in_(list(ids)))
                    .values(lease_until=now + ttl)
                    .execution_options(synchronize_session=False)
                ).rowcount or 0
        connection.execute(
            update(Worker).where(Worker.id == worker).values(heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
    return renewed


def release(engine: Engine, owners: Sequence[str]) -> int:
    """Give the work held by these owners back to the queue (graceful shutdown, or the
    leases of a process known to be dead). The token is left alone: clearing the owner
    already fences the old holder out, and the token keeps counting claims, which is how
    a poison message (one that kills the process every time) is recognised."""
    if not owners:
        return 0
    now = time.time()
    with write_transaction(engine) as connection:
        a = connection.execute(
            update(StoredMessage)
            .where(StoredMessage.lease_owner.in_(list(owners)),
                   StoredMessage.state.in_(CLAIMABLE_STATES))
            .values(state="received", lease_owner=None, lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        b = connection.execute(
            update(Delivery)
            .where(Delivery.lease_owner.in_(list(owners)), Delivery.state == "sending")
            .values(state="pending", lease_owner=None, lease_until=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if a or b:
            announce_work(connection)
    return int(a or 0) + int(b or 0)


def dead_local_owners(engine: Engine, host: str) -> list[str]:
    """Lease owners on this host whose process no longer runs (crash recovery at start:
    no need to wait for their leases to expire)."""
    owners: set[str] = set()
    with engine.connect() as connection:
        for table in (StoredMessage, Delivery):
            owners.update(
                o for o in connection.execute(
                    select(table.lease_owner).where(table.lease_owner.like(f"{host}:%")).distinct()
                ).scalars() if o
            )
    dead = []
    for owner in owners:
        try:
            pid = int(owner.split(":")[1])
        except (IndexError, ValueError):
            continue
        if not pid_alive(pid):
            dead.append(owner)
    return dead


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def register_worker(engine: Engine, worker: str, mode: str) -> None:
    import socket

    now = time.time()
    with write_transaction(engine) as connection:
        connection.execute(insert(Worker).values(
            id=worker, host=socket.gethostname(), pid=os.getpid(), mode=mode, started_at=now,
            heartbeat_at=now,
        ))


def worker_stopped(engine: Engine, worker: str) -> None:
    with write_transaction(engine) as connection:
        connection.execute(
            update(Worker).where(Worker.id == worker).values(stopped_at=time.time())
            .execution_options(synchronize_session=False)
        )


def backlog(engine: Engine) -> dict[str, int]:
    """Open messages by flow (received or processing), for back-pressure."""
    m = StoredMessage
    with engine.connect() as connection:
        rows = connection.execute(
            select(m.flow, func.count()).where(m.state.in_(CLAIMABLE_STATES))
            .group_by(m.flow)
        ).all()
    return {flow: int(count) for flow, count in rows}
