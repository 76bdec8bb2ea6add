"""The UI's own tables: users, login sessions and the audit log.

Declared on the shared `flowyard.store.database.Base` so the store's migrations create them with
the runtime's tables. Table names are part of the migrations: do not rename them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from flowyard.store.database import Base

ROLES = ("viewer", "analyst", "deployer", "admin")


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


class AuditEntry(Base):
    """Who changed what, when: every save, deployment, replay, table edit and user change."""

    __tablename__ = "ui_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(100), index=True)
    action: Mapped[str] = mapped_column(String(50), index=True)
    target: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


def _messages_by_time() -> Index | None:
    """The runs page lists the newest messages first with no filter; without an index
    on `fy_messages.created_at` that is a scan and sort of the whole table. The index is
    the UI's need, so the UI declares it (on the store's table) and creates it if absent."""
    try:
        from flowyard.store.models import StoredMessage
    except ImportError:
        return None
    table: Any = StoredMessage.__table__
    for index in table.indexes:
        if [c.name for c in index.columns] == ["created_at"]:
            found: Index = index
            return found
    return Index("ix_ui_fy_messages_created_at", StoredMessage.created_at)


MESSAGES_BY_TIME = _messages_by_time()


def ensure_indexes(engine: Engine) -> None:
    if MESSAGES_BY_TIME is not None:
        MESSAGES_BY_TIME.create(engine, checkfirst=True)
