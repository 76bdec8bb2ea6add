"""What the XML steps share: files named in a flow, and readable lxml error logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..step import FlowContext, OptionError
from .security import FolderResolver

DATA_TYPE = "application/json"


def flow_file(context: FlowContext, relative: str, option: str) -> Path:
    """A file named in the flow, which must lie inside the flow's folder (the guard
    every file a flow reads goes through: `FlowContext.resolve_path`)."""
    path = context.resolve_path(relative, option)
    if not path.is_file():
        raise OptionError(f"{option}: file {relative!r} not found beside the flow", option)
    return path


def log_lines(log: Any, limit: int = 10) -> list[str]:
    lines = []
    for entry in list(log)[:limit]:
        where = f"{Path(entry.filename).name}:{entry.line}: " if entry.filename and entry.line else ""
        lines.append(f"{where}{entry.message}")
    return lines


def refusals(resolver: FolderResolver) -> str:
    if not resolver.refused:
        return ""
    return (
        "; refused to load "
        + ", ".join(repr(u) for u in resolver.refused)
        + " (only files inside the flow's folder may be loaded)"
    )
