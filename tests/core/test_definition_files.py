"""What `flowyard validate` and `flowyard test` take for a definition: a pre-commit hook
passes every changed file of a flows repository (its `.pre-commit-config.yaml`, CI
workflow, test inputs and expected outputs), and only definitions are checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flowyard.cli import main
from flowyard.definitions import definition_files, is_definition

ROOT = Path(__file__).resolve().parents[2]

NOT_DEFINITIONS = {
    ".pre-commit-config.yaml": (ROOT / "docs" / "flows-repo" / "pre-commit-config.yaml").read_text(encoding="utf-8"),
    ".github/workflows/flows.yml": (ROOT / "docs" / "flows-repo" / "github-workflow.yml").read_text(encoding="utf-8"),
    "flows/tests/mx02-production-confirmations/confirmations.csv": "order;plant;good_qty\n4711;QRO;3\n",
    "flows/tests/mx02-production-confirmations/confirmation-1.json": '{"order_id": "4711", "plant": "MX02"}\n',
    "flows/tests/expected/shipment.yaml": "source: ERP\nshipment: S1\nitems: [{item: A, qty: 2}]\n",
    "flows/tests/input/not-yaml.yaml": "order: [4711\nplant: QRO\n",  # broken, and no sign of a definition
    "deploy/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n",
    "flows/README.csv": "not,a,table\n",
}

GOOD_FLOW = "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: ok}\nsource:\n  file: {path: in}\nsteps:\n  - jmespath: a\ntargets:\n  - file: {path: out}\n"

# Definitions with a mistake in their header: reported, not skipped as "not a definition".
BROKEN_DEFINITIONS = {
    "flows/no-api-version.yaml": ("kind: Flow\nmetadata: {name: a}\nsource:\n  file: {path: in}\nsteps: []\ntargets:\n  - file: {path: out}\n", ":1:1: apiVersion must be 'flowyard/v1'"),
    "flows/no-header.yaml": ("metadata: {name: b}\nsource:\n  file: {path: in}\nsteps:\n  - jmespath: a\ntargets:\n  - file: {path: out}\n", ":1:1: apiVersion must be 'flowyard/v1'"),
    "flows/wrong-version.yaml": (GOOD_FLOW.replace("flowyard/v1", "flowyard/v9").replace("name: ok", "name: c"), ":1:13: apiVersion must be 'flowyard/v1'"),
    "flows/broken-yaml.yaml": ("apiVersion: flowyard/v1\nkind: [Flow\n", ":3:1: YAML syntax"),
    "flows/tables/uom.csv": ("code,value\nST,EA\nST,PCE\n", ":3:1: code 'ST' appears twice"),
}


def write(root: Path, files: dict[str, str]) -> list[Path]:
    paths = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture
def others(tmp_path: Path) -> list[Path]:
    return write(tmp_path, NOT_DEFINITIONS)


@pytest.fixture
def broken(tmp_path: Path) -> list[Path]:
    return write(tmp_path, {rel: text for rel, (text, _) in BROKEN_DEFINITIONS.items()})


def test_files_that_are_not_definitions_are_told_apart(others: list[Path], broken: list[Path]) -> None:
    assert [p for p in others if is_definition(p)] == []
    assert [p for p in broken if not is_definition(p)] == []


def test_named_files_that_are_not_definitions_are_skipped(others: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    # what the pre-commit hook passes for a commit that touches no definition
    assert main(["validate", *map(str, others)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    for path in others:
        assert f"{path}: skipped, not a Flowyard definition" in err
    assert f"0 file(s) checked, 0 invalid, {len(others)} skipped" in err


def test_named_definitions_beside_other_files_are_checked(tmp_path: Path, others: list[Path], broken: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, {"flows/ok.yaml": GOOD_FLOW})
    assert main(["validate", *map(str, [*others, *broken, *good])]) == 1
    out, err = capsys.readouterr()
    for (rel, (_, message)), path in zip(BROKEN_DEFINITIONS.items(), broken, strict=True):
        assert any(line.startswith(f"{path}{message}") for line in out.splitlines()), (rel, out)
    assert not any(str(path) in out for path in others)
    assert f"{len(broken) + 1} file(s) checked, {len(broken)} invalid, {len(others)} skipped" in err


def test_a_folder_is_checked_without_what_is_not_a_definition(tmp_path: Path, others: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, {"flows/ok.yaml": GOOD_FLOW, "flows/tables/uom.csv": "code,value\nST,EA\n"})
    assert sorted(definition_files([tmp_path])) == sorted(good)
    assert main(["validate", str(tmp_path)]) == 0
    assert "2 file(s) checked, 0 invalid" in capsys.readouterr().err


def test_a_folder_without_definitions_is_still_an_error(tmp_path: Path, others: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "flows" / "tests")]) == 1  # a mistyped folder must not pass quietly
    assert "no definition files found" in capsys.readouterr().err


def test_flowyard_test_leaves_test_data_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "flows" / "templates", flows / "templates")
    shutil.copytree(ROOT / "flows" / "tables", flows / "tables")
    shutil.copytree(ROOT / "flows" / "tests", flows / "tests")
    shutil.copy(ROOT / "flows" / "mx02-production-confirmations.yaml", flows)
    write(tmp_path, {"flows/tests/mx02-production-confirmations/extra.yaml": "source: ERP\nsteps: 3\n"})  # data, not a flow
    assert main(["test", str(flows)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "1 passed, 0 failed"
