"""The playground: run the flow being edited on a sample and show every step's output.

Runs the engine with a tracer, so what is shown is exactly what the runtime would
compute; nothing is delivered, and whatever a step stores (X12 control numbers,
interchanges received, outbound sets) goes to a scratch store of that run alone
(`flowyard.store.scratch` says why not `flowyard.store.engines.scratch_store()`). The flow text comes from the editor (not the file), so
a changed mapping shows its effect at once. A run can be turned into a `tests:` case:
the sample and the current outputs are written beside the flow and the case is added
to the YAML through the round trip.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from flowyard.budget import BudgetExceeded
from flowyard.engine import Pipeline, target_applies
from flowyard.errors import DefinitionError, FlowyardError, Issue
from flowyard.flow import Flow, StepSpec
from flowyard.message import Message, is_json_type
from flowyard.runner import input_message
from flowyard.secrets import redactor
from flowyard.store.scratch import ScratchServices, scratch_run
from flowyard.testing import as_text
from flowyard.yamlio import dump_text, load_text

from .budgets import within_budget
from .fastyaml import load_flow

SHOW_CAP = 20_000
EXTENSIONS = {
    "application/json": ".json",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "text/csv": ".csv",
    "application/edi-x12": ".edi",
    "text/plain": ".txt",
}


@dataclass
class Snapshot:
    status: str  # ok | skipped | dropped | failed
    text: str = ""
    content_type: str = ""
    duration: float = 0.0
    error: str = ""
    lines: list[tuple[str, str]] | None = None  # the JSON text line by line, each with its mark
    changes: list[tuple[str, str]] = field(default_factory=list)  # (added|changed|removed, path)
    more_changes: int = 0


@dataclass
class Lane:
    index: int
    name: str
    kind: str
    line: int | None
    entries: list[Snapshot] = field(default_factory=list)

    @property
    def status(self) -> str:
        states = {e.status for e in self.entries}
        for s in ("failed", "ok", "dropped", "skipped"):
            if s in states:
                return s
        return "not-reached"


@dataclass
class Output:
    text: str
    content_type: str
    targets: list[str]
    message: Message


@dataclass
class Preview:
    issues: list[Issue] = field(default_factory=list)
    input: Snapshot | None = None
    lanes: list[Lane] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    dropped: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.issues and not self.failures and not self.error


def _show(message: Message) -> Snapshot:
    return Snapshot("ok", redactor.redact(message.payload_text(SHOW_CAP)), message.content_type)


def sample_name(flow: Flow, given: str = "") -> str:
    """A file name for the sample, so the source guesses the content type as it would."""
    if given:
        return Path(given).name
    pattern = getattr(flow.source.options, "pattern", None)
    if isinstance(pattern, str) and "." in pattern:
        suffix = pattern.rsplit(".", 1)[1]
        if suffix and not any(c in suffix for c in "*?[]"):
            return f"sample.{suffix}"
    return "sample.json"


_compiled: OrderedDict[tuple[str, str], Flow] = OrderedDict()
_compiled_lock = threading.Lock()


def compiled(path: Path, text: str) -> Flow:
    """The loaded flow for this text, kept for the next few previews: while the analyst
    changes only the sample, the flow is not parsed and compiled again. (Steps keep no
    per-message state, so a compiled flow can be reused.) Its steps get the
    playground's services: any store they use is the run's scratch store."""
    key = (str(path), hashlib.sha256(text.encode()).hexdigest())
    with _compiled_lock:
        found = _compiled.get(key)
        if found is not None:
            _compiled.move_to_end(key)
            return found
    flow = load_flow(path, text, ScratchServices())
    with _compiled_lock:
        _compiled[key] = flow
        while len(_compiled) > 16:
            _compiled.popitem(last=False)
    return flow


def clear_cache() -> None:
    with _compiled_lock:
        _compiled.clear()


def run(path: Path, text: str, sample: bytes, name: str = "") -> Preview:
    preview = Preview()
    try:
        flow = compiled(path, text)
    except DefinitionError as exc:
        preview.issues = [i for i in exc.issues if i.severity == "error"]
        return preview
    except FlowyardError as exc:
        preview.error = redactor.redact(str(exc))
        return preview
    lanes = [Lane(s.index, s.name, s.kind, s.position.line) for s in flow.steps]
    by_name = {lane.name: lane for lane in lanes}
    try:
        message = input_message(flow, sample, sample_name(flow, name))
    except FlowyardError as exc:
        preview.error = redactor.redact(str(exc))
        return preview
    preview.input = _show(message)

    def tracer(spec: StepSpec, out: Any, elapsed: float) -> None:
        lane = by_name[spec.name]
        if elapsed < 0:
            lane.entries.append(Snapshot("skipped", "skipped: its `when:` was false"))
        elif out is None:
            lane.entries.append(Snapshot("dropped", "dropped: nothing goes on", duration=elapsed))
        elif isinstance(out, Message):
            snap = _show(out)
            snap.duration = elapsed
            lane.entries.append(snap)
        else:
            for part in out:
                if isinstance(part, Message):
                    snap = _show(part)
                    snap.duration = elapsed
                    lane.entries.append(snap)

    try:
        with scratch_run(), within_budget(f"playground of {flow.name}"):
            result = Pipeline(flow).run(message, tracer)
    except BudgetExceeded as exc:  # stopped outside a step (the engine reports those)
        preview.error = exc.reason(None)
        preview.lanes = lanes
        return preview
    for failure in result.failures:
        reason = redactor.redact(failure.error.describe())
        preview.failures.append(reason)
        index = failure.error.step_index
        if index is not None and index < len(lanes):
            lanes[index].entries.append(
                Snapshot("failed", redactor.redact(failure.message.payload_text(SHOW_CAP)), error=reason)
            )
    for out in result.outputs:
        targets = [t.name for t in flow.targets if target_applies(t, out)]
        preview.outputs.append(Output(redactor.redact(out.payload_text(SHOW_CAP)), out.content_type, targets, out))
    preview.dropped = result.dropped
    preview.lanes = lanes
    mark_changes(preview)
    return preview


# -- what each step changed -------------------------------------------------------------

MAX_MARKED = 200_000  # characters of JSON a lane marks line by line; longer ones are shown plain
MAX_CHANGES = 30  # changes listed per lane


def _data_of(snapshot: Snapshot | None) -> tuple[bool, Any]:
    if snapshot is None or snapshot.status != "ok" or len(snapshot.text) > MAX_MARKED:
        return False, None
    text = snapshot.text.lstrip()
    if not text.startswith(("{", "[")):
        return False, None
    try:
        return True, json.loads(snapshot.text)
    except ValueError:
        return False, None


def _path_text(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the whole message)"


def diff_data(before: Any, after: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str, tuple[str | int, ...]]]:
    """The fields `after` added, changed or removed against `before`: a field new or gone
    is one change (its subtree is not listed), a value changed is marked where it is."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[tuple[str, tuple[str | int, ...]]] = []
        for key, value in after.items():
            if key not in before:
                found.append(("added", (*path, key)))
            else:
                found.extend(diff_data(before[key], value, (*path, key)))
        found.extend(("removed", (*path, key)) for key in before if key not in after)
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [c for i, (a, b) in enumerate(zip(before, after, strict=True)) for c in diff_data(a, b, (*path, i))]
    if before == after and type(before) is type(after):
        return []
    return [("changed", path)]


