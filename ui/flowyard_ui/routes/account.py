"""Login, logout, changing one's own password, and the landing redirect."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from .. import audit, auth
from ..auth import CurrentUser
from ..state import UiState
from .common import form, off_loop, page, redirect


@get("/login", exclude_from_auth=True, sync_to_thread=False)
def login_page(request: Request[Any, Any, Any]) -> Template:
    return Template(
        "login.html",
        context={
            "error": None,
            "username": "",
            "next": _safe_next(request.query_params.get("next")),
        },
    )


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


@post("/login", exclude_from_auth=True)
async def login_submit(request: Request[Any, Any, Any], ui: NamedDependency[UiState]) -> Response[Any]:
    data = await form(request)
    username = str(data.get("username") or "")
    password = str(data.get("password") or "")
    state = ui
    try:
        token = await off_loop(auth.login, state.engine, username, password)
    except auth.AuthError as exc:
        audit.record(state.engine, username or "?", "login-failed", username)
        return Template(
            "login.html",
            context={"error": str(exc), "username": username, "next": data.get("next") or "/"},
            status_code=401,
        )
    audit.record(state.engine, username, "login")
    response: Response[Any] = Redirect(_safe_next(data.get("next")), status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE,
        token,
        path="/",
        secure=state.secure_cookies,
        httponly=True,
        samesite="lax",
        max_age=int(auth.SESSION_LIFETIME.total_seconds()),
    )
    return response


@post("/logout")
async def logout(request: HTMXRequest, ui: NamedDependency[UiState], me: NamedDependency[CurrentUser]) -> Response[Any]:
    token = request.cookies.get(auth.SESSION_COOKIE)
    if token:
        auth.logout(ui.engine, token)
        audit.record(ui.engine, me.username, "logout")
    response: Response[Any] = redirect(request, "/login")
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


@get("/account/password", sync_to_thread=False)
def password_page(request: Request[Any, Any, Any]) -> Template:
    return page(request, "account.html", error=None, done=False)


@post("/account/password")
async def password_submit(request: Request[Any, Any, Any], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser]) -> Response[Any]:
    data = await form(request)
    current, new, again = (str(data.get(k) or "") for k in ("current", "new", "again"))
    state = ui
    error = None
    if new != again:
        error = "the two new passwords differ"
    else:
        try:
            await off_loop(auth.change_password, state.engine, me.id, current, new)
        except auth.AuthError as exc:
            error = str(exc)
    if error:
        return page(request, "account.html", status_code=400, error=error, done=False)
    audit.record(state.engine, me.username, "password-changed", me.username)
    return Redirect("/", status_code=303)


@get("/", sync_to_thread=False)
def home(request: Request[Any, Any, Any]) -> Redirect:
    return Redirect("/flows")


@get("/healthz", exclude_from_auth=True, sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


ROUTES = [login_page, login_submit, logout, password_page, password_submit, home, healthz]
