"""The Litestar application: `create_app(runtime)` is what `flowyard serve` mounts.

Security by default: CSRF protection (Litestar's CSRFConfig, Secure + HttpOnly cookie,
the token in a meta tag that htmx sends as `X-CSRFToken` on every request), a session
cookie that is Secure, HttpOnly and SameSite=Lax, every page behind a login, role
guards on every change. Errors are shown as plain sentences, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from litestar import Litestar, Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.middleware import DefineMiddleware
from litestar.plugins.htmx import HTMXPlugin, HTMXRequest, HTMXTemplate
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from sqlalchemy.engine import Engine

from flowyard.heap import freeze_startup_objects
from flowyard.secrets import redactor
from flowyard.store import database as db
from flowyard.store import engines

from . import auth, filters
from .dependencies import dependencies
from .models import ensure_indexes
from .routes import all_routes
from .routes.common import client_redirect
from .state import UiState

log = logging.getLogger("flowyard.ui")
HERE = Path(__file__).resolve().parent
EXCLUDE_AUTH = ["^/login", "^/static/", "^/healthz"]


def first_start(engine: Engine | None = None) -> str | None:
    """Create the first admin when the store has no user; returns the one-time password
    to print (None when users exist). `flowyard serve` calls this on start."""
    return auth.first_admin(engine or engines.get_engine())


def _secret(explicit: str | None) -> str:
    """The CSRF signing secret, kept in the data directory so tokens survive a restart."""
    if explicit:
        return explicit
    path = db.data_dir() / "ui-secret"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def _templates() -> TemplateConfig[JinjaTemplateEngine]:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters.install(env)
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(env))


def _from_htmx(request: Request[Any, Any, Any]) -> bool:
    """The request came from htmx (the plugin makes every request an HTMXRequest)."""
    return isinstance(request, HTMXRequest) and bool(request.htmx)


def _error_page(request: Request[Any, Any, Any], status: int, title: str, detail: str) -> Response[Any]:
    detail = redactor.redact(detail)
    if _from_htmx(request):
        return HTMXTemplate(
            template_name="partials/toast.html",
            context={"kind": "error", "text": f"{title}: {detail}"},
            status_code=status,
            re_target="#toast",
            re_swap="innerHTML",
        )
    return Template(
        "error.html",
        context={"status": status, "title": title, "detail": detail},
        status_code=status,
    )


def _not_authorized(request: Request[Any, Any, Any], exc: NotAuthorizedException) -> Response[Any]:
    target = "/account/password" if isinstance(exc, auth.PasswordChangeRequired) else "/login"
    if _from_htmx(request):
        return client_redirect(target, 401)
    return Redirect(target)


def _forbidden(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[Any]:
    detail = str(exc.detail)
    if "CSRF" in detail:
        detail = (
            "the page was open too long or came from elsewhere (security token missing "
            "or wrong); reload the page and try again"
        )
    return _error_page(request, 403, "Not allowed", detail)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    titles = {
        400: "That request was not understood",
        404: "Not found",
        405: "Not allowed here",
        413: "Too large",
    }
    return _error_page(
        request,
        exc.status_code,
        titles.get(exc.status_code, "Something went wrong"),
        str(exc.detail),
    )


def _crash(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error(
        "unexpected error on %s %s: %s",
        request.method,
        request.url.path,
        redactor.redact(repr(exc)),
        exc_info=exc,
    )
    return _error_page(
        request,
        500,
        "Something went wrong",
        "the error was logged for the operators; your change was not applied",
    )


def _read_dashboard_window(state: UiState) -> None:
    """Read the dashboard's window (the last 72 hours: a second or more at 100,000
    messages) in the background at start, rather than in the first dashboard request."""

    def read() -> None:
        try:
            state.message_window.refresh()
        except Exception:  # the store may not be there yet; the dashboard reads it then
            logging.getLogger(__name__).debug("could not read the dashboard's window at start", exc_info=True)

    threading.Thread(target=read, name="dashboard-window", daemon=True).start()


def create_app(
    runtime: Any = None,
    *,
    flows_dir: Path = Path("flows"),
    engine: Engine | None = None,
    secret: str | None = None,
    secure_cookies: bool = True,
    debug: bool = False,
) -> Litestar:
    """The web UI. `runtime` is the runtime object of `flowyard serve` (None: authoring
    only; runs, dead letters and the dashboard read the store directly)."""
    if os.environ.get("FLOWYARD_UI_SECURE_COOKIES", "1") == "0":
        # Only for a plain-http server that is not on localhost (a test rig): browsers
        # drop Secure cookies there. Production is served over HTTPS (or on localhost).
        secure_cookies = False
    engine = engine or engines.get_engine()
    engines.ensure_schema(engine)
    ensure_indexes(engine)
    state = UiState(
        engine=engine,
        flows_dir=Path(flows_dir).resolve(),
        runtime=runtime,
        secure_cookies=secure_cookies,
    )
    csrf = CSRFConfig(
        secret=_secret(secret),
        cookie_secure=secure_cookies,
        cookie_httponly=True,
        cookie_samesite="lax",
        header_name="x-csrftoken",
        cookie_name="flowyard_csrf",
    )
    auth_mw = DefineMiddleware(auth.SessionAuthMiddleware, exclude=EXCLUDE_AUTH)
    static = create_static_files_router(
        path="/static",
        directories=[HERE / "static"],
        name="static",
        include_in_schema=False,
        send_as_attachment=False,
    )
    app = Litestar(
        route_handlers=[*all_routes(), static],
        middleware=[auth_mw],
        dependencies=dependencies(),
        plugins=[HTMXPlugin()],
        csrf_config=csrf,
        template_config=_templates(),
        exception_handlers={
            NotAuthorizedException: _not_authorized,
            PermissionDeniedException: _forbidden,
            HTTPException: _http_error,
            Exception: _crash,
        },
        state=None,
        debug=debug,
        openapi_config=None,
        on_startup=[freeze_startup_objects, functools.partial(_read_dashboard_window, state)],
    )
    app.state.ui = state
    # for the runtime's /healthz and /metrics: is this cookie a logged-in session?
    app.state.session_user = functools.partial(auth.session_user, engine)
    return app
