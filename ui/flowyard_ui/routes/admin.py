"""Users (admin only) and the audit log (everyone can read it)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template
from sqlalchemy import select
from sqlalchemy.orm import Session

from flowyard.store import users

from .. import audit, auth
from ..auth import CurrentUser
from ..models import ROLES, User
from ..state import UiState
from .common import arg, form, off_loop, page, swaps_into


def _users(ui: UiState) -> list[User]:
    with Session(ui.engine) as db:
        return list(db.scalars(select(User).order_by(User.username)))


@get("/admin/users", guards=[auth.require("admin")], sync_to_thread=False)
def users_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState]) -> Template:
    return page(request, "admin/users.html", users=_users(ui), roles=ROLES, error=None, message=None)


@post("/admin/users", guards=[auth.require("admin")])
async def create_user(request: Request[Any, Any, Any], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser]) -> Template:
    data = await form(request)
    state = ui
    username = str(data.get("username") or "").strip()
    try:
        await off_loop(
            auth.create_user,
            state.engine,
            username,
            str(data.get("password") or ""),
            str(data.get("role") or ""),
            display_name=str(data.get("display_name") or ""),
            must_change=True,
        )
    except auth.AuthError as exc:
        return page(
            request,
            "admin/users.html",
            status_code=400,
            users=_users(ui),
            roles=ROLES,
            error=str(exc),
            message=None,
        )
    audit.record(state.engine, me.username, "user-created", username, f"role {data.get('role')}")
    return page(
        request,
        "admin/users.html",
        users=_users(ui),
        roles=ROLES,
        error=None,
        message=f"User {username} created; they choose their own password at first login.",
    )


@post("/admin/users/{username:str}", guards=[auth.require("admin")])
async def update_user(request: Request[Any, Any, Any], username: FromPath[str], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser]) -> Template:
    data = await form(request)
    state = ui
    error = message = None
    role, active = data.get("role"), data.get("active")
    target = next((u for u in users.list_users(state.engine) if u.username == username), None)
    if target is None:
        error = f"no user named {username!r}"
    elif target.username == me.username and (role not in (None, "admin") or active == "0"):
        error = "you cannot lower your own role or deactivate yourself; ask another admin"
    else:
        changes = []
        try:  # the store's functions, which `flowyard users set-role / disable` use too
            if role is not None and role != target.role:
                users.set_role(state.engine, username, str(role))
                changes.append(f"role {target.role} -> {role}")
            if active is not None and (active == "1") != target.active:
                users.set_active(state.engine, username, active == "1")
                changes.append("activated" if active == "1" else "deactivated")
        except users.UserError as exc:
            error = str(exc)
        if changes:
            audit.record(state.engine, me.username, "user-changed", username, ", ".join(changes))
        if not error:
            message = f"{username}: " + (", ".join(changes) or "nothing changed")
    new_password = str(data.get("password") or "")
    if new_password and not error:
        try:
            await off_loop(auth.set_password, state.engine, username, new_password)
            audit.record(state.engine, me.username, "password-reset", username)
            message = f"{username}: password reset; they choose their own at next login"
        except auth.AuthError as exc:
            error = str(exc)
    return page(
        request,
        "admin/users.html",
        status_code=400 if error else 200,
        users=_users(ui),
        roles=ROLES,
        error=error,
        message=message,
    )


@get("/audit", sync_to_thread=True)
def audit_page(request: HTMXRequest, ui: NamedDependency[UiState]) -> Template:
    action, who, target = arg(request, "action"), arg(request, "who"), arg(request, "target")
    entries = audit.recent(
        ui.engine,
        action=action or None,
        username=who or None,
        target=target or None,
        limit=300,
    )
    template = (
        "audit_rows.html"
        if request.htmx and swaps_into(request, "audit-rows")
        else "audit.html"
    )
    return page(request, template, entries=entries, action=action or "", who=who or "", target=target or "")


ROUTES = [users_page, create_user, update_user, audit_page]
