"""Drafts and what runs: the files in the flows folder next to what is deployed and what
the runtime workers report they run.

A draft is a flow or instance file whose snapshot (the file and every file it uses, as
`flowyard.operations.snapshots.take` freezes it) differs from the deployed one, or that
was never deployed; or a shared file (a table, a template, a partner...) that differs
from the copy the deployed flows hold. The changes page lists them with their diffs and
gate results; the flows list and flow page show the state of each flow.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowyard import semdiff
from flowyard.definitions.kinds import find_kind
from flowyard.errors import DefinitionError, FlowyardError
from flowyard.loader import content_hash
from flowyard.operations import deployments
from flowyard.operations.snapshots import SHARED_FOLDERS, TakenSnapshot, materialize, take
from flowyard.secrets import redactor
from flowyard.store.api import FlowInfo, FlowRunInfo, Snapshot, WorkerInfo
from flowyard.yamlio import YamlSyntaxError

from . import audit
from .flowfiles import FlowFile, flow_paths, instance_flows, read_flow, unified_diff
from .state import UiState

# a worker beats every lease/3 seconds (10 s by default); three missed beats is a warning
STALE_AFTER = 30.0


# -- the draft version of a flow (cached: the flows list polls every few seconds) ---------

_taken: dict[tuple[Path, str | None], tuple[tuple[Any, ...], float, TakenSnapshot | str]] = {}
_lock = threading.Lock()
CACHE_SECONDS = 30.0


def _fingerprint(path: Path) -> tuple[Any, ...]:
    """What a flow's snapshot may change with: its own file, the top of the folder and
    the shared folders (sizes and times only)."""
    root = path.parent
    marks: list[Any] = []
    for entry in sorted(root.iterdir()):
        if entry.is_file():
            st = entry.stat()
            marks.append((entry.name, st.st_mtime_ns, st.st_size))
    for name in SHARED_FOLDERS:
        folder = root / name
        if folder.is_dir():
            for file in sorted(folder.rglob("*")):
                st = file.stat()
                marks.append((str(file), st.st_mtime_ns, st.st_size))
    return tuple(marks)


def taken(path: Path, flow: str | None = None) -> TakenSnapshot | str:
    """The flow's snapshot as a deploy now would take it, or why it cannot be taken;
    `flow`: of an instance whose template gives several flows, that one's."""
    path = path.resolve()
    mark = _fingerprint(path)
    with _lock:
        found = _taken.get((path, flow))
    if found is not None and found[0] == mark and time.monotonic() - found[1] < CACHE_SECONDS:
        return found[2]
    try:
        result: TakenSnapshot | str = take(path, flow=flow)
    except FlowyardError as exc:
        result = str(exc)
    except YamlSyntaxError as exc:
        result = str(exc.issue)
    with _lock:
        if len(_taken) > 2000:
            _taken.clear()
        _taken[(path, flow)] = (mark, time.monotonic(), result)
    return result


def draft_version(path: Path) -> str | None:
    found = taken(path)
    return found.version if isinstance(found, TakenSnapshot) else None


# -- what runs ------------------------------------------------------------------------


@dataclass
class RunView:
    """One worker's report on one flow."""

    worker: str
    version: str
    error: str
    at: float
    alive: bool  # the worker runs and beat recently
    heartbeat_at: float | None


@dataclass
class FlowState:
    """A flow's state as the flows list and flow page show it."""

    deployed: FlowInfo | None
    draft_version: str | None
    draft_error: str = ""
    runs: list[RunView] = field(default_factory=list)
    sent_back: Any = None  # the AuditEntry of the last send-back, until the next save

    @property
    def differs(self) -> bool:
        """The draft differs from the deployed version (or was never deployed)."""
        if self.deployed is None or not self.deployed.version:
            return True
        return self.draft_version != self.deployed.version

    @property
    def running_versions(self) -> list[str]:
        return sorted({r.version for r in self.runs if not r.error and r.alive})

    @property
    def load_errors(self) -> list[RunView]:
        return [r for r in self.runs if r.error]

    @property
    def behind(self) -> bool:
        """A live worker runs another version than the deployed one (or none)."""
        if self.deployed is None or not self.deployed.enabled:
            return False
        return any(r.alive and (r.error or r.version != self.deployed.version) for r in self.runs)


def run_views(runs: list[FlowRunInfo], workers: list[WorkerInfo], now: float | None = None) -> list[RunView]:
    now = now or time.time()
    by_id = {w.id: w for w in workers}
    views = []
    for r in runs:
        w = by_id.get(r.worker)
        alive = w is not None and w.stopped_at is None and now - w.heartbeat_at <= STALE_AFTER
        views.append(RunView(r.worker, r.version, redactor.redact(r.error), r.at, alive,
                             w.heartbeat_at if w is not None else None))
    return views


