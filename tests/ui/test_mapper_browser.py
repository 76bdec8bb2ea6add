"""The mapper and the playground's change marks in a real headless Chromium against
`flowyard serve` (issue 21 items 1, 2, 4, 5): from the editor to the mapper, map a new
canonical field by clicking only, see its value, save it and find exactly that field in
the flow file's diff; open every shipped object-building mapping of a flow and save it
unchanged with no byte changed; the playground's lanes mark what a step added and fit a
1366 px laptop screen. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowyard import mapping
from flowyard.yamlio import load_text

from .serving import CHROMIUM_ARGS, ROOT, SHOTS, first_login, serving

ASN_SAMPLE = ROOT / "examples" / "x12" / "856-supplierx-2cartons.edi"


def shipped_flows_with_mappings() -> list[Path]:
    """Every Flow file in flows/ and examples/ with a jmespath step that builds an object
    (templates are not flows the UI opens; tests/core/test_mapping.py covers them)."""
    found = []
    for path in sorted([*(ROOT / "flows").glob("*.yaml"), *(ROOT / "examples").rglob("*.yaml")]):
        try:
            document = load_text(path.read_text(encoding="utf-8"), path.name)
        except Exception:  # not every YAML file there is a definition
            continue
        if (
            isinstance(document, dict)
            and document.get("kind") == "Flow"
            and any(s.mapping is not None for s in mapping.jmespath_steps(document))
        ):
            found.append(path)
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    flows = tmp_path / "flows"
    (flows / "tables").mkdir(parents=True)
    with serving(tmp_path, flows) as served:
        # the shipped flows arrive once the server runs (nothing to deploy at its start);
        # their tests read ../examples
        shutil.copytree(ROOT / "flows", flows, dirs_exist_ok=True)
        shutil.copytree(ROOT / "examples", tmp_path / "examples")
        yield served


@pytest.mark.browser
@pytest.mark.slow
def test_map_by_clicking_save_and_see_the_changes(served: dict[str, Any], chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base, flows = served["base"], served["flows"]
    asn = flows / "mx01-supplierx-asn.yaml"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 800})
        page.set_default_timeout(20_000)
        expect.set_options(timeout=15_000)
        page.goto(f"{base}/flows")
        first_login(page, served["password"])

        # -- from the editor to the mapper, by clicking -----------------------------------
        page.goto(f"{base}/flows/mx01-supplierx-asn/edit")
        page.locator("#open-mapper").click()
        expect(page).to_have_url(re.compile(r"/flows/mx01-supplierx-asn/mapper$"))
        page.locator("a.map-step").first.click()
        expect(page).to_have_url(re.compile(r"/mapper/2$"))
        page.wait_for_load_state("load")
        rows = page.locator("tr.mapper-row")
        shipment_id = rows.filter(has=page.locator('input[name="path"][value="/shipment_id"]'))
        expect(shipment_id.locator(".mapper-value")).to_contain_text('"ASN-77812"')
        target = rows.filter(has=page.locator('input[name="path"][value="/expected_delivery"]'))
        expect(target.locator(".expr-input")).to_have_value("")
        before = asn.read_text()

        # -- a source field dragged onto a target writes its path -------------------------
        target.scroll_into_view_if_needed()  # both in view (the source side is sticky): no scrolling mid-drag
        page.locator('.source-field[data-path="BSN.BSN02"]').drag_to(target.locator(".expr-input"))
        expect(target.locator(".expr-input")).to_have_value("BSN.BSN02")
        expect(target.locator(".mapper-value")).to_contain_text('"ASN-77812"')

        # -- map a new canonical field by clicking only ------------------------------------
        target.locator(".expr-input").click()
        page.locator('.source-field[data-path="BSN.BSN03"]').click()
        expect(target.locator(".expr-input")).to_have_value("BSN.BSN03")
        expect(target.locator(".mapper-value")).to_contain_text('"20261120"')
        target.locator(".choices > summary").click()
        target.locator("select").select_option("to_date")  # a date read with the format (%Y%m%d unless told)
        target.get_by_role("button", name="apply").click()
        target = page.locator("tr.mapper-row").filter(has=page.locator('input[name="path"][value="/expected_delivery"]'))
        expect(target.locator(".expr-input")).to_have_value("to_date(BSN.BSN03, '%Y%m%d')")
        expect(target.locator(".mapper-value")).to_contain_text('"2026-11-20"')
        expect(target.locator(".mark.bad")).to_have_count(0)
        # a field inside the list of items is written relative to its element
        uom = page.locator("tr.mapper-row").filter(has=page.locator('input[name="path"][value="/items/uom"]'))
        expect(uom.locator(".mapper-value")).to_contain_text('"EA"')
        target.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "mapper-1-mapped.png"), full_page=False)
        page.locator("#mapper-save").click()
        result = page.locator("#mapper-result")
        expect(result).to_contain_text("field 'expected_delivery' added")
        expect(result.locator(".mapper-diff")).to_contain_text("+        expected_delivery: to_date(BSN.BSN03, '%Y%m%d')")
        page.screenshot(path=str(SHOTS / "mapper-2-saved.png"), full_page=False)
        after = asn.read_text()
        removed = [line for line in before.splitlines() if line not in after.splitlines()]
        added = [line for line in after.splitlines() if line not in before.splitlines()]
        assert removed == ["        }"]  # the last field before it gained a comma; nothing else moved
        assert added == ["        },", "        expected_delivery: to_date(BSN.BSN03, '%Y%m%d')"]

        # -- every shipped mapping of a flow opens and saves unchanged, byte for byte --------
        examples = [p for p in shipped_flows_with_mappings() if p.parent != ROOT / "flows"]
        for path in examples:
            shutil.copyfile(path, flows / path.name)
        checked = 0
        for path in shipped_flows_with_mappings():
            name = path.stem
            copy = flows / path.name
            if path.name == asn.name:
                continue  # changed above
            document = load_text(copy.read_text(), copy.name)
            for step in mapping.jmespath_steps(document):
                if step.mapping is None:
                    continue
                original = copy.read_bytes()
                page.goto(f"{base}/flows/{name}/mapper/{step.index + 1}")
                expect(page.locator("#targets")).to_be_visible()
                page.locator("#mapper-save").click()
                expect(page.locator("#mapper-result")).to_contain_text("Nothing to save: the mapping is unchanged.")
                assert copy.read_bytes() == original, f"{copy.name} step {step.index + 1} changed"
                checked += 1
        assert checked >= 14

        # -- the playground marks what each step changed; lanes fit a laptop screen ------------
        page.goto(f"{base}/flows/mx01-supplierx-asn/playground")
        page.wait_for_load_state("load")
        page.locator("#pg-sample").fill(ASN_SAMPLE.read_text())
        page.locator("#pg-sample-name").fill("856.edi")
        lane = page.locator('.lane[data-step="to canonical shipment"]')
        expect(lane.locator('.lane-changes li[data-change="added"]').first).to_be_visible()
        expect(lane.locator(".lane-changes")).to_contain_text("expected_delivery")
        expect(lane.locator("pre.marked span.added").first).to_be_visible()
        lane.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "playground-changes.png"), full_page=False)
        widths = page.evaluate(
            "() => ({page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,"
            " lanes: [...document.querySelectorAll('.lane')].map(l => [l.getBoundingClientRect().left, l.getBoundingClientRect().right, l.getBoundingClientRect().top])})"
        )
        assert widths["page"] <= widths["view"], widths  # no sideways scroll
        first, second = widths["lanes"][1], widths["lanes"][2]
        assert first[2] == second[2] and second[1] <= widths["view"], widths  # two steps side by side, in view
        browser.close()
