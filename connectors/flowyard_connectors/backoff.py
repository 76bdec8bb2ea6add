"""Reconnecting with back-off, shared by every connector that keeps a connection open.

A source's `run` loops for as long as the flow is deployed: when the peer goes away it
records the failure in its health, waits (doubling up to a cap, with jitter so many
flows do not reconnect in lock-step) and tries again. Wrong credentials are reported in
plain words but still retried slowly: a rotated secret or a fixed account must not need
a redeploy.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from flowyard.connector import Health
from flowyard.errors import FlowyardError
from flowyard.secrets import redactor


class ConnectError(FlowyardError):
    """The peer could not be reached or refused us; the message says which and why."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(redactor.redact(message))
        self.auth = auth


class Backoff:
    """Delays of initial, 2x, 4x ... up to `maximum` seconds, with +-20% jitter."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0

    def next_delay(self) -> float:
        delay: float = min(self.maximum, self.initial * 2.0**self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())


async def keep_running(
    session: Callable[[], Awaitable[None]],
    health: Health,
    describe: Callable[[BaseException], str],
    backoff: Backoff | None = None,
) -> None:
    """Run `session` (connect, then consume until the connection drops) forever,
    recording each failure in `health` and waiting with back-off before the next try.
    `session` calls `health.ok()` once connected, which also resets the back-off."""
    backoff = backoff or Backoff()
    while True:
        attempt_before = health.last_success
        try:
            await session()
            health.failed("connection closed by the peer")
        except asyncio.CancelledError:
            health.connected = False
            raise
        except Exception as exc:  # every failure is reported and retried, never a crash
            health.failed(redactor.redact(describe(exc)))
        if health.last_success != attempt_before:
            backoff.reset()  # we were connected: start over at the shortest delay
        await backoff.wait()
