"""The runtime's tables, declared once on `flowyard.store.database.Base`.

Times are UNIX epoch seconds (float) so that SQLite and PostgreSQL behave the same and
lease arithmetic is plain. Payloads are stored as bytes; data payloads as their JSON.
States:

- message: `received` (stored, source acknowledged) -> `processing` (leased by a worker)
  -> `delivering` (steps done, some delivery pending a retry) -> `done` | `dead`
  (a step failed or a delivery died) | `dropped` (a filter removed it, nothing to send).
  `processing` is shown, not stored: see `StoredMessage.shown_state`.
- delivery: `pending` (waiting for its next attempt at `next_at`) -> `sending` (leased)
  -> `done` | `dead`.
- dead letter: `open` -> `replayed` | `discarded`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    false,
    literal_column,
    or_,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from .database import Base

MESSAGE_STATES = ("received", "processing", "delivering", "done", "dead", "dropped")
OPEN_STATES = ("received", "processing", "delivering")
CLAIMABLE_STATES = ("received", "processing")  # stored `processing`: rows of a store before 0008
CLAIMABLE_SQL = "state IN ('received', 'processing')"  # what a claim looks at (a lease may have lapsed)
OPEN_INDEX = "ix_fy_messages_open_created"  # the claimable messages by age
# the deliveries still to make, written out (not bound) wherever a query looks for them, so
# that PostgreSQL can use the partial index on them in a prepared, generic plan too
OPEN_DELIVERIES_SQL = "state IN ('pending', 'sending')"


class Deployment(Base):
    """One deployment of one flow version: who deployed what, when, and why. The file
    text is kept so that replay can run the version a message failed on and rollback can
    restore it."""

    __tablename__ = "fy_deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1000), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(40), default="Flow")
    who: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[str] = mapped_column(String(20), default="deploy")  # deploy|undeploy|rollback
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the snapshot: every file the flow uses, by its path under the flows folder, as the
    # digest of its content in fy_deploy_files; `flow_file` is the flow's own entry
    files: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    flow_file: Mapped[str] = mapped_column(String(500), default="", server_default="")
    git_commit: Mapped[str] = mapped_column(String(64), default="", server_default="")

    __table_args__ = (Index("ix_fy_deployments_flow_version", "flow", "version"),)


class DeployFile(Base):
    """One file of a deployment snapshot, stored once whatever number of deployments
    hold it (content-addressed: rows are never changed, only added)."""

    __tablename__ = "fy_deploy_files"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256, hex
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)


class FlowState(Base):
    """Each flow's deployment state: whether the runtime runs it and which deployed
    version (the snapshot of fy_deployments with that version), and the last deploy the
    gate refused, with its reason (the running version stays)."""

    __tablename__ = "fy_flows"

    flow: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), default="")
    path: Mapped[str] = mapped_column(String(1000), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    refused: Mapped[str] = mapped_column(Text, default="", server_default="")
    refused_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class FlowRun(Base):
    """What one worker actually runs of a flow: the version it loaded, or why the
    deployed version does not load there (a secret missing on that host, say)."""

    __tablename__ = "fy_flow_runs"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    flow: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[float] = mapped_column(Float)


class StoredMessage(Base):
    """A message accepted from a source (or created by a replay), with its lease."""

    __tablename__ = "fy_messages"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    correlation_id: Mapped[str] = mapped_column(String(64), index=True)
    flow: Mapped[str] = mapped_column(String(100))
    flow_version: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(20), default="received")
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    plant: Mapped[str] = mapped_column(String(100), default="")
    partner: Mapped[str] = mapped_column(String(100), default="")
    replay_of: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # processing attempts so far
    outputs: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_step: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_token: Mapped[int] = mapped_column(Integer, default=0)  # fencing: +1 per claim

    @hybrid_property
    def shown_state(self) -> str:
        """The state users see. A claim does not write `processing` into `state`: it only
        takes the lease. Then the claim changes no indexed column, and PostgreSQL makes it
        a HOT update (the table has room for it: fillfactor 45, migration 0008) instead of
        a new entry in each of the table's seven indexes, which was a third of the
        server's CPU per message. So a message is `processing` while a worker holds it."""
        if self.state in CLAIMABLE_STATES:
            return "processing" if self.lease_owner is not None else "received"
        return self.state

    @shown_state.inplace.expression
    @classmethod
    def _shown_state(cls) -> ColumnElement[str]:
        # constants written out, not bound: a GROUP BY by this expression must read the same
        # as the select's (PostgreSQL compares the text; group by the same object)
        shown = {s: literal_column(f"'{s}'", String) for s in CLAIMABLE_STATES}
        return case((cls.state.in_(CLAIMABLE_STATES), case(
            (cls.lease_owner.is_not(None), shown["processing"]), else_=shown["received"])),
            else_=cls.state)

    @classmethod
    def shown_state_in(cls, states: Sequence[str]) -> ColumnElement[bool]:
        """`shown_state IN states`, written so that the state index still serves it."""
        wanted = set(states)
        stored = sorted(wanted - set(CLAIMABLE_STATES))
        conditions: list[ColumnElement[bool]] = [cls.state.in_(stored)] if stored else []
        if wanted.issuperset(CLAIMABLE_STATES):
            conditions.append(cls.state.in_(CLAIMABLE_STATES))
        elif "received" in wanted:
            conditions.append(and_(cls.state.in_(CLAIMABLE_STATES), cls.lease_owner.is_(None)))
        elif "processing" in wanted:
            conditions.append(and_(cls.state.in_(CLAIMABLE_STATES), cls.lease_owner.is_not(None)))
        return or_(false(), *conditions)

    __table_args__ = (
        Index("ix_fy_messages_state_created", "state", "created_at"),
        Index("ix_fy_messages_flow_created", "flow", "created_at"),
        Index("ix_fy_messages_created_at", "created_at"),  # newest first, unfiltered (UI)
        Index(OPEN_INDEX, "created_at",  # claims: the oldest open ones
              postgresql_where=text(CLAIMABLE_SQL), sqlite_where=text(CLAIMABLE_SQL)),
        Index("ix_fy_messages_replay_of", "replay_of",  # partial: see migration 0008
              postgresql_where=text("replay_of IS NOT NULL")),
    )


