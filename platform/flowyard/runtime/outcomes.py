"""The rows a processed message leaves in the store (dead letters, deliveries) and
its final state, and errors in one line."""

from __future__ import annotations

import time
from typing import Any

from ..message import Message
from ..secrets import redactor
from ..store import queue
from ..store.api import reason_kind
from ..store.records import DeadLetterRow, DeliveryRow
from .flows import LoadedTarget
from .snapshots import json_copy


def dead_row(c: queue.ClaimedMessage, kind: str, reason: str, where: str | None,
             payload: bytes, content_type: str, trace: list[Any],
             target: str | None = None) -> DeadLetterRow:
    return {"message_id": c.id, "correlation_id": c.correlation_id, "flow": c.flow,
            "flow_version": c.flow_version, "kind": kind, "reason": reason,
            "reason_kind": reason_kind(reason), "step": where, "target": target,
            "input": payload, "input_content_type": content_type, "trace": trace,
            "status": "open", "created_at": time.time()}


def delivery_row(c: queue.ClaimedMessage, index: int, out: Message, t: LoadedTarget) -> DeliveryRow:
    now = time.time()
    last_data = json_copy(out.last_data)
    return {
        "message_id": c.id, "output_index": index, "output_id": out.id,
        "target": t.spec.name, "endpoint": t.endpoint,
        "idempotency_key": f"{idempotency_base(c)}.{index}.{t.spec.name}", "flow": c.flow,
        "flow_version": c.flow_version, "state": "pending", "attempts": 0, "next_at": now,
        "content_type": out.content_type, "payload": out.payload_bytes(),
        "meta": {"id": out.id, "correlation_id": out.correlation_id,
                 "source": out.source, "headers": out.headers, "last_data": last_data},
        "last_error": None, "detail": {}, "created_at": now, "updated_at": now,
        "lease_token": 0,
    }


def idempotency_base(c: queue.ClaimedMessage) -> str:
    """A message's outputs go out with keys MESSAGE.OUTPUT.TARGET; a forced replay of a
    dead letter keeps the keys of its first replay (`idempotency_of`)."""
    base = c.headers.get("idempotency_of") if c.headers else None
    return str(base) if base else c.id


def final_state(o: queue.ProcessOutcome) -> str:
    states = {d["state"] for d in o.deliveries}
    if "pending" in states:
        return "delivering"
    if o.error or "dead" in states:
        return "dead"
    if not o.deliveries and not o.outputs:
        return "dropped"
    return "done"


def brief(exc: BaseException) -> str:
    """An error in one line, without the SQL statement and its parameters (which would
    put payloads into the log)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return redactor.redact(f"{type(orig or exc).__name__}: {text[0] if text else ''}")
