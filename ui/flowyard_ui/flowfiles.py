"""Flow files in the flows folder: listing, reading, checking, diffing and saving.

Saving goes through flowyard.yamlio's round trip (load, then dump with the same
settings), so comments, key order and quoting survive and the git diff shows only what
the analyst changed. Paths are confined to the flows folder.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flowyard.definitions.grammar import top_level_files
from flowyard.errors import FlowyardError, Issue
from flowyard.loader import check_flow, content_hash
from flowyard.onboarding.render import render_instance, render_instance_flows
from flowyard.onboarding.template import load_instance_file
from flowyard.yamlio import YamlSyntaxError, dump_text, load_text, to_plain

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class FlowFileError(Exception):
    """A flow file that cannot be read, found or written, said plainly."""


@dataclass
class FlowFile:
    name: str
    path: Path
    rel: str
    kind: str
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    version: str = ""
    valid: bool = True
    issues: list[Issue] = field(default_factory=list)
    text: str = ""
    # a FlowInstance: the flow it renders to (labels, description and diagram come from it)
    instance: str = ""  # the instance's name
    template: str = ""  # the template's name
    template_version: str = ""
    flow: str | None = None  # of an instance whose template gives several flows: this one
    siblings: list[str] = field(default_factory=list)  # all the flows of that instance
    document: Any = None  # the rendered flow document (an instance), for the diagram
    render_error: str = ""

    @property
    def is_instance(self) -> bool:
        return self.kind == "FlowInstance"


_cache: dict[Path, tuple[int, int, FlowFile]] = {}


def flow_paths(flows_dir: Path) -> list[Path]:
    """The flow files: YAML files at the top of the folder, as the runtime deploys them."""
    return top_level_files(flows_dir)


def read_flow(path: Path, flows_dir: Path, *, check: bool = True) -> FlowFile:
    """Summary of one file (cached by size and mtime): name, labels, version, issues."""
    stat = path.stat()
    cached = _cache.get(path)
    if cached and cached[:2] == (stat.st_mtime_ns, stat.st_size) and (cached[2].issues or not check or cached[2].valid):
        return cached[2]
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(flows_dir).as_posix()
    info = FlowFile(name=path.stem, path=path, rel=rel, kind="?", version=content_hash(text), text=text)
    try:
        document = load_text(text, rel)
    except YamlSyntaxError as exc:
        info.valid, info.issues = False, [exc.issue]
        return info
    if isinstance(document, dict):
        info.kind = str(document.get("kind") or "?")
        meta = to_plain(document.get("metadata") or {})
        if isinstance(meta, dict):
            info.name = str(meta.get("name") or path.stem)
            info.description = str(meta.get("description") or "")
            labels = meta.get("labels") or {}
            info.labels = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
    if check and info.kind == "Flow":
        info.issues = [i for i in check_flow(path, text) if i.severity == "error"]
        info.valid = not info.issues
    _cache[path] = (stat.st_mtime_ns, stat.st_size, info)
    return info


def list_flows(flows_dir: Path) -> list[FlowFile]:
    """Every Flow and FlowInstance file in the folder; an instance as the flow(s) it
    renders to (one entry per flow of a template giving several)."""
    flows = []
    for path in flow_paths(flows_dir):
        try:
            info = read_flow(path, flows_dir)
        except (OSError, UnicodeDecodeError):
            continue
        if info.kind == "Flow":
            flows.append(info)
        elif info.kind == "FlowInstance":
            flows += instance_flows(info)
    return flows


def instance_flows(info: FlowFile) -> list[FlowFile]:
    """The flows an instance file renders to, each as a FlowFile of that file carrying
    the rendered flow's name, description, labels and document, and its template."""
    try:
        instance = load_instance_file(info.path, info.text)
        rendered = [render_instance(instance)] if instance.flow is not None else render_instance_flows(instance)
    except (FlowyardError, OSError, UnicodeDecodeError) as exc:
        return [replace(info, render_error=str(exc).splitlines()[0] if str(exc) else "does not render")]
    names = [r.name for r in rendered]
    several = len(rendered) > 1
    found = []
    for one in rendered:
        meta = to_plain(one.document.get("metadata")) if one.document is not None else {}
        meta = meta if isinstance(meta, dict) else {}
        labels = meta.get("labels") or {}
        found.append(replace(
            info,
            name=one.name if several else info.name,
            description=str(meta.get("description") or info.description),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else dict(info.labels),
            instance=instance.name,
            template=one.template.name,
            template_version=one.template.version or "",
            flow=one.name if several else None,
            siblings=names if several else [],
            document=one.document,
            render_error="" if one.ok else "; ".join(i.message for i in one.issues[:2]),
        ))
    return found


def find_flow(flows_dir: Path, name: str) -> FlowFile:
    if not NAME.match(name):
        raise FlowFileError(f"{name!r} is not a flow name (lower-case letters, digits and dashes)")
    found = list_flows(flows_dir)
    for info in found:
        if info.name == name:
            return info
    for info in found:  # an instance whose template gives several flows: its first
        if info.instance == name:
            return info
    raise FlowFileError(f"there is no flow named {name!r} in {flows_dir}")


def new_flow_path(flows_dir: Path, name: str) -> Path:
    if not NAME.match(name):
        raise FlowFileError("a flow name is lower-case letters, digits and dashes, starting with a letter or digit")
    if any(f.name == name for f in list_flows(flows_dir)):
        raise FlowFileError(f"a flow named {name!r} already exists")
    path = flows_dir / f"{name}.yaml"
    if path.exists():
        raise FlowFileError(f"the file {path.name} already exists")
    return path


def skeleton(name: str, plant: str = "", partner: str = "", domain: str = "") -> str:
    labels = ", ".join(f"{k}: {v}" for k, v in (("plant", plant), ("partner", partner), ("domain", domain)) if v)
    return f"""apiVersion: flowyard/v1
kind: Flow
metadata:
  name: {name}
  description: What this flow does, in one line
  labels: {{{labels}}}
source:
  file: {{path: inbox/{name}, pattern: "*.json"}}
steps:
  - jmespath: "@"
targets:
  - file: {{path: outbox/{name}}}
"""


def normalise(text: str, file: str) -> str:
    """The text as ruamel's round trip writes it (comments and order kept)."""
    text = text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    document = load_text(text, file)
    return dump_text(document)


def unified_diff(old: str, new: str, rel: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{rel}",
            tofile=f"b/{rel}",
        )
    )


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _cache.pop(path, None)


def inside(root: Path, rel: str) -> Path:
    """`root/rel`, refusing anything that leaves root."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise FlowFileError(f"{rel!r} is outside {root}")
    return path


def plain(document: Any) -> Any:
    return to_plain(document)
