"""Issue 15 end to end in a real headless Chromium against `flowyard serve --deploy-new`:
an analyst's save is a draft that changes no output; a deployer reviews it on the changes
page (the diff in words and line by line, the gate's verdict), a draft that fails its
tests is refused and the running version keeps running, the deployer sends it back with a
comment the analyst sees, and the fixed draft, once deployed, changes the output. A file
that cannot be read is shown with its reason and blocks nothing. Screenshots of the
changes page and the flow page go to test-artifacts/screenshots/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import CHROMIUM_ARGS, SHOTS, first_login, serving, wait_for

FLOW = """\
# Orders dropped as JSON files, written out for the MES
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: rv-orders
  description: Orders from the ERP drop folder to the MES folder
  labels: {plant: MX01, partner: ERP, domain: production}
source:
  file: {path: inbox/rv-orders, pattern: "*.json", poll: 1s, settle: 0s}
steps:
  - jmespath: "{order: po, quantity: qty}"
  - json.render: {}
targets:
  - file: {path: outbox/rv-orders, name: "{{ data.order }}.json"}
tests:
  - name: one order
    input: tests/order.json
    expect: tests/order.expected.json
"""
BROKEN_TEST = FLOW.replace("quantity: qty}", "quantity: po}")  # its test fails
RENAMED = FLOW.replace('name: "{{ data.order }}.json"', 'name: "order-{{ data.order }}.json"')  # tests pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    flows = tmp_path / "flows"
    (flows / "tables").mkdir(parents=True)
    (flows / "tests").mkdir()
    (flows / "tables" / "uom.csv").write_text("code,value\nEA,each\n")
    (flows / "tests" / "order.json").write_text('{"po": "PO-1", "qty": 2}')
    (flows / "tests" / "order.expected.json").write_text('{"order": "PO-1", "quantity": 2}')
    (flows / "rv-orders.yaml").write_text(FLOW)
    (flows / "zz-broken.yaml").write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: [unclosed\n")
    with serving(tmp_path, flows) as served:
        yield served




@pytest.mark.browser
@pytest.mark.slow
def test_a_save_is_a_draft_until_a_deployer_deploys_it(served: dict[str, Any], chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base, flows = served["base"], served["flows"]
    inbox, outbox = flows / "inbox" / "rv-orders", flows / "outbox" / "rv-orders"
    inbox.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        boss = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        ana = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        for p in (boss, ana):
            p.set_default_timeout(20_000)
        expect.set_options(timeout=20_000)

        def login(page: Any, user: str, password: str, new: str) -> None:
            page.goto(f"{base}/login")
            first_login(page, password, user=user, new=new)

        # -- the admin (a deployer) and an analyst ------------------------------------------
        login(boss, "admin", served["password"], "a long admin password")
        boss.goto(f"{base}/admin/users")
        form = boss.locator("form", has=boss.get_by_label("One-time password"))
        form.get_by_label("User name").fill("ana")
        form.get_by_label("Full name").fill("Ana Analyst")
        form.get_by_label("Role").select_option("analyst")
        form.get_by_label("One-time password").fill("first password 1")
        form.get_by_role("button").click()
        expect(boss.locator("body")).to_contain_text("User ana created")
        login(ana, "ana", "first password 1", "ana's own password")

        # -- --deploy-new deployed the flow; the broken file is shown, with its reason --------
        expect(ana.locator("#flow-rows")).to_contain_text("rv-orders")
        expect(ana.locator(".broken-files")).to_contain_text("zz-broken.yaml")
        (inbox / "po-1.json").write_text(json.dumps({"po": "PO-1", "qty": 5}))
        assert wait_for(outbox / "PO-1.json")["quantity"] == 5

        # -- the analyst saves a change whose test fails: a draft, nothing runs differently ---
        ana.goto(f"{base}/flows/rv-orders/edit")
        ana.wait_for_load_state("load")
        ana.locator("#yaml-pane .cm-content").fill(BROKEN_TEST)
        ana.locator("#show-diff").click()
        pane = ana.locator("#diff-pane")
        expect(pane).to_contain_text("Changes to save")
        expect(pane.locator("table.diff.sbs")).to_be_visible()  # side by side on a wide screen
        assert pane.locator("table.diff.sbs td.del").count() == 1 and pane.locator("table.diff.sbs td.add").count() == 1
        unified = [t.strip() for t in pane.locator("pre.diff .dl").all_text_contents()]
        assert unified[:2] == ["--- a/rv-orders.yaml", "+++ b/rv-orders.yaml"]  # a line each, not run together
        ana.set_viewport_size({"width": 1000, "height": 1000})
        expect(pane.locator("pre.diff.unified")).to_be_visible()  # narrow: the unified diff, line by line
        box = [pane.locator("pre.diff .dl").nth(i).bounding_box() for i in range(3)]
        assert box[0] and box[1] and box[2] and box[0]["y"] < box[1]["y"] < box[2]["y"]
        pane.scroll_into_view_if_needed()
        ana.screenshot(path=str(SHOTS / "20-editor-diff-lines.png"))
        ana.set_viewport_size({"width": 1440, "height": 1000})
        ana.locator("#confirm-save").click()
        expect(pane).to_contain_text("Saved rv-orders.yaml")
        (inbox / "po-2.json").write_text(json.dumps({"po": "PO-2", "qty": 6}))
        assert wait_for(outbox / "PO-2.json")["quantity"] == 6  # the deployed version still runs
        ana.goto(f"{base}/changes")
        expect(ana.locator("#changes-body")).to_contain_text("rv-orders")
        assert ana.get_by_role("button", name=re.compile("^Deploy")).count() == 0  # analysts do not deploy

        # -- the deployer reviews it: words, lines, the gate refuses; deploying changes nothing
        boss.goto(f"{base}/changes")
        card = boss.locator("article[data-key='rv-orders.yaml']")
        expect(card.locator("ul.semantic")).to_contain_text("quantity")
        expect(card.locator(".gate")).to_contain_text("The gate would refuse it")
        expect(card.locator(".gate")).to_contain_text("one order")
        expect(boss.locator("article[data-key='zz-broken.yaml']")).to_contain_text("cannot be deployed")
        boss.screenshot(path=str(SHOTS / "21-changes-refused-draft.png"), full_page=True)
        card.get_by_role("button", name="Deploy rv-orders.yaml").click()
        expect(boss.locator("#toast")).to_contain_text("Not deployed, the running version stays")
        boss.goto(f"{base}/flows/rv-orders")
        expect(boss.locator(".refused")).to_contain_text("one order")
        expect(boss.locator("#deploy-state")).to_contain_text("draft differs from deployed")
        boss.goto(f"{base}/changes")
        card = boss.locator("article[data-key='rv-orders.yaml']")
        card.get_by_label("Comment for the author").fill("the test expects the quantity, not the PO")
        card.get_by_role("button", name="Send back").click()
        expect(boss.locator("#toast")).to_contain_text("Sent rv-orders.yaml back")

        # -- the analyst sees the comment, fixes the draft (a new file name) and saves --------
        ana.goto(f"{base}/flows/rv-orders")
        expect(ana.locator(".sent-back")).to_contain_text("the test expects the quantity")
        ana.goto(f"{base}/flows/rv-orders/edit")
        ana.wait_for_load_state("load")
        ana.locator("#yaml-pane .cm-content").fill(RENAMED)
        ana.locator("#show-diff").click()
        ana.locator("#confirm-save").click()
        expect(ana.locator("#diff-pane")).to_contain_text("Saved rv-orders.yaml")
        (inbox / "po-3.json").write_text(json.dumps({"po": "PO-3", "qty": 7}))
        assert wait_for(outbox / "PO-3.json")["quantity"] == 7  # still the old name: not deployed
        ana.goto(f"{base}/flows/rv-orders")
        expect(ana.locator(".sent-back")).to_have_count(0)

        # -- the deployer deploys it from the changes page; the output changes ---------------
        boss.goto(f"{base}/changes")
        card = boss.locator("article[data-key='rv-orders.yaml']")
        expect(card.locator(".gate")).to_contain_text("would deploy")
        expect(card.locator("table.diff.sbs td.add")).to_contain_text("order-{{ data.order }}.json")
        boss.screenshot(path=str(SHOTS / "22-changes-page.png"), full_page=True)
        card.get_by_label("Note").fill("file names as the MES wants them")
        card.get_by_role("button", name="Deploy rv-orders.yaml").click()
        expect(boss.locator("#toast")).to_contain_text("Deployed rv-orders.yaml")
        expect(boss.locator("article[data-key='rv-orders.yaml']")).to_have_count(0)
        boss.goto(f"{base}/flows/rv-orders")
        status = boss.locator("#flow-status")
        expect(status).to_contain_text("file names as the MES wants them")
        expect(status).to_contain_text("The draft on disk is the deployed version")
        version = boss.locator("#deploy-state code").first.inner_text()
        expect(status.locator(".runs-table")).to_contain_text(version, timeout=30_000)  # what the worker runs
        expect(status.locator(".refused")).to_have_count(0)
        boss.screenshot(path=str(SHOTS / "23-flow-page-runs.png"), full_page=True)
        (inbox / "po-4.json").write_text(json.dumps({"po": "PO-4", "qty": 8}))
        assert wait_for(outbox / "order-PO-4.json")["quantity"] == 8
        boss.goto(f"{base}/audit")
        rows = boss.locator("#audit-rows")
        expect(rows).to_contain_text("sent-back")
        expect(rows).to_contain_text("deploy-refused")
        browser.close()
