"""The `flowyard` command end to end, as a reviewer and an analyst use it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOWYARD = str(Path(sys.executable).parent / "flowyard")


def flowyard(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWYARD, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def test_validate_the_shipped_flows() -> None:
    result = flowyard("validate", "flows")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 invalid" in result.stderr


def test_test_the_shipped_flows() -> None:
    result = flowyard("test", "flows")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(summary.split()[0])
    assert passed >= 6 and " 0 failed" in summary


def test_validate_reports_file_line_col_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: b}\nsource:\n  file: {path: in}\nsteps:\n  - jmespth: a\ntargets:\n  - file: {path: out}\n")
    result = flowyard("validate", str(bad))
    assert result.returncode == 1
    assert result.stdout.strip() == f"{bad}:7:5: unknown step 'jmespth'; did you mean 'jmespath'?"
    assert_no_traceback(result)


def test_validate_broken_yaml_and_bad_table(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("apiVersion: flowyard/v1\nkind: [Flow\n")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "uom.csv").write_text("code,value\nST,EA\nST,PCE\n,X\n")
    result = flowyard("validate", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith(f"{tmp_path / 'broken.yaml'}:3:1: YAML syntax") for line in lines), lines
    assert f"{tmp_path / 'tables' / 'uom.csv'}:3:1: code 'ST' appears twice" in lines
    assert f"{tmp_path / 'tables' / 'uom.csv'}:4:1: empty code in the first column" in lines
    assert_no_traceback(result)


def test_run_dry_run_to_stdout_and_output_dir(tmp_path: Path) -> None:
    flow = "flows/mx01-erp-production-orders.yaml"
    result = flowyard("run", flow, "--input", "examples/erp/production-order-4711.json", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "examples/expected/production-order-4711.xml").read_text()
    out = tmp_path / "out"
    result = flowyard("run", "flows/mx01-production-confirmations.yaml", "--input", "examples/plant/confirmations-mty-2026-11-22.csv", "--dry-run", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["1", "2", "3"]
    assert json.loads((out / "3").read_text())["order_id"] == "4698"


def test_run_trace_prints_each_step_to_stderr() -> None:
    result = flowyard("run", "flows/de02-inventory-movements.yaml", "--input", "examples/wms/movements-de02-batch-0193.json", "--dry-run", "--trace", "--output-dir", "/tmp/flowyard-trace-test")
    assert result.returncode == 0
    assert "== one message per movement (split" in result.stderr and ": 4 message(s)" in result.stderr
    assert "== skip zero quantities (filter" in result.stderr and "message dropped" in result.stderr
    assert "\"movement_type\": \"261\"" in result.stderr


def test_run_failure_names_step_reason_and_place_and_exits_1() -> None:
    result = flowyard("run", "flows/mx01-production-confirmations.yaml", "--input", "examples/plant/confirmations-bad-row.csv", "--dry-run")
    assert result.returncode == 1
    assert "step '1-csv.parse': column 'good_qty': '3 88' is not a number (line 3)" in result.stderr
    assert_no_traceback(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "flows/mx01-erp-production-orders.yaml", "--input", "nope.json", "--dry-run"], "input file nope.json not found"),
        (["run", "nope.yaml", "--input", "examples/erp/production-order-4711.json"], "No such file"),
        (["run", "flows/mx01-erp-production-orders.yaml"], "required: --input"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_commands_exit_2_without_traceback(args: list[str], message: str) -> None:
    result = flowyard(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert_no_traceback(result)


def test_run_delivers_to_file_targets(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: deliver}\nsource:\n  file: {path: in, pattern: '*.json'}\n"
        "steps:\n  - jmespath: '{id: id}'\ntargets:\n  - file: {path: out, name: 'order-{{ data.id }}.json'}\n  - file: {path: big, name: '{{ key }}.json'}\n    when: 'id > `10`'\n"
    )
    (tmp_path / "in.json").write_text('{"id": 7, "x": 1}')
    result = flowyard("run", str(flow), "--input", str(tmp_path / "in.json"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "order-7.json").read_text()) == {"id": 7}
    assert not (tmp_path / "big").exists()


def test_schema_is_valid_json_schema_and_describes_every_step() -> None:
    from jsonschema import Draft202012Validator

    result = flowyard("schema")
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    titles = {v["title"] for v in schema["$defs"]["Flow"]["properties"]["steps"]["items"]["oneOf"]}
    assert {"json.parse", "jmespath", "jinja", "lookup", "validate", "split", "filter", "csv.parse"} <= titles


def test_the_committed_schema_and_reference_are_up_to_date() -> None:
    schema = flowyard("schema").stdout
    assert (ROOT / "schema" / "flow.schema.json").read_text() == schema, "run: flowyard schema > schema/flow.schema.json"
    reference = flowyard("docs").stdout
    assert (ROOT / "docs" / "reference.md").read_text() == reference, "run: flowyard docs --output docs/reference.md"


def test_the_schema_accepts_the_shipped_flows_and_rejects_a_typo() -> None:
    from jsonschema import Draft202012Validator

    from flowyard.yamlio import load_file, to_plain

    validator = Draft202012Validator(json.loads((ROOT / "schema" / "flow.schema.json").read_text()))
    for path in (ROOT / "flows").glob("*.yaml"):
        document = to_plain(load_file(path))
        if document.get("kind") != "Flow":
            continue
        errors = list(validator.iter_errors(document))
        assert not errors, (path, [e.message for e in errors[:3]])
    document["steps"].append({"jmespth": "a"})
    assert list(validator.iter_errors(document))


def test_trying_flows_leaves_the_store_alone(tmp_path: Path) -> None:
    """`flowyard test` and `run --dry-run` use a scratch store: no interchange is recorded as
    received and no control number is spent in the real one."""
    asn = str(ROOT / "flows" / "mx01-supplierx-asn.yaml")
    for _ in range(2):
        result = flowyard("test", asn, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "already received" not in result.stderr
    result = flowyard("run", asn, "--input", str(ROOT / "examples/x12/856-supplierx-2cartons.edi"), "--dry-run", "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".flowyard").exists()


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--batch", "0", "--batch: 0 is too small: it must be 1 or more"),
    ("--processors", "-2", "--processors: -2 is too small"),
    ("--batch", "many", "--batch: 'many' is not a whole number"),
    ("--lease", "0", "--lease: 0 seconds: a lease must last some time"),
])
def test_a_worker_refuses_counts_that_would_stop_it_working(option: str, value: str, says: str) -> None:
    result = flowyard("worker", option, value)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert_no_traceback(result)
