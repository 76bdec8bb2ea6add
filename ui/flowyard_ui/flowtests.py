"""A flow's test status: its `tests:` run on demand (an analyst's "Run tests"), as the
deploy gate runs them (the snapshot a deploy would take, against a scratch store), case
by case with the diff of a failing one. The last result of each flow is kept in memory
while it still holds: for the same snapshot version (the flow file and everything it
uses) and the same test inputs and expected files."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowyard.operations.deployments import CaseOutcome, run_flow_tests

from .drafts import taken
from .flowfiles import FlowFile
from .state import UiState


@dataclass
class TestStatus:
    version: str
    ran_at: float
    ran_by: str
    cases: list[CaseOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # does not load, or could not run
    files: dict[str, str | None] = field(default_factory=dict)

    @property
    def failed(self) -> list[CaseOutcome]:
        return [c for c in self.cases if not c.passed]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failed

    @property
    def text(self) -> str:
        if self.problems:
            return "cannot run"
        if not self.cases:
            return "no tests"
        if self.failed:
            return f"{len(self.failed)} of {len(self.cases)} failed"
        return f"{len(self.cases)} passed"

    @property
    def state(self) -> str:
        return "failed" if self.problems or self.failed else "ok" if self.cases else "none"


_results: dict[tuple[str, str], TestStatus] = {}
_lock = threading.Lock()


def _mark(path: Path) -> str | None:
    """A test file's content hash (None: it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _key(ui: UiState, info: FlowFile) -> tuple[str, str]:
    return str(ui.flows_dir.resolve()), info.name


def last(ui: UiState, info: FlowFile, version: str | None) -> TestStatus | None:
    """The last result of the flow's tests if it still holds for `version` (the snapshot
    version a deploy would take now) and the test files have not changed since."""
    with _lock:
        found = _results.get(_key(ui, info))
    if found is None or version is None or found.version != version:
        return None
    if any(_mark(Path(p)) != mark for p, mark in found.files.items()):
        return None
    return found


def run(ui: UiState, info: FlowFile, who: str) -> TestStatus:
    """Run the flow's tests now, as the deploy gate would, and keep the result."""
    snapshot = taken(info.path, info.flow)  # one flow of a several-flow instance: its own
    folder = f"{ui.flows_dir.resolve()}/"
    if isinstance(snapshot, str):
        status = TestStatus("", time.time(), who, problems=[snapshot.replace(folder, "")])
    else:
        result = run_flow_tests(snapshot, snapshot.origin.parent)
        for case in result.cases:
            case.report = case.report.replace(folder, "")
        files = {str(p): _mark(p) for c in result.cases for p in c.files}
        status = TestStatus(snapshot.version, time.time(), who, result.cases,
                            [p.replace(folder, "") for p in result.problems], files)
    with _lock:
        if len(_results) > 2000:
            _results.clear()
        _results[_key(ui, info)] = status
    return status
