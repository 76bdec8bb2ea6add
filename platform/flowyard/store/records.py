"""The rows a processed message leaves in the store, typed.

They stay dictionaries at run time (TypedDict): a batch commit hands them to one
executemany, or to PostgreSQL as one JSON recordset, without a copy per row; the types
are for the reader and for mypy, which checks every key where a row is made or read.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class DeliveryMeta(TypedDict):
    """What a retry needs to rebuild the output message."""

    id: str
    correlation_id: str
    source: dict[str, Any]
    headers: dict[str, Any]
    last_data: NotRequired[Any]  # kept for retries only (a name template may read it)


class DeliveryRow(TypedDict):
    message_id: str
    output_index: int
    output_id: str
    target: str
    endpoint: str
    idempotency_key: str
    flow: str
    flow_version: str
    state: str  # pending | done | dead
    attempts: int
    next_at: float
    content_type: str
    payload: bytes
    meta: DeliveryMeta
    last_error: str | None
    detail: dict[str, Any]
    created_at: float
    updated_at: float
    lease_token: int


class AttemptRow(TypedDict):
    message_id: str
    delivery_id: int | None
    kind: str  # process | deliver
    target: str | None
    number: int
    worker: str
    started_at: float
    duration: float
    ok: bool
    error: str | None
    detail: dict[str, Any]


class TraceStep(TypedDict):
    step_index: int
    step: str
    status: str  # ok | dropped | skipped | failed
    duration: float
    snapshot: str
    at: float


class TraceRow(TypedDict):
    message_id: str
    steps: list[TraceStep]
    at: float


class DeadLetterRow(TypedDict):
    message_id: str
    correlation_id: str
    flow: str
    flow_version: str
    kind: str  # step | delivery
    reason: str
    reason_kind: str
    step: str | None
    target: str | None
    input: bytes
    input_content_type: str
    trace: list[Any]
    status: str
    created_at: float
    delivery_id: NotRequired[int | None]
    delivery_key: NotRequired[str]  # a first attempt's: its delivery has no id before the commit
