"""The people who use the web UI: accounts, roles, password hashes and login sessions.

The tables (`ui_users`, `ui_sessions`: names fixed by the migrations) and every change to
an account live here, so that the UI's admin page and `flowyard users` go through one
code path. Passwords are hashed with Argon2id (argon2-cffi); only the SHA-256 of a login
session's token is stored. Roles are ordered: each may do what the roles before it may.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from ..errors import FlowyardError
from .database import Base

ROLES = ("viewer", "analyst", "deployer", "admin")
MIN_PASSWORD = 10

_hasher = PasswordHasher()


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; everything here is stored in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class User(Base):
    __tablename__ = "ui_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20), default="viewer")
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def name(self) -> str:
        return self.display_name or self.username


class UiSession(Base):
    """A login: only the SHA-256 of the cookie's token is stored."""

    __tablename__ = "ui_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("ui_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UserError(FlowyardError):
    """A user change that cannot be made, said for the person who asked."""


@dataclass(frozen=True)
class UserInfo:
    """An account as lists show it (never the password hash)."""

    username: str
    display_name: str
    role: str
    active: bool
    must_change_password: bool
    created_at: datetime | None
    last_login: datetime | None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


def validate_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password needs at least {MIN_PASSWORD} characters")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")


def check_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > 100 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError("a user name is letters, digits, dots, dashes and underscores")
    return username


def create_user(
    engine: Engine,
    username: str,
    password: str,
    role: str,
    *,
    display_name: str = "",
    must_change: bool = False,
) -> User:
    username = check_username(username)
    check_role(role)
    validate_new_password(password)
    with Session(engine, expire_on_commit=False) as db:
        if db.scalar(select(User).where(User.username == username)) is not None:
            raise UserError(f"a user named {username!r} already exists")
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


def _info(user: User) -> UserInfo:
    return UserInfo(user.username, user.display_name, user.role, user.active, user.must_change_password,
                    aware(user.created_at), aware(user.last_login))


def list_users(engine: Engine) -> list[UserInfo]:
    with Session(engine) as db:
        return [_info(u) for u in db.scalars(select(User).order_by(User.username))]


def _find(db: Session, username: str) -> User:
    user = db.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise UserError(f"no user named {username!r}")
    return user


def _keep_an_admin(db: Session, user: User) -> None:
    """Refuse to take away the last active admin (nobody could manage users any more)."""
    if user.role != "admin" or not user.active:
        return
    others = db.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.id != user.id))
    if not others:
        raise UserError(f"{user.username!r} is the only active admin; make another user admin first")


def set_role(engine: Engine, username: str, role: str) -> str:
    """Give a user another role; returns the role they had."""
    check_role(role)
    with Session(engine) as db:
        user = _find(db, username)
        old = user.role
        if role != "admin":
            _keep_an_admin(db, user)
        user.role = role
        db.commit()
        return old


def set_active(engine: Engine, username: str, active: bool) -> bool:
    """Enable or disable a user (a disabled user's sessions end at once); returns
    whether anything changed."""
    with Session(engine) as db:
        user = _find(db, username)
        if user.active == active:
            return False
        if not active:
            _keep_an_admin(db, user)
        user.active = active
        if not active:
            db.execute(delete(UiSession).where(UiSession.user_id == user.id))
        db.commit()
        return True


def set_password(engine: Engine, username: str, new: str, *, must_change: bool = True) -> None:
    """Set someone's password (an admin's reset: they choose their own at next login
    unless `must_change` is False); every session of theirs ends."""
    validate_new_password(new)
    with Session(engine) as db:
        user = _find(db, username)
        user.password_hash = hash_password(new)
        user.must_change_password = must_change
        db.execute(delete(UiSession).where(UiSession.user_id == user.id))
        db.commit()
