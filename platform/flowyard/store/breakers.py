"""Circuit breakers shared through the store.

Each worker keeps its own breakers (`policy.Breakers`, no I/O on the delivery path).
About once a second, and at once when one of its breakers opens, a worker writes its
openings (endpoint, open until, cooldown) and closings to `fy_breakers`, and reads the
breakers other workers opened; it adopts those, so it holds its deliveries to that
endpoint back without spending attempts of its own. A closing (a trial succeeded)
deletes the row: the endpoint is up for everyone, and the deliveries parked behind the
breaker (pending with "not attempted: circuit open ...") are made due at once, whatever
worker parked them, instead of waiting out the cooldown they were given. The cost is one
small read per second per worker, and a write only when a breaker changes.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from .api import write_transaction
from .models import OPEN_DELIVERIES_SQL, Breaker, Delivery

Opening = tuple[str, float, float]  # endpoint, open until, cooldown
PARKED = "not attempted: circuit open"  # how a delivery held back by a breaker starts its last error


def _upsert(connection: Connection, rows: list[dict[str, object]]) -> None:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Breaker).values(rows)
    connection.execute(statement.on_conflict_do_update(
        index_elements=[Breaker.endpoint],
        set_={"open_until": statement.excluded.open_until,
              "cooldown": statement.excluded.cooldown,
              "opened_by": statement.excluded.opened_by,
              "updated_at": statement.excluded.updated_at},
    ))


def sync(engine: Engine, worker: str, opened: list[Opening], closed: list[str]
         ) -> list[Opening]:
    """Publish this worker's changes; returns the breakers open now (all workers')."""
    now = time.time()
    read = select(Breaker.endpoint, Breaker.open_until, Breaker.cooldown).where(
        Breaker.open_until > now)
    if not opened and not closed:
        with engine.connect() as connection:
            return [(e, float(u), float(c)) for e, u, c in connection.execute(read)]
    with write_transaction(engine) as connection:
        if closed:
            connection.execute(delete(Breaker).where(Breaker.endpoint.in_(closed)))
            connection.execute(
                update(Delivery)
                .where(Delivery.endpoint.in_(closed), text(OPEN_DELIVERIES_SQL), Delivery.state == "pending",
                       Delivery.next_at > now, Delivery.last_error.startswith(PARKED, autoescape=True))
                .values(next_at=now)
                .execution_options(synchronize_session=False))
        if opened:
            _upsert(connection, [
                {"endpoint": e, "open_until": u, "cooldown": c, "opened_by": worker,
                 "updated_at": now} for e, u, c in opened])
        return [(e, float(u), float(c)) for e, u, c in connection.execute(read)]
