"""The store's query and command API, shared by the runtime, the CLI and the web UI.

Everything returns plain dataclasses (never ORM objects bound to a session), so callers
need no session handling. Times are UNIX epoch seconds. Payload texts are cut to
`TEXT_CAP` characters and passed through the secret redactor.

    store = Store()                       # FLOWYARD_DATABASE_URL or the embedded SQLite
    store.list_messages(flow="mx01-asn", state="dead", limit=50)
    store.message("3f2a...")              # detail with deliveries, traces, timeline
    store.dead_letter_groups()            # by flow and reason
    store.deployments("x")                # deployment history, newest first
    store.dashboard()                     # counts, backlog, dead letters, workers

Deploying, rolling back and replaying (which load flows and run steps) are operations
above the store: `flowyard.operations`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Text, cast, delete, func, insert, or_, select, update
from sqlalchemy import text as text_sql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from ..errors import FlowyardError
from ..message import Message
from ..secrets import redactor
from .engines import get_engine
from .models import (
    OPEN_DELIVERIES_SQL,
    OPEN_STATES,
    Attempt,
    DeadLetter,
    Delivery,
    DeployFile,
    Deployment,
    FlowRun,
    FlowState,
    MessageTrace,
    SourceKey,
    StoredMessage,
    Worker,
)
from .window import MessageWindow

TEXT_CAP = 20_000

_write_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextlib.contextmanager
def write_lock(engine: Engine) -> Iterator[None]:
    """On SQLite, one writing transaction at a time per process. SQLite allows one
    writer anyway; threads that wait on this lock take turns at once, where SQLite's own
    busy handler would make them sleep up to 100 ms between tries (a measured 35
    messages/s instead of hundreds). PostgreSQL needs no such lock."""
    if engine.dialect.name != "sqlite":
        yield
        return
    with _locks_guard:
        lock = _write_locks.setdefault(id(engine), threading.Lock())
    with lock:
        yield


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` under the process's SQLite write lock."""
    with write_lock(engine), engine.begin() as connection:
        yield connection


NEW_WORK_CHANNEL = "flowyard_work"


