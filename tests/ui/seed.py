"""Real rows in the real store tables, as the runtime writes them, for the page tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from flowyard.message import Message
from flowyard.operations import deployments
from flowyard.operations.snapshots import take
from flowyard.store.api import Store, reason_kind
from flowyard.store.models import DeadLetter, MessageTrace, StoredMessage


def deploy(store: Store, path: Path, who: str = "seed") -> str:
    return deployments.deploy(store, path, who=who, note="seeded").version


def message(
    store: Store,
    flow: str,
    version: str,
    payload: dict[str, Any],
    *,
    state: str = "done",
    error: str | None = None,
    step: str | None = None,
    age: float = 60.0,
    plant: str = "MX01",
    partner: str = "ERP",
) -> str:
    now = time.time()
    msg = Message(
        payload=json.dumps(payload).encode(),
        content_type="application/json",
        flow=flow,
        flow_version=version,
        source={"connector": "file", "file": f"{payload.get('po', 'x')}.json"},
        headers={"labels": {"plant": plant, "partner": partner}},
    )
    store.accept(msg)
    with store.engine.begin() as c:
        c.execute(
            update(StoredMessage)
            .where(StoredMessage.id == msg.id)
            .values(
                state=state,
                created_at=now - age,
                updated_at=now - age + 1,
                finished_at=now - age + 0.5 if state in ("done", "dead") else None,
                error=error,
                error_step=step,
            )
        )
        c.execute(
            insert(MessageTrace),
            [
                {
                    "message_id": msg.id,
                    "at": now - age + 0.1,
                    "steps": [
                        {
                            "step_index": 0,
                            "step": "1-jmespath",
                            "status": "failed" if state == "dead" else "ok",
                            "duration": 0.001,
                            "snapshot": json.dumps({"order": payload.get("po"), "qty": payload.get("qty")}),
                            "at": now - age + 0.1,
                        }
                    ],
                }
            ],
        )
        if state == "dead":
            c.execute(
                insert(DeadLetter),
                [
                    {
                        "message_id": msg.id,
                        "correlation_id": msg.correlation_id,
                        "flow": flow,
                        "flow_version": version,
                        "kind": "step",
                        "reason": error or "failed",
                        "reason_kind": reason_kind(error or "failed"),
                        "step": step,
                        "target": None,
                        "input": msg.payload_bytes(),
                        "input_content_type": "application/json",
                        "trace": [],
                        "status": "open",
                        "created_at": now - age + 0.5,
                    }
                ],
            )
    return msg.id


def flow_version(path: Path) -> str:
    """The version a deploy of the file gives: its snapshot's."""
    return take(path).version
