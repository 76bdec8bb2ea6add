"""The playground: every step's output, errors at their step, save as a test case."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flowyard.loader import load_flow
from flowyard.testing import run_tests
from flowyard_ui import budgets

from .conftest import ORDERS_FLOW, UiClient

SAMPLE = json.dumps({"po": "PO-1001", "qty": 12})


def test_preview_shows_each_step_output(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/playground/run", {"yaml": ORDERS_FLOW, "sample": SAMPLE, "sample_name": "o.json"}
    )
    assert response.status_code == 200
    assert 'data-step="1-jmespath"' in response.text and 'data-step="2-json.render"' in response.text
    assert "All steps succeeded: 1 output" in response.text
    assert "&#34;order&#34;: &#34;PO-1001&#34;" in response.text or '"order": "PO-1001"' in response.text


def test_a_changed_mapping_shows_at_once(analyst: UiClient) -> None:
    changed = ORDERS_FLOW.replace("{order: po, qty: qty}", "{order: po, quantity: qty, plant: 'MX01'}")
    response = analyst.post(
        "/flows/erp-orders/playground/run", {"yaml": changed, "sample": SAMPLE, "sample_name": "o.json"}
    )
    assert response.status_code == 200
    assert "quantity" in response.text and "MX01" in response.text
    assert "All steps succeeded" in response.text


def test_a_failing_step_is_shown_at_that_step(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/playground/run", {"yaml": ORDERS_FLOW, "sample": "{not json", "sample_name": "o.json"}
    )
    assert response.status_code == 200
    assert "Failed:" in response.text
    assert 'class="lane failed" data-step="1-jmespath"' in response.text
    assert "invalid JSON" in response.text


def test_flow_problems_are_listed_instead_of_a_run(analyst: UiClient) -> None:
    response = analyst.post(
        "/flows/erp-orders/playground/run", {"yaml": ORDERS_FLOW.replace("jmespath:", "jmespth:"), "sample": SAMPLE}
    )
    assert "problem(s)" in response.text and "did you mean" in response.text


def test_upload_a_sample_file(analyst: UiClient) -> None:
    response = analyst.client.post(
        "/flows/erp-orders/playground/run",
        data={"yaml": ORDERS_FLOW},
        files={"upload": ("upload.json", SAMPLE.encode(), "application/json")},
        headers={"HX-Request": "true", "X-CSRFToken": analyst.token},
    )
    assert response.status_code == 200 and "PO-1001" in response.text


def test_viewer_cannot_run_the_playground(viewer: UiClient) -> None:
    assert viewer.post("/flows/erp-orders/playground/run", {"yaml": ORDERS_FLOW, "sample": SAMPLE}).status_code == 403


def test_save_as_test_case_then_the_case_passes(analyst: UiClient, flows: Path) -> None:
    response = analyst.post(
        "/flows/erp-orders/playground/test",
        {"yaml": ORDERS_FLOW, "sample": SAMPLE, "sample_name": "o.json", "case_name": "one order"},
    )
    assert response.status_code == 200, response.text
    assert "tests:" in response.text and "one order" in response.text
    import html
    import re

    new_text = html.unescape(re.search(r'name="yaml" value="([^"]*)"', response.text, re.S).group(1))  # type: ignore[union-attr]
    saved = analyst.post("/flows/erp-orders/save", {"yaml": new_text})
    assert saved.status_code == 200 and "Saved" in saved.text
    text = (flows / "erp-orders.yaml").read_text()
    assert "# keep this comment" in text and "name: one order" in text
    assert (flows / "tests/erp-orders/one-order.input.json").read_bytes() == SAMPLE.encode()
    results = run_tests(load_flow(flows / "erp-orders.yaml"))
    assert len(results) == 1 and results[0].passed, results[0].report


def test_save_as_test_case_of_a_failure_expects_the_error(analyst: UiClient, flows: Path) -> None:
    response = analyst.post(
        "/flows/erp-orders/playground/test",
        {"yaml": ORDERS_FLOW, "sample": "{bad", "sample_name": "bad.json", "case_name": "broken json"},
    )
    assert response.status_code == 200
    import html
    import re

    new_text = html.unescape(re.search(r'name="yaml" value="([^"]*)"', response.text, re.S).group(1))  # type: ignore[union-attr]
    assert "expect_error" in new_text
    analyst.post("/flows/erp-orders/save", {"yaml": new_text})
    results = run_tests(load_flow(flows / "erp-orders.yaml"))
    assert results and results[0].passed, results[0].report


# 1,000 items doubled 12 times, then a Python-level filter over the 4 million: a minute
SPIN = "a" + " | [@,@][]" * 12 + " | [?to_string(@) == 'x'] | length(@)"


def test_a_runaway_step_in_the_playground_is_stopped_at_the_preview_budget(
    analyst: UiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budgets, "PREVIEW_SECONDS", 1.0)
    spinning = ORDERS_FLOW.replace('- jmespath: "{order: po, qty: qty}"', f'- name: spin\n    jmespath: "{SPIN}"')
    started = time.monotonic()
    response = analyst.post("/flows/erp-orders/playground/run",
                            {"yaml": spinning, "sample": json.dumps({"a": list(range(1000))}), "sample_name": "o.json"})
    took = time.monotonic() - started
    assert response.status_code == 200
    assert "exceeded its time budget in step spin (1s)" in response.text
    assert took < 8, took  # stopped, not run for its minute
    quick = analyst.post("/flows/erp-orders/playground/run", {"yaml": ORDERS_FLOW, "sample": SAMPLE, "sample_name": "o.json"})
    assert "All steps succeeded: 1 output" in quick.text  # the next run is not hit by a late stop
