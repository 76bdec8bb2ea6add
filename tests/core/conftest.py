from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowyard.engine import Pipeline, RunResult
from flowyard.loader import load_flow
from flowyard.message import Message

FLOW = """apiVersion: flowyard/v1
kind: Flow
metadata:
  name: t
source:
  file: {{path: in}}
steps:
{steps}
targets:
  - file: {{path: out}}
"""


@pytest.fixture
def run_steps(tmp_path: Path) -> Callable[..., RunResult]:
    """Build a flow from step lines, run it on one payload, return the result."""

    def run(steps: str, payload: Any, content_type: str = "application/json", **files: str) -> RunResult:
        for rel, content in files.items():
            rel = rel.replace("__", "/").replace("_csv", ".csv").replace("_yaml", ".yaml")
            target = tmp_path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        path = tmp_path / "flow.yaml"
        path.write_text(FLOW.format(steps=steps), encoding="utf-8")
        flow = load_flow(path)
        return Pipeline(flow).run(Message(payload=payload, content_type=content_type))

    return run
