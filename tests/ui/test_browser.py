"""End to end in a real headless Chromium against a running `flowyard serve`: log in
with the first admin's one-time password, create a flow in the editor, fix a
validation error, try it in the playground, save it as a test, deploy it, drop an
input file, see the message in runs, break the target, replay the dead letter after
fixing it. Screenshots of the main pages go to test-artifacts/screenshots/."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import CHROMIUM_ARGS, SHOTS, first_login, serving

FLOW = """\
# Orders dropped as JSON files, written out for the MES
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: e2e-orders
  description: Orders from the ERP drop folder to the MES folder
  labels: {plant: MX01, partner: ERP, domain: production}
source:
  file: {path: inbox/e2e-orders, pattern: "*.json", poll: 1s, settle: 0s}
steps:
  - jmespath: "{order: po, quantity: qty, plant: 'MX01'}"
  - json.render: {}
targets:
  - file: {path: outbox/e2e-orders, name: "{{ data.order }}.json"}
    retry: {attempts: 2, backoff: 500ms, max_backoff: 1s}
keys:
  po_number: order
"""
SAMPLE = json.dumps({"po": "PO-4711", "qty": 5})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    flows = tmp_path / "flows"
    (flows / "tables").mkdir(parents=True)
    (flows / "tables" / "uom.csv").write_text("code,value\nEA,each\nPL,pallet\n")
    with serving(tmp_path, flows) as served:
        yield served


HTMX4 = Path(__file__).parent / "vendor" / "htmx-4.min.js"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("htmx", ["2", "4"])
def test_author_try_deploy_watch_and_replay(served: dict[str, Any], chromium_path: str, htmx: str) -> None:
    """The UI ships htmx 2; with htmx="4" the browser gets htmx 4 instead (the same
    journey must work: no API removed in 4 is used)."""
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base, flows = served["base"], served["flows"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(20_000)
        expect.set_options(timeout=15_000)
        if htmx == "4":
            script = HTMX4.read_text()
            page.route(
                "**/static/htmx.min.js", lambda route: route.fulfill(body=script, content_type="text/javascript")
            )

        def shot(name: str) -> None:
            folder = SHOTS if htmx == "2" else SHOTS / "htmx4"
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=False)

        # -- log in with the one-time password, then choose a password --------------------
        page.goto(f"{base}/flows")
        expect(page).to_have_url(re.compile(r"/login"))
        shot("01-login")
        first_login(page, served["password"])

        # -- create a flow in the editor, with a mistake that validation points at -------
        page.get_by_role("button", name="New flow").click()
        page.get_by_label("Name (lower-case letters, digits, dashes)").fill("e2e-orders")
        page.get_by_label("Plant").fill("MX01")
        page.get_by_role("button", name="Create and edit").click()
        expect(page).to_have_url(re.compile(r"/flows/e2e-orders/edit"))
        # the URL changes before htmx has bound the editor's input trigger; a fill that
        # quick (no person types that fast) went unvalidated in one run of the suite
        page.wait_for_load_state("load")
        editor = page.locator("#yaml")  # the form field the code editor writes into
        code = page.locator("#yaml-pane .cm-content")  # the code editor (CodeMirror)
        code.fill(FLOW.replace("json.render", "json.rendr"))
        issues = page.locator("#issues")
        expect(issues).to_contain_text("did you mean 'json.render'")
        bad_line = FLOW.splitlines().index("  - json.render: {}") + 1
        expect(issues).to_contain_text(f"line {bad_line}")
        expect(page.locator(".cm-lintRange-error")).to_have_text("json.rendr")
        shot("03-editor-error")
        code.fill(FLOW)
        expect(issues).to_contain_text("No problems")
        page.locator("#tab-form").click()
        expect(page.locator("#form-pane")).to_contain_text("step 1: jmespath")
        shot("04-editor-form")
        # add a target from its generated form, then remove it again
        page.get_by_label("Add a target").select_option("file")
        page.get_by_role("button", name="Fill in its options").click()
        page.locator("#new-target input[name='opt.path']").fill("outbox/copy")
        page.locator("#new-target").scroll_into_view_if_needed()
        shot("04b-editor-new-target")
        page.get_by_role("button", name="Add this target to the YAML").click()
        expect(page.locator("#form-pane")).to_contain_text("target 2: file")
        expect(editor).to_have_value(re.compile(r"- file: \{path: outbox/copy\}"))
        page.once("dialog", lambda dialog: dialog.accept())  # "Remove target 2 (file) from the YAML?"
        page.locator("#form-pane fieldset", has_text="target 2: file").get_by_role("button", name="Remove").click()
        expect(page.locator("#form-pane")).not_to_contain_text("target 2: file")
        expect(editor).to_have_value(FLOW)
        page.locator("#tab-yaml").click()
        page.locator("#show-diff").click()
        expect(page.locator("#diff-pane")).to_contain_text("Changes to save")
        page.locator("#confirm-save").click()
        expect(page.locator("#diff-pane")).to_contain_text("Saved e2e-orders.yaml")
        assert (flows / "e2e-orders.yaml").read_text() == FLOW

        # -- try it in the playground and save the run as a test case -------------------
        page.goto(f"{base}/flows/e2e-orders/playground")
        page.locator("#pg-sample").fill(SAMPLE)
        page.locator("#pg-sample-name").fill("order.json")
        lanes = page.locator("#lanes")
        expect(lanes).to_contain_text("All steps succeeded: 1 output")
        expect(lanes).to_contain_text('"order": "PO-4711"')
        shot("05-playground")
        page.locator("#case-name").fill("one order")
        page.locator("#add-test").click()
        expect(page.locator("#diff-pane")).to_contain_text("Test case “one order” added")
        page.locator("#confirm-save").click()
        expect(page.locator("#diff-pane")).to_contain_text("Saved e2e-orders.yaml")
        assert "name: one order" in (flows / "e2e-orders.yaml").read_text()
        assert (flows / "tests/e2e-orders/one-order.expected.json").is_file()

        # -- deploy it with a note --------------------------------------------------------
        page.goto(f"{base}/flows/e2e-orders")
        expect(page.locator(".diagram")).to_contain_text("jmespath")
        page.get_by_label("Note (why)").fill("first version")
        page.get_by_role("button", name=re.compile("Deploy version")).click()
        expect(page.locator("#flow-status")).to_contain_text("first version")
        expect(page.locator("#flow-status .state.deployed").first).to_be_visible()
        shot("06-flow-deployed")

        # -- drop an input file; the message shows up in runs without a reload -----------
        page.goto(f"{base}/runs")
        inbox = flows / "inbox" / "e2e-orders"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / "po-4711.json").write_text(SAMPLE)
        rows = page.locator("#run-rows")
        expect(rows).to_contain_text("e2e-orders", timeout=45_000)
        expect(rows.locator(".state.done").first).to_be_visible(timeout=45_000)
        assert json.loads((flows / "outbox/e2e-orders/PO-4711.json").read_text())["quantity"] == 5
        shot("07-runs")
        rows.locator("a[title]").first.click()
        expect(page.locator("#message-body")).to_contain_text("Timeline")
        expect(page.locator("#message-body")).to_contain_text("1-jmespath")
        shot("08-message")

        # -- break the target (its folder becomes a file), the message dies ------------
        outbox = flows / "outbox" / "e2e-orders"
        for f in outbox.iterdir():
            f.unlink()
        outbox.rmdir()
        outbox.write_text("in the way")
        (inbox / "po-4712.json").write_text(json.dumps({"po": "PO-4712", "qty": 7}))
        page.goto(f"{base}/dead-letters")
        body = page.locator("#dead-body")
        expect(body).to_contain_text("e2e-orders", timeout=60_000)
        expect(body).to_contain_text("Replay 1")
        shot("09-dead-letters")

        # -- fix the target and replay the dead letter ------------------------------------
        outbox.unlink()
        outbox.mkdir()
        page.get_by_role("button", name="Replay 1").click()  # first the preview (a dry run)
        expect(page.locator("#replay-preview")).to_contain_text("Replay 1 dead letter(s) with the current version?")
        page.locator("#confirm-replay").click()
        expect(page.locator("#toast")).to_contain_text("Replayed 1 dead letter(s)")
        expect(body).to_contain_text("No open dead letter", timeout=30_000)
        deadline = time.monotonic() + 45
        while not (outbox / "PO-4712.json").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert json.loads((outbox / "PO-4712.json").read_text())["quantity"] == 7

        # -- the other main pages ---------------------------------------------------------
        page.goto(f"{base}/flows")
        expect(page.locator("#flow-rows")).to_contain_text("e2e-orders")
        shot("02-flows")
        page.goto(f"{base}/dashboard")
        expect(page.locator(".tile").first).to_be_visible()
        shot("10-dashboard")
        page.goto(f"{base}/tables/uom.csv")
        expect(page.locator("#table-check")).to_contain_text("Valid: 2 code(s)")
        shot("11-tables")
        page.goto(f"{base}/audit")
        expect(page.locator("#audit-rows")).to_contain_text("replay")
        shot("12-audit")
        page.goto(f"{base}/x12/overdue")
        expect(page.locator("#overdue-count")).to_contain_text("0 overdue")
        shot("13-x12-overdue")
        browser.close()
