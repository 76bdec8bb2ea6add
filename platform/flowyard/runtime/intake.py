"""Intake: each running flow's source, supervised (restarted with back-off when it
fails), and the store's group commit of what the sources accept, which returns only
once the message is stored (a source acknowledges what is stored, nothing else); a
flow whose backlog is over the bound holds its source."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..backoff import Backoff, BackoffPolicy
from ..errors import FlowyardError
from ..message import Message
from ..secrets import redactor
from ..store import queue
from ..store.database import data_dir
from .flows import LoadedFlow, open_source
from .outcomes import brief
from .sources import AcceptWriter, SourceLocks
from .tracing import span

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("flowyard.runtime")

SOURCE_RESTARTS = BackoffPolicy(1.0, 30.0)  # a failed source restarts after 1 s, 2 s ... 30 s


class Intake:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sources: dict[str, tuple[Any, asyncio.Task[None]]] = {}
        self.locks = SourceLocks(runtime.engine, data_dir() / "locks")
        self.writer = AcceptWriter(runtime.store)
        self.inflight_accepts = 0
        self.accepting: dict[str, int] = {}  # accepts in flight, by flow
        self.stopping_sources: set[str] = set()
        self.backlog: dict[str, int] = {}
        self.backlog_at = 0.0

    async def claim_sources(self) -> None:
        if not self.locks.alive():
            for name in list(self.sources):
                await self.stop_source(name)
        for name, loaded in self.runtime.flows.current.items():
            if name in self.sources:
                continue
            try:
                owned = await asyncio.to_thread(self.locks.try_acquire, name)
            except Exception as exc:
                log.warning("could not take the source lock of %s: %s", name, brief(exc))
                continue
            if owned:
                self.start_source(loaded)

    def start_source(self, loaded: LoadedFlow) -> None:
        try:
            source = open_source(loaded, self.runtime.secrets, self.runtime.services, self.runtime.flows.io_dirs.get(loaded.name))
        except Exception as exc:
            log.error("cannot open the source of %s: %s", loaded.name, exc,
                      extra={"flow": loaded.name})
            self.locks.release(loaded.name)
            return
        task = asyncio.create_task(self.supervise(loaded, source), name=f"source:{loaded.name}")
        self.sources[loaded.name] = (source, task)

    async def stop_source(self, name: str) -> None:
        """Stop a source without cutting it off between a stored message and its
        acknowledgment (which would hand the same message in again): new accepts are
        refused, accepts in flight finish, the source gets a moment to acknowledge,
        then it is cancelled."""
        entry = self.sources.pop(name, None)
        if entry is None:
            return
        source, task = entry
        self.stopping_sources.add(name)
        deadline = time.monotonic() + 10
        while self.accepting.get(name) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # let the source run its acknowledgment
        self.stopping_sources.discard(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await source.close()
        except Exception as exc:
            log.warning("closing the source of %s failed: %s", name, exc)
        self.locks.release(name)

    async def supervise(self, loaded: LoadedFlow, source: Any) -> None:
        """Run a source; restart it with back-off when it fails."""
        restarts = Backoff(SOURCE_RESTARTS)
        accept = self.accept_for(loaded.name)
        while not self.runtime.closing:
            began = time.monotonic()
            try:
                await source.run(accept)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() - began > 60:
                    restarts.reset()  # it ran a good while before failing: start over
                delay = restarts.next_delay()
                text = redactor.redact(brief(exc))
                source.health.failed(text)
                log.warning("source of %s failed, restarting in %.0fs: %s", loaded.name, delay,
                            text, extra={"flow": loaded.name})
                await asyncio.sleep(delay)

    def accept_for(self, name: str) -> Any:
        async def accept(message: Message) -> None:
            await self.accept(name, message)

        return accept

    async def accept(self, name: str, message: Message) -> None:
        """Store a message for flow `name`; returns once it is committed."""
        loaded = self.runtime.flows.current.get(name)
        if loaded is None or self.runtime.closing or name in self.stopping_sources:
            raise FlowyardError(f"flow {name!r} is not running here")
        await self.wait_for_room(name)
        message.flow = name
        message.flow_version = loaded.version
        message.headers.setdefault("labels", loaded.labels)
        self.inflight_accepts += 1
        self.accepting[name] = self.accepting.get(name, 0) + 1
        try:
            with span("accept", flow=name, message_id=message.id):
                await self.writer.submit(message)
        finally:
            self.inflight_accepts -= 1
            self.accepting[name] -= 1
        self.backlog[name] = self.backlog.get(name, 0) + 1
        self.runtime.metrics.accepted.labels(name).inc()
        self.runtime.wake.set()

    async def wait_for_room(self, name: str) -> None:
        """Back-pressure: hold the source while its flow's backlog is over the bound."""
        limit = self.runtime.config.backlog_limit
        while True:
            now = time.monotonic()
            if now - self.backlog_at > 0.5:
                self.backlog_at = now  # one refresh at a time, not one per waiting source
                self.backlog = await asyncio.to_thread(queue.backlog, self.runtime.engine)
            if self.backlog.get(name, 0) < limit or self.runtime.closing:
                return
            await asyncio.sleep(0.2)
            self.backlog_at = 0.0
