"""Running sources: who runs which source, and storing what they accept.

Only one process runs a given flow's source (two workers polling one folder would read
each file twice). On PostgreSQL the owner holds a session advisory lock per flow on a
dedicated connection: if that process dies, its connection closes and another worker
takes the lock at its next look. On SQLite the same is done with an exclusive `flock`
on a file under the data directory.

`AcceptWriter` is the group commit behind `accept(message)`: concurrent accepts (many
webhook requests, several sources) are inserted together in one transaction, so one
fsync covers many messages; each caller still returns only once its own message is
committed, and gets the error if the commit failed (the source then does not ack).

A process can still die after the commit and before the source's acknowledgment; the
source then hands the same item in again after the restart. Sources that know a stable
identity for the upstream item put it in `message.source["key"]`, and the store keeps
those keys per flow (`fy_source_keys`, for the dedup retention): an item whose key is
already stored is acknowledged without being stored again. The keys, per connector:

| source  | key                                  | why                                        |
| ------- | ------------------------------------ | ------------------------------------------ |
| file    | relative path, size, mtime (ns)      | a re-sent file gets a new mtime: stored     |
| sftp    | remote path, size, mtime (seconds)   | the same, at the server's resolution        |
| amqp    | the publisher's `message_id`         | none without one (see below)                |
| nats    | stream name and stream sequence      | JetStream's own identity of the message     |
| http    | the `Idempotency-Key` request header | a client's retry after a lost 202           |
| mqtt    | none                                 | MQTT has no identity that survives a session|

No content hash is used: repeated identical messages are legitimate in a plant (the
same machine state, the same count twice) and a hash would silently drop them. Where
there is no key (AMQP without `message_id`, MQTT, schedule, sql) intake stays
at-least-once: a crash in that window stores the item twice, each copy delivered once.

`FLOWYARD_FAULT=exit-after-commit` makes the process exit right after a commit that
stored a new message and before any source hears of it (the fault tests use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from ..message import Message
from ..store.api import Store

log = logging.getLogger("flowyard.runtime")


class SourceLocks:
    """Exclusive ownership of a flow's source among the processes sharing a store."""

    def __init__(self, engine: Engine, lock_dir: Path) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.lock_dir = lock_dir
        self.connection: Connection | None = None
        self.files: dict[str, int] = {}
        self.held: set[str] = set()

    def try_acquire(self, flow: str) -> bool:
        if flow in self.held:
            return True
        if self.postgres:
            if self.connection is None:
                self.connection = self.engine.connect()
            got = bool(self.connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"),
                {"key": zlib.crc32(f"flowyard-source:{flow}".encode())},
            ).scalar())
            self.connection.commit()
        else:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_dir / f"{flow}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self.files[flow] = fd
            got = True
        if got:
            self.held.add(flow)
        return got

    def alive(self) -> bool:
        """False when the PostgreSQL session holding the locks is gone (its locks with
        it): the caller stops every source and acquires again."""
        if not self.postgres or self.connection is None:
            return True
        try:
            self.connection.execute(text("SELECT 1"))
            self.connection.commit()
            return True
        except Exception:
            self.drop_all()
            return False

    def release(self, flow: str) -> None:
        self.held.discard(flow)
        if self.postgres and self.connection is not None:
            try:
                self.connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"),
                    {"key": zlib.crc32(f"flowyard-source:{flow}".encode())},
                )
                self.connection.commit()
            except Exception:
                self.drop_all()
        fd = self.files.pop(flow, None)
        if fd is not None:
            os.close(fd)

    def drop_all(self) -> None:
        self.held.clear()
        if self.connection is not None:
            try:
                self.connection.invalidate()
                self.connection.close()
            except Exception:
                pass
            self.connection = None
        for fd in self.files.values():
            os.close(fd)
        self.files.clear()


class AcceptWriter:
    """Group commit of accepted messages."""

    def __init__(self, store: Store, max_batch: int = 500) -> None:
        self.store = store
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[Message, asyncio.Future[None]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.on_commit: list[Any] = []
        self.fault = os.environ.get("FLOWYARD_FAULT", "")

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="accept-writer")

    async def submit(self, message: Message) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.queue.put((message, future))
        # shield: a source cancelled while waiting must not leave a half-known commit
        await asyncio.shield(future)

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                fresh = await asyncio.to_thread(self.store.store_new, [m for m, _ in batch])
                if fresh and self.fault == "exit-after-commit":
                    os._exit(70)
            except Exception as exc:
                # the connection may have died after the commit went through: ask which
                # of these messages are in fact stored, so the source acks those and
                # does not hand them in a second time
                try:
                    stored = await asyncio.to_thread(self.store.existing_ids,
                                                     [m.id for m, _ in batch])
                except Exception:
                    stored = set()
                for message, future in batch:
                    if not future.done():
                        if message.id in stored:
                            future.set_result(None)
                        else:
                            future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            for callback in self.on_commit:
                callback(batch)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
