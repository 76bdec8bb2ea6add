"""file: read files from a folder, write files to a folder.

Source: polls a folder for names matching a glob pattern. A file is taken only once it
is completely written: its size and modification time must stay the same for `settle`.
It is read, handed to the runtime (which stores it durably), and only then archived,
deleted or, with `after: keep`, remembered so it is not taken again.

Target: writes each message to a file whose name comes from a template; the write is
atomic (a temporary file in the same folder, flushed to disk, then renamed), and the
default name is derived from the idempotency key, so a retried delivery overwrites its
own earlier attempt instead of adding a duplicate. Sends in flight at the same time are
committed together, with one flush for all of them (see `groupcommit`); each send still
returns only once its own file is durable.

With `append: true` the name is the file to append to (one per day or shift, say): each
message becomes a line of it, sends in flight share one write and one flush per file,
and an index beside the file makes a retried delivery a no-op (see `appendlog`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

import msgspec
from pydantic import Field, field_validator

from flowyard.connector import Accept, Connector, Source, Target, guess_content_type
from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.options import Duration, Options
from flowyard.sandbox import TextTemplate
from flowyard.step import FlowContext

from . import appendlog
from .groupcommit import MAX_BATCH, GroupCommit, Write
from .paths import inside, printable_name

log = logging.getLogger("flowyard.connectors.file")

EXTENSIONS = {
    "application/json": ".json",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "text/csv": ".csv",
    "application/edi-x12": ".edi",
    "text/plain": ".txt",
}


class FileSourceOptions(Options):
    path: str = Field(description="folder to watch, relative to the flow file")
    pattern: str = Field("*", description="glob pattern of the files to take, e.g. *.csv")
    poll: Duration = Field("5s", description="how often to look for new files")  # type: ignore[assignment]
    settle: Duration = Field("1s", description="a file is taken once its size and time are unchanged this long")  # type: ignore[assignment]
    after: Literal["archive", "delete", "keep"] = Field("archive", description="what to do with a file once it is stored")
    archive_path: str | None = Field(None, description="where archived files go (default: an `archive` folder inside `path`)")
    content_type: str | None = Field(None, description="content type of the files (default: from the file name)")
    recursive: bool = Field(False, description="also look in sub-folders")

    @field_validator("pattern")
    @classmethod
    def _inside_path(cls, pattern: str) -> str:
        """The pattern picks files inside `path`: no `..`, no absolute pattern."""
        parts = pattern.replace("\\", "/").split("/")
        if not pattern or pattern.startswith(("/", "\\", "~")) or (len(pattern) > 1 and pattern[1] == ":") or ".." in parts:
            raise ValueError(f"the pattern {pattern!r} must pick files inside `path` (no `..`, not absolute)")
        if "\x00" in pattern:
            raise ValueError("the pattern must not hold a NUL character")
        return pattern


class FileTargetOptions(Options):
    path: str = Field(description="folder to write to, relative to the flow file")
    name: str = Field(
        "{{ message.flow }}-{{ key }}{{ ext }}",
        description="file name template (sandboxed Jinja: message, data, key, ext, now())",
    )
    overwrite: bool = Field(True, description="replace a file of the same name (a retried delivery rewrites its own file)")
    mode: int = Field(0o640, description="file permissions")
    append: bool = Field(
        False,
        description="append each message to the named file (JSON lines, CSV rows) instead of writing one file"
        " per message; a retried delivery is not written twice (`overwrite` does not apply)",
    )
    separator: str = Field(
        "\n", description="with `append`: written after a payload that does not already end with it",
    )


class FileSource(Source[FileSourceOptions]):
    def __init__(self, options: FileSourceOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.root = context.resolve_io_path(options.path)
        self.archive = context.resolve_io_path(options.archive_path) if options.archive_path else self.root / "archive"
        self._seen: dict[Path, tuple[int, int, float]] = {}  # path -> size, mtime_ns, first seen stable at
        self._done: set[tuple[str, int, int]] = set()  # for after: keep
        self._undecodable: set[Path] = set()  # names reported as not UTF-8

    def candidates(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = self.root.rglob(self.options.pattern) if self.options.recursive else self.root.glob(self.options.pattern)
        archive, root = self.archive.resolve(), self.root.resolve()
        taken = []
        for p in found:
            if not p.is_file() or p.is_symlink() or p.name.startswith("."):
                continue
            resolved = p.resolve()  # a symlinked folder on the way cannot lead out of `path`
            if resolved.is_relative_to(archive) or not resolved.is_relative_to(root):
                continue
            if not self.decodable(p):
                continue
            taken.append(p)
        return sorted(taken)

    def decodable(self, path: Path) -> bool:
        """A file whose name is not UTF-8 cannot be recorded (the store keeps text): it is
        reported once (a log line and the source's health) and left where it is, and the
        other files go on."""
        try:
            str(path).encode("utf-8")
            return True
        except UnicodeEncodeError:
            pass
        if path not in self._undecodable:
            if len(self._undecodable) >= 1024:
                self._undecodable.clear()
            self._undecodable.add(path)
            shown = printable_name(path.relative_to(self.root).as_posix())
            log.warning("file source of %s: skipped %s: its name is not UTF-8 (rename it to take it)",
                        self.context.flow_name or "a flow", shown, extra={"flow": self.context.flow_name})
            self.health.failed(f"skipped {shown}: its name is not UTF-8 (rename it to take it)")
            self.health.details["skipped_names"] = sorted(
                printable_name(p.relative_to(self.root).as_posix()) for p in self._undecodable)[:20]
        return False

    def ready(self, path: Path, now: float) -> bool:
        """True once the file has kept the same size and mtime for `settle`."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return False
        key = (stat.st_size, stat.st_mtime_ns)
        seen = self._seen.get(path)
        if seen is None or seen[:2] != key:
            self._seen[path] = (*key, now)
            return self.options.settle.total_seconds() == 0
        return now - seen[2] >= self.options.settle.total_seconds()

    async def poll_once(self, accept: Accept) -> int:
        """Take every ready file once; returns how many were handed over."""
        taken = 0
        now = time.monotonic()
        for path in self.candidates():
            if not self.ready(path, now):
                continue
            stat = path.stat()
            identity = (str(path), stat.st_size, stat.st_mtime_ns)
            if self.options.after == "keep" and identity in self._done:
                continue
            payload = path.read_bytes()
            rel = path.relative_to(self.root).as_posix()
            message = Message(
                payload=payload,
                content_type=self.options.content_type or guess_content_type(path.name),
                source={"connector": "file", "file": rel, "size": stat.st_size,
                        "key": f"{rel}:{stat.st_size}:{stat.st_mtime_ns}"},
            )
            await accept(message)  # returns once the message is stored
            self.finish(path, rel)
            self._seen.pop(path, None)
            if self.options.after == "keep":
                self._done.add(identity)
            taken += 1
        self.health.ok()
        return taken

    def finish(self, path: Path, rel: str) -> None:
        if self.options.after == "delete":
            path.unlink(missing_ok=True)
        elif self.options.after == "archive":
            target = self.archive / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target = target.with_name(f"{target.stem}.{time.strftime('%Y%m%dT%H%M%S')}{target.suffix}")
            os.replace(path, target)

    async def run(self, accept: Accept) -> None:
        interval = self.options.poll.total_seconds()
        while True:
            try:
                await self.poll_once(accept)
            except OSError as exc:
                self.health.failed(f"cannot read {self.root}: {exc.strerror or exc}")
            await asyncio.sleep(min(interval, max(self.options.settle.total_seconds(), 0.05)) if self._seen else interval)


class FileTarget(Target[FileTargetOptions]):
    # a whole batch at once: the writes in flight share one flush (GroupCommit); 32 at a
    # time made a batch of 200 wait for seven flushes in a row (two PostgreSQL workers on
    # one disk left 10-13% of the machine idle, and 6-8% with the whole batch)
    send_concurrency = MAX_BATCH

    def __init__(self, options: FileTargetOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.root = context.resolve_io_path(options.path)
        self.template = TextTemplate(options.name)
        self.fixed_name = options.name.strip() if "{" not in options.name else None  # nothing to render
        self.commits = GroupCommit()  # sends in flight share one flush
        self.appended: set[Path] = set()  # append mode: the files this target has used
        self.guarded: dict[str, Path] = {}  # append mode: one-part names the path guard let through
        self.cleaned = False  # leftover temporary files removed (at the first send)
        self.cleaning: asyncio.Task[None] | None = None

    async def clean_leftovers(self) -> None:
        """Once, when the target starts sending: remove the temporary files a killed
        process left in its folder (`.NAME.RANDOM.part`, older than `PART_MAX_AGE`)."""
        self.cleaned = True
        try:
            removed = await asyncio.to_thread(remove_leftovers, self.root, PART_MAX_AGE)
        except OSError as exc:
            log.warning("file target of %s: cannot clean leftover temporary files in %s: %s",
                        self.context.flow_name or "a flow", self.root, exc.strerror or exc,
                        extra={"flow": self.context.flow_name})
            return
        if removed:
            log.info("file target of %s: removed %d leftover temporary file(s) in %s (left by a stopped process)",
                     self.context.flow_name or "a flow", removed, self.root, extra={"flow": self.context.flow_name})

    def file_name(self, message: Message, key: str) -> str:
        if self.fixed_name is not None:
            return self.fixed_name
        variables: dict[str, Any] = {
            "message": message.metadata(),
            "data": message.last_data if message.is_bytes else message.payload,
            "key": key,
            "ext": EXTENSIONS.get(message.content_type.split(";")[0].strip(), ".bin" if message.is_bytes else ".json"),
        }
        return self.template.render(variables).strip()

    async def send(self, message: Message, idempotency_key: str) -> dict[str, Any]:
        if not self.cleaned:  # beside the sends, not before them (they keep their order)
            self.cleaning = asyncio.create_task(self.clean_leftovers())
        name = self.file_name(message, idempotency_key)
        if self.options.append:  # data goes on one line (JSON lines), not indented
            payload = message.payload_bytes() if message.is_bytes else to_json_line(message.payload)
            return await self.append(self.append_path(name), payload, idempotency_key)
        path = inside(self.root, name)
        if not self.options.overwrite and path.exists():  # a stat only where it matters
            raise DeliveryError(f"file {name} exists and overwrite is off", retryable=False)
        payload = message.payload_bytes()
        try:
            await self.commits.write(Write(path, payload, self.options.mode, replace=self.options.overwrite))
        except FileExistsError as exc:
            raise DeliveryError(f"file {name} exists and overwrite is off", retryable=False) from exc
        except OSError as exc:
            self.health.failed(str(exc))
            raise DeliveryError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self.health.ok()
        return {"file": str(path), "bytes": len(payload)}

    def append_path(self, name: str) -> Path:
        """The guarded path of an append file. An append name repeats (a file per day or
        shift), so a one-part name is checked once: the append log never opens through
        a symlink (O_NOFOLLOW), so a link put there later cannot lead it out. A name with
        folders is checked every time (a folder could be swapped for a link)."""
        path = self.guarded.get(name)
        if path is None:
            path = inside(self.root, name)
            if "/" not in name and "\\" not in name:
                if len(self.guarded) >= 1024:
                    self.guarded.clear()
                self.guarded[name] = path
        return path

    async def append(self, path: Path, payload: bytes, key: str) -> dict[str, Any]:
        separator = self.options.separator.encode()
        line = payload if not separator or payload.endswith(separator) else payload + separator
        try:
            log = appendlog.get(path, self.options.mode, id(self))
            self.appended.add(path)
            result = await log.append(key, line)
        except ValueError as exc:  # a key the index cannot hold
            raise DeliveryError(f"cannot append to {path}: {exc}", retryable=False) from exc
        except OSError as exc:
            self.health.failed(f"cannot append to {path}: {exc.strerror or exc}")
            raise DeliveryError(f"cannot append to {path}: {exc.strerror or exc}") from exc
        self.health.ok()
        return result

    async def close(self) -> None:
        """Forget the appended files no other target uses (their keys take memory)."""
        paths, self.appended = self.appended, set()
        await appendlog.release(paths, id(self))


# the group commit's temporary names: `.NAME.` then 8 hex digits and a counter, `.part`
LEFTOVER = re.compile(r"^\..+\.[0-9a-f]{8}[0-9]+\.part$")
PART_MAX_AGE = 120.0  # seconds: a write in flight is renamed within a flush, far sooner
MAX_SCANNED = 200_000  # entries looked at, so a huge folder cannot hold the start up


def remove_leftovers(root: Path, max_age: float, now: float | None = None) -> int:
    """Remove `.NAME.RANDOM.part` files older than `max_age` under `root` (what a kill -9
    in the middle of a write leaves); returns how many. Symlinks are not followed."""
    if not root.is_dir():
        return 0
    limit = (now if now is not None else time.time()) - max_age
    removed = scanned = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            scanned += 1
            if not LEFTOVER.match(name):
                continue
            path = os.path.join(folder, name)
            try:
                stat = os.lstat(path)
                if stat.st_mtime < limit and not os.path.islink(path):
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue
        if scanned > MAX_SCANNED:
            break
    return removed


_json_line = msgspec.json.Encoder().encode


def to_json_line(data: Any) -> bytes:
    """Data as one compact line of UTF-8 JSON (msgspec: a fifth of json.dumps's time)."""
    try:
        return _json_line(data)
    except (TypeError, msgspec.EncodeError) as exc:
        raise DeliveryError(f"the data cannot be written as JSON: {exc}", retryable=False) from exc


class FileConnector(Connector):
    """Files in a folder: a source that polls, a target that writes atomically."""

    kind = "file"
    SourceOptions = FileSourceOptions
    TargetOptions = FileTargetOptions
    source_class = FileSource
    target_class = FileTarget
