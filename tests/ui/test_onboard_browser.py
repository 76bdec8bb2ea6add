"""Issue 16 end to end in a real headless Chromium against `flowyard serve`: users made
with `flowyard users add`; an analyst onboards a new plant from a template by clicking
and typing values only (no YAML), sees a wrong value refused at its field with nothing
written, previews, tries the samples, runs the tests and saves a draft; a deployer
deploys it from the changes page through the gate; the template's sample input dropped
into the plant's folder comes out as the ERP's files. Then a new X12 supplier in one
pass (supplier-x12-full: three flows from one small instance), deployed the same way,
its sample ship notice dropped in and the shipment out. Screenshots go to
test-artifacts/screenshots/.

The plant's template is plant-production-confirmations (flows/templates/), whose flow
writes files; plant-mes delivers to the plant MES over HTTPS, which this test has no
server for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import CHROMIUM_ARGS, FLOWYARD, ROOT, SHOTS, serving

PASSWORD = "a long password 16"
EXAMPLES = ROOT / "examples" / "onboarding"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    # two levels down: the plant template's paths start "../data", the supplier's "../../data"
    flows = tmp_path / "site" / "flows"
    (flows / "templates").mkdir(parents=True)
    (flows / "tables").mkdir()
    shutil.copy(ROOT / "flows" / "templates" / "plant-production-confirmations.yaml", flows / "templates")
    shutil.copytree(ROOT / "flows" / "templates" / "plant-production-confirmations",
                    flows / "templates" / "plant-production-confirmations")
    for name in ("supplier-x12", "supplier-x12-full"):
        shutil.copy(EXAMPLES / "templates" / f"{name}.yaml", flows / "templates")
        shutil.copytree(EXAMPLES / "templates" / name, flows / "templates" / name)
    for table in ("plant-codes.yaml", "erp-uom.csv"):
        shutil.copy(ROOT / "flows" / "tables" / table, flows / "tables")
    shutil.copy(EXAMPLES / "tables" / "uom.csv", flows / "tables")
    with serving(tmp_path, flows) as served:
        yield served


def add_users(tmp_path: Path) -> None:
    """`flowyard users add` for an analyst (password on stdin) and a deployer (from a
    file), on the store the server uses; both at once (each process takes a while to start)."""
    env = {**os.environ, "FLOWYARD_DATA_DIR": str(tmp_path / "data")}
    env.pop("FLOWYARD_DATABASE_URL", None)
    secret = tmp_path / "deployer-password"
    secret.write_text(PASSWORD + "\n")
    runs = [
        subprocess.Popen([str(FLOWYARD), "users", "add", "ana", "--role", "analyst", "--display-name", "Ana Analyst"],
                         cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True),
        subprocess.Popen([str(FLOWYARD), "users", "add", "dep", "--role", "deployer", "--password-file", str(secret)],
                         cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True),
    ]
    outputs = [run.communicate(PASSWORD + "\n" if i == 0 else None, timeout=180) for i, run in enumerate(runs)]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert PASSWORD not in out + err
    assert outputs[0][0].strip() == "added ana (analyst)" and outputs[1][0].strip() == "added dep (deployer)"


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.browser
@pytest.mark.slow
def test_onboard_a_plant_in_the_browser_and_deploy_it(served: dict[str, Any], tmp_path: Path, chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base, flows = served["base"], served["flows"]
    add_users(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        ana = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        dep = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        for p in (ana, dep):
            p.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)

        def login(page: Any, user: str) -> None:
            page.goto(f"{base}/login")
            page.get_by_label("User name").fill(user)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(re.compile(r"/flows$"))

        # -- the analyst picks the template -------------------------------------------------
        login(ana, "ana")
        ana.get_by_role("link", name="Onboard", exact=True).click()
        expect(ana.locator("li[data-template='plant-production-confirmations']")).to_contain_text(
            "Shop-floor CSV confirmations of one plant to the ERP")
        ana.screenshot(path=str(SHOTS / "60-onboard-templates.png"), full_page=True)
        ana.get_by_role("link", name="Onboard with plant-production-confirmations").click()
        expect(ana.locator("h1")).to_contain_text("Onboard with plant-production-confirmations")

        # -- a wrong value is refused at its field as it is typed, and on save: nothing written
        before = files_under(flows)
        ana.locator("#f-plant").fill("DE2")
        plant_error = ana.locator("#err-plant")
        expect(plant_error).to_be_visible()
        expect(plant_error).to_contain_text("'DE2' does not match the pattern")
        ana.locator("#f-plant_name").fill("Stuttgart")
        ana.get_by_role("button", name="Save as draft").click()
        expect(ana.locator("#onboard-result .refused")).to_contain_text("Not saved, nothing was written")
        expect(plant_error).to_contain_text("does not match the pattern")
        ana.screenshot(path=str(SHOTS / "61-onboard-refused-at-the-field.png"), full_page=True)
        assert files_under(flows) == before

        # -- right values: the code from the table's pick-list -------------------------------
        ana.locator("#f-plant").fill("DE02")
        expect(plant_error).to_be_hidden()
        ana.locator("#f-shopfloor_name").select_option("STR")
        assert ana.locator("#f-delimiter").input_value() == ";"  # the default, chosen already
        ana.get_by_role("button", name="Preview").click()
        flow_preview = ana.locator("section[data-flow='de02-production-confirmations']")
        expect(flow_preview).to_contain_text("The flow loads and checks clean.")
        expect(flow_preview.locator(".diagram .node.source")).to_contain_text("file")
        ana.screenshot(path=str(SHOTS / "62-onboard-preview.png"), full_page=True)
        ana.get_by_role("button", name="Try the samples").click()
        tried = ana.locator("section.tried")
        expect(tried).to_have_count(1)
        expect(tried.locator(".lane[data-step='one message per row']")).to_be_visible()
        expect(tried).to_contain_text("All steps succeeded")
        ana.screenshot(path=str(SHOTS / "63-onboard-try.png"), full_page=True)
        ana.get_by_role("button", name="Run the tests").click()
        expect(ana.locator("#onboard-tests-verdict")).to_contain_text("1 of 1 passed")
        assert files_under(flows) == before  # nothing written yet
        ana.get_by_role("button", name="Save as draft").click()
        expect(ana.locator("#onboard-result .saved")).to_contain_text("Saved de02-production-confirmations as a draft")
        ana.screenshot(path=str(SHOTS / "64-onboard-saved.png"), full_page=True)
        assert (flows / "de02-production-confirmations.yaml").is_file()

        # -- the deployer deploys it through the gate -----------------------------------------
        login(dep, "dep")
        dep.goto(f"{base}/changes")
        card = dep.locator("article[data-key='de02-production-confirmations.yaml']")
        expect(card).to_contain_text("last saved by ana")
        expect(card.locator(".gate")).to_contain_text("would deploy")
        dep.screenshot(path=str(SHOTS / "65-onboard-draft-on-changes.png"), full_page=True)
        card.get_by_role("button", name="Deploy de02-production-confirmations.yaml").click()
        expect(dep.locator("#toast")).to_contain_text("Deployed de02-production-confirmations.yaml")

        # -- the template's sample, dropped into the plant's folder, reaches the ERP's --------
        inbox = flows.parent / "data" / "inbox" / "de02-production-confirmations"
        outbox = flows.parent / "data" / "outbox" / "erp" / "confirmations"
        inbox.mkdir(parents=True, exist_ok=True)
        shutil.copy(flows / "tests" / "de02-production-confirmations" / "confirmations.csv", inbox / "shift-1.csv")
        deadline = time.monotonic() + 60
        while len(list(outbox.glob("conf-5120-*.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        written = sorted(outbox.glob("conf-5120-*.json"))
        assert len(written) == 2, (list(outbox.parent.rglob("*")) if outbox.parent.exists() else "no outbox")
        first = json.loads(written[0].read_text())
        assert first["plant"] == "DE02" and first["uom"] == "EA" and first["order_id"] == "5120"
        assert not list(outbox.glob("conf-4711-*"))  # another plant's row stays out

        # -- a new X12 supplier in one pass: three flows from one small instance --------------
        ana.goto(f"{base}/onboard")
        ana.get_by_role("link", name="Onboard with supplier-x12-full").click()
        partner = ana.locator("#f-partner")  # pattern ^[a-z][a-z0-9-]{1,30}$: the browser checks it too
        partner.fill("supplier q")
        assert partner.evaluate("e => e.validity.patternMismatch") is True
        partner.fill("supplier-q2")
        assert partner.evaluate("e => e.validity.patternMismatch") is False
        partner.fill("supplierq")
        ana.locator("#f-partner_name").fill("Supplier Q")
        ana.locator("#f-isa_id").fill("SUPPLIER Q")  # a space: refused at the field
        expect(ana.locator("#err-isa_id")).to_contain_text("does not match the pattern")
        ana.locator("#f-isa_id").fill("SUPPLIERQ")
        expect(ana.locator("#err-isa_id")).to_be_hidden()
        ana.locator("#f-plant").fill("MX01")
        ana.locator("#f-acknowledgment").select_option("none")
        ana.get_by_role("button", name="Preview").click()
        for suffix in ("856", "810", "850"):
            expect(ana.locator(f"section[data-flow='mx01-supplierq-{suffix}']")).to_contain_text("checks clean")
        ana.screenshot(path=str(SHOTS / "66-onboard-supplier-preview.png"), full_page=True)
        ana.get_by_role("button", name="Run the tests").click()
        verdict = ana.locator("#onboard-tests-verdict")
        expect(verdict).to_contain_text("passed")
        passed, total = re.findall(r"\d+", verdict.inner_text())[:2]
        assert passed == total and int(total) >= 4, verdict.inner_text()
        ana.get_by_role("button", name="Save as draft").click()
        expect(ana.locator("#onboard-result .saved")).to_contain_text("Saved mx01-supplierq as a draft")
        assert (flows / "partners" / "supplierq.yaml").is_file()
        dep.goto(f"{base}/changes")
        cards = dep.locator("article[data-key='mx01-supplierq.yaml']")  # a card per flow of the file
        expect(cards).to_have_count(3)
        for n in range(3):
            expect(cards.nth(n).locator(".gate")).to_contain_text("would deploy")
        card = cards.first
        card.get_by_role("button", name="Deploy mx01-supplierq.yaml").click()
        expect(dep.locator("#toast")).to_contain_text("Deployed mx01-supplierq.yaml")
        ship_in = tmp_path / "data" / "inbox" / "supplierq" / "856"
        ship_out = tmp_path / "data" / "outbox" / "mx01" / "shipments"
        ship_in.mkdir(parents=True, exist_ok=True)
        shutil.copy(flows / "tests" / "mx01-supplierq" / "856.edi", ship_in / "asn-1.edi")
        deadline = time.monotonic() + 60
        while not list(ship_out.glob("*")) and time.monotonic() < deadline:
            time.sleep(0.5)
        shipped = list(ship_out.glob("*"))
        assert len(shipped) == 1, list((tmp_path / "data").rglob("*"))
        expected = json.loads((flows / "tests" / "mx01-supplierq" / "856.expected.json").read_text())
        assert json.loads(shipped[0].read_text()) == expected
        browser.close()
