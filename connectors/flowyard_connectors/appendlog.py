"""Append mode of the file target: many messages into one file, durable and idempotent.

One durable file per message costs a file creation each (the disk caps it near 2,000
files/s here); appending costs one write and one flush per batch, and plants want one
file per day or shift anyway (JSON lines for a data lake, CSV rows for an importer).

Idempotency: next to each data file NAME a hidden index `.NAME.keys` holds one line per
appended message, `KEY END_OFFSET`, where END_OFFSET is the data file's size after that
message. A batch is committed in this order, so an index line proves its data durable:

1. append the batch's lines to the data file with one write, fsync it;
2. append the batch's index lines with one write, fsync the index;
3. fsync the folder, once per opening of the file (it may just have been created).

A send returns only after step 2 (3), so every acknowledged message is in the index.
Bytes past the last indexed END_OFFSET belong to sends that were never acknowledged (a
crash between steps 1 and 2, or a failed batch): they are cut off before anything is
appended, and their sends are retried. A torn last index line (no newline) is cut too.
A send whose key is in the index completes at once without writing: it was written
before (a retry after a crash between step 2 and the runtime's delivery commit).

Several processes may append to one file: each batch holds an exclusive `flock` on the
index while it catches up with the index lines the others appended since its last read,
checks its keys, appends and flushes. In one process (per event loop) every target
appending to a file shares one `AppendLog` from a registry keyed by the resolved path,
so its sends join the same batches instead of fighting over the lock.

The key set costs memory (about 100 to 150 bytes per line, measured), so a file idle for `IDLE_SECONDS`
is forgotten, and so is a file when the last target using it closes; it is read again
from its index when next used.

The commit of a batch (lock, catch-up, writes, flushes) runs in a worker thread: it
waits for the disk and for other processes. A `threading.Lock` guards the open files
against a close or an idle sweep while that thread runs (it can outlive a cancelled
flusher, which an asyncio lock would not see).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .groupcommit import make_folders

MAX_BATCH = 4096  # lines per commit: bounds how long the first send of a batch waits
IDLE_SECONDS = 600.0  # a file unused this long is closed and its keys forgotten
SWEEP_EVERY = 60.0  # how often a send looks for idle files


def index_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.keys")


def escape_key(key: str) -> str:
    """The key as written in the index: no space, newline or other byte that would break
    a line (percent-escaped, so distinct keys stay distinct)."""
    if not key:
        raise ValueError("an empty idempotency key cannot be indexed")
    return quote(key, safe="")


class IndexMismatch(OSError):
    """The index and its data file disagree in a way a crash cannot explain."""


@dataclass
class Pending:
    key: str  # escaped
    line: bytes
    future: asyncio.Future[dict[str, Any]]
    end: int = 0
    written: bool = False  # False: the key was already in the index


class AppendLog:
    """One data file and its index, shared by the targets of one event loop."""

    def __init__(self, path: Path, mode: int) -> None:
        self.path = path
        self.index = index_path(path)
        self.mode = mode
        self.keys: set[str] = set()
        self.end = 0  # data size after the last indexed line
        self.read = 0  # index bytes read (always at a line boundary)
        self.data_fd: int | None = None
        self.index_fd: int | None = None
        self.dirty: set[Path] = set()  # folders to flush once (new entries in them)
        self.waiting: list[Pending] = []
        self.flusher: asyncio.Task[None] | None = None
        self.state = threading.Lock()  # held while a commit thread uses the files
        self.batches = 0  # commits run (the tests check that sends were grouped)
        self.last_used = time.monotonic()
        self.users: set[int] = set()  # ids of the targets using this file

    # -- on the event loop -------------------------------------------------------

    async def append(self, key: str, line: bytes) -> dict[str, Any]:
        """Returns once `line` is durable under `key` (or was already); raises OSError."""
        self.last_used = time.monotonic()
        escaped = escape_key(key)
        if escaped in self.keys:
            return {"file": str(self.path), "bytes": 0, "already_written": True}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append(Pending(escaped, line, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await future

    def busy(self) -> bool:
        return bool(self.waiting) or (self.flusher is not None and not self.flusher.done())

    async def _flush(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            try:
                await asyncio.to_thread(self._commit, batch)
            except OSError as exc:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            except BaseException as exc:  # cancelled, or a bug: none of these is acknowledged
                for pending in batch + self.waiting:
                    if not pending.future.done():
                        pending.future.set_exception(OSError(f"the append to {self.path} was interrupted: {exc!r}"))
                self.waiting = []
                raise
            finally:
                self.last_used = time.monotonic()
            self.batches += 1
            for pending in batch:
                if not pending.future.done():  # else the sender was cancelled; its line is written anyway
                    pending.future.set_result({
                        "file": str(self.path), "bytes": len(pending.line) if pending.written else 0,
                        "end": pending.end, **({} if pending.written else {"already_written": True}),
                    })

    async def close(self) -> None:
        """Forget the file once its batches are done (they are never cut short)."""
        while self.flusher is not None and not self.flusher.done():
            await asyncio.wait({self.flusher})
        await asyncio.to_thread(self._close_blocking)

    # -- in a worker thread --------------------------------------------------------

    def _close_blocking(self) -> None:
        with self.state:
            self._forget()

    def _forget(self) -> None:
        """Close the files and drop what was read; the next use reads the index again."""
        for fd in (self.data_fd, self.index_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.data_fd = self.index_fd = None
        self.keys = set()
        self.end = self.read = 0

    def _open(self, path: Path) -> int:
        """Open (creating if missing, with the target's mode) for reading and writing.
        Never through a symlink: the path guard checked the name, and a link put there
        since must not lead the append elsewhere."""
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, self.mode)
        except FileExistsError:
            return os.open(path, flags)
        try:
            os.fchmod(fd, self.mode)  # the umask may have narrowed it
        except OSError:
            os.close(fd)
            raise
        return fd

    def _make_folders(self) -> None:
        """Create missing folders; the parent of each new one is flushed with the batch."""
        self.dirty.update(make_folders(self.path.parent))
        self.dirty.add(self.path.parent)  # the files may be created in it

    def _lock(self) -> None:
        """Open the files if needed and take the index's lock. Reopens both when a name
        now leads to another file (moved or removed behind our back)."""
        while True:
            if self.index_fd is None or self.data_fd is None:
                self._forget()
                self._make_folders()
                self.data_fd = self._open(self.path)  # first: it fails if the name is a folder
                self.index_fd = self._open(self.index)
            fcntl.flock(self.index_fd, fcntl.LOCK_EX)
            try:
                same = all(
                    os.stat(p).st_ino == os.fstat(fd).st_ino
                    for p, fd in ((self.index, self.index_fd), (self.path, self.data_fd))
                )
            except FileNotFoundError:
                same = False
            if same:
                return
            self._forget()  # closing the index releases its lock

    def _catch_up(self) -> None:
        """Read the index lines appended since our last read (by us before a reset, or by
        other processes); cut a torn last line and any data past the last indexed end."""
        assert self.index_fd is not None and self.data_fd is not None
        size = os.fstat(self.index_fd).st_size
        if size > self.read:
            chunk = os.pread(self.index_fd, size - self.read, self.read)
            complete = chunk.rfind(b"\n") + 1
            for number, raw in enumerate(chunk[:complete].splitlines(), start=1):
                parts = raw.split(b" ")
                if len(parts) != 2 or not parts[1].isdigit():
                    raise IndexMismatch(
                        f"the index {self.index} has a damaged line after byte {self.read}"
                        f" (line {number} of the unread part): {raw[:80]!r}; it was changed outside Flowyard"
                    )
                self.keys.add(parts[0].decode("ascii", "replace"))
                self.end = int(parts[1])
            self.read += complete
            if complete < len(chunk):  # torn by a crash (we hold the lock: nobody is writing)
                os.ftruncate(self.index_fd, self.read)
        data_size = os.fstat(self.data_fd).st_size
        if data_size > self.end:  # written, never acknowledged: the senders retry
            os.ftruncate(self.data_fd, self.end)
        elif data_size < self.end:
            raise IndexMismatch(
                f"{self.path} holds {data_size} bytes but its index {self.index.name} says {self.end}:"
                f" the file was cut or replaced outside Flowyard; move both files away to start anew"
            )

    def _commit(self, batch: list[Pending]) -> None:
        with self.state:
            try:
                self._lock()
                try:
                    self._append_locked(batch)
                finally:
                    if self.index_fd is not None:
                        fcntl.flock(self.index_fd, fcntl.LOCK_UN)
            except OSError:
                self._forget()  # after any failure, trust only what the index says
                raise

    def _append_locked(self, batch: list[Pending]) -> None:
        assert self.index_fd is not None and self.data_fd is not None
        self._catch_up()
        fresh: list[Pending] = []
        seen: set[str] = set()
        end = self.end
        for pending in batch:
            if pending.key in self.keys or pending.key in seen:
                continue  # written before, or by its twin in this batch
            seen.add(pending.key)
            end += len(pending.line)
            pending.end, pending.written = end, True
            fresh.append(pending)
        if fresh:
            try:
                _write_all(self.data_fd, b"".join(p.line for p in fresh), self.end)
                _sync_data(self.data_fd)
                _write_all(self.index_fd, b"".join(f"{p.key} {p.end}\n".encode() for p in fresh), self.read)
                os.fsync(self.index_fd)
            except OSError:
                for fd, size in ((self.index_fd, self.read), (self.data_fd, self.end)):
                    with contextlib.suppress(OSError):  # what is past the last indexed end is cut
                        os.ftruncate(fd, size)
                for pending in fresh:
                    pending.written = False
                raise
        for folder in sorted(self.dirty, key=lambda f: len(f.parts), reverse=True):  # once per opening
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self.dirty.discard(folder)
        if fresh:
            self.read = os.fstat(self.index_fd).st_size
            self.end = end
            self.keys.update(p.key for p in fresh)


_sync_data = getattr(os, "fdatasync", os.fsync)  # the size is flushed too; the times need not be


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


# -- the registry: one AppendLog per file and event loop ----------------------------------

@dataclass
class LoopFiles:
    """The open files of one event loop (loops never share futures or tasks)."""

    logs: dict[Path, AppendLog]
    last_sweep: float


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopFiles] = weakref.WeakKeyDictionary()
_latest: list[Any] = [lambda: None, None]  # the last loop asked for (weakly) and its files


def loop_files() -> LoopFiles:
    loop = asyncio.get_running_loop()
    if _latest[0]() is not loop:  # once per loop change: a weak-keyed lookup makes a weakref
        _latest[:] = [weakref.ref(loop), _LOOPS.setdefault(loop, LoopFiles({}, time.monotonic()))]
    files: LoopFiles = _latest[1]
    return files


def logs() -> dict[Path, AppendLog]:
    """The open files of the running event loop."""
    return loop_files().logs


def get(path: Path, mode: int, user: int) -> AppendLog:
    """The shared log of `path` (resolved), opened for `user` (a target's id)."""
    now = time.monotonic()
    files = loop_files()
    if now - files.last_sweep >= SWEEP_EVERY:
        files.last_sweep = now
        sweep(IDLE_SECONDS, now)
    registry = files.logs
    log = registry.get(path)
    if log is None:
        log = registry[path] = AppendLog(path, mode)
    log.users.add(user)
    log.last_used = now
    return log


def sweep(idle: float, now: float | None = None) -> list[Path]:
    """Forget the files unused for `idle` seconds (not one with a batch on its way)."""
    now = time.monotonic() if now is None else now
    registry = logs()
    closed = []
    for path, log in list(registry.items()):
        if now - log.last_used < idle or log.busy() or not log.state.acquire(blocking=False):
            continue
        try:
            log._forget()
        finally:
            log.state.release()
        del registry[path]
        closed.append(path)
    return closed


async def release(paths: set[Path], user: int) -> None:
    """A target closes: forget each of its files that no other target uses."""
    registry = logs()
    for path in paths:
        log = registry.get(path)
        if log is None:
            continue
        log.users.discard(user)
        if not log.users:
            await log.close()
            if not log.users and registry.get(path) is log:
                del registry[path]
