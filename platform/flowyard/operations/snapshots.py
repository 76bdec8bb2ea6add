"""Deployment snapshots: a flow file and every file it may use, frozen.

What a flow uses is taken broadly rather than step by step: the flow file; the shared
folders a step looks for beside it (`tables/`, `partners/`, `guides/`, `templates/`,
`schemas/`, whole); and every file the flow names by a relative path (a stylesheet, an
XSD), with the rest of that file's folder (an XSD includes its neighbours). Data folders
a connector reads or writes, other flow files, hidden files and key or certificate files
are not part of it (a connector reads keys where the flow was deployed from, so no
secret reaches the store).

A snapshot is materialized as a folder laid out like the flows folder, with a marker
file at its root, so the flow loads from it exactly as it loaded from the flows folder
and looks for shared definitions in it alone (`FlowContext.search_dirs`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..definitions.grammar import kind_of
from ..errors import FlowyardError
from ..onboarding.render import render_instance_flows, select_flow
from ..onboarding.template import load_instance_file
from ..step import SNAPSHOT_MARKER
from ..store.api import Snapshot
from ..yamlio import YamlSyntaxError, load_text, to_plain

MAX_FILE_BYTES = 20_000_000
MAX_SNAPSHOT_BYTES = 100_000_000
# never frozen into the store: private keys and certificates stay on the host
SKIPPED_SUFFIXES = {".key", ".pem", ".p12", ".pfx", ".crt", ".der", ".jks", ".creds"}
SKIPPED_NAMES = {"known_hosts"}


class SnapshotError(FlowyardError):
    """A flow cannot be frozen (a file too large, unreadable)."""


@dataclass
class TakenSnapshot:
    """Files read for a deployment, before it is recorded."""

    flow_file: str  # the flow's own path in `files`
    files: dict[str, bytes]
    origin: Path  # the flow file as it was read
    flow: str | None = None  # of an instance giving several flows: the one this snapshot stands for

    @property
    def text(self) -> str:
        return self.files[self.flow_file].decode("utf-8")

    @property
    def version(self) -> str:
        return snapshot_version(self.flow_file, self.files)


def snapshot_version(flow_file: str, files: dict[str, bytes]) -> str:
    """A deployment's version: the hash of its files (a changed table is a new version
    of every flow that uses it)."""
    manifest = sorted((name, hashlib.sha256(content).hexdigest()) for name, content in files.items())
    return hashlib.sha256(json.dumps([flow_file, manifest]).encode()).hexdigest()[:16]


SHARED_FOLDERS = ("tables", "partners", "guides", "templates", "schemas")
_QUOTED_OR_PLAIN = re.compile(r"""(?:["']([^"'\n]+)["']|(?<=[\s:\[,])([\w./-]+\.\w{1,5})\b)""")


def several_flows(path: Path, text: str) -> list[str]:
    """The names of the flows an instance file stands for when its template gives several
    (and it selects none); else [] (the file is one flow)."""
    if kind_of(text) != "FlowInstance":
        return []
    try:
        instance = load_instance_file(path, text)
        if instance.flow is not None:
            return []
        names = [rendered.name for rendered in render_instance_flows(instance)]
    except FlowyardError:
        return []  # the gate says why it does not load
    return names if len(names) > 1 else []


def take_all(path: Path, origin: Path | None = None) -> list[TakenSnapshot]:
    """The snapshots deploying the file at `path` takes: one, or of an instance whose
    template gives several flows, one per flow (its flow file is the instance with
    `flow: NAME` added, so each deployment loads that flow alone)."""
    resolved = path.resolve()
    names = several_flows(resolved, read(resolved).decode("utf-8", "replace"))
    if not names:
        return [take(path, origin)]
    return [take(path, origin, flow=name) for name in names]


def take(path: Path, origin: Path | None = None, *, flow: str | None = None) -> TakenSnapshot:
    """Read the flow file at `path` and every file it may use (see the module
    docstring). `origin` is where the flow counts as deployed from, when the files are
    read elsewhere (a git commit exported to a scratch folder). `flow`: of an instance
    giving several flows, the one to freeze (see `take_all`)."""
    path = path.resolve()
    root = path.parent
    files: dict[str, bytes] = {path.name: read(path)}
    if flow is not None:
        files[path.name] = select_flow(files[path.name].decode("utf-8"), flow).encode("utf-8")
    folders = [root / name for name in SHARED_FOLDERS]
    for named in referenced_files(root, files[path.name].decode("utf-8", "replace")):
        if named.parent == root:
            if named.suffix.lower() not in (".yaml", ".yml"):  # beside it: other flows
                files.setdefault(named.name, read(named))
        else:
            folders.append(named.parent)
    total = sum(len(c) for c in files.values())
    for folder in dict.fromkeys(folders):
        if not folder.is_dir():
            continue
        for file in sorted(folder.rglob("*")):
            relative = file.relative_to(root)
            if not file.is_file() or not all(keep(part) for part in relative.parts):
                continue
            if relative.as_posix() in files:
                continue
            content = read(file)
            total += len(content)
            if total > MAX_SNAPSHOT_BYTES:
                raise SnapshotError(f"{path}: the files it uses add up to more than "
                                    f"{MAX_SNAPSHOT_BYTES:,} bytes; a flows folder holds definitions, not data")
            files[relative.as_posix()] = content
    return TakenSnapshot(flow_file=path.name, files=files, origin=(origin or path), flow=flow)


def referenced_files(root: Path, text: str) -> list[Path]:
    """Files under `root` that the flow names by a relative path: any string value (or
    word in a comment-free line) that is the path of an existing file there. What its
    `tests:` name is test data, read where the flow is deployed from, not frozen."""
    found = []
    for value in candidate_values(text):
        if not value or "{" in value or value.startswith(("/", "~")):
            continue
        candidate = (root / value).resolve()
        if candidate.is_relative_to(root) and candidate.is_file() and keep(candidate.name):
            found.append(candidate)
    return found


def candidate_values(text: str) -> list[str]:
    try:
        document = to_plain(load_text(text, "flow"))
    except (FlowyardError, YamlSyntaxError):  # a broken file: its plain words, to fail in the gate
        return [m.group(1) or m.group(2) for m in _QUOTED_OR_PLAIN.finditer(text)]
    values: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            values.append(node.strip())
        elif isinstance(node, dict):
            for key, value in node.items():
                if node is not document or key != "tests":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    return values


def keep(name: str) -> bool:
    return not name.startswith(".") and name not in SKIPPED_NAMES and Path(name).suffix.lower() not in SKIPPED_SUFFIXES


def read(file: Path) -> bytes:
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise SnapshotError(f"{file}: larger than {MAX_FILE_BYTES:,} bytes; a flows folder holds definitions, not data")
        return file.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{file}: cannot be read: {exc.strerror or exc}") from exc


def materialize(snapshot: Snapshot | TakenSnapshot, folder: Path) -> Path:
    """Write the snapshot's files into `folder` (created; an existing complete folder
    is reused, since snapshots never change) and return the flow file's path there."""
    if (folder / SNAPSHOT_MARKER).exists():
        return folder / snapshot.flow_file
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, content in snapshot.files.items():
            target = (building / name).resolve()
            if not target.is_relative_to(building.resolve()):
                raise SnapshotError(f"a snapshot names a file outside itself: {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        (building / SNAPSHOT_MARKER).write_text("a deployment snapshot: do not edit\n", encoding="utf-8")
        try:
            os.replace(building, folder)
        except OSError:  # another process materialized it first
            if not (folder / SNAPSHOT_MARKER).exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder / snapshot.flow_file
