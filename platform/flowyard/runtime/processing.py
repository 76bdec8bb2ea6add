"""Processing: claim stored messages under a lease, run the flow's steps, make each
output's first delivery attempt, then commit everything of the batch in one fenced
transaction (a lapsed lease's results are refused: another worker has the batch).

A batch's steps run on a thread of their own (`StepRun`), never on the event loop, so a
slow step holds back neither intake, deliveries, other flows nor a SIGTERM; each message
runs within its flow's budget (`flowyard.budget`): the watchdog stops a step over it and
the message becomes a dead letter at once. A step stuck in a call that cannot be
interrupted is given up: its message is dead-lettered, its thread abandoned (a daemon
thread) and the rest of the batch runs on a new thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from ..budget import BudgetExceeded, Watch
from ..engine import Failure, RunResult, target_applies
from ..errors import StepError
from ..flow import StepSpec
from ..message import Message
from ..secrets import redactor
from ..store import queue
from ..store.records import DeliveryRow, TraceStep
from .delivery import FirstSend
from .flows import LoadedFlow, LoadedTarget
from .logs import fields
from .outcomes import brief, dead_row, delivery_row, final_state
from .snapshots import snapshot_text
from .tracing import enabled as tracing_enabled
from .tracing import span, step_span

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("flowyard.runtime")

# what the step thread hands back for one message: its outcome, and the first delivery
# attempts to make (target, delivery row, output, trace), made on the event loop
Pending = tuple[LoadedTarget, DeliveryRow, Message, list[Any]]
Ran = tuple[queue.ProcessOutcome, list[Pending]]


class StepThread:
    """A daemon thread that runs batches' steps, one `StepRun` after another (kept between
    batches: handing a batch over costs ~15 us, starting a thread ~60 us of CPU and
    ~400 us of waiting). A thread given up (stuck, or left running at a stop) is retired:
    it ends after the batch it runs."""

    def __init__(self) -> None:
        self.runs: SimpleQueue[StepRun | None] = SimpleQueue()
        self.thread = threading.Thread(target=self.serve, name="flowyard-steps", daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while (run := self.runs.get()) is not None:
            run.run()

    def retire(self) -> None:
        self.runs.put(None)


class StepRun:
    """One batch's steps on a `StepThread`; `done` resolves on the event loop when the
    thread has run them all, or when the watchdog gives up a message stuck in a call that
    cannot be interrupted (`stuck`: its index in the batch and its watch; the thread is then
    abandoned, and what it ran before stays in `results`)."""

    def __init__(self, processing: Processing, claimed: list[queue.ClaimedMessage]) -> None:
        self.processing = processing
        self.claimed = claimed
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.results: list[Ran] = []
        self.lock = threading.Lock()
        self.abandoned = False
        self.current: Watch | None = None  # the message the thread runs now
        self.stuck: tuple[int, Watch] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for c in self.claimed:
                ran = self.processing.run_steps(c, self)
                with self.lock:
                    if self.abandoned:
                        return
                    self.results.append(ran)
                    self.current = None  # with the append: `give_up` sees both or neither
        except BaseException as exc:  # a bug: the event loop side raises it
            self.error = exc
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (exit)
                self.loop.call_soon_threadsafe(self.finish)

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def on_stuck(self, watch: Watch) -> None:  # on the watchdog's thread
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.give_up, watch)

    def give_up(self, watch: Watch) -> None:
        with self.lock:
            if self.abandoned or self.done.done() or self.current is not watch:
                return  # it gave way after all (its result is in `results`)
            self.abandoned = True
            self.stuck = (len(self.results), watch)
        self.done.set_result(None)

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True


class Processing:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.idle: list[StepThread] = []  # step threads waiting for a batch

    async def process_loop(self, index: int) -> None:
        config = self.runtime.config
        last = 0  # messages in this loop's last claim
        while not self.runtime.closing:
            if 0 < last < config.batch and config.gather > 0:
                await self.runtime.nap(config.gather)  # messages keep coming: let the batch grow
            try:
                claimed = await asyncio.to_thread(
                    queue.claim_messages, self.runtime.engine, self.runtime.worker, list(self.runtime.flows.current),
                    config.batch, config.lease_ttl,
                )
            except Exception as exc:
                log.warning("cannot claim messages (store unreachable?): %s", brief(exc))
                await asyncio.sleep(1.0)
                continue
            last = len(claimed)
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

    def close(self) -> None:
        """The idle step threads end (a running one ends after its batch)."""
        while self.idle:
            self.idle.pop().retire()

    async def run_batch(self, claimed: list[queue.ClaimedMessage]) -> list[Ran]:
        """Run the batch's steps off the event loop (see `StepRun`)."""
        results: list[Ran] = []
        todo = claimed
        while todo:
            run = StepRun(self, todo)
            worker = self.idle.pop() if self.idle else StepThread()
            worker.runs.put(run)
            try:
                await asyncio.shield(run.done)
            except asyncio.CancelledError:  # stopping: the thread runs no further message
                run.abandon()
                worker.retire()
                raise
            if run.error is not None:
                worker.retire()
                raise run.error
            results.extend(run.results)
            if run.stuck is None:
                self.idle.append(worker)
                break
            worker.retire()  # stuck in its call: it ends when (if) the call returns
            index, watch = run.stuck
            results.append((self.stopped_outcome(todo[index], watch), []))
            todo = todo[index + 1:]
        return results

    async def process_batch(self, claimed: list[queue.ClaimedMessage]) -> None:
        outcomes = []
        sends: list[FirstSend] = []
        first_attempt = self.runtime.delivery.first_attempt
        for outcome, pending in await self.run_batch(claimed):
            outcomes.append(outcome)
            sends += [(t, first_attempt(outcome, row, out, t, compact))
                      for t, row, out, compact in pending]
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

    def stopped_outcome(self, c: queue.ClaimedMessage, watch: Watch) -> queue.ProcessOutcome:
        """A message whose step was over its budget and did not give way: a dead letter."""
        reason = redactor.redact(f"step {watch.step!r}: {watch.reason()}" if watch.step
                                 else watch.reason())
        reason += " (it did not give way: stuck in a call that cannot be interrupted)"
        outcome = queue.ProcessOutcome(message=c, state="done", error=reason,
                                       error_step=watch.step)
        outcome.dead_letters.append(dead_row(c, "step", reason, watch.step, c.payload,
                                             c.content_type, []))
        log.warning("message %s failed at step %s: %s", c.id, watch.step, reason,
                    extra={"message_id": c.id, "flow": c.flow, "step": watch.step})
        return outcome

    def budget_of(self, loaded: LoadedFlow) -> tuple[float, int]:
        budget, config = loaded.flow.budget, self.runtime.config
        seconds = budget.time.total_seconds() if budget.time is not None else config.budget_time
        return seconds, budget.memory if budget.memory is not None else config.budget_memory

    def run_steps(self, c: queue.ClaimedMessage, run: StepRun | None = None) -> Ran:
        """Run the steps of one claimed message within its flow's budget (on the step
        thread); returns the outcome to commit and the first delivery attempts to make."""
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
        seconds, memory = self.budget_of(loaded)
        watchdog = self.runtime.watchdog
        watch = watchdog.begin(c.id, seconds, memory, run.on_stuck if run is not None else None)
        if run is not None:
            run.current = watch
        try:
            try:
                with span("message", flow=c.flow, message_id=c.id, correlation_id=c.correlation_id):
                    result: RunResult = loaded.pipeline.run(message, tracer)
            finally:
                watchdog.end(watch)
        except BudgetExceeded as exc:  # landed between two steps, not inside one
            error = StepError(exc.reason(watch.step))
            error.step = watch.step
            result = RunResult(failures=[Failure(message, error)])
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
        sends: list[Pending] = []
        outcome.outputs = len(result.outputs)
        for index, out in enumerate(result.outputs):
            for t in loaded.targets:
                if only and t.spec.name not in only:
                    continue
                if not target_applies(t.spec, out):
                    continue
                row = delivery_row(c, index, out, t)
                outcome.deliveries.append(row)
                sends.append((t, row, out, compact))
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
