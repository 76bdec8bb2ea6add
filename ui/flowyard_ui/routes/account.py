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


async def _record_login(state: UiState, *args: Any) -> None:
    """The audit entry of a login, on the password threads: a login never waits behind
    busy UI work (the UI's threads), only behind other logins."""
    try:
        await auth.password_work(audit.record, state.engine, *args)
    except auth.Busy:
        await off_loop(audit.record, state.engine, *args)


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
    address = request.client.host if request.client else "unknown"
    try:
        token = await auth.attempt_login(state.engine, username, password, address)
    except auth.AuthError as exc:
        status, headers = 401, {}
        if isinstance(exc, auth.TooManyAttempts):
            status, headers = 429, {"Retry-After": str(exc.retry_after)}
        elif isinstance(exc, auth.Busy):
            status, headers = 503, {"Retry-After": "5"}
        else:
            await _record_login(state, username or "?", "login-failed", username)
        return Template(
            "login.html",
            context={"error": str(exc), "username": username, "next": data.get("next") or "/"},
            status_code=status,
            headers=headers,
        )
    await _record_login(state, username, "login")
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
    csrf = request.app.csrf_config
    if csrf is not None:  # this session's own CSRF token from now on (see auth)
        response.set_cookie(
            csrf.cookie_name,
            auth.csrf_token_for(csrf.secret, token),
            path=csrf.cookie_path,
            secure=csrf.cookie_secure,
            httponly=csrf.cookie_httponly,
            samesite=csrf.cookie_samesite,
            domain=csrf.cookie_domain,
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
    csrf = request.app.csrf_config
    if csrf is not None:
        response.delete_cookie(csrf.cookie_name, path=csrf.cookie_path)
    return response


@get("/account/password", sync_to_thread=False)
def password_page(request: Request[Any, Any, Any]) -> Template:
    return page(request, "account.html", error=None, done=False)


@post("/account/password")
async def password_submit(request: Request[Any, Any, Any], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser]) -> Response[Any]:
    """Change one's own password; the user's other sessions end, this one stays."""
    data = await form(request)
    current, new, again = (str(data.get(k) or "") for k in ("current", "new", "again"))
    state = ui
    error = None
    if new != again:
        error = "the two new passwords differ"
    else:
        try:
            await auth.password_work(
                auth.change_password, state.engine, me.id, current, new,
                request.cookies.get(auth.SESSION_COOKIE),
            )
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