def flow_states(ui: UiState, files: list[FlowFile]) -> dict[str, FlowState]:
    store = ui.store
    deployed = {f.flow: f for f in store.flows()}
    workers = store.workers()
    runs: dict[str, list[FlowRunInfo]] = {}
    for r in store.flow_runs():
        runs.setdefault(r.flow, []).append(r)
    states = {}
    for info in files:
        found = taken(info.path, info.flow)
        states[info.name] = FlowState(
            deployed=deployed.get(info.name),
            draft_version=found.version if isinstance(found, TakenSnapshot) else None,
            draft_error="" if isinstance(found, TakenSnapshot) else found,
            runs=run_views(runs.get(info.name, []), workers),
        )
    return states


def flow_state(ui: UiState, info: FlowFile) -> FlowState:
    state = flow_states(ui, [info])[info.name]
    state.sent_back = sent_back(ui, info)
    return state


def stale_workers(workers: list[WorkerInfo], now: float | None = None) -> list[WorkerInfo]:
    """Running workers (not stopped) that have not reported for STALE_AFTER seconds."""
    now = now or time.time()
    return [w for w in workers if w.stopped_at is None and now - w.heartbeat_at > STALE_AFTER]


def sent_back(ui: UiState, info: FlowFile) -> Any:
    """The last send-back of this flow's draft, unless the flow was saved since."""
    entry = audit.latest(ui.engine, ["sent-back", "flow-saved", "deploy"], [info.rel, info.name])
    return entry if entry is not None and entry.action == "sent-back" else None


# -- the changes page -----------------------------------------------------------------


@dataclass
class Draft:
    key: str  # the file's path under the flows folder: what the forms name
    kind: str  # flow | shared | broken
    title: str
    path: Path
    version: str  # the draft's version: the flow's snapshot, a shared file's content hash
    deployed_version: str = ""
    enabled: bool = False
    flows: list[str] = field(default_factory=list)  # shared: the deployed flows that hold it
    diff: str = ""
    changes: list[str] = field(default_factory=list)  # in words (flowyard diff)
    changes_error: str = ""
    also: list[str] = field(default_factory=list)  # other files a flow deploy takes along
    error: str = ""  # broken: why it cannot be read or taken
    refused: str = ""
    refused_at: float | None = None
    sent_back: Any = None
    saved_by: str = ""
    flow: str | None = None  # one flow of an instance whose template gives several

    @property
    def new(self) -> bool:
        return not self.deployed_version


def _text(content: bytes | None) -> str:
    return "" if content is None else content.decode("utf-8", "replace")


def semantic(path: Path, new_text: str, old: Snapshot | None) -> tuple[list[str], str]:
    """`flowyard diff` of the deployed version and the draft, in words."""
    try:
        new = semdiff.flow_document(path, new_text)
        if old is None:
            old_doc: dict[str, Any] = {}
        else:
            with tempfile.TemporaryDirectory(prefix="flowyard-semdiff-") as scratch:
                old_path = materialize(old, Path(scratch) / "deployed")
                old_doc = semdiff.flow_document(old_path, old.text)
        return [redactor.redact(str(c)) for c in semdiff.compare(old_doc, new)], ""
    except DefinitionError as exc:
        return [], "; ".join(str(i.message) for i in exc.issues[:3])
    except FlowyardError as exc:
        return [], str(exc)


def list_drafts(ui: UiState) -> list[Draft]:
    """Every draft awaiting deployment, flows first, then shared files, then files that
    cannot be read."""
    store = ui.store
    flows_dir = ui.flows_dir.resolve()
    states = {f.flow: f for f in store.flows()}
    flow_drafts: list[Draft] = []
    broken: list[Draft] = []
    shared: dict[str, Draft] = {}
    for path in flow_paths(flows_dir):
        rel = path.relative_to(flows_dir).as_posix()
        try:
            info = read_flow(path, flows_dir, check=False)
        except (OSError, UnicodeDecodeError) as exc:
            broken.append(Draft(rel, "broken", rel, path, "", error=f"cannot be read: {exc}"))
            continue
        if info.kind == "?" and info.issues:
            issue = info.issues[0]
            broken.append(Draft(rel, "broken", rel, path, info.version,
                                error=f"line {issue.position.line or '?'}: {issue.message}"))
            continue
        found_kind = find_kind(info.kind)
        if found_kind is None or not found_kind.runs:
            continue
        for one in instance_flows(info) if info.kind == "FlowInstance" else [info]:
            _flow_draft(ui, one, rel, states, flow_drafts, shared, broken)
    for draft in [*flow_drafts, *shared.values(), *broken]:
        entry = audit.latest(ui.engine, ["flow-saved", "table-saved", "template-saved"], [draft.title, Path(draft.key).name, draft.key])
        draft.saved_by = entry.username if entry is not None else ""
        if draft.kind == "shared":
            back = audit.latest(ui.engine, ["sent-back", "table-saved", "template-saved", "deploy"], [draft.key, Path(draft.key).name])
            draft.sent_back = back if back is not None and back.action == "sent-back" else None
    return [*flow_drafts, *sorted(shared.values(), key=lambda d: d.key), *broken]


