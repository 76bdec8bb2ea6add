"""The UI's tables, re-exported from the store (users and login sessions:
`flowyard.store.users`; the audit log: `flowyard.store.audit`), which `flowyard users`
uses too; and the index the runs page needs.

Declared on the shared `flowyard.store.database.Base` so the store's migrations create them with
the runtime's tables. Table names are part of the migrations: do not rename them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Index
from sqlalchemy.engine import Engine

from flowyard.store.audit import AuditEntry
from flowyard.store.users import ROLES, UiSession, User, aware, utcnow

__all__ = ["ROLES", "AuditEntry", "UiSession", "User", "aware", "ensure_indexes", "utcnow"]


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
