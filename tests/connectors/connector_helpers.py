"""Shared test helpers for connector tests: a collecting `accept`, running a source
until it delivered enough, a uvicorn server on loopback, free ports, and the engine's
verdict on a message (to show a malformed one ends as a dead letter)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn

from flowyard.connector import Source
from flowyard.engine import Pipeline, RunResult
from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.secrets import Secrets
from flowyard.services import Services
from flowyard.step import FlowContext


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVICES = Services()
"""What these tests lend their connectors, as one runtime process would (its webhook
routes are where a test's HTTP peer finds a running webhook source)."""


def context(tmp_path: Path, name: str = "test-flow", **secrets: str) -> FlowContext:
    return FlowContext(
        flow_file=tmp_path / f"{name}.yaml",
        flow_name=name,
        secrets=Secrets(environ=dict(secrets)),
        services=SERVICES,
    )


class Collector:
    """An `accept` that stores messages in a list; `fail` makes it raise like a store
    that is down, so a source must not acknowledge."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.fail = False
        self.refused = 0

    async def __call__(self, message: Message) -> None:
        if self.fail:
            self.refused += 1
            raise RuntimeError("the store is down")
        self.messages.append(message)

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]


async def wait_for(
    condition: Callable[[], bool], timeout: float = 20.0, what: str | Callable[[], str] = "condition"
) -> None:
    """Poll until `condition()` holds; fail the test with `what` after `timeout` (a
    callable `what` is asked then, to tell what was seen instead)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.05)


class Running:
    """Runs `source.run(accept)` as a task for the duration of an `async with`."""

    def __init__(self, source: Source[Any], accept: Collector) -> None:
        self.source = source
        self.accept = accept
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.source.run(self.accept))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        await self.source.close()

    def check(self) -> None:
        """Re-raise if the source's task died (it should loop forever)."""
        assert self.task is not None
        if self.task.done() and not self.task.cancelled() and self.task.exception():
            raise self.task.exception()  # type: ignore[misc]


class Server:
    """A uvicorn server for an ASGI app on 127.0.0.1, stoppable and restartable on the
    same port (to show a peer going away and coming back)."""

    def __init__(self, app: Callable[..., Awaitable[None]], port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Server:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        await wait_for(
            lambda: self.server is not None and self.server.started, 10, "uvicorn to start"
        )
        return self

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = self.task = None


def pipeline_result(flow_text: str, tmp_path: Path, message: Message) -> RunResult:
    """What the engine makes of a message a source delivered, for a flow given as text."""
    path = tmp_path / "dl-flow.yaml"
    path.write_text(flow_text, encoding="utf-8")
    flow = load_flow(path)
    return Pipeline(flow).run(message)


JSON_FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {name: dead-letter-check}
source:
  file: {path: in, pattern: "*.json"}
steps:
  - jmespath: "{n: n}"
targets:
  - file: {path: out}
"""
"""A flow whose first step needs JSON: a malformed payload fails there, with the reason,
and the runtime keeps it as a dead letter."""


class FailsOnce(Collector):
    """Refuses the `nth` message it is given once (a store hiccup), takes everything else."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self.nth = nth
        self.seen = 0
        self.busy = 0  # hand-overs not yet returned

    async def __call__(self, message: Message) -> None:
        self.seen += 1
        if self.seen == self.nth:
            self.refused += 1
            raise RuntimeError("the store hiccuped")
        self.busy += 1
        try:
            await asyncio.sleep(0.001 * (self.seen % 5))  # finish out of order, as a real store may
            self.messages.append(message)
        finally:
            self.busy -= 1
