"""Small key-value state a source keeps between polls (the SQL source's watermark), in
the store's `connector_state` table: it survives restarts and is shared by the workers
of one installation. Sources reach it through `flowyard.services` (what the runtime
lends, or `default_state`)."""

from __future__ import annotations

import time

from sqlalchemy import Float, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from .database import Base
from .engines import get_engine


class ConnectorState(Base):
    __tablename__ = "connector_state"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class TableState:
    """Connector state in the store's `connector_state` table, one row per key."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(ConnectorState.value).where(ConnectorState.key == key)).first()
            return None if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        table = ConnectorState.__table__
        with self.engine.begin() as conn:
            updated = conn.execute(
                table.update().where(table.c.key == key).values(value=value, updated_at=time.time())  # type: ignore[attr-defined]
            )
            if updated.rowcount == 0:
                conn.execute(table.insert().values(key=key, value=value, updated_at=time.time()))  # type: ignore[attr-defined]


def default_state() -> TableState:
    """Where nothing was lent: the store of FLOWYARD_DATABASE_URL (entry point)."""
    return TableState(get_engine())
