"""Users, passwords, login sessions and roles.

Passwords are hashed with Argon2id (argon2-cffi). A login session is a random token in
an HttpOnly, Secure, SameSite=Lax cookie; the store keeps only its SHA-256, so a copy of
the database does not let anyone log in. Roles are ordered: each one may do what the
roles before it may (viewer < analyst < deployer < admin).

The CSRF token (Litestar's double-submit cookie) is bound to the login session: at login
the CSRF cookie is set to a token derived from the session token with the app's secret
(`csrf_token_for`), and every request of a logged-in user must carry that cookie, so a
cookie and token pair taken from another session (or made before logging in) is refused.

Password guessing is slowed, never locked (`LoginThrottle`): failures are counted per
client address and per user name; an address that keeps failing must space its attempts
out (and is told to come back later when it pushes too hard), while a user name that
many addresses are failing on only makes each attempt on it wait a few seconds, so a
stranger cannot lock `admin` out. The Argon2 work of every login and password change
runs on a small dedicated thread pool with a bounded queue (`password_work`), so any
number of logins at once cannot take the threads or the CPU the runtime needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from flowyard.store import users
from flowyard.store.users import check_password, hash_password

from .models import ROLES, UiSession, User, aware, utcnow

SESSION_COOKIE = "flowyard_session"
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD = users.MIN_PASSWORD

class AuthError(Exception):
    """A login or user change that cannot be done, with a message for the person."""


WINDOW = 900.0
"""Failures older than this (seconds) are forgotten."""
ADDRESS_FREE = 5
"""Failed logins from one address before its attempts must be spaced out."""
ADDRESS_MAX_SPACING = 60.0
"""The longest spacing between attempts from one address (it doubles per failure)."""
ADDRESS_MAX_WAIT = 5.0
"""An attempt that would have to wait longer than this is refused at once (come back later)."""
USER_FREE = 10
"""Failed logins on one user name (from any address) before each attempt on it waits."""
USER_MAX_DELAY = 4.0
"""The longest wait a user name's failures impose on an attempt: a delay, never a lock."""
KEYS_KEPT = 10_000
"""Addresses and names remembered at most (the oldest are dropped beyond this)."""


