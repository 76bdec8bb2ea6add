"""Deploying through one gate; stopping a flow; going back to an earlier version.

Files are drafts; the runtime runs deployments. A deployment is an immutable snapshot
(`snapshots.take`) recorded in the store once it passed the gate:

1. the snapshot loads and validates on its own (materialized in a scratch folder, so a
   file it needs but does not hold fails here, not in production);
2. the flow's `tests:` pass (an instance's own tests; for a changed table, template or
   other shared file, the tests of every deployed flow whose snapshot holds it), run
   against a scratch store so no X12 control number or interchange is spent.

A refused deploy changes nothing that runs; the refusal and its reason are recorded on
the flow for the UI. Who may deploy is checked by the caller that knows the user (the
UI's deployer role); the CLI and GitOps act with the store's own credentials.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..definitions import kind_of
from ..definitions.kinds import flow_files, runs_as_flow
from ..errors import DefinitionError, FlowyardError
from ..flow import Flow
from ..loader import load_flow
from ..store.api import DeploymentInfo, Snapshot, Store, StoreError
from ..store.scratch import ScratchServices, scratch_run
from ..testing import run_tests
from ..yamlio import YamlSyntaxError
from .snapshots import TakenSnapshot, materialize, snapshot_version, take_all


class DeployRefused(FlowyardError):
    """The gate refused a deploy; nothing that runs changed."""

    def __init__(self, flow: str, reasons: list[str]) -> None:
        self.flow = flow
        self.reasons = reasons
        super().__init__(f"deploy of {flow} refused:\n" + "\n".join(f"  {r}" for r in reasons))


@dataclass
class GateResult:
    flow: Flow | None
    problems: list[str] = field(default_factory=list)
    tests_passed: int = 0


@dataclass
class CaseOutcome:
    name: str
    passed: bool
    report: str = ""  # why it failed: the error, or a unified diff of expected and actual
    files: list[Path] = field(default_factory=list)  # its input and expected files


@dataclass
class TestRun:
    """A flow's `tests:` run as the gate runs them, case by case. `problems`: why the
    snapshot does not load or its tests could not run (then `cases` is empty)."""

    flow: Flow | None
    problems: list[str] = field(default_factory=list)
    cases: list[CaseOutcome] = field(default_factory=list)


def run_flow_tests(snapshot: TakenSnapshot | Snapshot, tests_from: Path) -> TestRun:
    """The snapshot loads on its own, then its tests run against a scratch store (no X12
    control number or interchange is spent). Test inputs and expected outputs are read
    from `tests_from` (the folder the flow was deployed from); messages name the files
    there, not the scratch copy."""
    with tempfile.TemporaryDirectory(prefix="flowyard-gate-") as scratch:
        folder = Path(scratch) / "snapshot"
        flow_path = materialize(snapshot, folder)

        def here(text: str) -> str:
            return text.replace(str(folder), str(tests_from))

        try:
            flow = load_flow(flow_path, snapshot.text)
        except DefinitionError as exc:
            return TestRun(None, [here(str(issue)) for issue in exc.issues])
        except YamlSyntaxError as exc:
            return TestRun(None, [here(str(exc.issue))])
        except FlowyardError as exc:
            return TestRun(None, [here(str(exc))])
        services = ScratchServices()
        for spec in flow.steps:
            spec.step.context.services = services
        try:
            with scratch_run():
                results = run_tests(flow, base=tests_from)
        except (OSError, FlowyardError) as exc:
            return TestRun(flow, [here(f"the tests could not run: {exc}")])
        cases = []
        for r in results:
            expected = [r.case.expect] if isinstance(r.case.expect, str) else list(r.case.expect or [])
            files = [tests_from / rel for rel in [r.case.input, *expected]]
            cases.append(CaseOutcome(r.case.name, r.passed, here(r.report), files))
        return TestRun(flow, [], cases)


def check(snapshot: TakenSnapshot | Snapshot, tests_from: Path) -> GateResult:
    """The gate: the snapshot loads on its own and its tests pass (`run_flow_tests`)."""
    run = run_flow_tests(snapshot, tests_from)
    if run.flow is None or run.problems:
        return GateResult(run.flow, run.problems)
    failed = [c for c in run.cases if not c.passed]
    problems = [f"test {c.name!r} failed: {c.report}".rstrip() for c in failed]
    return GateResult(run.flow, problems, len(run.cases) - len(failed))


def deploy(store: Store, path: Path | str, *, who: str = "", note: str = "", git_commit: str = "",
           flow: str | None = None) -> DeploymentInfo:
    """Deploy one flow or instance file through the gate; raises DeployRefused (and
    records the refusal on the flow) when it does not pass. Of an instance whose template
    gives several flows: `flow` (by name) alone, else all of them (see `deploy_file`),
    returning the first."""
    return deploy_file(store, Path(path), who=who, note=note, git_commit=git_commit, flow=flow)[0]


def deploy_file(store: Store, path: Path, *, who: str = "", note: str = "", git_commit: str = "",
                flow: str | None = None) -> list[DeploymentInfo]:
    """Deploy every flow a file stands for (one per flow of an instance whose template
    gives several: each is a deployment of its own, a snapshot of the instance selecting
    it), each through the gate; all or none."""
    taken = take_all(path)
    if flow is not None:
        taken = [t for t in taken if t.flow == flow] or [t for t in taken if t.flow is None]
        if not taken:
            raise FlowyardError(f"{path} gives no flow named {flow!r}")
    passed: list[tuple[Flow, TakenSnapshot]] = []
    refused: dict[str, list[str]] = {}
    for one in taken:
        result = check(one, one.origin.parent)
        name = result.flow.name if result.flow is not None else (one.flow or one.origin.stem)
        if result.problems or result.flow is None:
            refused[name] = result.problems
        else:
            passed.append((result.flow, one))
    if refused:
        for name, reasons in refused.items():
            store.refuse(name, "\n".join(reasons))
        if len(taken) == 1:
            name, reasons = next(iter(refused.items()))
            raise DeployRefused(name, reasons)
        raise DeployRefused(", ".join(sorted(refused)), [f"{name}: {r}" for name, rs in refused.items() for r in rs])
    return [record(store, loaded, one, who=who, note=note, git_commit=git_commit) for loaded, one in passed]


def record(store: Store, flow: Flow, taken: TakenSnapshot | Snapshot, *, who: str, note: str,
           git_commit: str = "", action: str = "deploy") -> DeploymentInfo:
    origin = str(taken.origin) if isinstance(taken, TakenSnapshot) else taken.path
    info = store.record_deployment(
        flow=flow.name, version=snapshot_version(taken.flow_file, taken.files), path=origin, text=taken.text,
        who=who, note=note, kind=kind_of(taken.text) or "Flow", labels=dict(flow.labels), dedupe=False,
        files=taken.files, flow_file=taken.flow_file, git_commit=git_commit, action=action,
    )
    assert info is not None  # dedupe=False always writes
    return info


def deploy_paths(store: Store, paths: list[Path], *, who: str = "", note: str = "",
                 git_commit: str = "") -> list[DeploymentInfo]:
    """Deploy flow files, folders of them, and changed shared files (a table, a template,
    a partner profile...): a shared file is deployed by redeploying every deployed flow
    whose snapshot holds it, with the new file, each through the gate; all or none."""
    flows: list[Path] = []
    shared: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = flow_files(path)
            if not found:
                raise FlowyardError(f"{path}: no flow files in this folder (a Flow or FlowInstance at its top)")
            flows += found
        elif runs_as_flow(path):
            flows.append(path)
        elif path.is_file():
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise FlowyardError(f"{path}: not UTF-8 text (byte {exc.start}); nothing deployed") from exc
            shared.append(path.resolve())
        else:
            raise FlowyardError(f"{path}: no such file or folder")
    done = [info for flow in flows for info in deploy_file(store, flow, who=who, note=note, git_commit=git_commit)]
    if shared:
        done += deploy_shared(store, shared, who=who, note=note, git_commit=git_commit)
    return done


def deploy_shared(store: Store, files: list[Path], *, who: str, note: str, git_commit: str) -> list[DeploymentInfo]:
    staged, refused = stage_shared(store, files)
    if refused:
        for flow, reasons in refused.items():
            store.refuse(flow, "\n".join(reasons))
        raise DeployRefused(", ".join(sorted(refused)), [f"{flow}: {r}" for flow, rs in refused.items() for r in rs])
    if not staged:
        names = ", ".join(str(f) for f in files)
        raise FlowyardError(f"no deployed flow uses {names} (or it is unchanged): nothing to deploy")
    return [record(store, flow, snap, who=who, note=note, git_commit=git_commit) for flow, snap in staged]


def stage_shared(store: Store, files: list[Path]) -> tuple[list[tuple[Flow, Snapshot]], dict[str, list[str]]]:
    """What deploying changed shared files would deploy, checked through the gate but
    recorded nowhere: the new snapshot of every deployed flow that holds one of them
    (with the files as they are now), and the reasons of the flows that would refuse."""
    staged: list[tuple[Flow, Snapshot]] = []
    refused: dict[str, list[str]] = {}
    for state in store.flows():
        if not state.enabled or not state.version:
            continue
        current = store.snapshot(state.flow, state.version)
        if current is None:
            continue
        root = Path(current.path).parent
        changed = dict(current.files)
        for file in files:
            if file.is_relative_to(root):
                name = file.relative_to(root).as_posix()
                if name in changed:
                    changed[name] = file.read_bytes()
        if changed == current.files:
            continue
        new = Snapshot(flow=current.flow, version=snapshot_version(current.flow_file, changed),
                       flow_file=current.flow_file, files=changed, path=current.path)
        result = check(new, root)
        if result.problems or result.flow is None:
            refused[current.flow] = result.problems
        else:
            staged.append((result.flow, new))
    return staged, refused


def deploy_new(store: Store, folder: Path, *, who: str) -> tuple[list[DeploymentInfo], dict[Path, str]]:
    """Deploy the flows of `folder` that were never deployed (what `flowyard serve
    --deploy-new` does at start); returns the deployments and the refusals by file."""
    known = {f.flow for f in store.flows() if f.version}
    done: list[DeploymentInfo] = []
    refused: dict[Path, str] = {}
    for path in flow_files(folder):
        try:
            all_taken = take_all(path)
        except FlowyardError as exc:
            refused[path] = str(exc)
            continue
        for taken in all_taken:  # one per flow of an instance whose template gives several
            try:
                result = check(taken, taken.origin.parent)
            except FlowyardError as exc:
                refused[path] = str(exc)
                continue
            if result.flow is not None and result.flow.name in known:
                continue
            if result.problems or result.flow is None:
                name = result.flow.name if result.flow is not None else (taken.flow or path.stem)
                store.refuse(name, "\n".join(result.problems))
                refused[path] = "\n".join(result.problems)
                continue
            done.append(record(store, result.flow, taken, who=who, note="deployed at start"))
    return done, refused


def undeploy(store: Store, flow: str, *, who: str = "", note: str = "") -> DeploymentInfo:
    """Stop running a flow (its files stay; a deploy starts it again)."""
    return store.undeploy(flow, who=who, note=note)


def rollback(store: Store, flow: str, version: str | None = None, *, who: str = "", note: str = "") -> DeploymentInfo:
    """Run an earlier deployed version again, byte for byte as it was deployed (the
    version before the current one when none is named). Files are not touched."""
    state = store.flow_state(flow)
    if version is None:
        earlier = [d for d in store.deployments(flow, limit=1000)
                   if d.action in ("deploy", "rollback") and state is not None and d.version != state.version]
        if not earlier:
            raise StoreError(f"flow {flow!r} has no earlier deployed version to go back to")
        version = earlier[0].version
    snapshot = store.snapshot(flow, version)
    if snapshot is None:
        raise StoreError(f"flow {flow!r} has no deployed snapshot of version {version!r}")
    info = store.record_deployment(
        flow=flow, version=version, path=snapshot.path, text=snapshot.text, who=who,
        note=note or f"rollback to {version}", action="rollback", kind=kind_of(snapshot.text) or "Flow",
        labels=state.labels if state is not None else {}, dedupe=False, files=snapshot.files,
        flow_file=snapshot.flow_file,
    )
    assert info is not None
    return info