def _json_lines(value: Any, path: tuple[str | int, ...], indent: int, prefix: str, comma: str) -> Any:
    """The lines json.dumps(indent=2) writes, each with the path of the value it shows."""
    pad = "  " * indent
    if isinstance(value, dict | list) and value:
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        yield pad + prefix + ("{" if isinstance(value, dict) else "["), path
        for n, (key, item) in enumerate(items):
            inner = json.dumps(key, ensure_ascii=False) + ": " if isinstance(value, dict) else ""
            yield from _json_lines(item, (*path, key), indent + 1, inner, "," if n < len(items) - 1 else "")
        yield pad + ("}" if isinstance(value, dict) else "]") + comma, path
    else:
        yield pad + prefix + json.dumps(value, ensure_ascii=False) + comma, path


def _marked_lines(data: Any, changes: list[tuple[str, tuple[str | int, ...]]]) -> list[tuple[str, str]]:
    marks = {p: sign for sign, p in changes if sign != "removed"}
    lines = []
    for text, path in _json_lines(data, (), 0, "", ""):
        mark = ""
        for n in range(len(path), -1, -1):  # a line inside an added or changed value is marked too
            if path[:n] in marks:
                mark = marks[path[:n]]
                break
        lines.append((text, mark))
    return lines


def mark_changes(preview: Preview) -> None:
    """Beside each lane's output, what the step added, changed or removed against its
    input (the previous step's output, or the sample), and the output's lines marked."""
    previous: Snapshot | None = preview.input
    for lane in preview.lanes:
        ok = [e for e in lane.entries if e.status == "ok"]
        known, before = _data_of(previous)
        for entry in ok:
            has, after = _data_of(entry)
            if not (known and has):
                continue
            changes = diff_data(before, after)
            if changes == [("changed", ())] and not (isinstance(before, dict) and isinstance(after, dict)):
                continue  # another kind of value altogether (a split's part, a list): nothing to mark
            entry.changes = [(sign, _path_text(p)) for sign, p in changes[:MAX_CHANGES]]
            entry.more_changes = max(0, len(changes) - MAX_CHANGES)
            entry.lines = _marked_lines(after, changes)
        if ok:
            previous = ok[0]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "case"


