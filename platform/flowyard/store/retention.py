"""Retention: what the store forgets, and what it never forgets.

Three clocks, each in days (RuntimeConfig, or the environment variables named):

- step traces (the payload snapshots) older than `trace_retention_days`
  (FLOWYARD_TRACE_RETENTION_DAYS, default 7) are deleted;
- finished messages (done, dropped, dead) older than `message_retention_days`
  (FLOWYARD_MESSAGE_RETENTION_DAYS, default 30) are deleted with their deliveries,
  attempts, traces and resolved dead letters;
- source keys (deduplication) older than `dedup_retention_days`
  (FLOWYARD_DEDUP_RETENTION_DAYS, default 7) are deleted: an item re-sent after that
  is stored again.

An open (unresolved) dead letter is never purged, nor the message it belongs to: it is
work an analyst still has to do, whatever its age. Open messages (received, processing,
delivering) are never purged either. Deletion goes in chunks, each its own short
transaction, so a large purge does not hold SQLite's single writer for long.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Delete

from .api import write_transaction
from .models import (
    Attempt,
    DeadLetter,
    Delivery,
    MessageTrace,
    SourceKey,
    StoredMessage,
)

FINISHED = ("done", "dropped", "dead")
CHUNK = 500
DAY = 86400.0


def days_from_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class Purged:
    traces: int = 0
    messages: int = 0
    dead_letters: int = 0
    source_keys: int = 0


def purge(engine: Engine, now: float, *, trace_days: float, message_days: float,
          dedup_days: float) -> Purged:
    """One retention pass; returns what was deleted."""
    result = Purged()
    result.traces = _delete_all(
        engine, delete(MessageTrace).where(MessageTrace.at < now - trace_days * DAY))
    result.source_keys = _delete_all(
        engine, delete(SourceKey).where(SourceKey.created_at < now - dedup_days * DAY))
    cut = now - message_days * DAY
    result.dead_letters = _delete_all(engine, delete(DeadLetter).where(
        DeadLetter.status != "open", DeadLetter.created_at < cut))
    m = StoredMessage
    unresolved = exists().where(DeadLetter.message_id == m.id, DeadLetter.status == "open")
    doomed = (select(m.id).where(m.state.in_(FINISHED), m.finished_at < cut, ~unresolved)
              .limit(CHUNK))
    while True:
        with write_transaction(engine) as connection:
            ids = list(connection.execute(doomed).scalars())
            if not ids:
                break
            _delete_messages(connection, ids)
        result.messages += len(ids)
    return result


def _delete_messages(connection: Connection, ids: Sequence[str]) -> None:
    for table in (MessageTrace, Attempt, Delivery):
        connection.execute(delete(table).where(table.message_id.in_(ids)))
    connection.execute(delete(DeadLetter).where(DeadLetter.message_id.in_(ids),
                                                DeadLetter.status != "open"))
    connection.execute(delete(StoredMessage).where(StoredMessage.id.in_(ids)))


def _delete_all(engine: Engine, statement: Delete) -> int:
    """One bulk delete (these rows have no dependants)."""
    with write_transaction(engine) as connection:
        return int(connection.execute(statement).rowcount or 0)
