"""The changes a user makes through the UI, each with its audit entry: creating and saving
flow files (and committing them to a review branch), adding a playground test case,
deploying, undeploying and rolling back, creating and saving code tables, replaying and
discarding dead letters.

Route handlers parse the request, call one of these (off the event loop: they write
files, run git and use the database) and render the answer. A change that is refused
raises `Refused` with the sentence to show and the HTTP status.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from litestar.di import NamedDependency

from flowyard.errors import DefinitionError, FlowyardError, Issue, Position
from flowyard.loader import content_hash
from flowyard.operations import deployments
from flowyard.operations import gitops as commit_deploys
from flowyard.operations.replay import ReplayResult
from flowyard.operations.replay import replay as replay_messages
from flowyard.tables import TABLE_SUFFIXES, Table, load_table
from flowyard.yamlio import YamlSyntaxError

from . import audit, drafts, gitops, playground
from .auth import CurrentUser
from .flowfiles import (
    FlowFile,
    FlowFileError,
    inside,
    new_flow_path,
    normalise,
    skeleton,
    unified_diff,
    write_atomic,
)
from .state import UiState

TABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_TABLE = 5_000_000


class Refused(Exception):
    """The change was not made; the message says why, for the user."""

    def __init__(self, text: str, status_code: int = 400) -> None:
        super().__init__(text)
        self.text = text
        self.status_code = status_code


@dataclass
class Saved:
    """A saved flow: the message to show and the new version; `warning` when the file
    was saved but the commit asked for was not made."""

    message: str
    version: str
    warning: str | None = None


@dataclass
class TestCaseAdded:
    """The flow text with the new `tests:` case (not saved yet), the text on disk, and
    the sample and expected files written beside the flow."""

    new_text: str
    current: str
    files: str


@dataclass
class Replayed:
    done: list[ReplayResult] = field(default_factory=list)
    failed: list[ReplayResult] = field(default_factory=list)


REPLAY_PREVIEW = 10  # dead letters whose output difference a replay's preview computes


@dataclass
class ReplayPreview:
    ids: list[int]  # everything the confirmed replay replays
    version: str
    force: bool
    results: list[ReplayResult]  # the dry run of the first few
    more: int  # how many of `ids` the preview did not run


# -- code tables -----------------------------------------------------------------------


def table_files(ui: UiState) -> list[Path]:
    folder = ui.tables_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)


def table_path(ui: UiState, file_name: str) -> Path | None:
    """The table file's path; None when the name is not a table file's or leaves the folder."""
    if not TABLE_NAME.match(file_name) or Path(file_name).suffix.lower() not in TABLE_SUFFIXES:
        return None
    path = ui.tables_dir / file_name
    if not path.resolve().is_relative_to(ui.tables_dir.resolve()):
        return None
    return path


def check_table_text(file_name: str, text: str) -> tuple[Table | None, list[Issue]]:
    """Validate table text the way lookups load it, without touching the real file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file_name
        path.write_text(text, encoding="utf-8")
        try:
            table = load_table(path)
        except DefinitionError as exc:
            return None, [
                Issue(type(i.position)(file_name, i.position.line, i.position.column), i.message, i.severity)
                for i in exc.issues
            ]
        except (UnicodeDecodeError, ValueError) as exc:
            return None, [Issue(Position(file_name, 1, 1), str(exc))]
    return table, []


# -- the changes -------------------------------------------------------------------------


