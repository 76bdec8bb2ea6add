"""The worked XML flows in flows/ pass their own `tests:` (what `flowyard test` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowyard.engine import Pipeline
from flowyard.loader import load_flow
from flowyard.runner import input_message
from flowyard.testing import run_tests

FLOWS = ["mes-b2mml-production-orders.yaml", "supplier-ubl-ship-notices.yaml"]


@pytest.mark.parametrize("name", FLOWS)
def test_flow_tests_pass(name: str, flows_dir: Path) -> None:
    flow = load_flow(flows_dir / name)
    results = run_tests(flow)
    assert len(results) >= 2
    for result in results:
        assert result.passed, f"{result.case.name}: {result.report}"


def test_b2mml_flow_failure_names_step_line_and_element(flows_dir: Path) -> None:
    flow = load_flow(flows_dir / "mes-b2mml-production-orders.yaml")
    path = flows_dir.parent / "examples" / "xml" / "b2mml" / "cocop-invalid-date.xml"
    result = Pipeline(flow).run(input_message(flow, path.read_bytes(), path.name))
    assert not result.outputs
    error = result.failures[0].error
    assert error.step == "B2MML schema"
    assert error.where is not None and error.where.line == 47
    assert error.where.path is not None and error.where.path.endswith("/SegmentRequirement/EarliestStartTime")
    assert result.failures[0].message.payload == path.read_bytes()


def test_b2mml_flow_output_is_a_valid_canonical_order(flows_dir: Path) -> None:
    flow = load_flow(flows_dir / "mes-b2mml-production-orders.yaml")
    path = flows_dir.parent / "examples" / "xml" / "b2mml" / "mes-schedule-mty-2024-w18.xml"
    result = Pipeline(flow).run(input_message(flow, path.read_bytes(), path.name))
    assert result.ok
    orders = [m.payload for m in result.outputs]
    assert [(o["order_id"], o["plant"], o["quantity"], o["uom"]) for o in orders] == [
        ("4711", "MX01", 1200, "EA"),
        ("4712", "MX01", 800, "EA"),
    ]
    assert json.loads(json.dumps(orders)) == orders
