"""The runtime's HTTP face: one ASGI app for `/metrics`, `POST /hooks/{flow}` (the http
source's webhooks) and, in `flowyard serve`, the web UI for everything else.

The webhook route stays thin: it finds the flow's endpoint in the http connector's
registry and calls it; the endpoint authenticates, and answers 202 only after the
runtime's `accept` returned, i.e. after the store commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .metrics import CONTENT_TYPE

log = logging.getLogger("flowyard.runtime")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def respond(send: Send, status: int, body: bytes,
                  content_type: str = "application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def webhook_registry() -> dict[str, Any]:
    try:
        from flowyard_connectors.http import webhooks
    except ImportError:
        return {}
    return webhooks


class RuntimeApp:
    def __init__(self, runtime: Any, ui: ASGIApp | None = None) -> None:
        self.runtime = runtime
        self.ui = ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope.get("path", "")
            if path == "/metrics":
                await respond(send, 200, self.runtime.metrics.render(), CONTENT_TYPE)
                return
            if path.startswith("/hooks/"):
                await self.hook(path[len("/hooks/"):].strip("/"), scope, receive, send)
                return
            if path == "/healthz":
                await respond(send, 200, json_bytes({"worker": self.runtime.worker,
                                                     "flows": sorted(self.runtime.current)}))
                return
        if self.ui is not None:
            await self.ui(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            await respond(send, 404, json_bytes({"error": "not found"}))

    async def hook(self, flow: str, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            await respond(send, 405, json_bytes({"error": "webhooks take POST"}))
            return
        endpoint = webhook_registry().get(flow)
        if endpoint is None:
            await respond(send, 404, json_bytes(
                {"error": f"no running flow {flow!r} has an http source here"}))
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        limit = int(endpoint.max_bytes)
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            await respond(send, 413, json_bytes({"error": f"the body is larger than {limit} "
                                                          "bytes"}))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > limit:
                await respond(send, 413, json_bytes({"error": f"the body is larger than "
                                                              f"{limit} bytes"}))
                return
            chunks.append(chunk)
            more = bool(event.get("more_body"))
        status, body = await endpoint.handle(headers, b"".join(chunks))
        await respond(send, status, json_bytes(body))


def load_ui(runtime: Any, flows_dir: Any, engine: Any) -> Any:
    """The web UI when the flowyard_ui package is importable."""
    try:
        from flowyard_ui.app import create_app
    except ImportError:
        return None
    app: Any = create_app(runtime, flows_dir=flows_dir, engine=engine)
    return app


def first_admin_password(engine: Any) -> str | None:
    """The first admin's one-time password when the store has no user yet (the UI makes
    the account); None on every later start or without the UI."""
    try:
        from flowyard_ui.app import first_start
    except ImportError:
        return None
    password: str | None = first_start(engine)
    return password
