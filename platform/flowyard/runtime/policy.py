"""Retry timing and circuit breaking, kept apart from I/O so they are easy to reason about.

A delivery that fails with a retryable error waits `backoff * 2^(n-1)` (capped at
`max_backoff`) before attempt n+1; with jitter the wait is drawn uniformly from half to
all of that, so a thousand messages failing together do not retry together.

A circuit breaker per endpoint (target kind + address) opens after `threshold`
consecutive failures: while open, deliveries to that endpoint are not attempted and do
not use up their retries; after `cooldown` one trial delivery is let through (half
open); its success closes the breaker, its failure opens it again for twice as long.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from ..flow import RetryPolicy


def retry_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    base = policy.backoff.total_seconds() * (2.0 ** max(0, attempt - 1))
    delay = min(base, policy.max_backoff.total_seconds())
    if policy.jitter:
        delay *= (rng or random).uniform(0.5, 1.0)
    return delay


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

    def success(self) -> None:
        self.failures = 0
        self.state = "closed"
        self.current_cooldown = 0.0
        self.trial_in_flight = False

    def failure(self, now: float | None = None) -> None:
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


class Breakers:
    """The breakers of one process, by endpoint."""

    def __init__(self, threshold: int = 5, cooldown: float = 10.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.by_endpoint: dict[str, CircuitBreaker] = {}

    def get(self, endpoint: str) -> CircuitBreaker:
        breaker = self.by_endpoint.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(endpoint, self.threshold, self.cooldown)
            self.by_endpoint[endpoint] = breaker
        return breaker
