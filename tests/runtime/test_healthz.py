"""/healthz reports a stalled runtime (issue 17 item 2): every worker thread taken, claimed
work not moving, the event loop held; 503 and {"status": "unhealthy"} for anyone, what
stalled only for a caller with the metrics token. A real runtime on SQLite behind the
real app; `stall_after` scaled down to a second and a half."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from rthelp import HTTP_TARGET, RecordingServer, order, runtime_for, until, write_flow

from flowyard.message import Message
from flowyard.operations.snapshots import take
from flowyard.runtime.runtime import Runtime, RuntimeConfig
from flowyard.runtime.server import create_app
from flowyard.store.api import Store

TOKEN = "health-token-5f1e2d"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def metrics_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWYARD_METRICS_TOKEN", TOKEN)


def config(flows: Path, **kw: object) -> RuntimeConfig:
    base: dict[str, object] = dict(flows_dir=flows, rescan=0.2, idle_poll=0.05, lease_ttl=30.0, grace=5.0,
                                   run_sources=False, stall_after=1.5)
    base.update(kw)
    return RuntimeConfig(**base)  # type: ignore[arg-type]


class Probe:
    def __init__(self, client: AsyncTestClient[Any]) -> None:
        self.client = client

    async def bare(self) -> tuple[int, Any]:
        answer = await self.client.get("/healthz")
        return answer.status_code, answer.json()

    async def detail(self) -> tuple[int, Any]:
        answer = await self.client.get("/healthz", headers=SCRAPER)
        return answer.status_code, answer.json()


async def wait_for(probe: Probe, status: str, timeout: float = 20) -> tuple[int, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, body = await probe.detail()
        if body["status"] == status:
            return code, body
        assert time.monotonic() < deadline, f"/healthz still says {body} after {timeout}s"
        await asyncio.sleep(0.2)


async def started(store: Store, flows: Path, **kw: object) -> AsyncIterator[tuple[Runtime, Probe]]:
    runtime = runtime_for(store, config(flows, **kw))
    await runtime.start()
    try:
        async with AsyncTestClient(create_app(runtime)) as client:
            yield runtime, Probe(client)
    finally:
        await runtime.stop()


async def test_every_worker_thread_taken_is_unhealthy_until_one_is_free(
        tmp_path: Path, sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    release = threading.Event()
    async for _runtime, probe in started(sqlite_store, flows):
        await wait_for(probe, "ok")
        loop = asyncio.get_running_loop()
        held = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]  # more than the pool
        try:
            code, body = await wait_for(probe, "unhealthy")
            assert code == 503
            assert any("every worker thread is busy" in p for p in body["problems"])
            assert await probe.bare() == (503, {"status": "unhealthy"})  # no detail without the token
        finally:
            release.set()
            await asyncio.gather(*held)
        code, body = await wait_for(probe, "ok")
        assert code == 200 and "problems" not in body and body["flows"] == ["orders"]


async def test_claimed_work_that_does_not_move_is_unhealthy(
        tmp_path: Path, sqlite_store: Store, http_target: RecordingServer) -> None:
    flows = tmp_path / "flows"
    path = write_flow(flows, targets=HTTP_TARGET.format(url=http_target.url, timeout="20s", attempts=3))
    version = take(path).version
    http_target.delay = 5.0  # one delivery hangs far past stall_after
    async for runtime, probe in started(sqlite_store, flows, delivery_timeout=20.0):
        sqlite_store.accept_many([Message(payload=order(1), content_type="application/json",
                                          flow="orders", flow_version=version)])
        code, body = await wait_for(probe, "unhealthy")
        assert code == 503 and any("claimed message" in p and "made no progress" in p for p in body["problems"])
        await until(lambda: sqlite_store.count_messages(state="done") == 1, what="the slow delivery done")
        code, body = await wait_for(probe, "ok")
        assert code == 200 and runtime.health.problems() == []


DEDUPE_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><skus><xsl:for-each select="//line[not(@sku = preceding::line/@sku)]">
    <sku><xsl:value-of select="@sku"/></sku></xsl:for-each></skus></xsl:template>
</xsl:stylesheet>
"""


async def test_a_long_batch_of_slow_messages_that_move_is_healthy(tmp_path: Path, sqlite_store: Store) -> None:
    """Eight messages in one batch, each stopped at its stylesheet's time limit (0.6 s, so
    each takes at least that, then a fresh worker): the batch takes longer than
    stall_after, but each message going through its steps is progress."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "dedupe.xsl").write_text(DEDUPE_XSL)
    (flows / "slow.yaml").write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: slow}\n"
                                     "source: {file: {path: in}}\n"
                                     "steps:\n  - xml.xslt: {stylesheet: dedupe.xsl, time_limit: 0.6}\n"
                                     "targets:\n  - file: {path: out}\n")
    version = take(flows / "slow.yaml").version
    document = b"<o>" + b"".join(b'<line sku="S%d"/>' % n for n in range(30_000)) + b"</o>"
    async for _runtime, probe in started(sqlite_store, flows, processors=1, stall_after=3.0):
        await wait_for(probe, "ok")
        began = time.monotonic()
        sqlite_store.accept_many([Message(payload=document, content_type="application/xml", flow="slow",
                                          flow_version=version) for _ in range(8)])
        answers = []
        while len(sqlite_store.dead_letters()) < 8:
            answers.append(await probe.detail())
            assert time.monotonic() - began < 120, "8 messages not through"
            await asyncio.sleep(0.2)
        took = time.monotonic() - began
    assert took > 3.0, "the batch was quicker than stall_after: the case shows nothing"
    assert [a for a in answers if a[0] != 200] == [], f"took {took:.1f}s"


async def test_a_held_event_loop_is_logged_with_where_it_is_held(
        tmp_path: Path, sqlite_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    caplog.set_level(logging.ERROR, logger="flowyard.runtime")

    def a_step_that_never_yields() -> None:
        time.sleep(3.0)  # the event loop's thread, held

    async for runtime, probe in started(sqlite_store, flows):
        await asyncio.sleep(0.6)  # the pulse has turned
        a_step_that_never_yields()
        assert runtime.health.problems() and "the event loop did not turn" in runtime.health.problems()[0]
        await asyncio.sleep(0.6)
        assert (await probe.bare()) == (200, {"status": "ok"})  # turning again
    assert "the event loop has not turned for" in caplog.text
    assert "a_step_that_never_yields" in caplog.text  # where it was held
