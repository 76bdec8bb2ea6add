"""Helpers shared by the route modules: page rendering, forms, toasts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request, Response
from litestar.response import Template

from ..state import UiState, ui, user

T = TypeVar("T")


def page(request: Request[Any, Any, Any], template: str, status_code: int = 200, **context: Any) -> Template:
    """A full page (or, for htmx, the same template: partial templates do not extend base)."""
    context.setdefault("current_user", user(request))
    context.setdefault("nav", template.split("/")[0].split(".")[0])
    return Template(template, context=context, status_code=status_code)


def fragment(template: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Template:
    return Template(template, context=context, status_code=status_code, headers=headers)


def toast(text: str, kind: str = "ok", status_code: int = 200, headers: dict[str, str] | None = None) -> Template:
    """A short message shown in the page's toast area (out-of-band swap; the element
    that asked is left as it is)."""
    headers = {"HX-Reswap": "none", **(headers or {})}
    return Template(
        "partials/toast_oob.html",
        context={"text": text, "kind": kind},
        status_code=status_code,
        headers=headers,
    )


async def form(request: Request[Any, Any, Any]) -> dict[str, Any]:
    data = await request.form()
    return {k: data.get(k) for k in data}


async def form_lists(request: Request[Any, Any, Any]) -> dict[str, list[Any]]:
    data = await request.form()
    return {k: data.getall(k) for k in data}


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """CPU or database work off the event loop, so the runtime in the same process keeps moving."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def arg(request: Request[Any, Any, Any], name: str, default: str = "") -> str:
    """A query parameter as text (empty when absent)."""
    return str(request.query_params.get(name) or default).strip()


def state(request: Request[Any, Any, Any]) -> UiState:
    return ui(request)


def redirect_htmx(location: str) -> Response[Any]:
    return Response("", status_code=200, headers={"HX-Redirect": location})
