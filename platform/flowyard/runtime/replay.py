"""Replaying dead letters and messages.

A replay is a new message with the original input, the same correlation id and
`replay_of` pointing at the original; the runtime processes it like any other.

- `version="failed"` runs the version the message failed on; `"current"` runs the
  version deployed now; any other value names a version hash.
- The result carries the difference of output between the failed-on version and the
  version used (computed by running both on the input, touching no target), so an
  analyst sees what a fix changes before and after replaying.
- A dead letter of a delivery (the steps worked, a target refused) replayed on the same
  version re-sends the stored output with the same idempotency key: the other targets,
  which already have the message, are not sent it again. On another version the new
  message goes to that one target only.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from ..engine import Pipeline
from ..errors import FlowyardError
from ..loader import load_flow
from ..message import Message
from ..secrets import redactor
from ..store.api import write_transaction
from ..store.models import DeadLetter, Delivery, FlowState, StoredMessage

if TYPE_CHECKING:
    from ..store.api import ReplayResult, Store


def outputs_text(store: Store, flow: str, version: str, payload: bytes, content_type: str,
                 source: dict[str, object]) -> str:
    """The outputs (or the failure) of one version of a flow on one input, as text."""
    found = store.version_text(flow, version)
    if found is None:
        return f"(version {version} of {flow} is not recorded)\n"
    text, path = found
    try:
        loaded = load_flow(Path(path), text)
    except FlowyardError as exc:
        return f"(version {version} does not load: {exc})\n"
    message = Message(payload=payload, content_type=content_type, flow=flow,
                      flow_version=version, source=dict(source))
    result = Pipeline(loaded).run(message)
    parts = [f"--- output {i + 1} ({m.content_type})\n{m.payload_text(20000)}\n"
             for i, m in enumerate(result.outputs)]
    parts += [f"--- failed: {f.error.describe()}\n" for f in result.failures]
    if not parts:
        parts = ["(no output: the message was filtered out)\n"]
    return redactor.redact("".join(parts))


def current_version(store: Store, flow: str) -> str | None:
    with store.session() as session:
        state = session.get(FlowState, flow)
        return None if state is None else state.version


def replay(store: Store, ids: Sequence[str | int], *, version: str = "failed", who: str = "",
           dry_run: bool = False, flows_dir: Path | None = None) -> list[ReplayResult]:
    from ..store.api import ReplayResult

    results: list[ReplayResult] = []
    for raw in ids:
        dead: DeadLetter | None = None
        with store.session() as session:
            if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
                dead = session.get(DeadLetter, int(raw))
                original = session.get(StoredMessage, dead.message_id) if dead else None
            else:
                original = session.get(StoredMessage, raw)
            if original is None:
                results.append(ReplayResult(str(raw), None, version, error="no such dead letter "
                                            "or message"))
                continue
            session.expunge_all()
        failed_version = dead.flow_version if dead else original.flow_version
        use = failed_version if version == "failed" else (
            current_version(store, original.flow) if version == "current" else version)
        if not use:
            results.append(ReplayResult(str(raw), None, version,
                                        error=f"flow {original.flow} is not deployed"))
            continue
        diff = ""
        if use != failed_version:
            before = outputs_text(store, original.flow, failed_version, original.payload,
                                  original.content_type, original.source or {})
            after = outputs_text(store, original.flow, use, original.payload,
                                 original.content_type, original.source or {})
            diff = "".join(difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True),
                f"{original.flow}@{failed_version}", f"{original.flow}@{use}"))
        if dry_run:
            results.append(ReplayResult(str(raw), None, use, diff))
            continue
        now = time.time()
        if dead is not None and dead.kind == "delivery" and dead.delivery_id and \
                use == failed_version:
            with write_transaction(store.engine) as c:
                c.execute(update(Delivery).where(Delivery.id == dead.delivery_id).values(
                    state="pending", attempts=0, next_at=now, last_error=None,
                    lease_owner=None, lease_until=None, updated_at=now))
                c.execute(update(StoredMessage).where(StoredMessage.id == original.id).values(
                    state="delivering", finished_at=None, updated_at=now))
                c.execute(update(DeadLetter).where(DeadLetter.id == dead.id).values(
                    status="replayed", replayed_at=now, replay_message_id=original.id))
            results.append(ReplayResult(str(raw), original.id, use, diff))
            continue
        headers = dict(original.headers or {})
        headers["replay_of"] = original.id
        headers["labels"] = {"plant": original.plant, "partner": original.partner}
        headers["replayed_by"] = who
        if dead is not None and dead.kind == "delivery" and dead.target:
            headers["only_targets"] = [dead.target]
        message = Message(payload=original.payload, content_type=original.content_type,
                          correlation_id=original.correlation_id, flow=original.flow,
                          flow_version=use, source=dict(original.source or {}),
                          headers=headers)
        store.accept(message)
        with write_transaction(store.engine) as c:
            dead_ids = [dead.id] if dead is not None else list(c.execute(
                select(DeadLetter.id).where(DeadLetter.message_id == original.id,
                                            DeadLetter.status == "open")).scalars())
            if dead_ids:
                c.execute(update(DeadLetter).where(DeadLetter.id.in_(dead_ids)).values(
                    status="replayed", replayed_at=now, replay_message_id=message.id))
        results.append(ReplayResult(str(raw), message.id, use, diff))
    return results