def _extension(message: Message) -> str:
    if not message.is_bytes or is_json_type(message.content_type):
        return ".json"
    return EXTENSIONS.get(message.content_type.split(";")[0].strip(), ".txt")


def add_test_case(path: Path, text: str, sample: bytes, sample_file: str, case_name: str) -> tuple[str, list[Path]]:
    """Write the sample and the current outputs beside the flow and add a `tests:` case
    to the YAML text; returns the new text and the files written."""
    preview = run(path, text, sample, sample_file)
    if preview.issues or preview.error:
        raise ValueError("fix the flow's problems before saving a test case")
    document = load_text(text, path.name)
    if not isinstance(document, CommentedMap):
        raise ValueError("the flow YAML is not a mapping")
    flow_name = str((document.get("metadata") or {}).get("name") or path.stem)
    folder = path.parent / "tests" / flow_name
    folder.mkdir(parents=True, exist_ok=True)
    slug = _slug(case_name)
    existing = {str(c.get("name")) for c in (document.get("tests") or []) if isinstance(c, dict)}
    if case_name in existing:
        raise ValueError(f"a test case named {case_name!r} already exists; choose another name")
    suffix = (
        Path(sample_file).suffix
        if sample_file and Path(sample_file).suffix
        else Path(sample_name_for_text(text, path)).suffix
    )
    written: list[Path] = []
    input_path = folder / f"{slug}.input{suffix}"
    input_path.write_bytes(sample)
    written.append(input_path)
    case = CommentedMap()
    case["name"] = case_name
    case["input"] = input_path.relative_to(path.parent).as_posix()
    if preview.failures:
        case["expect_error"] = preview.failures[0].split("\n")[0]
    else:
        expected = []
        for number, out in enumerate(preview.outputs, 1):
            name = f"{slug}.expected{'' if len(preview.outputs) == 1 else f'-{number}'}{_extension(out.message)}"
            target = folder / name
            target.write_text(as_text(out.message), encoding="utf-8")
            written.append(target)
            expected.append(target.relative_to(path.parent).as_posix())
        case["expect"] = expected[0] if len(expected) == 1 else expected
    tests = document.get("tests")
    if not isinstance(tests, CommentedSeq):
        tests = CommentedSeq()
        document["tests"] = tests
    tests.append(case)
    return dump_text(document), written


def sample_name_for_text(text: str, path: Path) -> str:
    try:
        flow = load_flow(path, text)
    except FlowyardError:
        return "sample.json"
    return sample_name(flow)
