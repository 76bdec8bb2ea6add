"""The audit log: every change and deployment, by whom, shown in the UI. The table and
`record` are the store's (`flowyard.store.audit`: `flowyard users` records there too);
details pass through the secret redactor before they are stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from flowyard.store.audit import AuditEntry, record

__all__ = ["AuditEntry", "latest", "recent", "record"]


def recent(
    engine: Engine,
    *,
    limit: int = 200,
    action: str | None = None,
    username: str | None = None,
    target: str | None = None,
    before: datetime | None = None,
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    if username:
        query = query.where(AuditEntry.username == username)
    if target:
        query = query.where(AuditEntry.target.contains(target))
    if before is not None:
        query = query.where(AuditEntry.at < before)
    with Session(engine) as db:
        return list(db.scalars(query))


def latest(engine: Engine, actions: list[str], targets: list[str]) -> AuditEntry | None:
    """The newest entry with one of `actions` whose target is exactly one of `targets`."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.action.in_(actions), AuditEntry.target.in_(targets))
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )
    with Session(engine) as db:
        return db.scalars(query).first()
