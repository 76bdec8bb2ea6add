"""New work announced across processes, on PostgreSQL (LISTEN/NOTIFY).

A worker finds messages by claiming them; when a claim finds none, its processing loops
sleep until a source of the same process stores one, or for `idle_poll` (0.25 s). So a
message stored by another process (a webhook served by one worker, a file picked up by
the worker that holds the flow's source, a replay from the command line) waited for that
poll: 125 ms on average before any other worker looked, and a backlog stored at once
started draining that much later. Now the transaction that stores messages (or hands
leased work back) also sends a notification (`store.api.announce_work`), which
PostgreSQL delivers only when that transaction commits, and every worker listens on a
connection of its own and wakes its loops at once. The poll stays as the fallback: a
notification missed while the listening connection was down costs at most one poll.

SQLite needs none of this: one process owns an embedded store, and its own sources wake
its loops directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.engine import Engine

from ..store.api import NEW_WORK_CHANNEL

log = logging.getLogger("flowyard.runtime")


def listening_url(engine: Engine) -> str | None:
    """The libpq address of the store, or None where there is nothing to listen to."""
    if engine.dialect.name != "postgresql":
        return None
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def listen(url: str, wake: Callable[[], None], *, retry: float = 1.0) -> None:
    """Call `wake` for every notification, until cancelled. A lost connection is opened
    again after `retry` seconds; `wake` is called on each (re)connection too, for what
    was stored while nobody listened."""
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
                await connection.execute(f"LISTEN {NEW_WORK_CHANNEL}")
                wake()
                async for _ in connection.notifies():
                    wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is down or restarting: the poll still runs
            log.warning("not listening for new work (will retry): %s", exc)
        await asyncio.sleep(retry)