def _flow_draft(ui: UiState, info: FlowFile, rel: str, states: dict[str, FlowInfo], flow_drafts: list[Draft],
                shared: dict[str, Draft], broken: list[Draft]) -> None:
    """The draft of one flow (a flow file, or one flow of an instance), if it is one."""
    store = ui.store
    flows_dir = ui.flows_dir.resolve()
    path = info.path
    found = taken(path, info.flow)
    state = states.get(info.name)
    if isinstance(found, str):
        broken.append(Draft(rel, "broken", info.name, path, info.version, error=found))
        return
    if state is not None and state.version == found.version:
        return
    old = store.snapshot(info.name, state.version) if state is not None and state.version else None
    old_files = old.files if old is not None else {}
    new_files = found.files
    if old is not None and state is not None and state.enabled:
        for name, content in new_files.items():
            if name == found.flow_file or name not in old_files or old_files[name] == content:
                continue
            draft = shared.get(name)
            if draft is None:
                draft = shared[name] = Draft(
                    name, "shared", name, flows_dir / name, content_hash(_text(content)),
                    diff=unified_diff(_text(old_files[name]), _text(content), name),
                )
            draft.flows.append(info.name)
    flow_changed = old is None or old.text != found.text or old.flow_file != found.flow_file
    added = sorted(n for n in new_files if n not in old_files and n != found.flow_file)
    if not flow_changed and not added:
        return
    draft = Draft(rel, "flow", info.name, path, found.version, flow=info.flow,
                  deployed_version=state.version if state is not None else "",
                  enabled=bool(state and state.enabled))
    draft.diff = unified_diff(old.text if old is not None else "", found.text, rel)
    draft.changes, draft.changes_error = semantic(path, found.text, old)
    draft.also = [n for n in new_files if n != found.flow_file and old_files.get(n) != new_files[n]]
    if state is not None:
        draft.refused, draft.refused_at = state.refused, state.refused_at
    draft.sent_back = sent_back(ui, info)
    flow_drafts.append(draft)


def find_draft(ui: UiState, key: str, version: str = "") -> Draft | None:
    """The draft of a file; of an instance whose template gives several flows (one draft
    per flow, one key), the one of that version when given."""
    found = [d for d in list_drafts(ui) if d.key == key]
    return next((d for d in found if d.version == version), found[0] if found else None)


# -- gate results (the tests), cached by version --------------------------------------


@dataclass
class GateView:
    ok: bool
    passed: int
    problems: list[str]
    flows: list[str] = field(default_factory=list)  # shared: the flows that were checked


_gates: dict[tuple[str, str], GateView] = {}


def gate(ui: UiState, draft: Draft) -> GateView:
    """What the deploy gate says of a draft (its tests; for a shared file, the tests of
    every deployed flow that holds it), without deploying anything."""
    key = (draft.key, draft.version)
    if key in _gates:
        return _gates[key]
    folder = f"{ui.flows_dir.resolve()}/"
    if draft.kind == "flow":
        found = taken(draft.path, draft.flow)
        if isinstance(found, str):
            view = GateView(False, 0, [found])
        else:
            result = deployments.check(found, found.origin.parent)
            view = GateView(not result.problems and result.flow is not None, result.tests_passed,
                            [p.replace(folder, "") for p in result.problems])
    elif draft.kind == "shared":
        staged, refused = deployments.stage_shared(ui.store, [draft.path.resolve()])
        problems = [f"{flow}: {p.replace(folder, '')}" for flow, ps in refused.items() for p in ps]
        view = GateView(not refused and bool(staged), 0, problems, sorted([f.name for f, _ in staged] + list(refused)))
    else:
        view = GateView(False, 0, [draft.error])
    if len(_gates) > 500:
        _gates.clear()
    _gates[key] = view
    return view


def broken_files(flows_dir: Path) -> list[tuple[str, str]]:
    """Files at the top of the flows folder that cannot be read as a definition, and why
    (every other flow stays deployable)."""
    found = []
    for path in flow_paths(flows_dir):
        rel = path.relative_to(flows_dir).as_posix()
        try:
            info = read_flow(path, flows_dir, check=False)
        except (OSError, UnicodeDecodeError) as exc:
            found.append((rel, f"cannot be read: {exc}"))
            continue
        if info.kind == "?" and info.issues:
            issue = info.issues[0]
            found.append((rel, f"line {issue.position.line or '?'}: {issue.message}"))
    return found
