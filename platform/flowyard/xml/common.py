"""What the XML steps share: files named in a flow, and readable lxml error logs."""

from __future__ import annotations

from pathlib import Path

from ..step import FlowContext, OptionError
from .security import log_lines, refusals

__all__ = ["DATA_TYPE", "flow_file", "log_lines", "refusals"]

DATA_TYPE = "application/json"


def flow_file(context: FlowContext, relative: str, option: str) -> Path:
    """A file named in the flow, which must lie inside the flow's folder (the guard
    every file a flow reads goes through: `FlowContext.resolve_path`)."""
    path = context.resolve_path(relative, option)
    if not path.is_file():
        raise OptionError(f"{option}: file {relative!r} not found beside the flow", option)
    return path