class TooManyAttempts(AuthError):
    """This address failed too often lately: it must wait `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, int(retry_after + 0.999))
        super().__init__(
            f"too many failed logins from your address; try again in {self.retry_after} seconds"
        )


class LoginThrottle:
    """Failed logins per client address and per user name, within WINDOW (per process).

    Once an address has ADDRESS_FREE recent failures (counting its attempts still in
    flight, so a burst of concurrent requests is spaced out as if sent one after the
    other), its attempts get slots 1 s, 2 s, 4 s ... up to ADDRESS_MAX_SPACING apart, and
    each waits for its slot; one whose slot is more than ADDRESS_MAX_WAIT away is refused
    with the time to wait. Only the address's own failures can do that to it.

    A user name with more than USER_FREE recent failures from anywhere makes each attempt
    on it wait 0.5 s, 1 s, 2 s ... at most USER_MAX_DELAY before the password is checked,
    then it is checked as usual: whoever fails on `admin`, the admin still logs in from
    their own address after at most a few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_address: dict[str, list[float]] = {}
        self._by_user: dict[str, list[float]] = {}
        self._next_slot: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}

    @staticmethod
    def _recent(table: dict[str, list[float]], key: str, now: float) -> list[float]:
        kept = [t for t in table.get(key, ()) if now - t < WINDOW]
        if kept:
            table[key] = kept[-100:]
        else:
            table.pop(key, None)
        return kept

    @staticmethod
    def _trim(table: dict[str, Any]) -> None:
        while len(table) > KEYS_KEPT:
            table.pop(next(iter(table)))

    def begin(self, address: str, username: str) -> float:
        """Admit an attempt: the seconds it must wait first; raises TooManyAttempts."""
        user = username.strip().lower()
        with self._lock:
            now = time.monotonic()
            failures = self._recent(self._by_address, address, now)
            pending = len(failures) + self._in_flight.get(address, 0)
            wait = 0.0
            if pending >= ADDRESS_FREE:
                spacing = min(ADDRESS_MAX_SPACING, 2.0 ** (pending - ADDRESS_FREE))
                last = failures[-1] if failures else now
                slot = max(now, self._next_slot.get(address, 0.0), last + spacing)
                if slot - now > ADDRESS_MAX_WAIT:
                    raise TooManyAttempts(slot - now - ADDRESS_MAX_WAIT)
                self._next_slot[address] = slot + spacing
                self._trim(self._next_slot)
                wait = slot - now
            user_failures = len(self._recent(self._by_user, user, now))
            if user_failures >= USER_FREE:
                wait = max(wait, min(USER_MAX_DELAY, 0.5 * 2.0 ** (user_failures - USER_FREE)))
            self._in_flight[address] = self._in_flight.get(address, 0) + 1
            return wait

    def end(self, address: str, username: str, ok: bool | None) -> None:
        """The attempt's outcome: True (logged in), False (a wrong password), None (not
        checked: the server was busy)."""
        user = username.strip().lower()
        with self._lock:
            now = time.monotonic()
            left = self._in_flight.get(address, 1) - 1
            if left > 0:
                self._in_flight[address] = left
            else:
                self._in_flight.pop(address, None)
            if ok is False:
                self._by_address.setdefault(address, []).append(now)
                self._by_user.setdefault(user, []).append(now)
                self._trim(self._by_address)
                self._trim(self._by_user)
            elif ok:  # the person got it right: their own address's mistakes are forgiven
                self._by_address.pop(address, None)
                self._next_slot.pop(address, None)

    def forget(self) -> None:
        """Start afresh (what the window passing does; for tests and operators)."""
        with self._lock:
            self._by_address.clear()
            self._by_user.clear()
            self._next_slot.clear()


throttle = LoginThrottle()

PASSWORD_WORKERS = 2
"""Argon2 hashes computed at once (each takes ~64 MiB and tens of milliseconds)."""
PASSWORD_QUEUE = 16
"""Password checks waiting for a worker at most; more get 'busy, try again'."""

_password_pool = ThreadPoolExecutor(max_workers=PASSWORD_WORKERS, thread_name_prefix="flowyard-password")
_password_waiting = 0
_password_guard = threading.Lock()
T = TypeVar("T")


class Busy(AuthError):
    """Too many password checks are waiting; the person should try again shortly."""


