"""Issue 15 item 7 in a real headless Chromium against `flowyard serve --deploy-new`:
a flow's tests run from its page (per case, with the diff of a failing one); the main
search box of the runs page finds a business-key value and a file name; a failed
message's timeline is in the order things happened; a replay, from the run page and
from the dead-letters page, first shows the output diff and replays on confirm.
Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import CHROMIUM_ARGS, SHOTS, first_login, serving, wait_for

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: bt-orders
  description: Orders with a per-unit price
  labels: {plant: MX01, partner: ERP, domain: production}
source:
  file: {path: inbox/bt-orders, pattern: "*.json", poll: 1s, settle: 0s}
steps:
  - name: pick
    jmespath: "{order: po, qty: qty}"
  - name: per-unit
    jinja:
      template: '{"order": "{{ data.order }}", "unit": {{ 10 / data.qty }}}'
      content_type: application/json
targets:
  - file: {path: outbox/bt-orders, name: "{{ data.order }}.json"}
keys:
  po_number: order
tests:
  - name: one order
    input: tests/order.json
    expect: tests/order.expected.json
"""
FIXED = FLOW.replace("{{ 10 / data.qty }}", "{{ 10 / data.qty if data.qty else 0 }}")
EXPECTED = '{"order": "PO-1", "unit": 5.0}'


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    flows = tmp_path / "flows"
    (flows / "tests").mkdir(parents=True)
    (flows / "tests" / "order.json").write_text('{"po": "PO-1", "qty": 2}')
    (flows / "tests" / "order.expected.json").write_text(EXPECTED)
    (flows / "bt-orders.yaml").write_text(FLOW)
    with serving(tmp_path, flows) as served:
        yield served




@pytest.mark.browser
@pytest.mark.slow
def test_tests_search_timeline_and_replay_preview(served: dict[str, Any], chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base, flows = served["base"], served["flows"]
    inbox, outbox = flows / "inbox" / "bt-orders", flows / "outbox" / "bt-orders"
    inbox.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        page.set_default_timeout(20_000)
        expect.set_options(timeout=20_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)

        page.goto(f"{base}/login")
        first_login(page, served["password"])

        # -- messages: two that fail at per-unit (qty 0), one that goes through ------------
        (inbox / "po-4711.json").write_text(json.dumps({"po": "PO-4711", "qty": 0}))
        (inbox / "po-4712.json").write_text(json.dumps({"po": "PO-4712", "qty": 0}))
        (inbox / "po-45001.json").write_text(json.dumps({"po": "PO-45001", "qty": 4}))
        assert wait_for(outbox / "PO-45001.json") == {"order": "PO-45001", "unit": 2.5}

        # -- the flow's tests, from its page -----------------------------------------------
        page.goto(f"{base}/flows/bt-orders")
        tests = page.locator("#flow-tests")
        expect(tests).to_contain_text("not run")
        tests.get_by_role("button", name="Run tests").click()
        expect(page.locator("#tests-verdict")).to_have_text("1 passed")
        expect(tests.locator(".test-case.ok")).to_contain_text("one order")
        # the expected file changes under it: the result no longer holds; run again
        (flows / "tests" / "order.expected.json").write_text('{"order": "PO-1", "unit": 4.0}')
        page.reload()
        expect(page.locator("#tests-verdict")).to_have_text("not run")
        tests.get_by_role("button", name="Run tests").click()
        expect(page.locator("#tests-verdict")).to_have_text("1 of 1 failed")
        expect(tests.locator(".test-case.failed .diff.unified")).to_contain_text('+  "unit": 5.0')
        tests.scroll_into_view_if_needed()
        shot("14-flow-tests")
        page.goto(f"{base}/flows")
        expect(page.locator("#flow-rows .tests-cell")).to_contain_text("1 of 1 failed")
        (flows / "tests" / "order.expected.json").write_text(EXPECTED)

        # -- the main search box: a business-key value, a file name --------------------------
        page.goto(f"{base}/runs")
        rows = page.locator("#run-rows")
        expect(rows.locator("tr")).to_have_count(3, timeout=45_000)
        search = page.get_by_role("textbox", name="Search")
        search.fill("4711")
        expect(rows.locator("tr")).to_have_count(1)
        expect(rows).to_contain_text("po-4711.json")
        shot("15-runs-search-key")
        search.fill("po-45001.json")
        expect(rows.locator("tr")).to_have_count(1)
        expect(rows.locator(".state.done")).to_be_visible()
        search.fill("PO-4711")
        expect(rows.locator("tr")).to_have_count(1)
        expect(rows).to_contain_text("po-4711.json")

        # -- the failed message's timeline, in the order things happened ---------------------
        href = rows.locator("a[title]").first.get_attribute("href")  # the rows are polled: no click on a row a swap may replace
        page.goto(f"{base}{href}")
        body = page.locator("#message-body")
        expect(body).to_contain_text("dead letter (per-unit)")
        titles = [t.strip() for t in body.locator(".timeline > li > strong").all_inner_texts()]
        assert titles == ["received po-4711.json", "pick", "per-unit", "processing (attempt 1)",
                          "dead letter (per-unit)", "dead"], titles
        shot("16-message-timeline")

        # -- fix the flow and deploy it; replay from the run page: the diff first -----------
        message_url = page.url
        (flows / "bt-orders.yaml").write_text(FIXED)
        page.goto(f"{base}/flows/bt-orders")
        page.get_by_label("Note (why)").fill("qty 0 gives unit 0")
        page.get_by_role("button", name=re.compile("Deploy version")).click()
        expect(page.locator("#flow-status")).to_contain_text("qty 0 gives unit 0")
        page.goto(message_url)
        page.get_by_role("button", name="Replay with the current version").click()
        preview = page.locator("#replay-preview")
        expect(preview).to_contain_text("Replay 1 dead letter(s) with the current version?")
        expect(preview.locator(".diff.unified")).to_contain_text("--- failed: step 'per-unit'")
        expect(preview.locator(".diff.unified")).to_contain_text('+{"order": "PO-4711", "unit": 0}')
        expect(preview.locator(".diff.sbs td.del")).to_contain_text("--- failed: step 'per-unit'")  # side by side too
        assert not (outbox / "PO-4711.json").exists()  # a preview replays nothing
        shot("17-replay-preview")
        preview.get_by_role("button", name="Replay 1 with the current version").click()
        expect(page.locator("#toast")).to_contain_text("Replayed 1 dead letter(s)")
        expect(preview).to_be_empty()
        assert wait_for(outbox / "PO-4711.json") == {"order": "PO-4711", "unit": 0}

        # -- and from the dead-letters page ---------------------------------------------------
        page.goto(f"{base}/dead-letters")
        dead = page.locator("#dead-body")
        expect(dead).to_contain_text("per-unit")
        dead.get_by_role("button", name="Replay…", exact=True).click()
        expect(preview).to_contain_text("Replay 1 dead letter(s) with the current version?")
        expect(preview.locator(".diff.unified")).to_contain_text('+{"order": "PO-4712", "unit": 0}')
        shot("18-dead-letters-replay-preview")
        preview.locator("#confirm-replay").click()
        expect(page.locator("#toast")).to_contain_text("Replayed 1 dead letter(s)")
        expect(dead).to_contain_text("No open dead letter", timeout=30_000)
        assert wait_for(outbox / "PO-4712.json") == {"order": "PO-4712", "unit": 0}
        browser.close()
