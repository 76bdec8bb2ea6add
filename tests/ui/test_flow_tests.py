"""Issue 15 item 7: each flow shows its test status, with a "Run tests" button for
analysts; the tests run as the deploy gate runs them (scratch store), with per case the
result and the diff of a failing one; the last result is kept while the flow and its
test files are unchanged."""

from __future__ import annotations

import html
from pathlib import Path

from litestar import Litestar

from .conftest import ORDERS_FLOW, UiClient

TESTED = ORDERS_FLOW.replace("name: erp-orders", "name: tested-orders").replace(
    "inbox/erp-orders", "inbox/tested-orders").replace("outbox/erp-orders", "outbox/tested-orders") + """\
tests:
  - name: one order
    input: tests/tested/order.json
    expect: tests/tested/order.expected.json
  - name: a second order
    input: tests/tested/order2.json
    expect: tests/tested/order2.expected.json
"""


def write_tested(flows: Path) -> None:
    (flows / "tested-orders.yaml").write_text(TESTED, encoding="utf-8")
    folder = flows / "tests" / "tested"
    folder.mkdir(parents=True)
    (folder / "order.json").write_text('{"po": "PO-1", "qty": 2}')
    (folder / "order.expected.json").write_text('{"order": "PO-1", "qty": 2}')
    (folder / "order2.json").write_text('{"po": "PO-2", "qty": 5}')
    (folder / "order2.expected.json").write_text('{"order": "PO-2", "qty": 4}')  # wrong: 5 comes out


def test_an_analyst_runs_a_flows_tests_and_sees_each_case(
    app: Litestar, flows: Path, analyst: UiClient, viewer: UiClient
) -> None:
    write_tested(flows)
    page = analyst.get("/flows/tested-orders").text
    assert 'id="flow-tests"' in page and "not run" in page
    assert 'hx-post="/flows/tested-orders/tests"' in page
    assert 'hx-post="/flows/tested-orders/tests"' not in viewer.get("/flows/tested-orders").text
    result = analyst.post("/flows/tested-orders/tests")
    assert result.status_code == 200, result.text
    text = html.unescape(result.text)
    assert "1 of 2 failed" in text
    assert '<li class="test-case ok"><span class="state ok">passed</span> one order' in text
    assert '<li class="test-case failed"><span class="state failed">failed</span> a second order' in text
    # the failing case's diff, line by line
    assert '<span class="dl del">-  "qty": 4\n</span>' in text or '-  "qty": 4' in text
    assert '+  "qty": 5' in text
    assert "by analyst" in text
    # nothing was deployed
    assert app.state.ui.store.flow_state("tested-orders") is None
    # the flow page and the flows list show the last result while it holds
    assert "1 of 2 failed" in html.unescape(viewer.get("/flows/tested-orders").text)
    rows = viewer.htmx_get("/flows", headers={"HX-Target": "flow-rows"}).text
    row = rows[rows.index("/flows/tested-orders"):]
    assert "1 of 2 failed" in row[: row.index("</tr>")]
    # the analyst fixes the expected file: the old result no longer holds
    (flows / "tests" / "tested" / "order2.expected.json").write_text('{"order": "PO-2", "qty": 5}')
    assert "1 of 2 failed" not in viewer.get("/flows/tested-orders").text
    again = html.unescape(analyst.post("/flows/tested-orders/tests").text)
    assert "2 passed" in again and "failed</span>" not in again


def test_only_analysts_with_a_csrf_token_run_tests(flows: Path, analyst: UiClient, viewer: UiClient) -> None:
    write_tested(flows)
    assert viewer.post("/flows/tested-orders/tests").status_code == 403
    assert analyst.post("/flows/tested-orders/tests", csrf=False).status_code == 403


def test_a_flow_without_tests_and_one_that_does_not_load(flows: Path, analyst: UiClient) -> None:
    none = html.unescape(analyst.post("/flows/erp-orders/tests").text)
    assert "no tests" in none and "The flow has no <code>tests:</code>" in none
    (flows / "erp-orders.yaml").write_text(ORDERS_FLOW.replace("json.render", "json.rendr"))
    broken = html.unescape(analyst.post("/flows/erp-orders/tests").text)
    assert "cannot run" in broken and "json.rendr" in broken
