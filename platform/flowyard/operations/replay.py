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
from collections.abc import Sequence
from dataclasses import dataclass

from ..engine import Pipeline
from ..errors import FlowyardError
from ..loader import load_flow
from ..message import Message
from ..secrets import redactor
from ..store.api import ReplaySubject, Store


@dataclass
class ReplayResult:
    source_id: str  # the dead letter id or message id replayed
    message_id: str | None  # the new message
    version: str
    diff: str = ""  # unified diff of the output: failed-on version vs the version used
    error: str | None = None


def outputs_text(store: Store, flow: str, version: str, subject: ReplaySubject) -> str:
    """The outputs (or the failure) of one version of a flow on one input, as text."""
    found = store.version_text(flow, version)
    if found is None:
        return f"(version {version} of {flow} is not recorded)\n"
    text, path = found
    try:
        loaded = load_flow(path, text)
    except FlowyardError as exc:
        return f"(version {version} does not load: {exc})\n"
    message = Message(payload=subject.payload, content_type=subject.content_type, flow=flow,
                      flow_version=version, source=dict(subject.source))
    result = Pipeline(loaded).run(message)
    parts = [f"--- output {i + 1} ({m.content_type})\n{m.payload_text(20000)}\n"
             for i, m in enumerate(result.outputs)]
    parts += [f"--- failed: {f.error.describe()}\n" for f in result.failures]
    if not parts:
        parts = ["(no output: the message was filtered out)\n"]
    return redactor.redact("".join(parts))


def replay(store: Store, ids: Sequence[str | int], *, version: str = "failed", who: str = "",
           dry_run: bool = False, force: bool = False) -> list[ReplayResult]:
    """Re-run dead letters (int ids) or messages (str ids) as new messages with the same
    correlation id. `version`: "failed" (the version the message ran on), "current" (the
    deployed version; the result carries the difference of output) or a version hash.
    `dry_run` computes the outputs and the diff only.

    A dead letter is replayed once: again only with `force`, and then its outputs go out
    with the idempotency keys of its first replay, so a target that keeps them sees the
    repeat for what it is."""
    results: list[ReplayResult] = []
    for raw in ids:
        subject = store.replay_subject(raw)
        if subject is None:
            results.append(ReplayResult(str(raw), None, version, error="no such dead letter or message"))
            continue
        if subject.dead_status not in (None, "open") and not force:
            earlier = f" (as message {subject.dead_replayed_as})" if subject.dead_replayed_as else ""
            results.append(ReplayResult(str(raw), None, version, error=(
                f"dead letter {subject.dead_letter_id} was {subject.dead_status} already{earlier}; "
                "replay it again with --force")))
            continue
        failed_version = subject.dead_flow_version or subject.flow_version
        if version == "failed":
            use: str | None = failed_version
        elif version == "current":
            state = store.flow_state(subject.flow)
            use = state.version if state is not None else None
        else:
            use = version
        if not use:
            results.append(ReplayResult(str(raw), None, version, error=f"flow {subject.flow} is not deployed"))
            continue
        diff = ""
        if use != failed_version:
            before = outputs_text(store, subject.flow, failed_version, subject)
            after = outputs_text(store, subject.flow, use, subject)
            diff = "".join(difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True),
                f"{subject.flow}@{failed_version}", f"{subject.flow}@{use}"))
        if dry_run:
            results.append(ReplayResult(str(raw), None, use, diff))
            continue
        if subject.dead_kind == "delivery" and subject.dead_delivery_id and use == failed_version:
            store.resend_delivery(subject)
            results.append(ReplayResult(str(raw), subject.message_id, use, diff))
            continue
        headers = dict(subject.headers)
        headers["replay_of"] = subject.message_id
        headers["labels"] = {"plant": subject.plant, "partner": subject.partner}
        headers["replayed_by"] = who
        if force and subject.dead_replayed_as:  # the keys its first replay's outputs went out with
            headers["idempotency_of"] = subject.dead_replayed_as
        if subject.dead_kind == "delivery" and subject.dead_target:
            headers["only_targets"] = [subject.dead_target]
        message = Message(payload=subject.payload, content_type=subject.content_type,
                          correlation_id=subject.correlation_id, flow=subject.flow,
                          flow_version=use, source=dict(subject.source), headers=headers)
        store.accept(message)
        store.mark_replayed(subject, message.id)
        results.append(ReplayResult(str(raw), message.id, use, diff))
    return results