def announce_work(connection: Connection) -> None:
    """On PostgreSQL, tell the workers listening (`runtime.wakeups`) that this
    transaction stored work, once it commits (PostgreSQL holds a NOTIFY until then)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text_sql(f"NOTIFY {NEW_WORK_CHANNEL}"))


class StoreError(FlowyardError):
    """A store command could not be carried out (unknown id, no such version...)."""


def payload_text(payload: bytes | None, limit: int = TEXT_CAP) -> str:
    if payload is None:
        return ""
    text = redactor.redact(payload.decode("utf-8", errors="replace"))
    if len(text) > limit:
        return text[:limit] + f"\n... ({len(text) - limit} more characters)"
    return text


def reason_kind(reason: str) -> str:
    """A reason with its specifics (numbers, quoted values) blanked, to group dead
    letters that failed for the same cause."""
    import re

    first = reason.strip().splitlines()[0] if reason.strip() else ""
    first = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", first)
    first = re.sub(r"\d+", "N", first)
    return first[:300]


# -- results ----------------------------------------------------------------------


@dataclass
class MessageSummary:
    id: str
    correlation_id: str
    flow: str
    flow_version: str
    state: str
    content_type: str
    size: int
    source: dict[str, Any]
    plant: str
    partner: str
    created_at: float
    updated_at: float
    finished_at: float | None
    error: str | None
    error_step: str | None
    attempt: int
    outputs: int
    replay_of: str | None


@dataclass
class DeliveryInfo:
    id: int
    message_id: str
    output_index: int
    output_id: str
    target: str
    endpoint: str
    idempotency_key: str
    state: str
    attempts: int
    next_at: float
    last_error: str | None
    detail: dict[str, Any]
    content_type: str
    created_at: float
    updated_at: float
    payload_text: str = ""


@dataclass
class TraceInfo:
    step_index: int
    step: str
    status: str
    duration: float
    snapshot: str
    at: float


@dataclass
class AttemptInfo:
    kind: str
    target: str | None
    number: int
    worker: str
    started_at: float
    duration: float
    ok: bool
    error: str | None
    detail: dict[str, Any]


@dataclass
class TimelineEvent:
    at: float
    kind: str  # received | step | attempt | delivery | dead_letter | replay | finished
    title: str
    status: str = "ok"  # ok | failed | skipped | pending
    detail: str = ""
    duration: float | None = None


@dataclass
class DeadLetterInfo:
    id: int
    message_id: str
    delivery_id: int | None
    correlation_id: str
    flow: str
    flow_version: str
    kind: str
    reason: str
    reason_kind: str
    step: str | None
    target: str | None
    status: str
    created_at: float
    replayed_at: float | None
    replay_message_id: str | None
    input_content_type: str
    input_text: str = ""
    trace: list[Any] = field(default_factory=list)


@dataclass
class DeadLetterGroup:
    flow: str
    reason_kind: str
    count: int
    oldest: float
    newest: float
    sample_reason: str
    ids: list[int]


@dataclass
class MessageDetail:
    summary: MessageSummary
    payload_text: str
    deliveries: list[DeliveryInfo]
    traces: list[TraceInfo]
    attempts: list[AttemptInfo]
    dead_letters: list[DeadLetterInfo]
    replays: list[MessageSummary]
    timeline: list[TimelineEvent]


@dataclass
class DeploymentInfo:
    id: int
    flow: str
    version: str
    path: str
    who: str
    at: float
    note: str
    action: str
    kind: str
    git_commit: str = ""


@dataclass
class FlowInfo:
    flow: str
    version: str
    path: str
    enabled: bool
    updated_at: float
    labels: dict[str, Any]
    refused: str = ""  # why the last deploy was refused ("" when it was not)
    refused_at: float | None = None


@dataclass
class Snapshot:
    """A deployed version as it was deployed: every file it uses by its path under the
    flows folder (`flow_file` is the flow's own), and where the flow file lived."""

    flow: str
    version: str
    flow_file: str
    files: dict[str, bytes]
    path: str  # the flow file the snapshot was taken of (relative I/O paths start there)

    @property
    def text(self) -> str:
        return self.files[self.flow_file].decode("utf-8")


@dataclass
class FlowRunInfo:
    """What one worker runs of one flow, or why it cannot."""

    worker: str
    flow: str
    version: str
    error: str
    at: float


@dataclass
class WorkerInfo:
    id: str
    host: str
    pid: int
    mode: str
    started_at: float
    heartbeat_at: float
    stopped_at: float | None


@dataclass
class FlowCounts:
    flow: str
    states: dict[str, int]
    dead_letters: int
    last_message_at: float | None


@dataclass
class Overview:
    """The dashboard's summary cards."""

    backlog: int
    pending_deliveries: int
    dead_letters_open: int
    oldest_dead_letter_age: float | None
    received_last_hour: int
    finished_last_hour: int
    workers: list[WorkerInfo]
    recent_failures: list[MessageSummary]


@dataclass
class Dashboard(Overview):
    """The summary cards and the counts per flow and state (the flows list, the CLI)."""

    states: dict[str, int]
    flows: list[FlowCounts]


@dataclass
class ReplaySubject:
    """What a replay starts from: the original message and, when a dead letter was named,
    that dead letter."""

    message_id: str
    correlation_id: str
    flow: str
    flow_version: str
    payload: bytes
    content_type: str
    source: dict[str, Any]
    headers: dict[str, Any]
    plant: str
    partner: str
    dead_letter_id: int | None = None
    dead_kind: str | None = None  # step | delivery
    dead_flow_version: str | None = None
    dead_delivery_id: int | None = None
    dead_target: str | None = None
    dead_status: str | None = None  # open | replayed | discarded
    dead_replayed_as: str | None = None  # the message its (last) replay made


# -- converters -------------------------------------------------------------------


def _workers(session: Session, now: float) -> list[WorkerInfo]:
    """The running workers and those stopped in the last hour, newest first."""
    return [
        WorkerInfo(w.id, w.host, w.pid, w.mode, w.started_at, w.heartbeat_at, w.stopped_at)
        for w in session.scalars(
            select(Worker).where(or_(Worker.stopped_at.is_(None), Worker.stopped_at >= now - 3600))
            .order_by(Worker.started_at.desc()).limit(50)
        )
    ]


def _recent_failures(session: Session, count: int) -> list[MessageSummary]:
    """The last `count` dead messages with an open dead letter (a failure a replay fixed,
    or someone discarded, is no longer listed)."""
    if count <= 0:
        return []
    # newest open dead letters first, from their (status, created_at) index: sorting the
    # dead messages by updated_at read every dead message (80 ms at 20,000)
    found: list[MessageSummary] = []
    seen: set[str] = set()
    page, offset = count * 2, 0
    while len(found) < count:
        rows = list(session.scalars(
            select(DeadLetter.message_id).where(DeadLetter.status == "open")
            .order_by(DeadLetter.created_at.desc(), DeadLetter.id.desc()).offset(offset).limit(page)
        ))
        offset += page
        ids = [i for i in dict.fromkeys(rows) if i not in seen]
        seen.update(ids)
        if ids:
            # by primary key only: with `state = 'dead'` too, SQLite picked the state
            # index and read every dead message
            messages = {m.id: m for m in session.scalars(select(StoredMessage).where(StoredMessage.id.in_(ids)))}
            found += [_summary(messages[i]) for i in ids if i in messages and messages[i].state == "dead"]
        if len(rows) < page:
            break
    return found[:count]


def _oldest_pending_received(session: Session, now: float) -> tuple[Any, Any, Any]:
    """The oldest open dead letter's time, the deliveries waiting, the messages received
    in the last hour."""
    oldest = session.scalar(select(func.min(DeadLetter.created_at)).where(DeadLetter.status == "open"))
    pending = session.scalar(select(func.count()).select_from(Delivery).where(text_sql(OPEN_DELIVERIES_SQL)))
    received = session.scalar(
        select(func.count()).select_from(StoredMessage).where(StoredMessage.created_at >= now - 3600))
    return oldest, pending, received


def _summary(m: StoredMessage) -> MessageSummary:
    return MessageSummary(
        id=m.id, correlation_id=m.correlation_id, flow=m.flow, flow_version=m.flow_version,
        state=m.shown_state, content_type=m.content_type, size=m.size, source=m.source or {},
        plant=m.plant, partner=m.partner, created_at=m.created_at, updated_at=m.updated_at,
        finished_at=m.finished_at, error=redactor.redact(m.error) if m.error else None,
        error_step=m.error_step, attempt=m.attempt, outputs=m.outputs, replay_of=m.replay_of,
    )


def _delivery(d: Delivery, with_payload: bool = False) -> DeliveryInfo:
    return DeliveryInfo(
        id=d.id, message_id=d.message_id, output_index=d.output_index, output_id=d.output_id,
        target=d.target, endpoint=d.endpoint, idempotency_key=d.idempotency_key, state=d.state,
        attempts=d.attempts, next_at=d.next_at,
        last_error=redactor.redact(d.last_error) if d.last_error else None,
        detail=d.detail or {}, content_type=d.content_type, created_at=d.created_at,
        updated_at=d.updated_at, payload_text=payload_text(d.payload) if with_payload else "",
    )


def _dead(d: DeadLetter, with_input: bool = False) -> DeadLetterInfo:
    return DeadLetterInfo(
        id=d.id, message_id=d.message_id, delivery_id=d.delivery_id,
        correlation_id=d.correlation_id, flow=d.flow, flow_version=d.flow_version, kind=d.kind,
        reason=redactor.redact(d.reason), reason_kind=d.reason_kind, step=d.step,
        target=d.target, status=d.status, created_at=d.created_at, replayed_at=d.replayed_at,
        replay_message_id=d.replay_message_id, input_content_type=d.input_content_type,
        input_text=payload_text(d.input) if with_input else "",
        trace=d.trace if with_input else [],
    )


def _deployment(d: Deployment) -> DeploymentInfo:
    return DeploymentInfo(
        id=d.id, flow=d.flow, version=d.version, path=d.path, who=d.who, at=d.at,
        note=d.note, action=d.action, kind=d.kind, git_commit=d.git_commit or "",
    )


def _flow_info(s: FlowState) -> FlowInfo:
    return FlowInfo(s.flow, s.version, s.path, s.enabled, s.updated_at, s.labels or {},
                    s.refused or "", s.refused_at)


def message_row(message: Message, now: float | None = None) -> dict[str, Any]:
    """The fy_messages row for a message a source (or a replay) hands in."""
    now = now or time.time()
    payload = message.payload_bytes()
    labels = message.headers.get("labels") or {}
    return {
        "id": message.id,
        "correlation_id": message.correlation_id,
        "flow": message.flow,
        "flow_version": message.flow_version,
        "state": "received",
        "content_type": message.content_type,
        "payload": payload,
        "size": len(payload),
        "source": json.loads(redactor.redact(json.dumps(message.source, default=str))),
        "headers": {k: v for k, v in message.headers.items() if k != "labels"},
        "plant": str(labels.get("plant", "")),
        "partner": str(labels.get("partner", "")),
        "replay_of": message.headers.get("replay_of"),
        "attempt": 0,
        "outputs": 0,
        "created_at": now,
        "updated_at": now,
        "lease_token": 0,
    }


def source_key(message: Message) -> str | None:
    """The stored form of a source's item identity (SHA-256, so any length fits). A
    replay is a deliberate second run of an item: it is never taken for a re-send."""
    if message.headers.get("replay_of"):
        return None
    key = (message.source or {}).get("key")
    if key is None or key == "":
        return None
    return hashlib.sha256(str(key).encode("utf-8", "surrogatepass")).hexdigest()


def new_messages(connection: Connection, messages: Sequence[Message], now: float
                 ) -> tuple[list[Message], list[dict[str, Any]]]:
    """The messages not stored yet and the key rows to insert with them; a re-sent
    item (its key stored before, or twice in this batch) takes the first one's id."""
    keyed = {(m.flow, k): m for m in messages if (k := source_key(m)) is not None}
    if not keyed:
        return list(messages), []
    stored: dict[tuple[str, str], str] = {}
    flows = sorted({flow for flow, _ in keyed})
    hashes = sorted({k for _, k in keyed})
    for start in range(0, len(hashes), 500):
        stored.update(((flow, k), mid) for flow, k, mid in connection.execute(
            select(SourceKey.flow, SourceKey.key, SourceKey.message_id)
            .where(SourceKey.flow.in_(flows), SourceKey.key.in_(hashes[start:start + 500]))
        ))
    fresh: list[Message] = []
    rows: list[dict[str, Any]] = []
    for m in messages:
        k = source_key(m)
        if k is None:
            fresh.append(m)
            continue
        earlier = stored.get((m.flow, k))
        if earlier is not None:
            m.id = earlier
            continue
        stored[(m.flow, k)] = m.id
        fresh.append(m)
        rows.append({"flow": m.flow, "key": k, "message_id": m.id, "created_at": now})
    return fresh, rows


# -- the store --------------------------------------------------------------------


class Store:
    """The one entry point to the durable store (thread-safe; one per process is enough)."""

    def __init__(self, engine: Engine | None = None, url: str | None = None) -> None:
        self.engine = engine or get_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessions()

    # -- messages -----------------------------------------------------------------
    def accept(self, message: Message) -> str:
        """Store a new message durably (committed when this returns); returns its id,
        which is the id stored before when the source's key says it is a re-sent item."""
        return self.accept_many([message])[0]

    def accept_many(self, messages: Sequence[Message]) -> list[str]:
        """Store several messages in one transaction (one fsync). A message whose
        `source["key"]` was already stored for its flow is not stored again: it takes the
        stored message's id and counts as accepted, so its source simply acknowledges."""
        self.store_new(messages)
        return [m.id for m in messages]

    def store_new(self, messages: Sequence[Message]) -> int:
        """`accept_many`, returning how many of the messages were new."""
        if not messages:
            return 0
        for tries in range(3):
            try:
                now = time.time()
                with write_transaction(self.engine) as connection:
                    fresh, keys = new_messages(connection, messages, now)
                    if fresh:
                        connection.execute(insert(StoredMessage),
                                           [message_row(m, now) for m in fresh])
                        announce_work(connection)
                    if keys:
                        connection.execute(insert(SourceKey), keys)
                return len(fresh)
            except IntegrityError:  # another process stored one of these keys meanwhile
                if tries == 2:
                    raise
        return 0

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these message ids are stored."""
        with self.engine.connect() as connection:
            return set(connection.execute(
                select(StoredMessage.id).where(StoredMessage.id.in_(list(ids)))).scalars())

    def list_messages(
        self,
        *,
        flow: str | None = None,
        state: str | Sequence[str] | None = None,
        plant: str | None = None,
        partner: str | None = None,
        correlation_id: str | None = None,
        search: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[MessageSummary]:
        """Newest first. `search` matches part of an id, a correlation id, the error or the
        source (its file name, topic)."""
        query = select(StoredMessage)
        if flow:
            query = query.where(StoredMessage.flow == flow)
        if state:
            states = [state] if isinstance(state, str) else list(state)
            query = query.where(StoredMessage.shown_state_in(states))
        if plant:
            query = query.where(StoredMessage.plant == plant)
        if partner:
            query = query.where(StoredMessage.partner == partner)
        if correlation_id:
            query = query.where(StoredMessage.correlation_id == correlation_id)
        if since is not None:
            query = query.where(StoredMessage.created_at >= since)
        if until is not None:
            query = query.where(StoredMessage.created_at < until)
        if search:
            like = f"%{search}%"
            query = query.where(
                or_(
                    StoredMessage.id.like(like),
                    StoredMessage.correlation_id.like(like),
                    StoredMessage.error.like(like),
                    *_source_holds(search),
                )
            )
        query = query.order_by(StoredMessage.created_at.desc()).limit(limit).offset(offset)
        with self.session() as session:
            return [_summary(m) for m in session.scalars(query)]

    def count_messages(self, *, flow: str | None = None, state: str | None = None) -> int:
        query = select(func.count()).select_from(StoredMessage)
        if flow:
            query = query.where(StoredMessage.flow == flow)
        if state:
            query = query.where(StoredMessage.shown_state_in([state]))
        with self.session() as session:
            return int(session.scalar(query) or 0)

    def message(self, message_id: str) -> MessageDetail | None:
        """Everything about one message, with a timeline of what happened to it."""
        with self.session() as session:
            m = session.get(StoredMessage, message_id)
            if m is None:
                return None
            deliveries = list(session.scalars(
                select(Delivery).where(Delivery.message_id == message_id)
                .order_by(Delivery.output_index, Delivery.id)
            ))
            trace = session.get(MessageTrace, message_id)
            attempts = list(session.scalars(
                select(Attempt).where(Attempt.message_id == message_id)
                .order_by(Attempt.started_at, Attempt.id)
            ))
            dead = list(session.scalars(
                select(DeadLetter).where(DeadLetter.message_id == message_id)
                .order_by(DeadLetter.id)
            ))
            replays = list(session.scalars(
                select(StoredMessage).where(StoredMessage.replay_of == message_id)
                .order_by(StoredMessage.created_at)
            ))
            detail = MessageDetail(
                summary=_summary(m),
                payload_text=payload_text(m.payload),
                deliveries=[_delivery(d, with_payload=True) for d in deliveries],
                traces=[
                    TraceInfo(t["step_index"], t["step"], t["status"], t["duration"],
                              redactor.redact(t["snapshot"]), t["at"])
                    for t in (trace.steps if trace is not None else [])
                ],
                attempts=[
                    AttemptInfo(a.kind, a.target, a.number, a.worker, a.started_at, a.duration,
                                a.ok, redactor.redact(a.error) if a.error else None,
                                a.detail or {})
                    for a in attempts
                ],
                dead_letters=[_dead(d, with_input=True) for d in dead],
                replays=[_summary(r) for r in replays],
                timeline=[],
            )
        detail.timeline = timeline(detail)
        return detail

    def payload(self, message_id: str) -> tuple[bytes, str] | None:
        """The stored source payload and content type (for replay and download)."""
        with self.session() as session:
            m = session.get(StoredMessage, message_id)
            return None if m is None else (m.payload, m.content_type)

    # -- dead letters ------------------------------------------------------------
    def dead_letters(
        self,
        *,
        flow: str | None = None,
        reason: str | None = None,
        status: str | None = "open",
        kind: str | None = None,
        since: float | None = None,
        ids: Sequence[int] | None = None,
        limit: int = 100,
        offset: int = 0,
        with_input: bool = False,
    ) -> list[DeadLetterInfo]:
        """Newest first; `reason` matches part of the reason text."""
        query = select(DeadLetter)
        if flow:
            query = query.where(DeadLetter.flow == flow)
        if reason:
            query = query.where(
                or_(DeadLetter.reason.like(f"%{reason}%"), DeadLetter.reason_kind == reason)
            )
        if status:
            query = query.where(DeadLetter.status == status)
        if kind:
            query = query.where(DeadLetter.kind == kind)
        if since is not None:
            query = query.where(DeadLetter.created_at >= since)
        if ids is not None:
            query = query.where(DeadLetter.id.in_(list(ids)))
        query = query.order_by(DeadLetter.created_at.desc(), DeadLetter.id.desc())
        query = query.limit(limit).offset(offset)
        with self.session() as session:
            return [_dead(d, with_input) for d in session.scalars(query)]

    def dead_letter(self, dead_letter_id: int) -> DeadLetterInfo | None:
        with self.session() as session:
            d = session.get(DeadLetter, dead_letter_id)
            return None if d is None else _dead(d, with_input=True)

    def dead_letter_groups(self, *, status: str = "open", flow: str | None = None,
                           max_ids: int = 1000) -> list[DeadLetterGroup]:
        """Open dead letters grouped by flow and reason (specifics blanked), biggest first."""
        query = select(
            DeadLetter.flow, DeadLetter.reason_kind, func.count(), func.min(DeadLetter.created_at),
            func.max(DeadLetter.created_at), func.min(DeadLetter.reason),
        ).where(DeadLetter.status == status)
        if flow:
            query = query.where(DeadLetter.flow == flow)
        query = query.group_by(DeadLetter.flow, DeadLetter.reason_kind)
        groups: list[DeadLetterGroup] = []
        with self.session() as session:
            for flow_name, kind, count, oldest, newest, sample in session.execute(query):
                ids = list(session.scalars(
                    select(DeadLetter.id).where(
                        DeadLetter.status == status, DeadLetter.flow == flow_name,
                        DeadLetter.reason_kind == kind,
                    ).order_by(DeadLetter.id).limit(max_ids)
                ))
                groups.append(DeadLetterGroup(flow_name, kind, int(count), float(oldest),
                                              float(newest), redactor.redact(sample), ids))
        groups.sort(key=lambda g: (-g.count, g.flow))
        return groups

    def discard_dead_letters(self, ids: Sequence[int], who: str = "") -> int:
        """Mark dead letters as handled without replaying them."""
        with write_transaction(self.engine) as connection:
            result = connection.execute(
                update(DeadLetter).where(DeadLetter.id.in_(list(ids)), DeadLetter.status == "open")
                .values(status="discarded", replayed_at=time.time())
            )
            return int(result.rowcount or 0)

    def replay_subject(self, raw: str | int) -> ReplaySubject | None:
        """The message a dead letter id (a number) or a message id names, or None."""
        with self.session() as session:
            dead: DeadLetter | None = None
            if isinstance(raw, int) or raw.isdigit():
                dead = session.get(DeadLetter, int(raw))
                original = session.get(StoredMessage, dead.message_id) if dead else None
            else:
                original = session.get(StoredMessage, raw)
            if original is None:
                return None
            return ReplaySubject(
                message_id=original.id, correlation_id=original.correlation_id, flow=original.flow,
                flow_version=original.flow_version, payload=original.payload,
                content_type=original.content_type, source=dict(original.source or {}),
                headers=dict(original.headers or {}), plant=original.plant, partner=original.partner,
                dead_letter_id=dead.id if dead else None, dead_kind=dead.kind if dead else None,
                dead_flow_version=dead.flow_version if dead else None,
                dead_delivery_id=dead.delivery_id if dead else None, dead_target=dead.target if dead else None,
                dead_status=dead.status if dead else None, dead_replayed_as=dead.replay_message_id if dead else None,
            )

    def resend_delivery(self, subject: ReplaySubject) -> None:
        """A dead delivery goes out again, as it was (same output, same idempotency key)."""
        now = time.time()
        with write_transaction(self.engine) as c:
            c.execute(update(Delivery).where(Delivery.id == subject.dead_delivery_id).values(
                state="pending", attempts=0, next_at=now, last_error=None,
                lease_owner=None, lease_until=None, updated_at=now))
            c.execute(update(StoredMessage).where(StoredMessage.id == subject.message_id).values(
                state="delivering", finished_at=None, updated_at=now))
            c.execute(update(DeadLetter).where(DeadLetter.id == subject.dead_letter_id).values(
                status="replayed", replayed_at=now, replay_message_id=subject.message_id))

    def mark_replayed(self, subject: ReplaySubject, replay_message_id: str) -> None:
        """The dead letter named (or, for a message id, its open dead letters) is replayed
        as `replay_message_id`."""
        now = time.time()
        with write_transaction(self.engine) as c:
            dead_ids = [subject.dead_letter_id] if subject.dead_letter_id is not None else list(c.execute(
                select(DeadLetter.id).where(DeadLetter.message_id == subject.message_id,
                                            DeadLetter.status == "open")).scalars())
            if dead_ids:
                c.execute(update(DeadLetter).where(DeadLetter.id.in_(dead_ids)).values(
                    status="replayed", replayed_at=now, replay_message_id=replay_message_id))

    # -- deployments -------------------------------------------------------------
    def record_deployment(
        self, *, flow: str, version: str, path: str, text: str, who: str = "", note: str = "",
        action: str = "deploy", kind: str = "Flow", labels: dict[str, Any] | None = None,
        enabled: bool = True, dedupe: bool = True, files: dict[str, bytes] | None = None,
        flow_file: str = "", git_commit: str = "",
    ) -> DeploymentInfo | None:
        """Write a deployment row and the flow's state (clearing its last refusal). With
        `dedupe`, nothing is written when the flow's last deployment already is this
        version with this action. `files` is the snapshot (path under the flows folder ->
        content; `flow_file` names the flow's own entry), stored content-addressed."""
        manifest = self._store_files(files) if files is not None else None
        for tries in range(3):
            try:
                return self._record_deployment(
                    flow=flow, version=version, path=path, text=text, who=who, note=note,
                    action=action, kind=kind, labels=labels, enabled=enabled, dedupe=dedupe,
                    manifest=manifest, flow_file=flow_file, git_commit=git_commit)
            except IntegrityError:  # another worker recorded the same flow at the same time
                if tries == 2:
                    raise
        return None

    def _record_deployment(
        self, *, flow: str, version: str, path: str, text: str, who: str, note: str,
        action: str, kind: str, labels: dict[str, Any] | None, enabled: bool, dedupe: bool,
        manifest: dict[str, str] | None, flow_file: str, git_commit: str,
    ) -> DeploymentInfo | None:
        now = time.time()
        with write_lock(self.engine), self.session() as session, session.begin():
            if self.dialect == "postgresql":  # one recorder per flow at a time
                session.execute(text_sql("SELECT pg_advisory_xact_lock(hashtext(:f))"),
                                {"f": f"flowyard-deploy:{flow}"})
            if dedupe:
                last = session.scalars(
                    select(Deployment).where(Deployment.flow == flow)
                    .order_by(Deployment.id.desc()).limit(1)
                ).first()
                state = session.get(FlowState, flow)
                if (last is not None and last.version == version and last.action == action
                        and state is not None and state.enabled == enabled):
                    return None
            row = Deployment(flow=flow, version=version, path=path, text=text, kind=kind,
                             who=who, at=now, note=note, action=action, labels=labels or {},
                             files=manifest, flow_file=flow_file, git_commit=git_commit)
            session.add(row)
            state = session.get(FlowState, flow)
            if state is None:
                state = FlowState(flow=flow)
                session.add(state)
            state.version, state.path, state.enabled = version, path, enabled
            state.updated_at, state.labels = now, labels or {}
            state.refused, state.refused_at = "", None
            session.flush()
            return _deployment(row)

    def undeploy(self, flow: str, *, who: str = "", note: str = "") -> DeploymentInfo:
        """Stop running a flow (its file stays; `deploy` starts it again)."""
        with self.session() as session:
            state = session.get(FlowState, flow)
            if state is None:
                raise StoreError(f"flow {flow!r} was never deployed")
            version, path = state.version, state.path
        info = self.record_deployment(flow=flow, version=version, path=path, text="", who=who,
                                      note=note, action="undeploy", enabled=False, dedupe=False)
        assert info is not None
        return info

    def _store_files(self, files: dict[str, bytes]) -> dict[str, str]:
        """Store each file's content once, by digest; returns path -> digest."""
        manifest = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
        by_digest = {manifest[name]: content for name, content in files.items()}
        with write_lock(self.engine), self.session() as session, session.begin():
            have = set(session.scalars(select(DeployFile.digest).where(DeployFile.digest.in_(list(by_digest)))))
            for digest, content in by_digest.items():
                if digest not in have:
                    session.add(DeployFile(digest=digest, content=content, size=len(content)))
        return manifest

    def snapshot(self, flow: str, version: str) -> Snapshot | None:
        """The deployed snapshot of a flow version, files and all (None when that version
        was never deployed, or was deployed before snapshots held every file)."""
        with self.session() as session:
            row = session.scalars(
                select(Deployment).where(Deployment.flow == flow, Deployment.version == version,
                                         Deployment.files.is_not(None))
                .order_by(Deployment.id.desc()).limit(1)
            ).first()
            if row is None or not row.files:
                return None
            manifest = dict(row.files)
            contents = {f.digest: f.content for f in session.scalars(
                select(DeployFile).where(DeployFile.digest.in_(list(set(manifest.values())))))}
            missing = [name for name, digest in manifest.items() if digest not in contents]
            if missing:
                raise StoreError(f"the snapshot of {flow} {version} misses stored files: {', '.join(missing)}")
            return Snapshot(flow=flow, version=version, flow_file=row.flow_file,
                            files={name: contents[digest] for name, digest in manifest.items()}, path=row.path)

    def refuse(self, flow: str, reason: str) -> None:
        """Record that a deploy of `flow` was refused, and why; the running version (if
        any) stays deployed."""
        now = time.time()
        with write_lock(self.engine), self.session() as session, session.begin():
            state = session.get(FlowState, flow)
            if state is None:
                state = FlowState(flow=flow, version="", path="", enabled=False, updated_at=now, labels={})
                session.add(state)
            state.refused, state.refused_at = reason, now

    def report_runs(self, worker: str, runs: Sequence[tuple[str, str, str]]) -> None:
        """What `worker` runs now: (flow, version, error) for every flow it was asked to
        run; flows it no longer runs are dropped from its report."""
        now = time.time()
        with write_transaction(self.engine) as c:
            c.execute(delete(FlowRun).where(FlowRun.worker == worker))
            if runs:
                c.execute(insert(FlowRun), [
                    {"worker": worker, "flow": flow, "version": version, "error": error, "at": now}
                    for flow, version, error in runs
                ])

    def flow_runs(self, flow: str | None = None) -> list[FlowRunInfo]:
        query = select(FlowRun).order_by(FlowRun.flow, FlowRun.worker)
        if flow:
            query = query.where(FlowRun.flow == flow)
        with self.session() as session:
            return [FlowRunInfo(r.worker, r.flow, r.version, r.error, r.at) for r in session.scalars(query)]

    def deployments(self, flow: str | None = None, limit: int = 100) -> list[DeploymentInfo]:
        """Deployment history, newest first."""
        query = select(Deployment)
        if flow:
            query = query.where(Deployment.flow == flow)
        query = query.order_by(Deployment.id.desc()).limit(limit)
        with self.session() as session:
            return [_deployment(d) for d in session.scalars(query)]

    def version_text(self, flow: str, version: str) -> tuple[str, str] | None:
        """The file text and path of a deployed version (for replay and rollback)."""
        with self.session() as session:
            row = session.scalars(
                select(Deployment).where(
                    Deployment.flow == flow, Deployment.version == version, Deployment.text != ""
                ).order_by(Deployment.id.desc()).limit(1)
            ).first()
            return None if row is None else (row.text, row.path)

    def flows(self) -> list[FlowInfo]:
        with self.session() as session:
            return [_flow_info(s) for s in session.scalars(select(FlowState).order_by(FlowState.flow))]

    def flow_state(self, flow: str) -> FlowInfo | None:
        with self.session() as session:
            s = session.get(FlowState, flow)
            return None if s is None else _flow_info(s)

    def workers(self, *, stopped_within: float = 3600.0) -> list[WorkerInfo]:
        """The runtime workers, running or stopped within `stopped_within` seconds, newest first."""
        now = time.time()
        with self.session() as session:
            return [
                WorkerInfo(w.id, w.host, w.pid, w.mode, w.started_at, w.heartbeat_at, w.stopped_at)
                for w in session.scalars(
                    select(Worker).where(or_(Worker.stopped_at.is_(None),
                                             Worker.stopped_at >= now - stopped_within))
                    .order_by(Worker.started_at.desc()).limit(50)
                )
            ]

    # -- dashboard ---------------------------------------------------------------
    def overview(self, window: MessageWindow, *, recent_failures: int = 8) -> Overview:
        """The dashboard's summary cards. Reads no whole table: the messages finished in
        the last hour come from `window` (brought up to date by the caller), the rest
        from indexes."""
        now = time.time()
        with self.session() as session:
            oldest, pending, received = _oldest_pending_received(session, now)
            dead_letters = session.scalar(select(func.count()).where(DeadLetter.status == "open"))
            backlog = session.scalar(select(func.count()).where(StoredMessage.state.in_(OPEN_STATES)))
            return Overview(
                backlog=int(backlog or 0), pending_deliveries=int(pending or 0),
                dead_letters_open=int(dead_letters or 0),
                oldest_dead_letter_age=(now - float(oldest)) if oldest is not None else None,
                received_last_hour=int(received or 0), finished_last_hour=window.finished_since(now - 3600),
                workers=_workers(session, now), recent_failures=_recent_failures(session, recent_failures),
            )

    def dashboard(self, *, recent_failures: int = 10) -> Dashboard:
        now = time.time()
        with self.session() as session:
            per_flow: dict[str, FlowCounts] = {}
            states: dict[str, int] = {}
            shown = StoredMessage.shown_state
            rows = session.execute(
                select(StoredMessage.flow, shown, func.count(), func.max(StoredMessage.created_at))
                .group_by(StoredMessage.flow, shown)
            )
            for flow_name, state, count, last in rows:
                fc = per_flow.setdefault(flow_name, FlowCounts(flow_name, {}, 0, None))
                fc.states[state] = int(count)
                fc.last_message_at = max(fc.last_message_at or 0.0, float(last or 0.0)) or None
                states[state] = states.get(state, 0) + int(count)
            for flow_name, count in session.execute(
                select(DeadLetter.flow, func.count()).where(DeadLetter.status == "open")
                .group_by(DeadLetter.flow)
            ):
                per_flow.setdefault(flow_name, FlowCounts(flow_name, {}, 0, None))
                per_flow[flow_name].dead_letters = int(count)
            oldest, pending, received = _oldest_pending_received(session, now)
            finished = session.scalar(
                select(func.count()).select_from(StoredMessage)
                .where(StoredMessage.finished_at >= now - 3600)
            )
            workers = _workers(session, now)
            failures = _recent_failures(session, recent_failures)
        return Dashboard(
            states=states,
            flows=sorted(per_flow.values(), key=lambda f: f.flow),
            backlog=sum(states.get(s, 0) for s in OPEN_STATES),
            pending_deliveries=int(pending or 0),
            dead_letters_open=sum(f.dead_letters for f in per_flow.values()),
            oldest_dead_letter_age=(now - float(oldest)) if oldest is not None else None,
            received_last_hour=int(received or 0),
            finished_last_hour=int(finished or 0),
            workers=workers,
            recent_failures=failures,
        )


def _source_holds(text: str) -> list[ColumnElement[bool]]:
    """Conditions: the message's source (stored as JSON: a file name's backslash or
    quote appears escaped) holds `text`."""
    source = cast(StoredMessage.source, Text)
    once = json.dumps(text, ensure_ascii=False)[1:-1]
    return [source.contains(form, autoescape=True) for form in sorted({text, once})]


def timeline(detail: MessageDetail) -> list[TimelineEvent]:
    """What happened to a message, in the order it happened: received, each step, each
    delivery attempt, dead letters, replays, the end.

    An attempt is placed where it ended, not where it began: a processing attempt begins
    before its first step and ends after its last (a step's `at` is taken when the step
    is done), so sorted by its start a failed attempt showed before the steps it ran. The
    step a failure names is traced after the attempt's clock stopped, and the dead letter
    is written just before that trace; each processing attempt therefore closes at the
    last step traced within it, and its dead letter follows it."""
    s = detail.summary
    source = s.source.get("file") or s.source.get("topic") or s.source.get("connector") or ""
    keyed: list[tuple[float, int, int, TimelineEvent]] = []

    def add(order: float, rank: int, event: TimelineEvent) -> None:
        keyed.append((order, rank, len(keyed), event))

    add(s.created_at, 0, TimelineEvent(s.created_at, "received", f"received {source}".strip(),
                                       detail=f"{s.size} bytes, {s.content_type}"))
    for t in detail.traces:
        add(t.at, 1, TimelineEvent(t.at, "step", t.step, t.status, t.snapshot, t.duration))
    closes: list[tuple[float, float]] = []  # each processing attempt: (began, closed)
    for a in detail.attempts:
        ended = a.started_at + (a.duration or 0.0)
        if a.kind == "deliver":
            title = f"delivery to {a.target} (attempt {a.number})"
        else:
            title = f"processing (attempt {a.number})"
            ended = max([ended] + [t.at for t in detail.traces
                                   if a.started_at <= t.at <= ended + _TRACE_SLACK])
            closes.append((a.started_at, ended))
        add(ended, 2, TimelineEvent(ended, "attempt", title, "ok" if a.ok else "failed",
                                    a.error or json.dumps(a.detail, default=str), a.duration))
    for d in detail.deliveries:
        if d.state in ("pending", "sending"):
            at = d.next_at or d.updated_at
            add(at, 4, TimelineEvent(at, "delivery", f"next attempt to {d.target}", "pending",
                                     d.last_error or ""))
    for dl in detail.dead_letters:
        order = dl.created_at
        if dl.kind == "step":
            order = max([order] + [closed for began, closed in closes
                                   if began <= dl.created_at <= closed + _TRACE_SLACK])
        add(order, 3, TimelineEvent(dl.created_at, "dead_letter",
                                    f"dead letter ({dl.step or dl.target or dl.kind})", "failed",
                                    dl.reason))
    for r in detail.replays:
        add(r.created_at, 5, TimelineEvent(r.created_at, "replay", f"replayed as {r.id}", r.state))
    if s.finished_at:
        add(s.finished_at, 6, TimelineEvent(s.finished_at, "finished", s.state,
                                            "ok" if s.state in ("done", "dropped") else "failed"))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    return [k[3] for k in keyed]


# how long after a processing attempt's clock stopped its failed step and dead letter
# may be written (the same pass writes them, microseconds apart)
_TRACE_SLACK = 1.0
