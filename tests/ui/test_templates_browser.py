"""Templates and instances in a real headless Chromium against `flowyard serve` (issue 16
items 3, 4 and 6): the onboarding examples are deployed at start; an instance of a
several-flow template shows in the flows list as its flows, with labels, template and
diagram; an analyst opens a template, changes it, sees the impact listing every
instance with its tests, and saves the change as a draft. Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import CHROMIUM_ARGS, SHOTS, first_login, serving

ROOT = Path(__file__).resolve().parents[2]


INSTANCES = ("mx01-supplierz.yaml", "mx01-mes-production.yaml", "de02-mes-production.yaml")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The onboarding examples without their instance files (so the server starts
    without running every instance's gate); the test adds the instances once it runs."""
    flows = tmp_path / "flows"
    shutil.copytree(ROOT / "examples" / "onboarding", flows,
                    ignore=lambda folder, names: [n for n in names if Path(folder) == ROOT / "examples" / "onboarding"
                                                  and (n.endswith(".yaml") or n.startswith(".onboard-preview-"))])
    with serving(tmp_path, flows, start_timeout=150) as served:  # a loaded CI machine
        for name in INSTANCES:
            shutil.copyfile(ROOT / "examples" / "onboarding" / name, flows / name)
        yield served


@pytest.mark.browser
@pytest.mark.slow
def test_a_template_change_shows_its_impact_and_instances_look_like_flows(served: dict[str, Any], chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base, flows = served["base"], served["flows"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)

        page.goto(f"{base}/login")
        first_login(page, served["password"])

        # -- an instance of a several-flow template is three flows in the list ---------------
        row = page.locator("tr", has=page.locator('a[href="/flows/mx01-supplierz-850"]'))
        expect(row).to_contain_text("ERP purchase orders of MX01 to Supplier Z as X12 850")
        expect(row.locator(".labels")).to_contain_text("MX01")
        expect(row.locator(".labels")).to_contain_text("SUPPLIERZ")
        expect(row).to_contain_text("template supplier-x12-full")
        expect(row).to_contain_text("never deployed")
        for name in ("mx01-supplierz-856", "mx01-supplierz-810", "mx01-mes-production", "de02-mes-production"):
            expect(page.locator(f'a[href="/flows/{name}"]').first).to_be_visible()
        shot("t01-flows-with-instances")

        # -- deployed as one flow of the three: no false "changed" afterwards -------------
        page.goto(f"{base}/flows/mx01-supplierz-850")
        page.get_by_label("Note (why)").fill("Supplier Z goes live")
        page.get_by_role("button", name=re.compile("Deploy version")).click()
        expect(page.locator("#flow-status")).to_contain_text("Supplier Z goes live")
        page.goto(f"{base}/flows")
        row = page.locator("tr", has=page.locator('a[href="/flows/mx01-supplierz-850"]'))
        expect(row).not_to_contain_text("never deployed")
        expect(row).not_to_contain_text("draft differs")
        sibling = page.locator("tr", has=page.locator('a[href="/flows/mx01-supplierz-856"]'))
        expect(sibling).to_contain_text("never deployed")
        page.goto(f"{base}/flows?plant=DE02")
        expect(page.locator('a[href="/flows/de02-mes-production"]').first).to_be_visible()
        expect(page.locator('a[href="/flows/mx01-supplierz-850"]')).to_have_count(0)

        page.goto(f"{base}/flows/mx01-supplierz-856")
        diagram = page.locator(".diagram")
        expect(diagram).to_contain_text("x12.parse")
        expect(diagram).to_contain_text("file")
        expect(diagram).not_to_contain_text("no source")
        expect(page.locator(".instance-of")).to_contain_text("supplier-x12-full version 1.0")
        shot("t02-instance-flow-page")

        # -- from the instance to its template, and a change with its impact --------------
        page.locator(".instance-of").get_by_role("link", name="supplier-x12-full").click()
        expect(page).to_have_url(re.compile(r"/templates/supplier-x12-full$"))
        expect(page.locator("#template-instances")).to_contain_text("mx01-supplierz-810")
        page.goto(f"{base}/templates")
        page.get_by_role("link", name="plant-mes", exact=True).click()
        expect(page.locator("#template-parameters")).to_contain_text("plant_name")
        text = page.locator("#template-text")
        original = text.input_value()
        changed = original.replace("confirmations back to the ERP", "confirmations back to the ERP (reviewed)")
        assert changed != original
        text.fill(changed)
        page.get_by_role("button", name="Show the impact on every instance").click()
        impact = page.locator("#impact-instances")
        for instance in ("mx01-mes-production", "de02-mes-production"):
            expect(impact.locator(f'tr[data-instance="{instance}"]')).to_contain_text("description")
            expect(impact.locator(f'tr[data-instance="{instance}"]')).to_contain_text("PASS")
        expect(page.locator("#impact")).to_contain_text("Impact on 2 instance(s): 2 changed, 0 failing")
        page.locator("#impact").scroll_into_view_if_needed()
        shot("t03-template-impact")
        page.get_by_role("button", name="Save as draft").click()
        expect(page.locator("#template-saved")).to_contain_text("as a draft")
        assert "(reviewed)" in (flows / "templates" / "plant-mes.yaml").read_text()
        page.goto(f"{base}/changes")
        expect(page.locator("main")).to_contain_text("templates/plant-mes.yaml")
        shot("t04-template-draft")
        browser.close()
