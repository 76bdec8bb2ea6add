"""Small key-value state a source keeps between polls (the SQL source's watermark).

The runtime may offer its own state service as `context.services["state"]`: any object
with `get(key) -> str | None` and `set(key, value)`, plain or async. Until the store
offers one, the fallback is the `connector_state` table below, on the store's database
(`flowyard.store.database.get_engine()`), created on first use. Either way the state lives with the
store, so it survives restarts and is shared by the workers of one installation.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from sqlalchemy import Float, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from flowyard.store.database import Base
from flowyard.store.engines import get_engine


class ConnectorState(Base):
    __tablename__ = "connector_state"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class TableState:
    """The fallback store: one row per key in `connector_state`."""

    def __init__(self) -> None:
        self.engine = get_engine()
        ConnectorState.__table__.create(self.engine, checkfirst=True)  # type: ignore[attr-defined]

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


class State:
    """Async access to whichever store is in use."""

    def __init__(self, services: dict[str, Any]) -> None:
        self.store: Any = services.get("state")
        self.kind = "runtime state service" if self.store is not None else "connector_state table"

    async def _call(self, method: str, *args: str) -> Any:
        if self.store is None:
            self.store = await asyncio.to_thread(TableState)
        if isinstance(self.store, TableState):  # blocking database calls: off the loop
            return await asyncio.to_thread(getattr(self.store, method), *args)
        result = getattr(self.store, method)(*args)
        if inspect.isawaitable(result):
            return await result
        return result

    async def get(self, key: str) -> str | None:
        value = await self._call("get", key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str) -> None:
        await self._call("set", key, value)
