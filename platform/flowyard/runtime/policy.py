"""Retry timing and circuit breaking, kept apart from I/O so they are easy to reason about.

A delivery that fails with a retryable error waits `backoff * 2^(n-1)` (capped at
`max_backoff`) before attempt n+1; with jitter the wait is drawn uniformly from half to
all of that, so a thousand messages failing together do not retry together.

A circuit breaker per endpoint (target kind + address) opens after `threshold`
consecutive failures: while open, deliveries to that endpoint are not attempted and do
not use up their retries; after `cooldown` one trial delivery is let through (half
open); its success closes the breaker, its failure opens it again for twice as long, up
to `max_cooldown` (30 s by default): a trial goes at least that often, so deliveries
parked behind the breaker move within that much of the endpoint's recovery (a cap of
five minutes kept them parked that long after it came back).

Breakers are shared through the store (`store.breakers`): an opening is
published, and every worker adopts the open breakers it reads, so a dead endpoint costs
`threshold` failures once, not once per worker. Each worker still sends its own trial
when the cooldown ends; a successful trial releases the deliveries parked behind the
breaker (they are due at once, on every worker), and a worker that finds the shared
breaker gone (closed by another's trial) closes its own.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from ..backoff import BackoffPolicy
from ..flow import RetryPolicy


def retry_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed delivery attempt number `attempt` (1-based)."""
    jitter = (0.5, 1.0) if policy.jitter else None
    return BackoffPolicy(policy.backoff.total_seconds(), policy.max_backoff.total_seconds(), jitter).delay(attempt, rng)


@dataclass
class CircuitBreaker:
    endpoint: str
    threshold: int = 5
    cooldown: float = 10.0
    max_cooldown: float = 30.0
    failures: int = 0
    state: str = "closed"  # closed | open | half-open
    open_until: float = 0.0
    current_cooldown: float = field(default=0.0)
    trial_in_flight: bool = False

    def allow(self, now: float | None = None) -> bool:
        """May a delivery be attempted now?"""
        now = time.time() if now is None else now
        if self.state == "closed":
            return True
        if self.state == "open" and now >= self.open_until:
            self.state = "half-open"
            self.trial_in_flight = False
        if self.state == "half-open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def retry_at(self, now: float | None = None) -> float:
        """When a delivery held back by the open breaker should come back: when it may
        send a trial, or a second later while a trial is in flight (a trial that goes
        through also releases the parked deliveries in the store at once)."""
        now = time.time() if now is None else now
        if self.state == "half-open":
            return now + 1.0
        return max(self.open_until, now + 0.5)

    def success(self) -> bool:
        """Record a success; True when this closed a breaker that was not closed."""
        was = self.state
        self.failures = 0
        self.state = "closed"
        self.current_cooldown = 0.0
        self.trial_in_flight = False
        return was != "closed"

    def failure(self, now: float | None = None) -> bool:
        """Record a failure; True when this opened the breaker."""
        now = time.time() if now is None else now
        self.failures += 1
        if self.state == "open":
            # an attempt started before the opening, failing after it: no news (counted
            # as one more opening, a burst of 30 such doubled the wait to its cap at once)
            return False
        if self.state == "half-open" or self.failures >= self.threshold:
            self.current_cooldown = (
                min(self.max_cooldown, self.current_cooldown * 2)
                if self.current_cooldown else self.cooldown
            )
            self.state = "open"
            self.open_until = now + self.current_cooldown
            self.trial_in_flight = False
            return True
        return False

    def adopt(self, open_until: float, cooldown: float, now: float | None = None) -> bool:
        """Open because another worker found the endpoint down (until `open_until`);
        True when this changed anything. A trial in flight here is left to decide."""
        now = time.time() if now is None else now
        if open_until <= now or self.state == "half-open":
            return False
        if self.state == "open" and self.open_until >= open_until:
            return False
        self.state = "open"
        self.open_until = open_until
        self.current_cooldown = max(self.current_cooldown, cooldown)
        self.trial_in_flight = False
        return True


class Breakers:
    """The breakers of one process, by endpoint, and what changed since the store last
    heard of them (`opened`, `closed`: the runtime shares them with the other workers)."""

    def __init__(self, threshold: int = 5, cooldown: float = 10.0, max_cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)
        self.by_endpoint: dict[str, CircuitBreaker] = {}
        self.opened: dict[str, CircuitBreaker] = {}
        self.closed: set[str] = set()

    def failure(self, breaker: CircuitBreaker) -> None:
        if breaker.failure():
            self.opened[breaker.endpoint] = breaker
            self.closed.discard(breaker.endpoint)

    def success(self, breaker: CircuitBreaker) -> None:
        if breaker.success():
            self.closed.add(breaker.endpoint)
            self.opened.pop(breaker.endpoint, None)

    def closed_elsewhere(self, shared: set[str], now: float | None = None) -> list[str]:
        """Close the breakers open here that the store no longer holds open (another
        worker's trial succeeded), unless this worker has an opening still to tell;
        returns their endpoints. One past its time is left to send its own trial."""
        now = time.time() if now is None else now
        closed = []
        for endpoint, breaker in self.by_endpoint.items():
            if (breaker.state == "open" and breaker.open_until > now + 0.5
                    and endpoint not in shared and endpoint not in self.opened):
                breaker.success()
                closed.append(endpoint)
        return closed

    def get(self, endpoint: str) -> CircuitBreaker:
        breaker = self.by_endpoint.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(endpoint, self.threshold, self.cooldown, self.max_cooldown)
            self.by_endpoint[endpoint] = breaker
        return breaker
