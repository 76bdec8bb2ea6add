"""sftp: poll a remote folder, upload files atomically (asyncssh).

The server's host key is always checked unless the flow turns that off in so many words:
from `host_key` (the key line, as `ssh-keyscan` prints it), from a `known_hosts` file, or
else from the runtime user's ~/.ssh/known_hosts. Credentials (password or private key)
are secret references resolved when connecting.

Source: lists `path`, takes regular files matching `pattern` (never symlinks) once their
size and time stayed the same for `settle`, reads each, hands it over and only after
`accept` returned archives, deletes or remembers it. A connection that drops is reopened
with back-off; files not yet handed over are simply taken on the next poll.

Target: writes to a dot-prefixed temporary name in the destination folder and renames it
into place (POSIX rename when the server offers it), so the partner never picks up a
half-written file. Names come from a template and may not leave the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import posixpath
import stat
import time
from datetime import timedelta
from typing import Any, Literal

import asyncssh
from pydantic import Field, model_validator

from flowyard.connector import Accept, Connector, Source, Target, guess_content_type
from flowyard.errors import DeliveryError
from flowyard.message import Message
from flowyard.options import Duration, Options, SecretRef
from flowyard.sandbox import TextTemplate
from flowyard.secrets import redactor
from flowyard.step import FlowContext

from .backoff import ConnectError, keep_running
from .file import EXTENSIONS


class SftpConnection(Options):
    host: str = Field(description="SFTP server host name")
    port: int = Field(22, ge=1, le=65535, description="SSH port")
    username: str = Field(description="user to log in as")
    password: SecretRef | None = Field(None, description="password, as ${secret:NAME}")
    private_key: SecretRef | None = Field(None, description="private key (OpenSSH or PEM text), as ${secret:NAME}")
    passphrase: SecretRef | None = Field(None, description="passphrase of the private key")
    host_key: str | None = Field(None, description="the server's public host key line, e.g. ssh-ed25519 AAAA...")
    known_hosts: str | None = Field(None, description="known_hosts file, relative to the flow file")
    verify_host_key: bool = Field(True, description="check the server's host key (turn off only for a test system)")
    connect_timeout: Duration = Field(timedelta(seconds=30), description="time allowed to connect and log in")

    @model_validator(mode="after")
    def _needs_credential(self) -> SftpConnection:
        if not (self.password or self.private_key):
            raise ValueError("give `password: ${secret:NAME}` or `private_key: ${secret:NAME}`")
        return self


class SftpSourceOptions(SftpConnection):
    path: str = Field(description="remote folder to poll")
    pattern: str = Field("*", description="glob pattern of the files to take, e.g. *.856")
    poll: Duration = Field(timedelta(seconds=60), description="how often to list the folder")
    settle: Duration = Field(
        timedelta(seconds=2), description="a file is taken once its size and time are unchanged this long"
    )
    after: Literal["archive", "delete", "keep"] = Field(
        "archive", description="what to do with a file once it is stored"
    )
    archive_path: str | None = Field(
        None, description="remote folder for archived files (default: `archive` inside path)"
    )
    content_type: str | None = Field(None, description="content type of the files (default: from the file name)")
    max_bytes: int = Field(100 * 1024 * 1024, gt=0, description="larger files are left alone and reported")


class SftpTargetOptions(SftpConnection):
    path: str = Field(description="remote folder to upload to")
    name: str = Field(
        "{{ message.flow }}-{{ key }}{{ ext }}",
        description="file name template (sandboxed Jinja: message, data, key, ext)",
    )
    overwrite: bool = Field(
        True, description="replace a file of the same name (a retried delivery rewrites its own file)"
    )


def safe_name(name: str) -> str:
    """A relative POSIX name that stays inside the folder: no absolute path, no `..`."""
    cleaned = name.strip()
    if not cleaned or cleaned.startswith(("/", "\\")) or "\\" in cleaned or "\x00" in cleaned:
        raise DeliveryError(f"file name {name!r} must be a relative name inside the folder", retryable=False)
    normal = posixpath.normpath(cleaned)
    if normal == ".." or normal.startswith("../") or normal in (".", ""):
        raise DeliveryError(f"file name {name!r} would leave the folder", retryable=False)
    return normal


def describe(exc: BaseException, options: SftpConnection) -> str:
    where = f"{options.host}:{options.port}"
    if isinstance(exc, asyncssh.PermissionDenied):
        return f"SFTP server {where} refused the credentials of user {options.username!r}"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return (
            f"the host key of SFTP server {where} is not trusted: give its key as host_key "
            "(ssh-keyscan prints it) or in a known_hosts file"
        )
    if isinstance(exc, asyncssh.SFTPError):
        return f"SFTP server {where}: {exc.reason}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"SFTP server {where} did not answer in time"
    if isinstance(exc, OSError):
        return f"cannot reach SFTP server {where}: {exc.strerror or exc}"
    if isinstance(exc, ConnectError | DeliveryError):
        return str(exc)
    return f"SFTP server {where}: {type(exc).__name__}: {exc}"


class _Session:
    """One SSH connection with its SFTP channel, opened from the options."""

    def __init__(self, options: SftpConnection, context: FlowContext) -> None:
        self.options = options
        self.context = context
        self.conn: asyncssh.SSHClientConnection | None = None
        self.sftp: asyncssh.SFTPClient | None = None

    def known_hosts(self) -> Any:
        options = self.options
        if not options.verify_host_key:
            return None
        if options.host_key:
            return ([asyncssh.import_public_key(options.host_key)], [], [])
        if options.known_hosts:
            return str(self.context.resolve_io_path(options.known_hosts))
        return ()  # asyncssh's default: ~/.ssh/known_hosts

    async def open(self) -> asyncssh.SFTPClient:
        if self.sftp is not None:
            return self.sftp
        options = self.options
        secrets = self.context.secrets
        kwargs: dict[str, Any] = {
            "port": options.port,
            "username": options.username,
            "connect_timeout": options.connect_timeout.total_seconds(),
            "client_keys": None,
            "agent_path": None,
            "password": None,
            "preferred_auth": [],
        }
        if options.private_key:
            passphrase = secrets.resolve(options.passphrase) if options.passphrase else None
            kwargs["client_keys"] = [asyncssh.import_private_key(secrets.resolve(options.private_key), passphrase)]
            kwargs["preferred_auth"].append("publickey")
        if options.password:
            kwargs["password"] = secrets.resolve(options.password)
            kwargs["preferred_auth"] += ["password", "keyboard-interactive"]
        known = self.known_hosts()
        if known != ():
            kwargs["known_hosts"] = known
        self.conn = await asyncssh.connect(options.host, **kwargs)
        self.sftp = await self.conn.start_sftp_client()
        return self.sftp

    async def close(self) -> None:
        if self.sftp is not None:
            self.sftp.exit()
        if self.conn is not None:
            self.conn.close()
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(self.conn.wait_closed(), 5)
        self.conn = self.sftp = None


class SftpSource(Source[SftpSourceOptions]):
    def __init__(self, options: SftpSourceOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.session = _Session(options, context)
        self.root = posixpath.normpath(options.path)
        self.archive = posixpath.normpath(options.archive_path or posixpath.join(self.root, "archive"))
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> size, mtime, stable since
        self._done: set[tuple[str, int, int]] = set()  # after: keep
        # stored but not yet archived/deleted when the connection dropped; finished on the
        # next poll without a second hand-over (within this process)
        self._stored: set[tuple[str, int, int]] = set()

    async def listing(self, sftp: asyncssh.SFTPClient) -> list[tuple[str, int, int]]:
        """(name, size, mtime) of the regular files matching the pattern, by name."""
        found = []
        for entry in await sftp.readdir(self.root):
            name = entry.filename if isinstance(entry.filename, str) else entry.filename.decode()
            attrs = entry.attrs
            if name.startswith(".") or not fnmatch.fnmatchcase(name, self.options.pattern):
                continue
            if attrs.permissions is None or not stat.S_ISREG(attrs.permissions):
                continue  # folders, symlinks (readdir does not follow them) and devices
            found.append((name, attrs.size or 0, int(attrs.mtime or 0)))
        return sorted(found)

    def ready(self, name: str, size: int, mtime: int, now: float) -> bool:
        seen = self._seen.get(name)
        if seen is None or seen[:2] != (size, mtime):
            self._seen[name] = (size, mtime, now)
            return self.options.settle.total_seconds() == 0
        return now - seen[2] >= self.options.settle.total_seconds()

    async def poll_once(self, sftp: asyncssh.SFTPClient, accept: Accept) -> int:
        taken = 0
        now = time.monotonic()
        files = await self.listing(sftp)
        names = {f[0] for f in files}
        for gone in set(self._seen) - names:
            del self._seen[gone]
        for name, size, mtime in files:
            if not self.ready(name, size, mtime, now):
                continue
            if self.options.after == "keep" and (name, size, mtime) in self._done:
                continue
            if size > self.options.max_bytes:
                self.health.details["too_large"] = name
                continue
            remote = posixpath.join(self.root, name)
            identity = (name, size, mtime)
            if identity in self._stored:  # stored before the connection dropped: finish only
                await self.finish(sftp, remote, name)
                self._stored.discard(identity)
                continue
            async with sftp.open(remote, "rb") as handle:
                data = await handle.read()
            payload = data.encode() if isinstance(data, str) else bytes(data)
            message = Message(
                payload=payload,
                content_type=self.options.content_type or guess_content_type(name),
                source={"connector": "sftp", "host": self.options.host, "file": remote, "size": len(payload),
                        "key": f"{remote}:{size}:{mtime}"},
            )
            await accept(message)  # stored: now the file may go
            self._stored.add(identity)
            await self.finish(sftp, remote, name)
            self._stored.discard(identity)
            self._seen.pop(name, None)
            if self.options.after == "keep":
                self._done.add((name, size, mtime))
            taken += 1
        return taken

    async def finish(self, sftp: asyncssh.SFTPClient, remote: str, name: str) -> None:
        if self.options.after == "delete":
            await sftp.remove(remote)
        elif self.options.after == "archive":
            await sftp.makedirs(self.archive, exist_ok=True)
            target = posixpath.join(self.archive, name)
            if await sftp.exists(target):
                stem, ext = posixpath.splitext(name)
                target = posixpath.join(self.archive, f"{stem}.{time.strftime('%Y%m%dT%H%M%S')}{ext}")
            await sftp.rename(remote, target)

    async def session_loop(self, accept: Accept) -> None:
        try:
            sftp = await self.session.open()
            self.health.ok()
            while True:
                await self.poll_once(sftp, accept)
                self.health.ok()
                interval = self.options.poll.total_seconds()
                if self._seen:  # something is settling: look again sooner
                    interval = min(interval, max(self.options.settle.total_seconds(), 0.05))
                await asyncio.sleep(interval)
        finally:
            await self.session.close()

    async def run(self, accept: Accept) -> None:
        await keep_running(lambda: self.session_loop(accept), self.health, lambda e: describe(e, self.options))

    async def close(self) -> None:
        await self.session.close()
        self.health.connected = False


class SftpTarget(Target[SftpTargetOptions]):
    def __init__(self, options: SftpTargetOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.session = _Session(options, context)
        self.root = posixpath.normpath(options.path)
        self.template = TextTemplate(options.name)
        self._lock = asyncio.Lock()

    def file_name(self, message: Message, key: str) -> str:
        ext = EXTENSIONS.get(message.content_type.split(";")[0].strip(), ".bin" if message.is_bytes else ".json")
        try:
            name = self.template.render(
                message=message.metadata(),
                data=message.last_data if message.is_bytes else message.payload,
                key=key,
                ext=ext,
            )
        except Exception as exc:
            raise DeliveryError(f"the file name template failed: {exc}", retryable=False) from exc
        return safe_name(name)

    async def send(self, message: Message, idempotency_key: str) -> dict[str, Any]:
        name = self.file_name(message, idempotency_key)
        payload = message.payload_bytes()
        async with self._lock:  # one SFTP channel; uploads go one at a time
            try:
                remote = await self.upload(name, payload, idempotency_key)
            except DeliveryError as exc:
                self.health.failed(str(exc))
                raise
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                await self.session.close()
                text = redactor.redact(describe(exc, self.options))
                self.health.failed(text)
                auth = isinstance(exc, asyncssh.PermissionDenied | asyncssh.HostKeyNotVerifiable)
                denied = isinstance(exc, asyncssh.SFTPPermissionDenied)
                raise DeliveryError(text, retryable=not (auth or denied)) from exc
        self.health.ok()
        return {"file": remote, "bytes": len(payload)}

    async def upload(self, name: str, payload: bytes, key: str) -> str:
        sftp = await self.session.open()
        final = posixpath.join(self.root, name)
        folder = posixpath.dirname(final)
        await sftp.makedirs(folder, exist_ok=True)
        # symlinks on the server must not lead the upload out of the configured folder
        real_root = await sftp.realpath(self.root)
        real_folder = await sftp.realpath(folder)
        if real_folder != real_root and not real_folder.startswith(real_root.rstrip("/") + "/"):
            raise DeliveryError(f"file name {name!r} leads out of {self.root} through a link", retryable=False)
        if not self.options.overwrite and await sftp.exists(final):
            raise DeliveryError(f"{final} exists and overwrite is off", retryable=False)
        temp = posixpath.join(folder, f".{posixpath.basename(final)}.{key[:16]}.part")
        async with sftp.open(temp, "wb") as handle:
            await handle.write(payload)
        try:
            await sftp.posix_rename(temp, final)
        except asyncssh.SFTPOpUnsupported:
            if await sftp.exists(final):
                await sftp.remove(final)
            await sftp.rename(temp, final)
        return final

    async def close(self) -> None:
        await self.session.close()


class SftpConnector(Connector):
    """SFTP: a source that polls a remote folder, a target that uploads atomically."""

    kind = "sftp"
    SourceOptions = SftpSourceOptions
    TargetOptions = SftpTargetOptions
    source_class = SftpSource
    target_class = SftpTarget
