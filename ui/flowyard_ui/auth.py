"""Users, passwords, login sessions and roles.

Passwords are hashed with Argon2id (argon2-cffi). A login session is a random token in
an HttpOnly, Secure, SameSite=Lax cookie; the store keeps only its SHA-256, so a copy of
the database does not let anyone log in. Roles are ordered: each one may do what the
roles before it may (viewer < analyst < deployer < admin).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .models import ROLES, UiSession, User, aware, utcnow

SESSION_COOKIE = "flowyard_session"
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD = 10

_hasher = PasswordHasher()

MAX_FAILURES = 5
LOCKOUT_SECONDS = 300.0


class _Throttle:
    """Slows password guessing: after MAX_FAILURES wrong passwords for one user name
    within LOCKOUT_SECONDS, that name is refused until the window passes (per process)."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < LOCKOUT_SECONDS]
        self._failures[key] = kept
        return kept

    def check(self, username: str) -> None:
        with self._lock:
            recent = self._recent(username.lower(), time.monotonic())
        if len(recent) >= MAX_FAILURES:
            wait = int(LOCKOUT_SECONDS - (time.monotonic() - recent[0])) + 1
            raise AuthError(f"too many wrong passwords for this user; try again in {wait} seconds")

    def failed(self, username: str) -> None:
        with self._lock:
            self._recent(username.lower(), time.monotonic()).append(time.monotonic())

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username.lower(), None)


throttle = _Throttle()


class AuthError(Exception):
    """A login or user change that cannot be done, with a message for the person."""


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


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def validate_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password needs at least {MIN_PASSWORD} characters")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    engine: Engine,
    username: str,
    password: str,
    role: str,
    *,
    display_name: str = "",
    must_change: bool = False,
) -> User:
    username = username.strip()
    if not username or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise AuthError("a user name is letters, digits, dots, dashes and underscores")
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    validate_new_password(password)
    with Session(engine, expire_on_commit=False) as db:
        if db.scalar(select(User).where(User.username == username)) is not None:
            raise AuthError(f"a user named {username!r} already exists")
        user = User(
            username=username,
            display_name=display_name,
            role=role,
            password_hash=hash_password(password),
            must_change_password=must_change,
        )
        db.add(user)
        db.commit()
        return user


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
    """Check the password and open a session; returns the cookie token."""
    throttle.check(username.strip())
    with Session(engine) as db:
        user = db.scalar(select(User).where(User.username == username.strip()))
        if user is None or not user.active or not check_password(user.password_hash, password):
            if user is None:
                check_password(_DUMMY_HASH, password)  # same cost whether or not the user exists
            throttle.failed(username.strip())
            raise AuthError("wrong user name or password")
        throttle.succeeded(username.strip())
        if _hasher.check_needs_rehash(user.password_hash):
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


def change_password(engine: Engine, user_id: int, current: str, new: str) -> None:
    validate_new_password(new)
    with Session(engine) as db:
        user = db.get(User, user_id)
        if user is None or not check_password(user.password_hash, current):
            raise AuthError("the current password is wrong")
        if current == new:
            raise AuthError("choose a password different from the current one")
        user.password_hash = hash_password(new)
        user.must_change_password = False
        db.commit()


def set_password(engine: Engine, username: str, new: str) -> None:
    """An admin resets someone's password; they must change it at next login."""
    validate_new_password(new)
    with Session(engine) as db:
        user = db.scalar(select(User).where(User.username == username))
        if user is None:
            raise AuthError(f"no user named {username!r}")
        user.password_hash = hash_password(new)
        user.must_change_password = True
        db.execute(delete(UiSession).where(UiSession.user_id == user.id))
        db.commit()


class SessionAuthMiddleware(AbstractAuthenticationMiddleware):
    """Reads the session cookie; pages other than login and static files need a user."""

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
