"""The UI's own tables: the audit log (users and login sessions are the store's,
`flowyard.store.users`, re-exported here).

Declared on the shared `flowyard.store.database.Base` so the store's migrations create them with
the runtime's tables. Table names are part of the migrations: do not rename them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from flowyard.store.database import Base
from flowyard.store.users import ROLES, UiSession, User, aware, utcnow

__all__ = ["ROLES", "AuditEntry", "UiSession", "User", "aware", "ensure_indexes", "utcnow"]


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
