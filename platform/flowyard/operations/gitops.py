"""Deploying what a git commit holds: the flows folder as it is in that commit, each
flow whose snapshot differs from its deployed version, through the same gate as every
other deploy (recorded with the commit)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..definitions.kinds import flow_files, runs_as_flow
from ..errors import FlowyardError
from ..store.api import DeploymentInfo, Store
from .deployments import DeployRefused, check, record
from .snapshots import TakenSnapshot, take_all


class GitError(FlowyardError):
    """git could not say what a ref holds."""


@dataclass
class CommitDeploy:
    commit: str
    deployed: list[DeploymentInfo] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # flow (or file) -> why


def git(repo: Path, *args: str) -> bytes:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=120)
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def resolve(repo: Path, ref: str) -> str:
    """The commit a ref names now."""
    return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()


def deploy_commit(store: Store, flows_dir: Path, ref: str, *, who: str = "gitops") -> CommitDeploy:
    """Deploy every flow of `flows_dir` as the commit `ref` names holds it. Snapshots
    are read from the commit, not the working tree; relative folders a connector uses
    still start at `flows_dir`, where the runtime runs."""
    flows_dir = flows_dir.resolve()
    states = {s.flow: s.version for s in store.flows() if s.enabled}
    with exported_at(flows_dir, ref) as (commit, exported):
        outcome = CommitDeploy(commit)
        for path, taken in _taken(exported, flows_dir, outcome):
            try:
                result = check(taken, path.parent)
            except FlowyardError as exc:
                outcome.refused[path.name] = str(exc)
                continue
            name = result.flow.name if result.flow is not None else (taken.flow or path.stem)
            if result.problems or result.flow is None:
                reasons = "\n".join(result.problems).replace(str(exported), str(flows_dir))
                store.refuse(name, f"commit {commit[:12]}: {reasons}")
                outcome.refused[name] = reasons
                continue
            if states.get(name) == taken.version:
                outcome.unchanged.append(name)
                continue
            outcome.deployed.append(record(store, result.flow, taken, who=who,
                                           note=f"{ref} at {commit[:12]}", git_commit=commit))
    return outcome


def _taken(exported: Path, flows_dir: Path, outcome: CommitDeploy) -> Iterator[tuple[Path, TakenSnapshot]]:
    """Each flow file's snapshots (several for an instance whose template gives several)."""
    for path in flow_files(exported):
        try:
            for taken in take_all(path, origin=flows_dir / path.name):
                yield path, taken
        except FlowyardError as exc:
            outcome.refused[path.name] = str(exc)


@contextlib.contextmanager
def exported_at(flows_dir: Path, ref: str) -> Iterator[tuple[str, Path]]:
    """The flows folder as the commit `ref` names holds it, in a scratch folder (removed
    afterwards): (the commit id, the folder)."""
    flows_dir = flows_dir.resolve()
    top = Path(git(flows_dir, "rev-parse", "--show-toplevel").decode().strip())
    commit = resolve(top, ref)
    inside = flows_dir.relative_to(top).as_posix()
    archive = git(top, "archive", "--format=tar", commit, "--", inside if inside != "." else ".")
    with tempfile.TemporaryDirectory(prefix="flowyard-commit-") as scratch:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(scratch, filter="data")
        yield commit, Path(scratch) / inside


def deploy_file_at(store: Store, flows_dir: Path, ref: str, rel: str, *, who: str, note: str = "") -> DeploymentInfo:
    """Deploy one flow file (`rel`, under `flows_dir`) as the commit `ref` holds it,
    through the gate, recorded with the commit; raises DeployRefused (recorded on the
    flow) when the gate refuses it."""
    flows_dir = flows_dir.resolve()
    with exported_at(flows_dir, ref) as (commit, exported):
        path = (exported / rel).resolve()
        if not path.is_relative_to(exported.resolve()) or not path.is_file():
            raise GitError(f"{rel} does not exist at {ref} ({commit[:12]})")
        if not runs_as_flow(path):
            raise GitError(f"{rel} at {commit[:12]} is not a flow or instance file")
        passed = []
        for taken in take_all(path, origin=flows_dir / rel):  # several of an instance giving several flows
            result = check(taken, path.parent)
            name = result.flow.name if result.flow is not None else (taken.flow or path.stem)
            if result.problems or result.flow is None:
                reasons = [r.replace(str(exported), str(flows_dir)) for r in result.problems]
                store.refuse(name, f"commit {commit[:12]}: " + "\n".join(reasons))
                raise DeployRefused(name, reasons)
            passed.append((result.flow, taken))
        done = [record(store, flow, taken, who=who, note=note or f"{ref} at {commit[:12]}", git_commit=commit)
                for flow, taken in passed]
        return done[0]