async def password_work(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` (Argon2 hashing, and the store work that goes with it) on the password
    pool: at most PASSWORD_WORKERS at once and PASSWORD_QUEUE waiting, never on the
    event loop nor on the threads the runtime uses; raises Busy beyond the queue."""
    global _password_waiting
    with _password_guard:
        if _password_waiting >= PASSWORD_WORKERS + PASSWORD_QUEUE:
            raise Busy("the server is busy checking other logins; try again in a few seconds")
        _password_waiting += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_password_pool, lambda: fn(*args))
    finally:
        with _password_guard:
            _password_waiting -= 1


@dataclass(frozen=True)
class CurrentUser:
    """The logged-in user as handlers and templates see it (no password hash)."""

    id: int
    username: str
    name: str
    role: str
    must_change_password: bool

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_new_password(password: str) -> None:
    try:
        users.validate_new_password(password)
    except users.UserError as exc:
        raise AuthError(str(exc)) from exc


def create_user(
    engine: Engine,
    username: str,
    password: str,
    role: str,
    *,
    display_name: str = "",
    must_change: bool = False,
) -> User:
    """A new account (the store's `create_user`, which `flowyard users add` uses too)."""
    try:
        return users.create_user(engine, username, password, role, display_name=display_name, must_change=must_change)
    except users.UserError as exc:
        raise AuthError(str(exc)) from exc


def first_admin(engine: Engine) -> str | None:
    """On first start (no user at all) create `admin` with a one-time password and
    return it so `flowyard serve` can print it; None when users already exist."""
    with Session(engine) as db:
        if db.scalar(select(func.count()).select_from(User)):
            return None
    password = secrets.token_urlsafe(12)
    create_user(engine, "admin", password, "admin", display_name="Administrator", must_change=True)
    return password


def login(engine: Engine, username: str, password: str) -> str:
    """Check the password and open a session; returns the cookie token. Unthrottled:
    requests go through `attempt_login`."""
    with Session(engine) as db:
        user = db.scalar(select(User).where(User.username == username.strip()))
        if user is None or not user.active or not check_password(user.password_hash, password):
            if user is None:
                check_password(_DUMMY_HASH, password)  # same cost whether or not the user exists
            raise WrongPassword("wrong user name or password")
        if users.needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        token = secrets.token_urlsafe(32)
        now = utcnow()
        user.last_login = now
        db.add(
            UiSession(
                token_hash=_token_hash(token),
                user_id=user.id,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
        db.execute(delete(UiSession).where(UiSession.expires_at < now))
        db.commit()
        return token


_DUMMY_HASH = hash_password("not a real password, only spends the same time")


class WrongPassword(Exception):
    """The user name or the password is wrong (an AuthError for the person)."""


async def attempt_login(engine: Engine, username: str, password: str, address: str) -> str:
    """A login as a request makes it: throttled per address and per user name (see
    LoginThrottle), the password checked on the password pool. Returns the session
    token; raises AuthError for the person: a wrong password, or TooManyAttempts (this
    address must wait) or Busy (too many password checks queued)."""
    wait = throttle.begin(address, username)  # raises TooManyAttempts
    outcome: bool | None = None
    try:
        if wait:
            await asyncio.sleep(wait)
        token = await password_work(login, engine, username, password)
        outcome = True
        return token
    except WrongPassword as exc:
        outcome = False
        raise AuthError(str(exc)) from exc
    finally:
        throttle.end(address, username, outcome)


def logout(engine: Engine, token: str) -> None:
    with Session(engine) as db:
        db.execute(delete(UiSession).where(UiSession.token_hash == _token_hash(token)))
        db.commit()


def user_for_token(engine: Engine, token: str) -> CurrentUser | None:
    with Session(engine) as db:
        row = db.execute(
            select(User, UiSession.expires_at)
            .join(UiSession, UiSession.user_id == User.id)
            .where(UiSession.token_hash == _token_hash(token))
        ).first()
        if row is None:
            return None
        user, expires = row
        expires_at = aware(expires)
        if expires_at is None or expires_at < utcnow() or not user.active:
            return None
        return CurrentUser(user.id, user.username, user.name, user.role, user.must_change_password)


def change_password(
    engine: Engine, user_id: int, current: str, new: str, keep_session: str | None = None
) -> None:
    """Change one's own password; every other session of the user ends (a session
    opened with the old password, perhaps by someone who knew it), the one whose token
    is `keep_session` (the person's own) stays."""
    validate_new_password(new)
    with Session(engine) as db:
        user = db.get(User, user_id)
        if user is None or not check_password(user.password_hash, current):
            raise AuthError("the current password is wrong")
        if current == new:
            raise AuthError("choose a password different from the current one")
        user.password_hash = hash_password(new)
        user.must_change_password = False
        others = delete(UiSession).where(UiSession.user_id == user.id)
        if keep_session:
            others = others.where(UiSession.token_hash != _token_hash(keep_session))
        db.execute(others)
        db.commit()


def set_password(engine: Engine, username: str, new: str) -> None:
    """An admin resets someone's password; they must change it at next login."""
    try:
        users.set_password(engine, username, new)
    except users.UserError as exc:
        raise AuthError(str(exc)) from exc


CSRF_COOKIE = "flowyard_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def csrf_token_for(secret: str, session_token: str) -> str:
    """The CSRF token of a login session, in Litestar's format (a value and its HMAC):
    derived from the session token, so it is this session's and no other's."""
    value = hmac.new(secret.encode(), b"flowyard-csrf:" + session_token.encode(), hashlib.sha256).hexdigest()
    return value + hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def session_user(engine: Engine, cookies: dict[str, str]) -> CurrentUser | None:
    """The user of a request's session cookie, if it is a live session (for the runtime's
    own routes, which have no UI middleware)."""
    token = cookies.get(SESSION_COOKIE)
    return user_for_token(engine, token) if token else None


class SessionAuthMiddleware(AbstractAuthenticationMiddleware):
    """Reads the session cookie; pages other than login and static files need a user.

    It also binds the CSRF token to the session: a change (POST...) must come with the
    session's own CSRF cookie (Litestar's CSRF check, which runs next, then compares the
    form's or header's token with that cookie); a page view with another CSRF cookie
    (from before the login, or another session) is given the session's one instead."""

    def bypassed(self, scope: Scope) -> bool:
        """What Litestar's own check skips (not a public function of Litestar's): other
        scope types, handlers that opt out, excluded methods and paths."""
        if scope["type"] not in self.scopes:
            return True
        handler = scope.get("route_handler")
        if self.exclude_opt_key and handler is not None and handler.opt.get(self.exclude_opt_key):
            return True
        if self.exclude_http_methods and scope.get("method") in self.exclude_http_methods:
            return True
        return bool(self.exclude and self.exclude.findall(scope["path"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.bypassed(scope):
            await self.app(scope, receive, send)
            return
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
        result = await self.authenticate_request(connection)
        scope["user"] = result.user
        scope["auth"] = result.auth
        config = connection.app.csrf_config
        if config is not None:
            bound = csrf_token_for(config.secret, str(result.auth))
            cookies = connection.cookies
            if not hmac.compare_digest(cookies.get(config.cookie_name, ""), bound):
                if scope.get("method", "GET") not in SAFE_METHODS:
                    raise PermissionDeniedException(
                        "CSRF token verification failed: it belongs to another session"
                    )
                ScopeState.from_scope(scope).cookies = {**cookies, config.cookie_name: bound}
                send = _setting_cookie(send, _csrf_cookie_header(config, bound))
        await self.app(scope, receive, send)

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        token = connection.cookies.get(SESSION_COOKIE)
        if not token:
            raise NotAuthorizedException("please log in")
        engine = connection.app.state.ui.engine
        user = user_for_token(engine, token)
        if user is None:
            raise NotAuthorizedException("your session has ended; please log in again")
        path = connection.scope["path"]
        if user.must_change_password and path not in ("/account/password", "/logout"):
            raise PasswordChangeRequired()
        return AuthenticationResult(user=user, auth=token)


def _csrf_cookie_header(config: Any, value: str) -> str:
    from litestar.datastructures.cookie import Cookie

    cookie = Cookie(
        key=config.cookie_name,
        value=value,
        path=config.cookie_path,
        secure=config.cookie_secure,
        httponly=config.cookie_httponly,
        samesite=config.cookie_samesite,
        domain=config.cookie_domain,
    )
    return cookie.to_header(header="")


def _setting_cookie(send: Send, header: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"set-cookie", header.encode("latin-1"))]
        await send(message)

    return wrapped


class PasswordChangeRequired(NotAuthorizedException):
    """A user with a one-time password must choose their own before anything else."""


def require(role: str) -> Any:
    """A route guard: the user needs `role` or a higher one."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        user = connection.user
        if not isinstance(user, CurrentUser) or not user.can(role):
            raise PermissionDeniedException(f"this needs the {role} role")

    guard.__name__ = f"require_{role}"
    return guard
