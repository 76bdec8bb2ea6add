"""Reconnecting with back-off, shared by every connector that keeps a connection open.

A source's `run` loops for as long as the flow is deployed: when the peer goes away it
records the failure in its health, waits (doubling up to a cap, with jitter so many
flows do not reconnect in lock-step) and tries again. Wrong credentials are reported in
plain words but still retried slowly: a rotated secret or a fixed account must not need
a redeploy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flowyard.backoff import Backoff, BackoffPolicy
from flowyard.connector import Health
from flowyard.errors import FlowyardError
from flowyard.secrets import redactor


class ConnectError(FlowyardError):
    """The peer could not be reached or refused us; the message says which and why."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(redactor.redact(message))
        self.auth = auth


def reconnecting() -> Backoff:
    """A connector's reconnect delays: 0.5 s, 1 s, 2 s ... up to 30 s, +-20%."""
    return Backoff(BackoffPolicy(0.5, 30.0, jitter=(0.8, 1.2)))


async def keep_running(
    session: Callable[[], Awaitable[None]],
    health: Health,
    describe: Callable[[BaseException], str],
    backoff: Backoff | None = None,
) -> None:
    """Run `session` (connect, then consume until the connection drops) forever,
    recording each failure in `health` and waiting with back-off before the next try.
    `session` calls `health.ok()` once connected, which also resets the back-off."""
    backoff = backoff or reconnecting()
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
