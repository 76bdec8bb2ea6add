"""The one back-off policy: waits that double from `initial` up to `maximum`, spread
by jitter so that many failures at once do not all try again at once.

Used for delivery retries (`RetryPolicy` of a target: from half to all of the wait, the
spread that keeps a thousand failed messages apart), reconnecting connectors (+-20%) and
restarting a failed source (no jitter).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float
    maximum: float
    jitter: tuple[float, float] | None = None  # the wait is multiplied by a factor drawn from this range

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        wait: float = min(self.maximum, self.initial * 2.0 ** max(0, attempt - 1))
        if self.jitter is not None:
            wait *= (rng or random).uniform(*self.jitter)
        return wait


class Backoff:
    """A policy with its count of failures in a row, for a loop that retries."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return self.policy.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())
