"""A flow's state as the flows list shows it: the file next to what the runtime runs.

Combines the file (version, validity, labels, the snapshot a deploy would take) with the
store (deployed version, last refusal, what each worker runs, last message, backlog, open
dead letters) and git (committed version).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import drafts, flowtests, gitops
from .flowfiles import FlowFile, list_flows
from .state import UiState


@dataclass
class FlowRow:
    file: FlowFile
    deployed_version: str | None = None
    enabled: bool = False
    committed_version: str | None = None
    last_message_at: float | None = None
    backlog: int = 0
    dead_letters: int = 0
    failed_last: bool = False
    state: drafts.FlowState | None = None
    tests: flowtests.TestStatus | None = None  # the last run of its tests, if it still holds

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def draft(self) -> bool:
        """The draft (the file and what it uses) differs from the deployed version."""
        return self.deployed_version is not None and self.state is not None and self.state.differs

    @property
    def health(self) -> str:
        if not self.file.valid:
            return "error"
        if self.enabled and self.state is not None and self.state.load_errors:
            return "failed-load"
        if self.dead_letters:
            return "failed"
        if not self.enabled:
            return "undeployed"
        return "healthy"

    @property
    def health_text(self) -> str:
        return {
            "error": "file has errors",
            "failed-load": "cannot load on a worker",
            "failed": f"{self.dead_letters} dead letter(s)",
            "undeployed": "not deployed",
            "healthy": "running",
        }[self.health]


def flow_rows(state: UiState, *, plant: str = "", partner: str = "", domain: str = "", text: str = "") -> list[FlowRow]:
    files = list_flows(state.flows_dir)
    deployed = {f.flow: f for f in state.store.flows()}
    states = drafts.flow_states(state, files)
    counts = {c.flow: c for c in state.store.dashboard(recent_failures=0).flows}
    repo = gitops.repo_root(state.flows_dir)
    rows = []
    for info in files:
        labels = info.labels
        if plant and labels.get("plant", "") != plant:
            continue
        if partner and labels.get("partner", "") != partner:
            continue
        if domain and labels.get("domain", "") != domain:
            continue
        if text and text.lower() not in (info.name + " " + info.description).lower():
            continue
        row = FlowRow(file=info, state=states.get(info.name))
        if row.state is not None:
            row.tests = flowtests.last(state, info, row.state.draft_version)
        dep = deployed.get(info.name)
        if dep is not None and dep.version:
            row.deployed_version, row.enabled = dep.version, dep.enabled
        count = counts.get(info.name)
        if count is not None:
            row.last_message_at = count.last_message_at
            row.backlog = sum(count.states.get(s, 0) for s in ("received", "processing", "delivering"))
            row.dead_letters = count.dead_letters
        if repo is not None:
            row.committed_version = gitops.committed_version(repo, info.path)
        rows.append(row)
    return rows


def label_values(state: UiState) -> dict[str, list[str]]:
    values: dict[str, set[str]] = {"plant": set(), "partner": set(), "domain": set()}
    for info in list_flows(state.flows_dir):
        for key, found in values.items():
            if info.labels.get(key):
                found.add(info.labels[key])
    return {k: sorted(v) for k, v in values.items()}


def summary(rows: list[FlowRow]) -> dict[str, Any]:
    return {
        "flows": len(rows),
        "deployed": sum(1 for r in rows if r.enabled),
        "dead": sum(r.dead_letters for r in rows),
    }
