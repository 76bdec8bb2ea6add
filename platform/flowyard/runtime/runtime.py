"""One process's runtime: sources, processing, deliveries, heartbeat, deployments.

The guarantee, step by step:

1. A source hands a message to `accept`; it is inserted and committed (group commit)
   before `accept` returns, so the source acknowledges only what is stored.
2. A processor claims stored messages under a lease, runs the flow's steps and makes a
   first delivery attempt to every target (idempotency key `MESSAGE.OUTPUT.TARGET`);
   then one fenced transaction records the deliveries, attempts, traces and dead
   letters. A crash before that commit leaves the message claimable again once its
   lease lapses (immediately at the next start on the same host): it is processed
   again and its deliveries repeat with the same keys.
3. Deliveries that failed with a retryable error wait in the store (`pending`, with
   `next_at` from the back-off) and are claimed by the retrier; a non-retryable error or
   the last attempt makes a dead letter. Step errors are dead letters at once.
4. Stopping (SIGTERM) stops sources, lets in-flight batches finish within the grace
   period and hands back whatever is still leased.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import RunResult, target_applies
from ..errors import DeliveryError, FlowyardError
from ..flow import StepSpec
from ..message import Message
from ..operations.snapshots import materialize
from ..secrets import Secrets, redactor
from ..services import Services
from ..store import queue
from ..store.api import Store, reason_kind
from ..store.breakers import sync as sync_breakers
from ..store.connector_state import TableState
from ..store.database import data_dir
from ..store.retention import days_from_env, purge
from ..store.x12_control import ControlNumbersStore
from . import wakeups
from .flows import LoadedFlow, LoadedTarget, compile_flow, open_source
from .logs import fields
from .metrics import Metrics
from .policy import Breakers, retry_delay
from .snapshots import json_copy, snapshot_text
from .sources import AcceptWriter, SourceLocks
from .tracing import enabled as tracing_enabled
from .tracing import span, step_span

log = logging.getLogger("flowyard.runtime")


# a batch's first delivery attempt to one target, not started yet
FirstSend = tuple[LoadedTarget, Coroutine[Any, Any, None]]

@dataclass
class RuntimeConfig:
    flows_dir: Path = Path("flows")
    mode: str = "worker"  # serve | worker (recorded on the worker row)
    # messages claimed at once: a claim and a commit cost about the same for 50 or 200
    # messages, so 200 leaves more of the CPU for the messages themselves (draining
    # 6,000 on PostgreSQL: one worker 1,400 msg/s against 1,230 with 50, two 2,000 against
    # 1,700); a batch is also the unit that a lapsed lease hands to another worker
    batch: int = 200
    processors: int = 2  # concurrent claim-process-commit loops
    send_concurrency: int = 32  # concurrent first delivery attempts within a batch
    lease_ttl: float = 30.0
    heartbeat: float = 0.0  # 0: a third of the lease
    idle_poll: float = 0.25
    rescan: float = 2.0  # how often the store's deployments are looked at
    backlog_limit: int = 10_000  # a source pauses while its flow has this many open messages
    grace: float = 20.0
    trace: str = "all"  # all | failed | none
    trace_cap: int = 4000  # characters kept of each step snapshot
    trace_retention_days: float = field(
        default_factory=lambda: days_from_env("FLOWYARD_TRACE_RETENTION_DAYS", 7.0))
    message_retention_days: float = field(
        default_factory=lambda: days_from_env("FLOWYARD_MESSAGE_RETENTION_DAYS", 30.0))
    dedup_retention_days: float = field(
        default_factory=lambda: days_from_env("FLOWYARD_DEDUP_RETENTION_DAYS", 7.0))
    delivery_timeout: float = 30.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 10.0
    breaker_sync: float = 1.0  # how often the shared breakers are read from the store
    max_claims: int = 5  # a message claimed this often without finishing is poison
    run_sources: bool = True


class Runtime:
    def __init__(self, store: Store, config: RuntimeConfig | None = None,
                 secrets: Secrets | None = None) -> None:
        self.store = store
        self.engine = store.engine
        self.config = config or RuntimeConfig()
        self.secrets = secrets or Secrets()
        self.worker = queue.worker_id()
        self.metrics = Metrics(self.engine)
        self.breakers = Breakers(self.config.breaker_threshold, self.config.breaker_cooldown)
        self.breaker_changed = asyncio.Event()
        self.current: dict[str, LoadedFlow] = {}  # running flows, by name
        self.versions: dict[tuple[str, str], LoadedFlow] = {}  # older versions still needed
        self.io_dirs: dict[str, Path] = {}  # where each running flow's sources read
        self.failed: dict[str, tuple[str, str]] = {}  # flow -> (deployed version, why it does not load here)
        self.reported: list[tuple[str, str, str]] | None = None
        self.sources: dict[str, tuple[Any, asyncio.Task[None]]] = {}
        self.locks = SourceLocks(self.engine, data_dir() / "locks")
        self.writer = AcceptWriter(store)
        self.wake = asyncio.Event()
        self.listener: asyncio.Task[None] | None = None  # new work stored by other processes
        self.tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.stopped = asyncio.Event()
        self.stopping = asyncio.Event()
        self.inflight_accepts = 0
        self.accepting: dict[str, int] = {}  # accepts in flight, by flow
        self.stopping_sources: set[str] = set()
        self.backlog: dict[str, int] = {}
        self.working_messages: set[str] = set()  # claimed and being processed here
        self.working_deliveries: set[int] = set()
        self.backlog_at = 0.0
        self.services = Services(x12_control=ControlNumbersStore(self.engine), connector_state=TableState(self.engine))
        self.started_at = time.time()

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(queue.register_worker, self.engine, self.worker, self.config.mode)
        dead = await asyncio.to_thread(queue.dead_local_owners, self.engine, socket.gethostname())
        if dead:
            n = await asyncio.to_thread(queue.release, self.engine, dead)
            log.info("recovered %d messages and deliveries left by stopped processes %s",
                     n, ", ".join(dead))
        self.writer.start()
        try:
            await self.reconcile()
        except Exception as exc:  # the loop tries again in a moment
            log.warning("could not look at the deployed flows: %s", brief(exc))
        await self.share_breakers()  # adopt the other workers' open breakers before the first delivery
        loops = [self.reconcile_loop(), self.heartbeat_loop(), self.retry_loop(),
                 self.maintenance_loop(), self.breaker_loop()]
        loops += [self.process_loop(i) for i in range(self.config.processors)]
        self.tasks = [asyncio.create_task(c) for c in loops]
        url = wakeups.listening_url(self.engine)
        if url is not None:
            self.listener = asyncio.create_task(wakeups.listen(url, self.wake.set))
        log.info("runtime %s started with %d flows", self.worker, len(self.current),
                 extra={"worker": self.worker})

    async def stop(self) -> None:
        """Graceful: stop sources, finish in-flight batches within the grace period,
        hand back what is still leased."""
        if self.closing:
            await self.stopped.wait()
            return
        self.closing = True
        self.stopping.set()
        if self.listener is not None:
            self.listener.cancel()
            await asyncio.gather(self.listener, return_exceptions=True)
        deadline = time.monotonic() + 5
        while self.inflight_accepts and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for name in list(self.sources):
            await self.stop_source(name)
        self.wake.set()
        self.breaker_changed.set()
        _done, pending = await asyncio.wait(self.tasks, timeout=self.config.grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.writer.close()
        try:
            n = await asyncio.to_thread(queue.release, self.engine, [self.worker])
            if n:
                log.info("handed back %d leased items", n)
            await asyncio.to_thread(queue.worker_stopped, self.engine, self.worker)
        except Exception as exc:
            log.warning("could not hand back leased work (it returns when leases lapse): %s",
                        exc)
        for loaded in [*self.current.values(), *self.versions.values()]:
            await loaded.close()
        self.locks.drop_all()
        self.stopped.set()

    async def nap(self, seconds: float) -> None:
        """Sleep, but wake at once when the runtime is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # -- deployments --------------------------------------------------------------
    async def reconcile_loop(self) -> None:
        while not self.closing:
            await self.nap(self.config.rescan)
            if self.closing:
                return
            try:
                await self.reconcile()
            except Exception as exc:
                log.warning("could not look at the deployed flows: %s", brief(exc))

    async def reconcile(self) -> None:
        """Run what is deployed: each enabled flow at its deployed version, from its
        snapshot. A version that does not load here leaves the flow's running version
        (if any) running and is reported, with its reason, for this worker alone; no
        flow's trouble stops another's."""
        states = await asyncio.to_thread(self.store.flows)
        wanted = {s.flow: s.version for s in states if s.enabled and s.version}
        for name, version in wanted.items():
            running = self.current.get(name)
            if running is not None and running.version == version:
                self.failed.pop(name, None)
                continue
            if self.failed.get(name, ("", ""))[0] == version:
                continue  # reported already; tried again when the deployment changes
            try:
                loaded = await asyncio.to_thread(self.load_deployed, name, version)
            except Exception as exc:  # any failure of one flow stays that flow's
                why = redactor.redact(brief(exc))
                self.failed[name] = (version, why)
                log.error("cannot run %s version %s here (the running version, if any, stays): %s",
                          name, version, why, extra={"flow": name, "flow_version": version})
                continue
            self.failed.pop(name, None)
            await self.deploy_local(loaded)
        for name in list(self.current):
            if name not in wanted:
                await self.undeploy_local(name, "undeployed")
        for name in list(self.failed):
            if name not in wanted:
                del self.failed[name]
        await self.report_runs(wanted)
        if self.config.run_sources and not self.closing:
            await self.claim_sources()

    def load_deployed(self, name: str, version: str) -> LoadedFlow:
        """Compile a deployed version from its snapshot (materialized once under the data
        directory); a deployment older than snapshots runs from its recorded file text."""
        snapshot = self.store.snapshot(name, version)
        if snapshot is None:
            found = self.store.version_text(name, version)
            if found is None:
                raise FlowyardError(f"version {version} of {name} was never deployed")
            text, path = found
            loaded = compile_flow(Path(path), text, version=version, secrets=self.secrets, services=self.services)
            self.io_dirs[name] = Path(path).parent
            return loaded
        folder = data_dir() / "deployments" / name / version
        flow_file = materialize(snapshot, folder)
        io_dir = Path(snapshot.path).parent
        loaded = compile_flow(flow_file, snapshot.text, version=version, io_dir=io_dir,
                              secrets=self.secrets, services=self.services)
        if loaded.name != name:
            raise FlowyardError(f"the snapshot of {name} {version} holds flow {loaded.name!r}")
        self.io_dirs[name] = io_dir
        return loaded

    async def report_runs(self, wanted: dict[str, str]) -> None:
        """Tell the store what this worker runs of each deployed flow, or why not (the UI
        shows that, not what was asked for); written when it changes."""
        runs = []
        for name in sorted(wanted):
            if name in self.failed:
                runs.append((name, self.failed[name][0], self.failed[name][1]))
            elif name in self.current:
                runs.append((name, self.current[name].version, ""))
        if runs == self.reported:
            return
        try:
            await asyncio.to_thread(self.store.report_runs, self.worker, runs)
            self.reported = runs
        except Exception as exc:
            log.warning("cannot report the running flows: %s", brief(exc))

    async def deploy_local(self, loaded: LoadedFlow) -> None:
        old = self.current.get(loaded.name)
        if old is not None:
            await self.stop_source(loaded.name)
            self.versions[(old.name, old.version)] = old  # messages of it may still wait
        self.current[loaded.name] = loaded
        self.versions.pop((loaded.name, loaded.version), None)
        log.info("deployed %s version %s", loaded.name, loaded.version,
                 extra={"flow": loaded.name, "flow_version": loaded.version})
        self.wake.set()

    async def undeploy_local(self, name: str, why: str) -> None:
        await self.stop_source(name)
        loaded = self.current.pop(name, None)
        if loaded is not None:
            self.versions[(loaded.name, loaded.version)] = loaded
            log.info("stopped %s (%s)", name, why, extra={"flow": name})

    async def claim_sources(self) -> None:
        if not self.locks.alive():
            for name in list(self.sources):
                await self.stop_source(name)
        for name, loaded in self.current.items():
            if name in self.sources:
                continue
            try:
                owned = await asyncio.to_thread(self.locks.try_acquire, name)
            except Exception as exc:
                log.warning("could not take the source lock of %s: %s", name, brief(exc))
                continue
            if owned:
                self.start_source(loaded)

    def start_source(self, loaded: LoadedFlow) -> None:
        try:
            source = open_source(loaded, self.secrets, self.services, self.io_dirs.get(loaded.name))
        except Exception as exc:
            log.error("cannot open the source of %s: %s", loaded.name, exc,
                      extra={"flow": loaded.name})
            self.locks.release(loaded.name)
            return
        task = asyncio.create_task(self.supervise(loaded, source), name=f"source:{loaded.name}")
        self.sources[loaded.name] = (source, task)

    async def stop_source(self, name: str) -> None:
        """Stop a source without cutting it off between a stored message and its
        acknowledgment (which would hand the same message in again): new accepts are
        refused, accepts in flight finish, the source gets a moment to acknowledge,
        then it is cancelled."""
        entry = self.sources.pop(name, None)
        if entry is None:
            return
        source, task = entry
        self.stopping_sources.add(name)
        deadline = time.monotonic() + 10
        while self.accepting.get(name) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # let the source run its acknowledgment
        self.stopping_sources.discard(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await source.close()
        except Exception as exc:
            log.warning("closing the source of %s failed: %s", name, exc)
        self.locks.release(name)

    async def supervise(self, loaded: LoadedFlow, source: Any) -> None:
        """Run a source; restart it with back-off when it fails."""
        delay = 1.0
        accept = self.accept_for(loaded.name)
        while not self.closing:
            began = time.monotonic()
            try:
                await source.run(accept)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                text = redactor.redact(brief(exc))
                source.health.failed(text)
                log.warning("source of %s failed, restarting in %.0fs: %s", loaded.name, delay,
                            text, extra={"flow": loaded.name})
                await asyncio.sleep(delay)
                # a source that ran a good while before failing starts its back-off over
                delay = 1.0 if time.monotonic() - began > 60 else min(delay * 2, 30.0)

    # -- accepting ----------------------------------------------------------------
    def accept_for(self, name: str) -> Any:
        async def accept(message: Message) -> None:
            await self.accept(name, message)

        return accept

    async def accept(self, name: str, message: Message) -> None:
        """Store a message for flow `name`; returns once it is committed."""
        loaded = self.current.get(name)
        if loaded is None or self.closing or name in self.stopping_sources:
            raise FlowyardError(f"flow {name!r} is not running here")
        await self.wait_for_room(name)
        message.flow = name
        message.flow_version = loaded.version
        message.headers.setdefault("labels", loaded.labels)
        self.inflight_accepts += 1
        self.accepting[name] = self.accepting.get(name, 0) + 1
        try:
            with span("accept", flow=name, message_id=message.id):
                await self.writer.submit(message)
        finally:
            self.inflight_accepts -= 1
            self.accepting[name] -= 1
        self.backlog[name] = self.backlog.get(name, 0) + 1
        self.metrics.accepted.labels(name).inc()
        self.wake.set()

    async def wait_for_room(self, name: str) -> None:
        """Back-pressure: hold the source while its flow's backlog is over the bound."""
        limit = self.config.backlog_limit
        while True:
            now = time.monotonic()
            if now - self.backlog_at > 0.5:
                self.backlog_at = now  # one refresh at a time, not one per waiting source
                self.backlog = await asyncio.to_thread(queue.backlog, self.engine)
            if self.backlog.get(name, 0) < limit or self.closing:
                return
            await asyncio.sleep(0.2)
            self.backlog_at = 0.0

    # -- processing ---------------------------------------------------------------
    async def process_loop(self, index: int) -> None:
        while not self.closing:
            try:
                claimed = await asyncio.to_thread(
                    queue.claim_messages, self.engine, self.worker, list(self.current),
                    self.config.batch, self.config.lease_ttl,
                )
            except Exception as exc:
                log.warning("cannot claim messages (store unreachable?): %s", brief(exc))
                await asyncio.sleep(1.0)
                continue
            if not claimed:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.config.idle_poll)
                continue
            ids = {c.id for c in claimed}
            self.working_messages |= ids
            try:
                await self.process_batch(claimed)
            finally:
                self.working_messages -= ids

    async def process_batch(self, claimed: list[queue.ClaimedMessage]) -> None:
        outcomes = []
        sends: list[FirstSend] = []
        for c in claimed:
            outcome, pending = self.run_steps(c)
            outcomes.append(outcome)
            sends.extend(pending)
        if sends:
            await self.send_first(sends)
        for o in outcomes:
            o.state = final_state(o)
        while True:
            try:
                refused = await asyncio.to_thread(queue.commit_processing, self.engine,
                                                  self.worker, outcomes)
                break
            except Exception as exc:  # store down: keep trying while our lease may hold
                if self.closing:
                    return
                log.warning("cannot commit results (will retry): %s", brief(exc))
                await asyncio.sleep(1.0)
        for o in outcomes:
            labels = o.message.headers.get("labels") or {
                "plant": o.message.plant, "partner": o.message.partner}
            if o.message.id in refused:
                self.metrics.refused.inc()
                log.warning("lease lapsed: result of message %s refused (another worker has "
                            "it)", o.message.id, extra={"message_id": o.message.id})
            else:
                self.metrics.message_finished(o.message.flow, labels, o.state)

    async def send_first(self, sends: list[FirstSend]) -> None:
        """A batch's first delivery attempts, at most the target's `send_concurrency` (or
        the runtime's) at once for each target: that many lanes drain its list (not a
        semaphore: its acquire looks at every waiter, quadratic in the batch)."""
        groups: dict[int, tuple[int, list[Coroutine[Any, Any, None]]]] = {}
        for target, send in sends:
            limit = target.target.send_concurrency or self.config.send_concurrency
            groups.setdefault(id(target), (limit, []))[1].append(send)

        async def lane(queued: Iterator[Coroutine[Any, Any, None]]) -> None:
            for send in queued:
                await send

        lanes = []
        for limit, group in groups.values():
            queued = iter(group)
            lanes += [lane(queued) for _ in range(min(len(group), limit))]
        await asyncio.gather(*lanes)

    def loaded(self, flow: str, version: str) -> LoadedFlow | None:
        current = self.current.get(flow)
        if current is not None and (current.version == version or not version):
            return current
        cached = self.versions.get((flow, version))
        if cached is not None:
            return cached
        try:
            loaded = self.load_deployed(flow, version)
        except Exception as exc:
            log.error("version %s of %s does not load: %s", version, flow, brief(exc))
            return None
        self.versions[(flow, version)] = loaded
        return loaded

    def run_steps(self, c: queue.ClaimedMessage) -> tuple[queue.ProcessOutcome, list[FirstSend]]:
        """Run the steps of one claimed message; returns the outcome to commit and the
        first delivery attempts to make."""
        outcome = queue.ProcessOutcome(message=c, state="done")
        started = time.time()
        message = Message(payload=c.payload, content_type=c.content_type, id=c.id,
                          correlation_id=c.correlation_id, flow=c.flow,
                          flow_version=c.flow_version, source=dict(c.source or {}),
                          attempt=c.attempt + 1, headers=dict(c.headers or {}))
        loaded = self.loaded(c.flow, c.flow_version)
        if c.token > self.config.max_claims:
            reason = (f"poison message: processing was interrupted {c.token - 1} times (the "
                      "runtime stopped or crashed while running it); not tried again")
            outcome.error = reason
            outcome.dead_letters.append(self.dead_row(c, "step", reason, None, c.payload,
                                                      c.content_type, []))
            log.error(reason, extra=fields(message))
            return outcome, []
        if loaded is None:
            reason = f"version {c.flow_version} of flow {c.flow} is not deployed anywhere"
            outcome.error = reason
            outcome.dead_letters.append(self.dead_row(c, "step", reason, None, c.payload,
                                                      c.content_type, []))
            return outcome, []
        message.headers.setdefault("labels", loaded.labels)
        traces: list[dict[str, Any]] = []
        tracer = (self.tracer_for(c, loaded, traces)
                  if self.config.trace != "none" or tracing_enabled() else None)
        with span("message", flow=c.flow, message_id=c.id, correlation_id=c.correlation_id):
            result: RunResult = loaded.pipeline.run(message, tracer)
        if not result.ok:  # a success shows in the traces and deliveries already
            outcome.attempts.append({
                "message_id": c.id, "kind": "process", "number": c.attempt + 1,
                "worker": self.worker, "started_at": started,
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
            outcome.dead_letters.append(self.dead_row(c, "step", reason, error.step, payload,
                                                      failure.message.content_type, compact))
            if tracer is not None:
                traces.append(self.trace_step(error.step_index or 0, error.step or "?",
                                              "failed", 0.0, reason))
            log.warning("message %s failed at step %s: %s", c.id, error.step, reason,
                        extra=fields(message, step=error.step))
        if traces and (self.config.trace == "all"
                       or (self.config.trace == "failed" and result.failures)):
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
                row = self.delivery_row(c, index, out, t)
                outcome.deliveries.append(row)
                sends.append((t, self.first_attempt(outcome, row, out, t, compact)))
        return outcome, sends

    def tracer_for(self, c: queue.ClaimedMessage, loaded: LoadedFlow,
                   traces: list[dict[str, Any]]) -> Any:
        cap = self.config.trace_cap
        histogram, child = self.metrics.step_seconds, self.metrics.child
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
                   snapshot: str) -> dict[str, Any]:
        return {"step_index": index, "step": step, "status": status,
                "duration": seconds, "snapshot": snapshot, "at": time.time()}

    def dead_row(self, c: queue.ClaimedMessage, kind: str, reason: str, where: str | None,
                 payload: bytes, content_type: str, trace: list[Any],
                 target: str | None = None) -> dict[str, Any]:
        return {"message_id": c.id, "correlation_id": c.correlation_id, "flow": c.flow,
                "flow_version": c.flow_version, "kind": kind, "reason": reason,
                "reason_kind": reason_kind(reason), "step": where, "target": target,
                "input": payload, "input_content_type": content_type, "trace": trace,
                "status": "open", "created_at": time.time()}

    def delivery_row(self, c: queue.ClaimedMessage, index: int, out: Message,
                     t: LoadedTarget) -> dict[str, Any]:
        now = time.time()
        last_data = json_copy(out.last_data)
        return {
            "message_id": c.id, "output_index": index, "output_id": out.id,
            "target": t.spec.name, "endpoint": t.endpoint,
            "idempotency_key": f"{c.id}.{index}.{t.spec.name}", "flow": c.flow,
            "flow_version": c.flow_version, "state": "pending", "attempts": 0, "next_at": now,
            "content_type": out.content_type, "payload": out.payload_bytes(),
            "meta": {"id": out.id, "correlation_id": out.correlation_id,
                     "source": out.source, "headers": out.headers, "last_data": last_data},
            "last_error": None, "detail": {}, "created_at": now, "updated_at": now,
            "lease_token": 0,
        }

    async def first_attempt(self, outcome: queue.ProcessOutcome, row: dict[str, Any],
                            out: Message, t: LoadedTarget, trace: list[Any]) -> None:
        result = await self.attempt(t, out, row["idempotency_key"], 0, outcome.message.flow,
                                    outcome.message.id)
        state, attempts, next_at, error, detail, attempt_row = result
        row.update(state=state, attempts=attempts, next_at=next_at, last_error=error,
                   detail=detail or {})
        if state != "pending":  # the data is kept for retries only: none will come
            row["meta"].pop("last_data", None)
        if attempt_row is not None:
            outcome.attempts.append(attempt_row)
        if state == "dead":
            dead = self.dead_row(outcome.message, "delivery", error or "", None, row["payload"],
                                 row["content_type"], trace, target=t.spec.name)
            dead["delivery_key"] = row["idempotency_key"]
            outcome.dead_letters.append(dead)

    async def attempt(self, t: LoadedTarget, message: Message, key: str, attempts: int,
                      flow: str, message_id: str, delivery_id: int | None = None
                      ) -> tuple[str, int, float, str | None, dict[str, Any] | None,
                                 dict[str, Any] | None]:
        """One delivery attempt: (state, attempts, next_at, error, detail, attempt row)."""
        breaker = self.breakers.get(t.endpoint)
        now = time.time()
        if not breaker.allow(now):
            return ("pending", attempts, breaker.retry_at(now),
                    f"not attempted: circuit open for {t.endpoint}", None, None)
        number = attempts + 1
        began = time.perf_counter()
        error: str | None = None
        retryable = True
        detail: dict[str, Any] | None = None
        with span("deliver", message_id=message_id, flow=flow, target=t.spec.name,
                  key=key, correlation_id=message.correlation_id, attempt=attempts + 1):
            try:
                async with asyncio.timeout(self.config.delivery_timeout):  # no task per send
                    detail = await t.target.send(message, key)
            except DeliveryError as exc:
                error, retryable = str(exc), exc.retryable
            except TimeoutError:
                error = f"no answer from {t.endpoint} within {self.config.delivery_timeout:g}s"
            except FlowyardError as exc:
                error, retryable = str(exc), False
            except Exception as exc:  # a connector bug must not lose the message
                error = f"unexpected error: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - began
        self.metrics.child(self.metrics.delivery_seconds, flow, t.spec.name).observe(seconds)
        # no NUL: an error may quote a binary answer, and PostgreSQL text cannot hold one
        error = redactor.redact(error).replace("\x00", "\ufffd") if error else None
        row = {"message_id": message_id, "delivery_id": delivery_id, "kind": "deliver",
               "target": t.spec.name, "number": number, "worker": self.worker,
               "started_at": now, "duration": seconds, "ok": error is None, "error": error,
               "detail": {"key": key, **(detail or {})}}
        if error is None:
            self.breakers.success(breaker)
            self.metrics.child(self.metrics.deliveries, flow, t.spec.name, "done").inc()
            return "done", number, 0.0, None, detail, row
        if retryable:
            self.breakers.failure(breaker)
            if self.breakers.opened:
                self.breaker_changed.set()
        else:  # the endpoint answered (it refused this message): it is up
            self.breakers.success(breaker)
        policy = t.spec.retry
        if not retryable or number >= policy.attempts:
            self.metrics.deliveries.labels(flow, t.spec.name, "dead").inc()
            why = "not retryable" if not retryable else f"after {number} attempts"
            log.warning("delivery to %s died (%s): %s", t.spec.name, why, error,
                        extra={"flow": flow, "message_id": message_id, "target": t.spec.name})
            return "dead", number, 0.0, f"{error} ({why})", detail, row
        self.metrics.deliveries.labels(flow, t.spec.name, "retry").inc()
        return "pending", number, time.time() + retry_delay(policy, number), error, detail, row

    # -- retries ------------------------------------------------------------------
    async def retry_loop(self) -> None:
        while not self.closing:
            try:
                claimed = await asyncio.to_thread(
                    queue.claim_deliveries, self.engine, self.worker, list(self.current),
                    self.config.batch, self.config.lease_ttl,
                )
            except Exception as exc:
                log.warning("cannot claim deliveries (store unreachable?): %s", brief(exc))
                await asyncio.sleep(1.0)
                continue
            if not claimed:
                await self.nap(self.config.idle_poll)
                continue
            ids = {d.id for d in claimed}
            self.working_deliveries |= ids
            try:
                outcomes = await asyncio.gather(*(self.retry_one(d) for d in claimed))
                while True:
                    try:
                        await asyncio.to_thread(queue.commit_deliveries, self.engine,
                                                self.worker, outcomes)
                        break
                    except Exception as exc:
                        if self.closing:
                            return
                        log.warning("cannot commit delivery results (will retry): %s",
                                    brief(exc))
                        await asyncio.sleep(1.0)
            finally:
                self.working_deliveries -= ids

    async def retry_one(self, d: queue.ClaimedDelivery) -> queue.DeliveryOutcome:
        loaded = self.loaded(d.flow, d.flow_version)
        t = loaded.target(d.target) if loaded is not None else None
        if t is None:
            reason = f"target {d.target} of {d.flow} version {d.flow_version} is not available"
            return queue.DeliveryOutcome(d, "dead", d.attempts, last_error=reason,
                                         dead_letter=self.delivery_dead(d, reason))
        meta = d.meta or {}
        message = Message(payload=d.payload or b"", content_type=d.content_type,
                          id=meta.get("id") or d.output_id,
                          correlation_id=meta.get("correlation_id") or "",
                          flow=d.flow, flow_version=d.flow_version,
                          source=meta.get("source") or {}, attempt=d.attempts + 1,
                          headers=meta.get("headers") or {}, last_data=meta.get("last_data"))
        state, attempts, next_at, error, detail, row = await self.attempt(
            t, message, d.idempotency_key, d.attempts, d.flow, d.message_id, d.id)
        dead = self.delivery_dead(d, error or "") if state == "dead" else None
        return queue.DeliveryOutcome(d, state, attempts, next_at, error, detail or {}, row, dead)

    def delivery_dead(self, d: queue.ClaimedDelivery, reason: str) -> dict[str, Any]:
        meta = d.meta or {}
        return {"message_id": d.message_id, "delivery_id": d.id,
                "correlation_id": meta.get("correlation_id") or "", "flow": d.flow,
                "flow_version": d.flow_version, "kind": "delivery", "reason": reason,
                "reason_kind": reason_kind(reason), "step": None, "target": d.target,
                "input": d.payload or b"", "input_content_type": d.content_type, "trace": [],
                "status": "open", "created_at": time.time()}

    # -- housekeeping -------------------------------------------------------------
    async def heartbeat_loop(self) -> None:
        every = self.config.heartbeat or self.config.lease_ttl / 3
        while not self.closing:
            await self.nap(every)
            if self.closing:
                return
            try:
                await asyncio.to_thread(queue.renew_leases, self.engine, self.worker,
                                        self.config.lease_ttl, list(self.working_messages),
                                        list(self.working_deliveries))
            except Exception as exc:
                log.warning("heartbeat failed (leases may lapse): %s", brief(exc))

    async def breaker_loop(self) -> None:
        while not self.closing:
            self.breaker_changed.clear()
            await self.share_breakers()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.breaker_changed.wait(), self.config.breaker_sync)

    async def share_breakers(self) -> None:
        """Share breaker openings and closings with the other workers; adopt theirs."""
        breakers = self.breakers
        opened = [(e, b.open_until, b.current_cooldown) for e, b in breakers.opened.items()]
        closed = list(breakers.closed)
        breakers.opened.clear()
        breakers.closed.clear()
        try:
            current = await asyncio.to_thread(sync_breakers, self.engine,
                                              self.worker, opened, closed)
        except Exception as exc:
            log.warning("cannot share circuit breakers: %s", brief(exc))
            for endpoint, _until, _cooldown in opened:  # tell them next time
                breakers.opened.setdefault(endpoint, breakers.get(endpoint))
            breakers.closed.update(e for e in closed if e not in breakers.opened)
            current = []
        now = time.time()
        for endpoint, until, cooldown in current:
            if breakers.get(endpoint).adopt(until, cooldown, now):
                log.warning("circuit open for %s (found down by another worker) until %s",
                            endpoint, time.strftime("%H:%M:%S", time.localtime(until)))

    async def maintenance_loop(self) -> None:
        while not self.closing:
            try:
                purged = await asyncio.to_thread(
                    purge, self.engine, time.time(),
                    trace_days=self.config.trace_retention_days,
                    message_days=self.config.message_retention_days,
                    dedup_days=self.config.dedup_retention_days)
                if purged.messages or purged.traces:
                    log.info("retention: deleted %s", purged)
            except Exception as exc:
                log.warning("retention purge failed: %s", brief(exc))
            await self.nap(600)


def brief(exc: BaseException) -> str:
    """An error in one line, without the SQL statement and its parameters (which would
    put payloads into the log)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return redactor.redact(f"{type(orig or exc).__name__}: {text[0] if text else ''}")


def final_state(o: queue.ProcessOutcome) -> str:
    states = {d["state"] for d in o.deliveries}
    if "pending" in states:
        return "delivering"
    if o.error or "dead" in states:
        return "dead"
    if not o.deliveries and not o.outputs:
        return "dropped"
    return "done"
