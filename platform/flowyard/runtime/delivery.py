"""Delivering outputs: each first attempt (made while the batch is processed), then
retries with back-off from the store, behind a circuit breaker per endpoint that the
workers of one store share.

A delivery that fails with a retryable error waits in the store (`pending`, with
`next_at` from the target's retry policy) and is claimed by the retry loop; a
non-retryable error or the last attempt makes a dead letter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import DeliveryError, FlowyardError
from ..message import Message
from ..secrets import redactor
from ..store import queue
from ..store.api import reason_kind
from ..store.breakers import PARKED
from ..store.breakers import sync as sync_breakers
from ..store.records import AttemptRow, DeadLetterRow, DeliveryRow
from .flows import LoadedTarget
from .outcomes import brief, dead_row
from .policy import Breakers, CircuitBreaker, retry_delay
from .tracing import span

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("flowyard.runtime")

# Failures an operator must hear of (the attempt rows alone go unread): the class of a
# delivery error, told by its text, and how often one is logged per flow, target and class.
FAILURE_CLASSES = (
    ("disk full", ("no space left on device", "disk quota exceeded", "file too large")),
    ("permission refused", ("permission denied", "operation not permitted", "read-only file system")),
    ("timed out", ("timed out", "timeout", "no answer from")),
    ("connection refused", ("connection refused", "connection reset", "name or service not known",
                            "no route to host", "network is unreachable")),
)
FAILURE_LOG_EVERY = 60.0  # seconds


def failure_class(error: str) -> str | None:
    lowered = error.lower()
    for name, marks in FAILURE_CLASSES:
        if any(mark in lowered for mark in marks):
            return name
    return None


class FailureLog:
    """Logs a delivery failure of a known class once per `every` seconds for each flow,
    target and class, with how many were not logged since."""

    def __init__(self, every: float = FAILURE_LOG_EVERY) -> None:
        self.every = every
        self.last: dict[tuple[str, str, str], tuple[float, int]] = {}  # -> logged at, quiet since

    def failed(self, flow: str, target: str, error: str, now: float | None = None) -> bool:
        kind = failure_class(error)
        if kind is None:
            return False
        now = time.monotonic() if now is None else now
        key = (flow, target, kind)
        logged_at, quiet = self.last.get(key, (None, 0))
        if logged_at is not None and now - logged_at < self.every:
            self.last[key] = (logged_at, quiet + 1)
            return False
        if len(self.last) >= 10_000:
            self.last.clear()
        self.last[key] = (now, 0)
        more = f" ({quiet} more since the last report)" if quiet else ""
        log.warning("delivery to %s of flow %s failed: %s: %s%s", target, flow, kind, error, more,
                    extra={"flow": flow, "target": target, "failure": kind})
        return True


# a batch's first delivery attempt to one target, not started yet
FirstSend = tuple[LoadedTarget, Coroutine[Any, Any, None]]


class Delivery:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.breakers = Breakers(runtime.config.breaker_threshold, runtime.config.breaker_cooldown,
                                 runtime.config.breaker_max_cooldown)
        self.breaker_changed = asyncio.Event()
        self.failures = FailureLog()

    async def send_first(self, sends: list[FirstSend]) -> None:
        """A batch's first delivery attempts, at most the target's `send_concurrency` (or
        the runtime's) at once for each target: that many lanes drain its list (not a
        semaphore: its acquire looks at every waiter, quadratic in the batch)."""
        groups: dict[int, tuple[int, list[Coroutine[Any, Any, None]]]] = {}
        for target, send in sends:
            limit = target.target.send_concurrency or self.runtime.config.send_concurrency
            groups.setdefault(id(target), (limit, []))[1].append(send)

        async def lane(queued: Iterator[Coroutine[Any, Any, None]]) -> None:
            for send in queued:
                await send

        lanes = []
        for limit, group in groups.values():
            queued = iter(group)
            lanes += [lane(queued) for _ in range(min(len(group), limit))]
        await asyncio.gather(*lanes)

    async def first_attempt(self, outcome: queue.ProcessOutcome, row: DeliveryRow,
                            out: Message, t: LoadedTarget, trace: list[Any]) -> None:
        result = await self.attempt(t, out, row["idempotency_key"], 0, outcome.message.flow,
                                    outcome.message.id)
        state, attempts, next_at, error, detail, attempt_row = result
        row["state"], row["attempts"], row["next_at"] = state, attempts, next_at
        row["last_error"], row["detail"] = error, detail or {}
        if state != "pending":  # the data is kept for retries only: none will come
            row["meta"].pop("last_data", None)
        if attempt_row is not None:
            outcome.attempts.append(attempt_row)
        if state == "dead":
            dead = dead_row(outcome.message, "delivery", error or "", None, row["payload"],
                                 row["content_type"], trace, target=t.spec.name)
            dead["delivery_key"] = row["idempotency_key"]
            outcome.dead_letters.append(dead)

    async def attempt(self, t: LoadedTarget, message: Message, key: str, attempts: int,
                      flow: str, message_id: str, delivery_id: int | None = None
                      ) -> tuple[str, int, float, str | None, dict[str, Any] | None, AttemptRow | None]:
        """One delivery attempt: (state, attempts, next_at, error, detail, attempt row)."""
        breaker = self.breakers.get(t.endpoint)
        now = time.time()
        if not breaker.allow(now):
            return ("pending", attempts, breaker.retry_at(now),
                    f"{PARKED} for {t.endpoint}", None, None)
        number = attempts + 1
        began = time.perf_counter()
        error: str | None = None
        retryable = True
        detail: dict[str, Any] | None = None
        with span("deliver", message_id=message_id, flow=flow, target=t.spec.name,
                  key=key, correlation_id=message.correlation_id, attempt=attempts + 1):
            try:
                async with asyncio.timeout(self.runtime.config.delivery_timeout):  # no task per send
                    detail = await t.target.send(message, key)
            except DeliveryError as exc:
                error, retryable = str(exc), exc.retryable
            except TimeoutError:
                error = f"no answer from {t.endpoint} within {self.runtime.config.delivery_timeout:g}s"
            except FlowyardError as exc:
                error, retryable = str(exc), False
            except Exception as exc:  # a connector bug must not lose the message
                error = f"unexpected error: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - began
        self.runtime.health.progressed()
        self.runtime.metrics.child(self.runtime.metrics.delivery_seconds, flow, t.spec.name).observe(seconds)
        # no NUL: an error may quote a binary answer, and PostgreSQL text cannot hold one
        error = redactor.redact(error).replace("\x00", "\ufffd") if error else None
        row: AttemptRow = {"message_id": message_id, "delivery_id": delivery_id, "kind": "deliver",
               "target": t.spec.name, "number": number, "worker": self.runtime.worker,
               "started_at": now, "duration": seconds, "ok": error is None, "error": error,
               "detail": {"key": key, **(detail or {})}}
        if error is None:
            self.breaker_success(breaker)
            self.runtime.metrics.child(self.runtime.metrics.deliveries, flow, t.spec.name, "done").inc()
            return "done", number, 0.0, None, detail, row
        self.failures.failed(flow, t.spec.name, error)
        if retryable:
            self.breakers.failure(breaker)
            if self.breakers.opened:
                self.breaker_changed.set()
        else:  # the endpoint answered (it refused this message): it is up
            self.breaker_success(breaker)
        policy = t.spec.retry
        if not retryable or number >= policy.attempts:
            self.runtime.metrics.deliveries.labels(flow, t.spec.name, "dead").inc()
            why = "not retryable" if not retryable else f"after {number} attempts"
            log.warning("delivery to %s died (%s): %s", t.spec.name, why, error,
                        extra={"flow": flow, "message_id": message_id, "target": t.spec.name})
            return "dead", number, 0.0, f"{error} ({why})", detail, row
        self.runtime.metrics.deliveries.labels(flow, t.spec.name, "retry").inc()
        return "pending", number, time.time() + retry_delay(policy, number), error, detail, row

    def breaker_success(self, breaker: CircuitBreaker) -> None:
        """A delivery went through: a breaker that was not closed closes, and the store
        hears of it at once (it releases the deliveries parked behind it)."""
        if breaker.state != "closed":
            log.info("circuit closed for %s: a trial delivery went through", breaker.endpoint)
            self.breakers.success(breaker)
            self.breaker_changed.set()
        else:
            self.breakers.success(breaker)

    async def retry_loop(self) -> None:
        while not self.runtime.closing:
            try:
                claimed = await asyncio.to_thread(
                    queue.claim_deliveries, self.runtime.engine, self.runtime.worker, list(self.runtime.flows.current),
                    self.runtime.config.batch, self.runtime.config.lease_ttl,
                )
            except Exception as exc:
                log.warning("cannot claim deliveries (store unreachable?): %s", brief(exc))
                await asyncio.sleep(1.0)
                continue
            if not claimed:
                await self.runtime.nap(self.runtime.config.idle_poll)
                continue
            ids = {d.id for d in claimed}
            self.runtime.working_deliveries |= ids
            try:
                outcomes = await asyncio.gather(*(self.retry_one(d) for d in claimed))
                self.unpark(outcomes)
                while True:
                    try:
                        await asyncio.to_thread(queue.commit_deliveries, self.runtime.engine,
                                                self.runtime.worker, outcomes)
                        break
                    except Exception as exc:
                        if self.runtime.closing:
                            return
                        log.warning("cannot commit delivery results (will retry): %s",
                                    brief(exc))
                        await asyncio.sleep(1.0)
            finally:
                self.runtime.working_deliveries -= ids

    def unpark(self, outcomes: list[queue.DeliveryOutcome]) -> None:
        """Deliveries held back while a trial was in flight, whose trial went through
        before they are committed (the store's release missed them): due at once."""
        now = time.time()
        for o in outcomes:
            if (o.state == "pending" and (o.last_error or "").startswith(PARKED)
                    and self.breakers.get(o.delivery.endpoint).state == "closed"):
                o.next_at = now

    async def retry_one(self, d: queue.ClaimedDelivery) -> queue.DeliveryOutcome:
        loaded = self.runtime.flows.loaded(d.flow, d.flow_version)
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

    def delivery_dead(self, d: queue.ClaimedDelivery, reason: str) -> DeadLetterRow:
        meta = d.meta or {}
        return {"message_id": d.message_id, "delivery_id": d.id,
                "correlation_id": meta.get("correlation_id") or "", "flow": d.flow,
                "flow_version": d.flow_version, "kind": "delivery", "reason": reason,
                "reason_kind": reason_kind(reason), "step": None, "target": d.target,
                "input": d.payload or b"", "input_content_type": d.content_type, "trace": [],
                "status": "open", "created_at": time.time()}

    async def breaker_loop(self) -> None:
        while not self.runtime.closing:
            self.breaker_changed.clear()
            await self.share_breakers()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.breaker_changed.wait(), self.runtime.config.breaker_sync)

    async def share_breakers(self) -> None:
        """Share breaker openings and closings with the other workers; adopt theirs."""
        breakers = self.breakers
        opened = [(e, b.open_until, b.current_cooldown) for e, b in breakers.opened.items()]
        closed = list(breakers.closed)
        breakers.opened.clear()
        breakers.closed.clear()
        try:
            current = await asyncio.to_thread(sync_breakers, self.runtime.engine,
                                              self.runtime.worker, opened, closed)
        except Exception as exc:
            log.warning("cannot share circuit breakers: %s", brief(exc))
            for endpoint, _until, _cooldown in opened:  # tell them next time
                breakers.opened.setdefault(endpoint, breakers.get(endpoint))
            breakers.closed.update(e for e in closed if e not in breakers.opened)
            return
        now = time.time()
        for endpoint, until, cooldown in current:
            if breakers.get(endpoint).adopt(until, cooldown, now):
                log.warning("circuit open for %s (found down by another worker) until %s",
                            endpoint, time.strftime("%H:%M:%S", time.localtime(until)))
        for endpoint in breakers.closed_elsewhere({e for e, _u, _c in current}, now):
            log.info("circuit closed for %s: another worker's trial delivery went through", endpoint)
