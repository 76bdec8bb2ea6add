"""Processing: claim stored messages under a lease, run the flow's steps, make each
output's first delivery attempt, then commit everything of the batch in one fenced
transaction (a lapsed lease's results are refused: another worker has the batch)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from ..engine import RunResult, target_applies
from ..flow import StepSpec
from ..message import Message
from ..secrets import redactor
from ..store import queue
from ..store.records import TraceStep
from .delivery import FirstSend
from .flows import LoadedFlow
from .logs import fields
from .outcomes import brief, dead_row, delivery_row, final_state
from .snapshots import snapshot_text
from .tracing import enabled as tracing_enabled
from .tracing import span, step_span

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("flowyard.runtime")


class Processing:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def process_loop(self, index: int) -> None:
        while not self.runtime.closing:
            try:
                claimed = await asyncio.to_thread(
                    queue.claim_messages, self.runtime.engine, self.runtime.worker, list(self.runtime.flows.current),
                    self.runtime.config.batch, self.runtime.config.lease_ttl,
                )
            except Exception as exc:
                log.warning("cannot claim messages (store unreachable?): %s", brief(exc))
                await asyncio.sleep(1.0)
                continue
            if not claimed:
                self.runtime.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.runtime.wake.wait(), self.runtime.config.idle_poll)
                continue
            ids = {c.id for c in claimed}
            self.runtime.working_messages |= ids
            try:
                await self.process_batch(claimed)
            finally:
                self.runtime.working_messages -= ids

    async def process_batch(self, claimed: list[queue.ClaimedMessage]) -> None:
        outcomes = []
        sends: list[FirstSend] = []
        for c in claimed:
            outcome, pending = self.run_steps(c)
            outcomes.append(outcome)
            sends.extend(pending)
        if sends:
            await self.runtime.delivery.send_first(sends)
        for o in outcomes:
            o.state = final_state(o)
        while True:
            try:
                refused = await asyncio.to_thread(queue.commit_processing, self.runtime.engine,
                                                  self.runtime.worker, outcomes)
                break
            except Exception as exc:  # store down: keep trying while our lease may hold
                if self.runtime.closing:
                    return
                log.warning("cannot commit results (will retry): %s", brief(exc))
                await asyncio.sleep(1.0)
        for o in outcomes:
            labels = o.message.headers.get("labels") or {
                "plant": o.message.plant, "partner": o.message.partner}
            if o.message.id in refused:
                self.runtime.metrics.refused.inc()
                log.warning("lease lapsed: result of message %s refused (another worker has "
                            "it)", o.message.id, extra={"message_id": o.message.id})
            else:
                self.runtime.metrics.message_finished(o.message.flow, labels, o.state)

    def run_steps(self, c: queue.ClaimedMessage) -> tuple[queue.ProcessOutcome, list[FirstSend]]:
        """Run the steps of one claimed message; returns the outcome to commit and the
        first delivery attempts to make."""
        outcome = queue.ProcessOutcome(message=c, state="done")
        started = time.time()
        message = Message(payload=c.payload, content_type=c.content_type, id=c.id,
                          correlation_id=c.correlation_id, flow=c.flow,
                          flow_version=c.flow_version, source=dict(c.source or {}),
                          attempt=c.attempt + 1, headers=dict(c.headers or {}))
        loaded = self.runtime.flows.loaded(c.flow, c.flow_version)
        if c.token > self.runtime.config.max_claims:
            reason = (f"poison message: processing was interrupted {c.token - 1} times (the "
                      "runtime stopped or crashed while running it); not tried again")
            outcome.error = reason
            outcome.dead_letters.append(dead_row(c, "step", reason, None, c.payload,
                                                      c.content_type, []))
            log.error(reason, extra=fields(message))
            return outcome, []
        if loaded is None:
            reason = f"version {c.flow_version} of flow {c.flow} is not deployed anywhere"
            outcome.error = reason
            outcome.dead_letters.append(dead_row(c, "step", reason, None, c.payload,
                                                      c.content_type, []))
            return outcome, []
        message.headers.setdefault("labels", loaded.labels)
        traces: list[TraceStep] = []
        tracer = (self.tracer_for(c, loaded, traces)
                  if self.runtime.config.trace != "none" or tracing_enabled() else None)
        with span("message", flow=c.flow, message_id=c.id, correlation_id=c.correlation_id):
            result: RunResult = loaded.pipeline.run(message, tracer)
        if not result.ok:  # a success shows in the traces and deliveries already
            outcome.attempts.append({
                "message_id": c.id, "kind": "process", "number": c.attempt + 1,
                "worker": self.runtime.worker, "started_at": started,
                "duration": time.time() - started, "ok": False,
                "error": redactor.redact(result.failures[0].error.describe()),
                "detail": {"outputs": len(result.outputs)}, "delivery_id": None, "target": None,
            })
        compact = [{k: t[k] for k in ("step", "status", "duration", "snapshot")}
                   for t in traces]
        for failure in result.failures:
            error = failure.error
            reason = redactor.redact(error.describe())
            outcome.error = outcome.error or reason
            outcome.error_step = outcome.error_step or error.step
            payload = failure.message.payload_bytes()
            outcome.dead_letters.append(dead_row(c, "step", reason, error.step, payload,
                                                      failure.message.content_type, compact))
            if tracer is not None:
                traces.append(self.trace_step(error.step_index or 0, error.step or "?",
                                              "failed", 0.0, reason))
            log.warning("message %s failed at step %s: %s", c.id, error.step, reason,
                        extra=fields(message, step=error.step))
        if traces and (self.runtime.config.trace == "all"
                       or (self.runtime.config.trace == "failed" and result.failures)):
            outcome.traces = [{"message_id": c.id, "steps": traces, "at": traces[0]["at"]}]
        only = set(c.headers.get("only_targets") or []) if c.headers else set()
        sends: list[FirstSend] = []
        outcome.outputs = len(result.outputs)
        for index, out in enumerate(result.outputs):
            for t in loaded.targets:
                if only and t.spec.name not in only:
                    continue
                if not target_applies(t.spec, out):
                    continue
                row = delivery_row(c, index, out, t)
                outcome.deliveries.append(row)
                sends.append((t, self.runtime.delivery.first_attempt(outcome, row, out, t, compact)))
        return outcome, sends

    def tracer_for(self, c: queue.ClaimedMessage, loaded: LoadedFlow,
                   traces: list[TraceStep]) -> Any:
        cap = self.runtime.config.trace_cap
        histogram, child = self.runtime.metrics.step_seconds, self.runtime.metrics.child
        otel = tracing_enabled()

        def tracer(spec: StepSpec, out: Any, seconds: float) -> None:
            if seconds < 0:
                traces.append(self.trace_step(spec.index, spec.name, "skipped", 0.0, ""))
                return
            child(histogram, c.flow, spec.name).observe(seconds)
            if otel:
                step_span(f"step {spec.name}", c.id, seconds, flow=c.flow, step=spec.name,
                          correlation_id=c.correlation_id)
            if out is None:
                status, snapshot = "dropped", ""
            elif isinstance(out, Message):
                status, snapshot = "ok", snapshot_text(out, cap)
            else:
                parts = list(out)
                status = "ok"
                first = next((p for p in parts if isinstance(p, Message)), None)
                snapshot = f"{len(parts)} parts" + (
                    f"; the first:\n{snapshot_text(first, cap)}" if first is not None else "")
            traces.append(self.trace_step(spec.index, spec.name, status, seconds,
                                          redactor.redact(snapshot)))

        return tracer

    @staticmethod
    def trace_step(index: int, step: str, status: str, seconds: float,
                   snapshot: str) -> TraceStep:
        return {"step_index": index, "step": step, "status": status,
                "duration": seconds, "snapshot": snapshot, "at": time.time()}