@dataclass
class Changes:
    """One user's changes (`me` is who the audit log names)."""

    ui: UiState
    me: CurrentUser

    def record(self, action: str, target: str = "", detail: str = "") -> None:
        audit.record(self.ui.engine, self.me.username, action, target, detail)

    # flows

    def create_flow(self, name: str, labels: dict[str, str]) -> None:
        try:
            path = new_flow_path(self.ui.flows_dir, name)
        except FlowFileError as exc:
            raise Refused(str(exc)) from exc
        write_atomic(path, skeleton(name, **labels))
        self.record("flow-created", name, path.name)

    def save_flow(self, flow: FlowFile, text: str, *, base: str, commit: bool, message: str) -> Saved:
        """Write the edited text (normalised) unless someone saved the file since `base`;
        with `commit`, commit it to the user's review branch."""
        try:
            new_text = normalise(text, flow.rel)
        except YamlSyntaxError as exc:
            raise Refused(f"Not saved: line {exc.issue.position.line}: {exc.issue.message}") from exc
        old_text = flow.path.read_text(encoding="utf-8")
        if base and base != content_hash(old_text):
            raise Refused(
                "Not saved: someone else saved this flow since you opened it. Copy your changes, reload, and apply them again.",
                409,
            )
        changes = unified_diff(old_text, new_text, flow.rel)
        if new_text != old_text:
            write_atomic(flow.path, new_text)
        version = content_hash(new_text)
        shown = f"Saved {flow.rel} (version {version})." if changes else "Nothing to save: no change."
        if commit and changes:
            repo = gitops.repo_root(self.ui.flows_dir)
            if repo is None:
                return Saved(shown, version, "Saved, but not committed: the flows folder is not a git repository.")
            branch = gitops.branch_name(self.ui.git_branch_prefix, self.me.username, flow.name)
            subject = message.strip() or f"Update flow {flow.name}"
            try:
                commit_id = gitops.commit_to_branch(
                    repo,
                    flow.path,
                    new_text,
                    branch=branch,
                    message=subject,
                    author=self.me.name,
                    email=f"{self.me.username}@flowyard.local",
                )
            except gitops.GitError as exc:
                self.record("flow-saved", flow.name, changes)
                return Saved(shown, version, f"Saved, but the commit failed: {exc}")
            shown += f" Committed {commit_id[:10]} on branch {branch} for review."
            self.record("flow-committed", flow.name, f"{commit_id} on {branch}: {subject}")
        if changes:
            self.record("flow-saved", flow.name, changes)
        return Saved(shown, version)

    def add_test_case(self, flow: FlowFile, text: str, sample: bytes, sample_name: str, case_name: str) -> TestCaseAdded:
        """Write the sample and its current outputs beside the flow; the flow text with
        the new case comes back to be saved (after the user saw the diff)."""
        if not case_name:
            raise Refused("Give the test case a name first.")
        if not sample:
            raise Refused("Paste or upload a sample first.")
        try:
            new_text, written = playground.add_test_case(flow.path, text, sample, sample_name, case_name)
        except ValueError as exc:
            raise Refused(str(exc)) from exc
        files = ", ".join(p.relative_to(self.ui.flows_dir).as_posix() for p in written)
        self.record("test-case-files", flow.name, f"{case_name}: {files}")
        current = flow.path.read_text(encoding="utf-8")
        return TestCaseAdded(normalise(new_text, flow.rel), current, files)

    # deployments

    def deploy(self, flow: FlowFile, note: str) -> str:
        """Deploy the file as it is on disk; returns the version deployed."""
        try:
            result = deployments.deploy(self.ui.store, flow.path, who=self.me.username, note=note, flow=flow.flow)
        except deployments.DeployRefused as exc:
            self.record("deploy-refused", flow.name, "\n".join(exc.reasons))
            folder = f"{flow.path.parent}/"
            reasons = "; ".join(r.replace(folder, "") for r in exc.reasons[:5])
            raise Refused(f"Not deployed, the running version stays: {reasons}") from exc
        except FlowyardError as exc:
            raise Refused(f"Not deployed: {exc}") from exc
        self.record("deploy", flow.name, f"version {result.version}: {note}")
        return result.version

    def _refused(self, exc: deployments.DeployRefused) -> Refused:
        folder = f"{self.ui.flows_dir.resolve()}/"
        reasons = "; ".join(r.replace(folder, "") for r in exc.reasons[:5])
        return Refused(f"Not deployed, the running version stays: {reasons}")

    def _draft(self, key: str, version: str) -> drafts.Draft:
        """The draft the deployer reviewed: refused when it changed since."""
        draft = drafts.find_draft(self.ui, key, version)
        if draft is None:
            raise Refused(f"{key} is not a draft awaiting deployment (deployed already, or gone).", 404)
        if draft.kind == "broken":
            raise Refused(f"{key} cannot be deployed: {draft.error}")
        if version and version != draft.version:
            raise Refused(f"{key} changed since you reviewed it (now version {draft.version}); reload and review it again.", 409)
        return draft

    def deploy_draft(self, key: str, version: str, note: str) -> list[str]:
        """Deploy a draft from the changes page: a flow as it is on disk, or a changed
        shared file into every deployed flow that holds it (all or none); returns what
        was deployed, as "flow version" lines."""
        draft = self._draft(key, version)
        try:
            if draft.kind == "flow":
                # every flow of the file (several for an instance whose template gives several)
                done = deployments.deploy_file(self.ui.store, draft.path, who=self.me.username, note=note)
            else:
                done = deployments.deploy_paths(self.ui.store, [draft.path.resolve()], who=self.me.username, note=note)
        except deployments.DeployRefused as exc:
            self.record("deploy-refused", draft.title if draft.kind == "flow" else key, "\n".join(exc.reasons))
            raise self._refused(exc) from exc
        except FlowyardError as exc:
            raise Refused(f"Not deployed: {exc}") from exc
        shown = [f"{d.flow} {d.version}" for d in done]
        self.record("deploy", draft.title if draft.kind == "flow" else key,
                    f"{', '.join(shown)} from the changes page: {note}")
        return shown

    def send_back(self, key: str, version: str, comment: str) -> drafts.Draft:
        """Return a draft to its author with a comment (kept in the audit log, shown on
        the flow page until the next save)."""
        if not comment.strip():
            raise Refused("Say what should change: the comment is what the author reads.")
        draft = self._draft(key, version)
        self.record("sent-back", key if draft.kind != "flow" else draft.path.relative_to(self.ui.flows_dir.resolve()).as_posix(),
                    f"version {draft.version}: {comment.strip()}")
        return draft

    def deploy_commit(self, key: str, ref: str, note: str) -> str:
        """Deploy a flow file as a git commit holds it; returns the version deployed."""
        ref = ref.strip()
        if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
            raise Refused("Name a commit (its id, or a branch).")
        if gitops.repo_root(self.ui.flows_dir) is None:
            raise Refused("The flows folder is not a git repository.")
        try:
            inside(self.ui.flows_dir, key)
            info = commit_deploys.deploy_file_at(self.ui.store, self.ui.flows_dir, ref, key, who=self.me.username, note=note)
        except deployments.DeployRefused as exc:
            self.record("deploy-refused", exc.flow, f"{key} at {ref}:\n" + "\n".join(exc.reasons))
            raise self._refused(exc) from exc
        except (FlowyardError, FlowFileError) as exc:
            raise Refused(f"Not deployed: {exc}") from exc
        self.record("deploy", info.flow, f"version {info.version} from commit {info.git_commit[:12]} ({ref}): {note}")
        return info.version

    def undeploy(self, flow: FlowFile, note: str) -> None:
        try:
            deployments.undeploy(self.ui.store, flow.name, who=self.me.username, note=note)
        except FlowyardError as exc:
            raise Refused(f"Not undeployed: {exc}") from exc
        self.record("undeploy", flow.name, note)

    def rollback(self, flow: FlowFile, version: str, note: str) -> None:
        """Run an earlier deployed version again, as it was deployed (the file, a draft,
        is not touched)."""
        try:
            deployments.rollback(self.ui.store, flow.name, version, who=self.me.username, note=note)
        except FlowyardError as exc:
            raise Refused(f"Not rolled back: {exc}") from exc
        self.record("rollback", flow.name, f"to version {version}: {note}")

    # code tables

    def create_table(self, name: str, kind: str) -> str:
        """A new table with one example row; returns its file name."""
        file_name = f"{name}.{kind}"
        if not TABLE_NAME.match(name) or "." in name:
            raise Refused("a table name is letters, digits, dashes and underscores")
        path = table_path(self.ui, file_name)
        if path is None:
            raise Refused(f"{file_name!r} is not a table file name (NAME.csv or NAME.yaml)")
        if path.exists():
            raise Refused(f"{file_name} already exists")
        starter = (
            "code,value\nEXAMPLE,example\n"
            if kind == "csv"
            else "description: what the codes mean\ncodes:\n  EXAMPLE: example\n"
        )
        write_atomic(path, starter)
        self.record("table-created", file_name)
        return file_name

    def save_table(self, path: Path, text: str, *, base: str) -> tuple[str, str]:
        """Save valid table text unless the file changed since `base`; returns the diff
        (empty: nothing to save) and the version saved."""
        file_name = path.name
        if len(text) > MAX_TABLE:
            raise Refused("The table is larger than 5 MB.", 413)
        if not text.endswith("\n"):
            text += "\n"
        _table, issues = check_table_text(file_name, text)
        if issues:
            raise Refused(
                f"Not saved: {len(issues)} problem(s), first: line {issues[0].position.line}: {issues[0].message}"
            )
        old = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
        if base and path.is_file() and base != content_hash(old):
            raise Refused("Not saved: the table changed since you opened it; reload and apply your change again.", 409)
        diff = unified_diff(old, text, f"tables/{file_name}")
        if diff:
            write_atomic(path, text)
            self.record("table-saved", file_name, diff)
        return diff, content_hash(text)

    # dead letters

    def replay(self, ids: list[int], version: str, *, group: tuple[str, str] = ("", ""), force: bool = False) -> Replayed:
        """Replay dead letters with the `current` or the `failed` version; without ids,
        every dead letter of a group (flow, kind of reason)."""
        ids = self.replay_ids(ids, version, group)
        flow = group[0]
        store = self.ui.store
        results = replay_messages(store, ids, version=version, who=self.me.username, force=force)
        outcome = Replayed(
            [r for r in results if r.error is None], [r for r in results if r.error is not None]
        )
        self.record(
            "replay",
            flow or ", ".join(sorted({str(r.source_id) for r in results}))[:300],
            f"{len(outcome.done)} replayed with the {version} version"
            + "".join(f"\n{r.source_id} -> {r.message_id} ({r.version})" for r in outcome.done)
            + "".join(f"\n{r.source_id}: {r.error}" for r in outcome.failed),
        )
        return outcome

    def replay_ids(self, ids: list[int], version: str, group: tuple[str, str] = ("", "")) -> list[int]:
        """The dead letters a replay means: the ids given or, without ids, every dead
        letter of a group (flow, kind of reason)."""
        if version not in ("current", "failed"):
            raise Refused("Choose the current version or the version it failed on.")
        flow, reason_kind = group
        if flow and not ids:
            groups = self.ui.store.dead_letter_groups(flow=flow, max_ids=100_000)
            ids = [i for g in groups if g.reason_kind == reason_kind for i in g.ids]
        if not ids:
            raise Refused("Nothing selected to replay.")
        return ids

    def replay_preview(self, ids: list[int], version: str, *, group: tuple[str, str] = ("", ""),
                       force: bool = False, show: int = REPLAY_PREVIEW) -> ReplayPreview:
        """What a replay would do, as `flowyard replay --dry-run` shows it: for the first
        `show` dead letters, the difference of output between the version each failed on
        and the version it would run on. Nothing is replayed and no target is touched."""
        ids = self.replay_ids(ids, version, group)
        results = replay_messages(self.ui.store, ids[:show], version=version, who=self.me.username,
                                  dry_run=True, force=force)
        return ReplayPreview(ids, version, force, results, max(0, len(ids) - show))

    def discard(self, ids: list[int]) -> int:
        """Mark dead letters as handled without replaying them; returns how many."""
        if not ids:
            raise Refused("Nothing selected.")
        count = self.ui.store.discard_dead_letters(ids, self.me.username)
        self.record(
            "discard",
            ", ".join(map(str, ids))[:300],
            f"{count} dead letter(s) marked handled without replay",
        )
        return count


def provide_changes(ui: NamedDependency[UiState], me: NamedDependency[CurrentUser]) -> Changes:
    return Changes(ui, me)
