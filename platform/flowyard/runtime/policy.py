"""Retry timing and circuit breaking, kept apart from I/O so they are easy to reason about.

A delivery that fails with a retryable error waits `backoff * 2^(n-1)` (capped at
`max_backoff`) before attempt n+1; with jitter the wait is drawn uniformly from half to
all of that, so a thousand messages failing together do not retry together.

A circuit breaker per endpoint (target kind + address) opens after `threshold`
consecutive failures: while open, deliveries to that endpoint are not attempted and do
not use up their retries; after `cooldown` one trial delivery is let through (half
open); its success closes the breaker, its failure opens it again for twice as long.

Breakers are shared through the store (`store.breakers`): an opening is
published, and every worker adopts the open breakers it reads, so a dead endpoint costs
`threshold` failures once, not once per worker. Each worker still sends its own trial
when the cooldown ends.
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
    max_cooldown: float = 300.0
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
        """When a delivery held back by the open breaker should come back."""
        now = time.time() if now is None else now
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

    def __init__(self, threshold: int = 5, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
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

    def get(self, endpoint: str) -> CircuitBreaker:
        breaker = self.by_endpoint.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(endpoint, self.threshold, self.cooldown)
            self.by_endpoint[endpoint] = breaker
        return breaker