class Delivery(Base):
    """One output of one message towards one target, with its own state and retries."""

    __tablename__ = "fy_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("fy_messages.id", ondelete="CASCADE"), index=True
    )
    output_index: Mapped[int] = mapped_column(Integer, default=0)
    output_id: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(500), default="")
    idempotency_key: Mapped[str] = mapped_column(String(300))
    flow: Mapped[str] = mapped_column(String(100))
    flow_version: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # output message metadata
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_token: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_fy_deliveries_idempotency_key"),
        Index("ix_fy_deliveries_state_next", "state", "next_at",  # partial: see migration 0008
              postgresql_where=text(OPEN_DELIVERIES_SQL)),
    )


class Attempt(Base):
    """Every processing or delivery attempt, successful or not."""

    __tablename__ = "fy_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(20))  # process | deliver
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    number: Mapped[int] = mapped_column(Integer, default=1)
    worker: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MessageTrace(Base):
    """What each step gave for one message, in one row: per step its index, name, status
    (ok|skipped|failed|dropped), duration, a snapshot capped in size (FLOWYARD_TRACE_CAP)
    and when it ran. Purged after the retention period (FLOWYARD_TRACE_RETENTION_DAYS).

    One row per message, not per step: a message's steps are written once, together,
    and read together, and a row per step cost PostgreSQL three rows and six index
    entries per message of a three-step flow, about a sixth of its work for a message."""

    __tablename__ = "fy_traces"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    at: Mapped[float] = mapped_column(Float, index=True)


class DeadLetter(Base):
    """A message (or one of its deliveries) that could not be completed: the reason, the
    step or target, the input it failed on and the trace up to the failure."""

    __tablename__ = "fy_dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    delivery_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    correlation_id: Mapped[str] = mapped_column(String(64), default="")
    flow: Mapped[str] = mapped_column(String(100), index=True)
    flow_version: Mapped[str] = mapped_column(String(64), default="")
    kind: Mapped[str] = mapped_column(String(20))  # step | delivery
    reason: Mapped[str] = mapped_column(Text)
    reason_kind: Mapped[str] = mapped_column(String(300), default="")  # groups similar reasons
    step: Mapped[str | None] = mapped_column(String(200), nullable=True)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    input: Mapped[bytes] = mapped_column(LargeBinary)
    input_content_type: Mapped[str] = mapped_column(String(200), default="")
    trace: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[float] = mapped_column(Float)
    replayed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    replay_message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (Index("ix_fy_dead_letters_status_created", "status", "created_at"),)


class Worker(Base):
    """A runtime process, with its last heartbeat (shown on the dashboard)."""

    __tablename__ = "fy_workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    mode: Mapped[str] = mapped_column(String(20), default="worker")
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    stopped_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class SourceKey(Base):
    """The upstream identity of an item a source handed in (`message.source["key"]`,
    stored as its SHA-256), one row per flow and item: a source that dies between the
    store's commit and its acknowledgment hands the same item in again after the
    restart, and `accept` recognises it here instead of storing it twice. Kept for the
    dedup retention (FLOWYARD_DEDUP_RETENTION_DAYS)."""

    __tablename__ = "fy_source_keys"

    flow: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float, index=True)


class Breaker(Base):
    """A circuit breaker opened by one worker, shared with all: while `open_until` lies
    ahead, every worker holds back its deliveries to that endpoint, so a dead ERP is
    detected once, not once per worker."""

    __tablename__ = "fy_breakers"

    endpoint: Mapped[str] = mapped_column(String(500), primary_key=True)
    open_until: Mapped[float] = mapped_column(Float)
    cooldown: Mapped[float] = mapped_column(Float, default=0.0)
    opened_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[float] = mapped_column(Float)
