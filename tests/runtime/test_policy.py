"""Retry timing and the circuit breaker."""

from __future__ import annotations

import random

from flowyard.flow import RetryPolicy
from flowyard.runtime.policy import CircuitBreaker, retry_delay


def test_backoff_doubles_up_to_the_cap_and_jitter_spreads_it() -> None:
    fixed = RetryPolicy(backoff="1s", max_backoff="5s", jitter=False)
    assert [retry_delay(fixed, n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]
    jittered = RetryPolicy(backoff="2s", max_backoff="1m")
    rng = random.Random(7)
    waits = [retry_delay(jittered, 3, rng) for _ in range(200)]
    assert all(4.0 <= w <= 8.0 for w in waits)
    assert max(waits) - min(waits) > 2.0  # spread, not lock-step


def test_breaker_opens_lets_one_trial_through_and_closes_on_success() -> None:
    b = CircuitBreaker("http:erp", threshold=3, cooldown=10)
    for _ in range(3):
        assert b.allow(0)
        b.failure(0)
    assert b.state == "open" and not b.allow(5)
    assert b.allow(10.5)  # half open: one trial
    assert not b.allow(10.6)  # only one
    b.failure(11)  # the trial failed: open again, for twice as long
    assert b.state == "open" and b.open_until == 31
    assert not b.allow(30) and b.allow(31)
    b.success()
    assert b.state == "closed" and b.allow(31) and b.allow(31)


def test_one_backoff_policy_doubles_caps_and_spreads() -> None:
    from flowyard.backoff import Backoff, BackoffPolicy

    plain = Backoff(BackoffPolicy(1.0, 30.0))
    assert [plain.next_delay() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    plain.reset()
    assert plain.next_delay() == 1
    rng = random.Random(7)
    spread = [BackoffPolicy(0.5, 30.0, jitter=(0.8, 1.2)).delay(3, rng) for _ in range(200)]
    assert all(1.6 <= d <= 2.4 for d in spread) and max(spread) - min(spread) > 0.5
