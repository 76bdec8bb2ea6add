"""The runtime's HTTP face: a Litestar app for `/healthz`, `/metrics` (Prometheus),
`POST /hooks/{flow}` (the http source's webhooks) and, in `flowyard serve`, the web UI
(its own Litestar app) for every other path, on the same port.

The webhook route stays thin: it finds the flow's endpoint in the http connector's
registry and calls it; the endpoint authenticates, and answers 202 only after the
runtime's `accept` returned, i.e. after the store commit. Each flow declares its largest
body (`max_bytes`): a larger Content-Length is refused before anything is read, a
chunked body as soon as it passes the limit; Litestar's `request_max_body_size` is the
ceiling above every flow's.

`/healthz` answers `{"status": "ok"}` to anyone (liveness), or `{"status": "unhealthy"}`
with 503 when the runtime has stalled (`health.Health`: the event loop, the worker
threads or the claimed work not moving for `stall_after` seconds); the worker id, the
list of running flows and what stalled, and `/metrics` altogether, only to a caller that
proves who it is: the
token of `FLOWYARD_METRICS_TOKEN` (the value, or a `${secret:NAME}`/`${env:NAME}`
reference) as `Authorization: Bearer TOKEN`, or, in `flowyard serve`, a logged-in UI
session (the UI app lends `state.session_user` for that).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from typing import Any, Protocol

from litestar import Controller, HttpMethod, Litestar, Request, Response, get, post, route
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import (
    HTTPException,
    InternalServerException,
    MethodNotAllowedException,
    NotFoundException,
)
from litestar.params import FromPath, SkipValidation
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE
from litestar.types import ASGIApp

from ..errors import SecretError
from ..secrets import Secrets, redactor
from ..services import Services
from .metrics import CONTENT_TYPE

UI_GROUP = "flowyard.ui"

log = logging.getLogger("flowyard.runtime")

HOOK_BODY_CEILING = 1 << 30
"""No webhook body is read past this (1 GiB), whatever a flow's `max_bytes` says."""


class Served(Protocol):
    """What the HTTP face needs of the runtime."""

    worker: str
    current: dict[str, Any]
    metrics: Any  # flowyard.runtime.metrics.Metrics
    services: Services


RuntimeDep = NamedDependency[SkipValidation[Served]]
"""The runtime, injected (a protocol, so Litestar is told not to validate it)."""


def too_large(limit: int) -> Response[dict[str, str]]:
    return Response({"error": f"the body is larger than {limit} bytes"}, status_code=413)


METRICS_TOKEN_ENV = "FLOWYARD_METRICS_TOKEN"


def metrics_token() -> str | None:
    """The token that opens `/metrics` and the detail of `/healthz`: the value of
    FLOWYARD_METRICS_TOKEN, or what its `${secret:NAME}`/`${env:NAME}` reference names;
    None when unset (then only a logged-in UI session opens them)."""
    raw = os.environ.get(METRICS_TOKEN_ENV, "").strip()
    if not raw:
        return None
    try:
        value = str(Secrets().resolve(raw)).strip()
    except SecretError as exc:
        log.warning("%s cannot be resolved: %s", METRICS_TOKEN_ENV, exc)
        return None
    if value:
        redactor.remember(value)
    return value or None


async def identified(request: Request[Any, Any, Any]) -> bool:
    """The caller sent the metrics token, or the session cookie of a logged-in UI user."""
    sent = request.headers.get("authorization", "")
    if sent[:7].lower() == "bearer ":
        token = metrics_token()
        if token is not None and hmac.compare_digest(sent[7:].strip().encode(), token.encode()):
            return True
    ui = request.app.state.get("ui")
    session_user = getattr(getattr(ui, "state", None), "session_user", None)
    if session_user is None or not request.cookies:
        return False
    return await asyncio.to_thread(session_user, dict(request.cookies)) is not None


NOT_IDENTIFIED = (
    f"this needs the token of {METRICS_TOKEN_ENV} (Authorization: Bearer TOKEN) or a "
    "logged-in session"
)


