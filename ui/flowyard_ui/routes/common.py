"""Helpers shared by the route modules: page rendering, forms, toasts, htmx targets."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from litestar import Request
from litestar.plugins.htmx import ClientRedirect, HTMXRequest, HTMXTemplate
from litestar.response import Redirect, Response, Template

T = TypeVar("T")


def page(
    request: Request[Any, Any, Any], template: str, status_code: int = 200, trigger: str | None = None, **context: Any
) -> Template:
    """A full page (or, for htmx, the same template: partial templates do not extend base).
    `trigger`: an event for the page's listeners (HX-Trigger)."""
    context.setdefault("current_user", request.user)
    context.setdefault("nav", template.split("/")[0].split(".")[0])
    return HTMXTemplate(template_name=template, context=context, status_code=status_code, trigger_event=trigger, after="receive")


def toast(text: str, kind: str = "ok", status_code: int = 200, trigger: str | None = None) -> Template:
    """A short message shown in the page's toast area (out-of-band swap; the element
    that asked is left as it is). `trigger`: an event for the page's listeners."""
    return HTMXTemplate(
        template_name="partials/toast_oob.html",
        context={"text": text, "kind": kind},
        status_code=status_code,
        re_swap="none",
        trigger_event=trigger,
        after="receive",
    )


def swaps_into(request: HTMXRequest, element_id: str) -> bool:
    """Whether htmx will swap the answer into the element with this id: htmx 2 sends
    `HX-Target: id`, htmx 4 sends `HX-Target: tag#id`."""
    target = request.htmx.target or ""
    return target == element_id or target.endswith("#" + element_id)


async def form(request: Request[Any, Any, Any]) -> dict[str, Any]:
    data = await request.form()
    return {k: data.get(k) for k in data}


async def form_lists(request: Request[Any, Any, Any]) -> dict[str, list[Any]]:
    data = await request.form()
    return {k: data.getall(k) for k in data}


UI_WORKERS = 8
"""UI requests doing work off the event loop at once; more wait for a turn."""

_ui_pool = ThreadPoolExecutor(max_workers=UI_WORKERS, thread_name_prefix="flowyard-ui")


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """CPU or database work off the event loop, on the UI's own threads: the runtime in
    the same process claims and commits on asyncio's default threads (six on two
    cores), so UI requests, however many and however slow, never take its turn."""
    return await asyncio.get_running_loop().run_in_executor(_ui_pool, functools.partial(fn, *args, **kwargs))


def arg(request: Request[Any, Any, Any], name: str, default: str = "") -> str:
    """A query parameter as text (empty when absent)."""
    return str(request.query_params.get(name) or default).strip()


def redirect(request: HTMXRequest, location: str) -> Response[Any]:
    """Go to `location`: htmx is told to (HX-Redirect), a plain form post is redirected (303)."""
    if request.htmx:
        return client_redirect(location)
    return Redirect(location, status_code=303)


def client_redirect(location: str, status_code: int = 200) -> Response[Any]:
    """htmx's HX-Redirect with an empty body (200 unless told: also after a POST)."""
    response = ClientRedirect(location)
    response.status_code = status_code
    response.content = b""
    return response
