"""The audit log's table: who changed what, when (every save, deployment, replay, table
edit and user change). The UI shows it (`flowyard_ui.audit`); the UI and the commands
that change what the UI shows (`flowyard users`) write it. Details pass through the
secret redactor before they are stored. The table name is part of the migrations.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from ..secrets import redactor
from .database import Base
from .users import utcnow


class AuditEntry(Base):
    """Who changed what, when: every save, deployment, replay, table edit and user change."""

    __tablename__ = "ui_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(100), index=True)
    action: Mapped[str] = mapped_column(String(50), index=True)
    target: Mapped[str] = mapped_column(String(300), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


def record(engine: Engine, username: str, action: str, target: str = "", detail: str = "") -> None:
    with Session(engine) as db:
        db.add(
            AuditEntry(
                username=username[:100],
                action=action,
                target=target[:300],
                detail=redactor.redact(detail)[:20000],
            )
        )
        db.commit()
