"""The runtime's HTTP face (a Litestar app): webhooks of a running http source answer as
the source says, bodies above the flow's `max_bytes` get 413 whether announced or
streamed, only POST reaches a webhook; /healthz and /metrics; other paths reach the UI
app when there is one."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from flowyard.message import Message
from flowyard.runtime.metrics import Metrics
from flowyard.runtime.server import create_app
from flowyard.secrets import Secrets
from flowyard.services import Services
from flowyard.step import FlowContext
from flowyard_connectors.http import HttpSource, HttpSourceOptions

SERVICES = Services()  # what the stand-in runtime lends its flows


def stand_in() -> Any:
    """What the server reads of the runtime: its worker id, running flows and metrics."""
    metrics = Metrics()
    metrics.message_finished("hook-flow", {"plant": "DE02"}, "done")
    return SimpleNamespace(worker="w-1", current={"hook-flow": object(), "a-flow": object()}, metrics=metrics,
                           services=SERVICES)


@contextlib.asynccontextmanager
async def running_hook(tmp_path: Path, received: list[Message]) -> AsyncIterator[None]:
    async def accept(message: Message) -> None:
        received.append(message)

    context = FlowContext(flow_file=tmp_path / "hook-flow.yaml", flow_name="hook-flow",
                          secrets=Secrets(environ={"HOOK_TOKEN": "tkn-1"}), services=SERVICES)
    source = HttpSource(HttpSourceOptions(token="${secret:HOOK_TOKEN}", max_bytes=100), context)
    task = asyncio.create_task(source.run(accept))
    try:
        for _ in range(200):
            if "hook-flow" in SERVICES.webhooks:
                break
            await asyncio.sleep(0.01)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app under uvicorn on loopback, and a client for it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def test_webhooks_size_limits_methods_health_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWYARD_METRICS_TOKEN", "metrics-token-for-the-scraper")
    scraper = {"Authorization": "Bearer metrics-token-for-the-scraper"}
    received: list[Message] = []
    auth = {"Authorization": "Bearer tkn-1"}
    async with running_hook(tmp_path, received), serving(create_app(stand_in())) as client:
        ok = await client.post("/hooks/hook-flow", content=b'{"n": 1}', headers=auth)
        unauthenticated = await client.post("/hooks/hook-flow", content=b"x")
        announced = await client.post("/hooks/hook-flow", content=b"x" * 101, headers=auth)

        async def chunks() -> AsyncIterator[bytes]:  # chunked, no Content-Length
            for _ in range(3):
                yield b"y" * 40

        streamed = await client.post("/hooks/hook-flow", content=chunks(), headers=auth)
        wrong_method = await client.get("/hooks/hook-flow")
        unknown = await client.post("/hooks/no-such-flow", content=b"x", headers=auth)
        health = await client.get("/healthz", headers=scraper)
        metrics = await client.get("/metrics", headers=scraper)
        bare_health = await client.get("/healthz")
        bare_metrics = await client.get("/metrics")
        wrong_token = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        nothing = await client.get("/flows")
    assert ok.status_code == 202 and ok.json()["id"] == received[0].id
    assert [m.payload for m in received] == [b'{"n": 1}']
    assert unauthenticated.status_code == 401 and "bearer" in unauthenticated.json()["error"]
    assert (announced.status_code, streamed.status_code) == (413, 413)
    assert announced.json() == streamed.json() == {"error": "the body is larger than 100 bytes"}
    assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "webhooks take POST"}
    assert unknown.status_code == 404 and "no-such-flow" in unknown.json()["error"]
    assert health.json() == {"status": "ok", "worker": "w-1", "flows": ["a-flow", "hook-flow"]}
    assert bare_health.status_code == 200 and bare_health.json() == {"status": "ok"}  # liveness only
    assert bare_metrics.status_code == wrong_token.status_code == 401
    assert "FLOWYARD_METRICS_TOKEN" in bare_metrics.json()["error"] and "hook-flow" not in bare_metrics.text
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'flowyard_messages_total{flow="hook-flow",partner="",plant="DE02",state="done"} 1.0' in metrics.text
    assert nothing.status_code == 404 and nothing.json() == {"error": "not found"}


async def test_other_paths_and_methods_reach_the_ui_app_and_its_start_up_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRAPE_TOKEN", "scrape-token-from-a-secret")
    monkeypatch.setenv("FLOWYARD_METRICS_TOKEN", "${secret:SCRAPE_TOKEN}")  # a reference works too
    started: list[str] = []

    @get("/flows", sync_to_thread=False)
    def flows() -> str:
        return "the UI's flows page"

    ui = Litestar(route_handlers=[flows], on_startup=[lambda: started.append("ui")], logging_config=None)
    async with AsyncTestClient(create_app(stand_in(), ui)) as client:
        page = await client.get("/flows")
        missing = await client.post("/flows/x", content=b"x")
        health = await client.get("/healthz", headers={"Authorization": "Bearer scrape-token-from-a-secret"})
    assert page.status_code == 200 and page.text == "the UI's flows page"
    assert missing.status_code == 404  # the UI's answer, not the runtime's
    assert health.json()["worker"] == "w-1"
    assert started == ["ui"]


@pytest.mark.parametrize("path", ["/hooks/hook-flow/", "/hooks/hook-flow"])
async def test_a_trailing_slash_names_the_same_flow(tmp_path: Path, path: str) -> None:
    received: list[Message] = []
    async with running_hook(tmp_path, received), AsyncTestClient(create_app(stand_in())) as client:
        response = await client.post(path, content=b"1", headers={"Authorization": "Bearer tkn-1"})
    assert response.status_code == 202 and len(received) == 1
