"""One process's runtime: what runs (`running`), sources and intake (`intake`),
processing (`processing`), deliveries and retries (`delivery`), wired together here with
the heartbeat, retention and the look at the deployments.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import DEFAULT_MEMORY, DEFAULT_TIME, Watchdog
from ..message import Message
from ..secrets import Secrets
from ..services import Services
from ..store import queue
from ..store.api import Store
from ..store.connector_state import TableState
from ..store.retention import days_from_env, purge
from ..store.x12_control import ControlNumbersStore
from . import wakeups
from .delivery import Delivery
from .flows import LoadedFlow
from .health import Health
from .intake import Intake
from .metrics import Metrics
from .outcomes import brief
from .policy import Breakers
from .processing import Processing
from .running import RunningFlows

log = logging.getLogger("flowyard.runtime")


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
    # after a claim that found some messages but not a whole batch, a loop waits this
    # long before claiming again, while more arrive: the claim and commit transactions,
    # the file target's flushes and the thread hand-offs are then shared by more
    # messages (bench/runtime.py's flow and load, 6,000 messages, 3 runs each: 490-515
    # instead of 560-640 us of a worker's CPU per message, 2,020-2,100 instead of
    # 1,630-1,860 msg/s). A message after a quiet spell is claimed at once.
    gather: float = 0.005
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
    breaker_max_cooldown: float = 30.0  # a failed trial doubles the wait up to this: the longest between trials
    breaker_sync: float = 1.0  # how often the shared breakers are read from the store
    max_claims: int = 5  # a message claimed this often without finishing is poison
    stall_after: float = 60.0  # /healthz says unhealthy when the loop, the threads or the work stall this long
    # what a message may spend in a flow's steps when the flow's `budget:` does not say
    # (flowyard.budget): over it, the step is stopped and the message is a dead letter
    budget_time: float = DEFAULT_TIME
    budget_memory: int = DEFAULT_MEMORY
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
        self.services = Services(x12_control=ControlNumbersStore(self.engine), connector_state=TableState(self.engine))
        self.wake = asyncio.Event()  # new work to claim
        self.listener: asyncio.Task[None] | None = None  # new work stored by other processes
        self.tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.stopped = asyncio.Event()
        self.stopping = asyncio.Event()
        self.working_messages: set[str] = set()  # claimed and being processed here
        self.working_deliveries: set[int] = set()
        self.started_at = time.time()
        self.flows = RunningFlows(self)
        self.intake = Intake(self)
        self.processing = Processing(self)
        self.delivery = Delivery(self)
        self.health = Health(self)
        self.watchdog = Watchdog()  # stops a step over its message's budget

    # the parts' state that callers (the server, tests, the UI) look at
    @property
    def current(self) -> dict[str, LoadedFlow]:
        return self.flows.current

    @property
    def sources(self) -> dict[str, Any]:
        return self.intake.sources

    @property
    def breakers(self) -> Breakers:
        return self.delivery.breakers

    async def accept(self, name: str, message: Message) -> None:
        await self.intake.accept(name, message)

    async def process_batch(self, claimed: list[queue.ClaimedMessage]) -> None:
        await self.processing.process_batch(claimed)

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(queue.register_worker, self.engine, self.worker, self.config.mode)
        dead = await asyncio.to_thread(queue.dead_local_owners, self.engine, socket.gethostname())
        if dead:
            n = await asyncio.to_thread(queue.release, self.engine, dead)
            log.info("recovered %d messages and deliveries left by stopped processes %s",
                     n, ", ".join(dead))
        self.intake.writer.start()
        try:
            await self.reconcile()
        except Exception as exc:  # the loop tries again in a moment
            log.warning("could not look at the deployed flows: %s", brief(exc))
        await self.delivery.share_breakers()  # adopt the other workers' open breakers before the first delivery
        loops = [self.reconcile_loop(), self.heartbeat_loop(), self.delivery.retry_loop(),
                 self.maintenance_loop(), self.delivery.breaker_loop()]
        loops += [self.processing.process_loop(i) for i in range(self.config.processors)]
        self.tasks = [asyncio.create_task(c) for c in loops]
        self.tasks.append(self.health.start())
        self.watchdog.start()
        url = wakeups.listening_url(self.engine)
        if url is not None:
            self.listener = asyncio.create_task(wakeups.listen(url, self.wake.set))
        log.info("runtime %s started with %d flows", self.worker, len(self.flows.current),
                 extra={"worker": self.worker})

    async def stop(self) -> None:
        """Graceful: stop sources, finish in-flight batches within the grace period,
        hand back what is still leased."""
        if self.closing:
            await self.stopped.wait()
            return
        self.closing = True
        self.stopping.set()
        self.health.stop()
        if self.listener is not None:
            self.listener.cancel()
            await asyncio.gather(self.listener, return_exceptions=True)
        deadline = time.monotonic() + 5
        while self.intake.inflight_accepts and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for name in list(self.intake.sources):
            await self.intake.stop_source(name)
        self.wake.set()
        self.delivery.breaker_changed.set()
        _done, pending = await asyncio.wait(self.tasks, timeout=self.config.grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.intake.writer.close()
        try:
            n = await asyncio.to_thread(queue.release, self.engine, [self.worker])
            if n:
                log.info("handed back %d leased items", n)
            await asyncio.to_thread(queue.worker_stopped, self.engine, self.worker)
        except Exception as exc:
            log.warning("could not hand back leased work (it returns when leases lapse): %s",
                        exc)
        await self.flows.close()
        self.watchdog.stop()
        self.processing.close()
        self.intake.locks.drop_all()
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
        """Run what is deployed (see `running`): start each flow whose deployed version
        changed, stop those no longer deployed, report, and take the sources' locks."""
        wanted, starts, stops = await self.flows.changes()
        for loaded in starts:
            await self.intake.stop_source(loaded.name)
            self.flows.activate(loaded)
            self.wake.set()
        for name in stops:
            await self.intake.stop_source(name)
            self.flows.deactivate(name, "undeployed")
        await self.flows.report(wanted)
        if self.config.run_sources and not self.closing:
            await self.intake.claim_sources()

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
