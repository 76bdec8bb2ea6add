"""`flowyard test`: run each flow's `tests:` cases and show a readable diff on failure."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from .engine import Pipeline
from .flow import Flow, FlowTest
from .message import Message, is_json_type
from .runner import input_message


@dataclass
class CaseResult:
    flow: Flow
    case: FlowTest
    passed: bool
    report: str = ""


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").rstrip("\n") + "\n"


def as_text(message: Message) -> str:
    if not message.is_bytes:
        return json.dumps(message.payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if is_json_type(message.content_type):
        try:
            return json.dumps(json.loads(message.payload), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        except ValueError:
            pass
    return _normalise(bytes(message.payload).decode("utf-8", errors="replace"))


def _expected_text(path: Path, actual: Message) -> str:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" and (not actual.is_bytes or is_json_type(actual.content_type)):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        except ValueError:
            pass
    return _normalise(text)


def diff(expected: str, actual: str, expected_name: str) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True), fromfile=f"expected {expected_name}", tofile="actual output"
    )
    return "".join(lines)


def run_case(flow: Flow, case: FlowTest, base: Path | None = None) -> CaseResult:
    """Run one case; its files are relative to `base` (default: the flow file's folder;
    a deployment snapshot is tried with the files of the folder it was taken from)."""
    base = base or flow.path.parent
    input_path = base / case.input
    message = input_message(flow, input_path.read_bytes(), input_path.name, case.source)
    result = Pipeline(flow).run(message)
    if case.expect_error is not None:
        reasons = [str(f.error) for f in result.failures]
        if any(case.expect_error in r for r in reasons):
            return CaseResult(flow, case, True)
        got = "; ".join(reasons) or f"success with {len(result.outputs)} output(s)"
        return CaseResult(flow, case, False, f"expected an error containing {case.expect_error!r}, got: {got}")
    if result.failures:
        return CaseResult(flow, case, False, "\n".join(f"failed: {f.error}" for f in result.failures))
    expected_files = [case.expect] if isinstance(case.expect, str) else list(case.expect or [])
    if len(expected_files) != len(result.outputs):
        return CaseResult(flow, case, False, f"expected {len(expected_files)} output message(s), got {len(result.outputs)}")
    problems = []
    for rel, output in zip(expected_files, result.outputs, strict=True):
        expected = _expected_text(base / rel, output)
        actual = as_text(output)
        if expected != actual:
            problems.append(diff(expected, actual, rel))
    return CaseResult(flow, case, not problems, "\n".join(problems))


def run_tests(flow: Flow, base: Path | None = None) -> list[CaseResult]:
    return [run_case(flow, case, base) for case in flow.tests]
