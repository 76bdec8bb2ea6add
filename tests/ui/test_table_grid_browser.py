"""Code tables as a grid (issue 16 item 5) in a real headless Chromium against
`flowyard serve --deploy-new`: add a row by typing (Tab and Enter between cells), paste
two rows copied from a spreadsheet, sort, filter, delete a row, see a duplicate code
refused at its cell, save, find the draft on the changes page with the expected diff,
deploy it through the gate and see the running flow use the new code. Screenshots go
to test-artifacts/screenshots/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import CHROMIUM_ARGS, SHOTS, first_login, serving, wait_for

FLOW = """\
# Orders whose unit of measure is translated from the code table uom
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: uom-orders
  labels: {plant: MX01}
source:
  file: {path: inbox/uom-orders, pattern: "*.json", poll: 1s, settle: 0s}
steps:
  - jmespath: "{order: po, uom: uom}"
  - lookup: {table: uom, at: uom}
  - json.render: {}
targets:
  - file: {path: outbox/uom-orders, name: "{{ data.order }}.json"}
tests:
  - name: each
    input: tests/order.json
    expect: tests/order.expected.json
"""
TABLE = "code,value\nEA,each\nPL,pallet\n"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    flows = tmp_path / "flows"
    (flows / "tables").mkdir(parents=True)
    (flows / "tests").mkdir()
    (flows / "tables" / "uom.csv").write_text(TABLE)
    (flows / "tests" / "order.json").write_text('{"po": "PO-1", "uom": "EA"}')
    (flows / "tests" / "order.expected.json").write_text('{"order": "PO-1", "uom": "each"}')
    (flows / "uom-orders.yaml").write_text(FLOW)
    with serving(tmp_path, flows) as served:
        yield served


@pytest.mark.browser
@pytest.mark.slow
def test_edit_a_code_table_in_the_grid_and_deploy_it(served: dict[str, Any], chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base, flows = served["base"], served["flows"]
    table = flows / "tables" / "uom.csv"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1300, "height": 950},
                                      permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.set_default_timeout(20_000)
        expect.set_options(timeout=20_000)

        page.goto(f"{base}/login")
        first_login(page, served["password"])

        # -- the grid, and the flow that uses the table ---------------------------------------
        page.goto(f"{base}/tables/uom.csv")
        page.wait_for_load_state("load")
        grid = page.locator("#grid-rows")
        codes = grid.locator("input[name=c0]")
        expect(codes).to_have_count(2)
        used = page.locator(".used-by")
        expect(used).to_contain_text("uom-orders")
        expect(used).to_contain_text("runs this table")

        # -- add a row by typing: Tab to the next cell, Enter to the row below -----------------
        page.get_by_role("button", name="Add a row").click()
        expect(codes.nth(2)).to_be_focused()
        page.keyboard.type("CS")
        page.keyboard.press("Tab")
        expect(grid.locator("input[name=c1]").nth(2)).to_be_focused()
        page.keyboard.type("case")
        page.keyboard.press("Enter")  # the last row: a new row below, same column
        expect(codes).to_have_count(4)
        expect(grid.locator("input[name=c1]").nth(3)).to_be_focused()
        page.keyboard.press("Shift+Tab")
        expect(codes.nth(3)).to_be_focused()

        # -- paste two rows copied from a spreadsheet: they fill the empty row and add one -----
        page.evaluate("text => navigator.clipboard.writeText(text)", "KG\tkilogram\r\nBX\tbox\r\n")
        page.keyboard.press("Control+V")
        expect(codes).to_have_count(5)
        expect(page.locator("#toast")).to_contain_text("Pasted 2 row(s).")
        assert [codes.nth(i).input_value() for i in range(5)] == ["EA", "PL", "CS", "KG", "BX"]
        assert grid.locator("input[name=c1]").nth(4).input_value() == "box"
        expect(codes.nth(3)).to_be_focused()  # where the paste began
        page.keyboard.press("ArrowUp")
        expect(codes.nth(2)).to_be_focused()

        # -- sort and filter: views only ---------------------------------------------------------
        page.locator(".grid-sort[data-col='0']").click()
        assert [codes.nth(i).input_value() for i in range(5)] == ["BX", "CS", "EA", "KG", "PL"]
        page.locator(".grid-sort[data-col='0']").click()
        assert [codes.nth(i).input_value() for i in range(5)] == ["PL", "KG", "EA", "CS", "BX"]
        page.get_by_label("Filter rows").fill("pal")
        expect(page.locator("#grid-count")).to_have_text("1 of 5 row(s)")
        expect(grid.locator("tr:visible")).to_have_count(1)
        # -- delete the row shown --------------------------------------------------------------
        grid.locator("tr:visible .grid-del").click()
        page.get_by_label("Filter rows").fill("")
        expect(page.locator("#grid-count")).to_have_text("4 row(s)")

        # -- a duplicate code is marked at its cell as you type, and refused by the server -------
        assert [codes.nth(i).input_value() for i in range(4)] == ["KG", "EA", "CS", "BX"]
        codes.nth(0).fill("CS")
        marks = grid.locator("td.bad .cell-msg")
        expect(marks).to_have_text(["code 'CS' appears twice", "code 'CS' appears twice"])  # both rows that hold it
        page.get_by_role("button", name="Save as draft").click()
        result = page.locator("#grid-result")
        expect(result).to_contain_text("nothing was saved")
        assert table.read_text() == TABLE
        page.screenshot(path=str(SHOTS / "40-table-grid-duplicate.png"), full_page=True)
        # the server names the second row that holds it, in grid order; its button goes there
        result.get_by_role("button", name="code 'CS' appears twice").click()
        expect(codes.nth(2)).to_be_focused()
        codes.nth(0).fill("KG")
        expect(grid.locator("input[aria-invalid=true]")).to_have_count(0)

        # -- review, then save as a draft: the running flow keeps the old table ------------------
        page.get_by_role("button", name="Review changes").click()
        expect(result.locator("pre.diff .dl.del")).to_have_text(["-PL,pallet"])
        page.get_by_role("button", name="Save as draft").click()
        expect(page.locator("#grid-result")).to_contain_text("Saved tables/uom.csv as a draft")
        assert table.read_text() == "code,value\nEA,each\nCS,case\nKG,kilogram\nBX,box\n"
        expect(page.locator(".used-by")).to_contain_text("runs an older copy")
        expect(page.locator("#grid-rows input[name=c0]")).to_have_count(4)
        page.screenshot(path=str(SHOTS / "41-table-grid-saved.png"), full_page=True)

        # -- the draft on the changes page, with the expected diff; deployed through the gate ----
        page.goto(f"{base}/changes")
        card = page.locator("article[data-key='tables/uom.csv']")
        expect(card.locator("pre.diff .dl.del")).to_have_text(["-PL,pallet"])
        expect(card.locator("pre.diff .dl.add")).to_have_text(["+CS,case", "+KG,kilogram", "+BX,box"])
        expect(card).to_contain_text("uom-orders")
        expect(card.locator(".gate")).to_contain_text("would deploy")
        card.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "42-table-grid-draft.png"), full_page=False)
        card.get_by_role("button", name="Deploy tables/uom.csv").click()
        expect(page.locator("article[data-key='tables/uom.csv']")).to_have_count(0)
        page.goto(f"{base}/flows/uom-orders")
        status = page.locator("#flow-status")
        expect(status).to_contain_text("The draft on disk is the deployed version")
        version = page.locator("#deploy-state code").first.inner_text()
        expect(status.locator(".runs-table")).to_contain_text(version, timeout=30_000)  # what the worker runs
        inbox = flows / "inbox" / "uom-orders"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / "po-2.json").write_text(json.dumps({"po": "PO-2", "uom": "KG"}))
        assert wait_for(flows / "outbox" / "uom-orders" / "PO-2.json")["uom"] == "kilogram"
        browser.close()
