"""Several hand-overs at once, each acknowledged only after its own `accept` returned.

A broker source that stores one message at a time is bound by the store's commit
latency (an fsync per message). With `concurrency: N` a source lets up to N messages be
stored at the same time, so the store can commit them together; the broker still gets
each acknowledgment only after that message was stored. The price is order: with N > 1
two messages may be stored in a different order than the broker delivered them (by at
most N - 1 places). N = 1, the default, keeps the broker's order.

The first failure stops the intake: `submit` and `drain` raise it, the source drops its
connection, and everything not acknowledged is delivered again by the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class InFlight:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Task[None]] = set()
        self.error: BaseException | None = None
        self.slots = asyncio.Semaphore(limit)
        self.failed = asyncio.Event()

    async def submit(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` (accept, then acknowledge); waits while `limit` are running."""
        if self.error is not None:
            raise self.error
        if self.limit == 1:
            await work()
            return
        await self.slots.acquire()
        if self.error is not None:
            self.slots.release()
            raise self.error
        task = asyncio.create_task(self._run(work))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception as exc:
            if self.error is None:
                self.error = exc
                self.failed.set()
        finally:
            self.slots.release()

    async def drain(self) -> None:
        """Wait for everything in flight; raise the first failure."""
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.error is not None:
            raise self.error

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


async def until_failure(intake: Coroutine[Any, Any, None], inflight: InFlight) -> None:
    """Run the intake loop, stopping it as soon as a hand-over in flight failed (the
    intake may be waiting for the next message, which may not come for a while)."""
    reading = asyncio.create_task(intake)
    watching = asyncio.create_task(inflight.failed.wait())
    try:
        await asyncio.wait({reading, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reading, watching):
            task.cancel()
        await asyncio.gather(reading, watching, return_exceptions=True)
        await inflight.cancel()
    if inflight.error is not None:
        raise inflight.error
    reading.result()