@get("/healthz")
async def healthz(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[dict[str, Any]]:
    """Liveness for anyone (503 when the runtime stalled); the worker, its flows and what
    stalled for an identified caller."""
    health = getattr(runtime, "health", None)
    problems: list[str] = health.problems() if health is not None else []
    status, code = ("unhealthy", 503) if problems else ("ok", 200)
    if not await identified(request):
        return Response({"status": status}, status_code=code)
    body: dict[str, Any] = {"status": status, "worker": runtime.worker, "flows": sorted(runtime.current)}
    if problems:
        body["problems"] = problems
    return Response(body, status_code=code)


class RuntimeMetrics(Controller):
    """Prometheus' text format of the registry the runtime fills (its counters and
    histograms, and the store's figures read at scrape time), for an identified caller."""

    path = "/metrics"

    @get()
    async def metrics(self, request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
        if not await identified(request):
            return Response({"error": NOT_IDENTIFIED}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="flowyard"'})
        text = await asyncio.to_thread(runtime.metrics.render)
        return Response(text, headers={"Content-Type": CONTENT_TYPE})


@post("/hooks/{flow:path}", request_max_body_size=HOOK_BODY_CEILING)
async def hook(request: Request[Any, Any, Any], flow: FromPath[str], runtime: RuntimeDep) -> Response[dict[str, Any]]:
    name = flow.strip("/")
    endpoint = runtime.services.webhooks.get(name)
    if endpoint is None:
        return Response({"error": f"no running flow {name!r} has an http source here"}, status_code=404)
    headers = {k.lower(): v for k, v in request.headers.items()}
    limit = int(endpoint.max_bytes)
    try:
        declared = int(headers.get("content-length", "0") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return too_large(limit)
            chunks.append(chunk)
    except InternalServerException:  # the caller went away before sending it all
        return Response({"error": "the request ended before its body"}, status_code=400)
    status, body = await endpoint.handle(headers, b"".join(chunks))
    return Response(body, status_code=status)


def _runtime(state: State) -> Served:
    served: Served = state.runtime
    return served


def _error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    if isinstance(exc, MethodNotAllowedException) and request.url.path.startswith("/hooks/"):
        return Response({"error": "webhooks take POST"}, status_code=405)
    if exc.status_code == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        return too_large(HOOK_BODY_CEILING)
    if isinstance(exc, NotFoundException):
        return Response({"error": "not found"}, status_code=404)
    return Response({"error": str(exc.detail)}, status_code=exc.status_code)


def _crash(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response({"error": "internal error; it was logged"}, status_code=500)


def create_app(runtime: Served, ui: Litestar | None = None) -> Litestar:
    """The runtime's routes; with `ui`, every other path (and method) goes to the UI app,
    whose start-up and shutdown hooks run with this app's."""
    handlers: list[Any] = [healthz, RuntimeMetrics, hook]
    lifespan: list[Any] = []
    if ui is not None:
        ui_app: Litestar = ui

        @route(["/", "/{rest:path}"], http_method=list(HttpMethod), sync_to_thread=False,
               include_in_schema=False)
        def web_ui() -> ASGIApp:
            return ui_app

        @contextlib.asynccontextmanager
        async def ui_lifespan(_app: Litestar) -> AsyncIterator[None]:
            async with ui_app.lifespan():
                yield

        handlers.append(web_ui)
        lifespan.append(ui_lifespan)
    return Litestar(
        route_handlers=handlers,
        dependencies={"runtime": Provide(_runtime, sync_to_thread=False)},
        exception_handlers={HTTPException: _error, Exception: _crash},
        state=State({"runtime": runtime, "ui": ui}),
        lifespan=lifespan,
        logging_config=None,
        openapi_config=None,
    )


def ui_part(name: str) -> Any:
    """A part of the web UI, registered under the `flowyard.ui` entry points (the UI
    sits beside the runtime, not below it); None where no UI is installed."""
    for entry in entry_points(group=UI_GROUP, name=name):
        try:
            return entry.load()
        except ImportError:
            return None
    return None


def load_ui(runtime: Any, flows_dir: Any, engine: Any) -> Any:
    """The web UI app, or None without one."""
    create_ui = ui_part("app")
    return None if create_ui is None else create_ui(runtime, flows_dir=flows_dir, engine=engine)


def first_admin_password(engine: Any) -> str | None:
    """The first admin's one-time password when the store has no user yet (the UI makes
    the account); None on every later start or without the UI."""
    first_start = ui_part("first_start")
    password: str | None = None if first_start is None else first_start(engine)
    return password
