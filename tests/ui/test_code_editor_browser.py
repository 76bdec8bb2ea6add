"""The code editor in a real headless Chromium against `flowyard serve`: a wrong option
name typed into the YAML is underlined with the did-you-mean in its tooltip (and fixed
with one click), completion on a new step offers the step names, hover shows an
option's help, the form view's csv `types` rows are edited and saved, and with the
editor's script blocked the page still works as a plain textarea. Screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import CHROMIUM_ARGS, SHOTS, first_login, serving

FLOW = """\
# Stock levels from the WMS export
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: wms-stock
  description: Stock levels from the WMS to the MES
source:
  file: {path: inbox/wms-stock, pattern: "*.csv", poll: 1s, settle: 0s}
steps:
  - csv.parse: {delimiter: ";", types: {qty: integer}}   # the WMS writes semicolons
  - jmespath: "[?qty > `0`].{sku: sku, qty: qty, plant: 'MX01'}"
  - json.render: {}
targets:
  - file: {path: outbox/wms-stock, name: "{{ key }}.json"}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "wms-stock.yaml").write_text(FLOW, encoding="utf-8")
    with serving(tmp_path, flows) as served:
        yield served


@pytest.mark.browser
@pytest.mark.slow
def test_the_code_editor_underlines_completes_and_the_form_edits_a_map(served: dict[str, Any], chromium_path: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base, flows = served["base"], served["flows"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        expect.set_options(timeout=15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        page.goto(f"{base}/login")
        first_login(page, served["password"])

        # -- the editor replaces the textarea; JMESPath and Jinja are highlighted inside -----
        page.goto(f"{base}/flows/wms-stock/edit")
        code = page.locator("#yaml-pane .cm-content")
        expect(code).to_be_visible()
        expect(page.locator("#yaml")).to_be_hidden()  # still the form field, written by the editor
        expect(page.locator(".cm-jp-function")).to_have_count(0)
        expect(page.locator(".cm-jp-literal")).to_have_text(["`0`"])
        expect(page.locator(".cm-jp-string")).to_have_text(["'MX01'"])
        expect(page.locator(".cm-jinja")).to_have_text([" key "])

        # -- type a wrong option name: underlined, the tooltip says what was meant ----------
        page.locator(".cm-line", has_text="json.render").click()
        page.keyboard.press("End")
        page.keyboard.press("ArrowLeft")  # inside the {}
        page.keyboard.type("indnt: 4")
        underline = page.locator(".cm-lintRange-error")
        expect(underline).to_have_text("indnt")
        # the problem list's line button puts the editor's cursor on the problem
        line = FLOW.splitlines().index("  - json.render: {}") + 1
        page.locator(".cm-line", has_text="csv.parse").click()
        page.locator("#issues").get_by_role("button", name=f"line {line}:").click()
        at = "(v => { const h = v.state.selection.main.head; const l = v.state.doc.lineAt(h); return [l.number, h - l.from + 1]; })"
        assert page.evaluate(f"{at}(flowyardEditor.view('yaml'))") == [line, 19]
        underline.hover()
        tooltip = page.locator(".cm-tooltip-lint")
        expect(tooltip).to_contain_text("unknown option 'indnt'; did you mean 'indent'?")
        page.screenshot(path=str(SHOTS / "30-code-editor-did-you-mean.png"))
        tooltip.get_by_text("Change to indent").click()
        expect(page.locator("#issues")).to_contain_text("No problems")
        expect(underline).to_have_count(0)
        assert "- json.render: {indent: 4}" in page.locator("#yaml").input_value()

        # -- completion on a new step offers the step names; picking one writes it ---------
        page.locator(".cm-line", has_text="json.render").click()
        page.keyboard.press("End")
        page.keyboard.press("Enter")  # indented as the step's options
        page.keyboard.press("Shift+Tab")  # back to the list's column
        page.keyboard.type("- ")
        page.keyboard.press("Control+Space")
        offered = page.locator(".cm-tooltip-autocomplete li")
        expect(offered.first).to_be_visible()
        names = offered.locator(".cm-completionLabel").all_inner_texts()
        assert {"csv.parse", "jmespath", "json.render", "filter", "lookup", "x12.parse"} <= set(names), names
        page.screenshot(path=str(SHOTS / "31-code-editor-step-completion.png"))
        page.keyboard.type("filt")
        expect(offered.locator(".cm-completionLabel")).to_have_text(["filter"])
        page.wait_for_timeout(200)  # CodeMirror takes Enter as "accept" 75 ms after the list changed
        page.keyboard.press("Enter")
        page.keyboard.type("\"qty > `10`\"")
        expect(page.locator("#yaml")).to_have_value(re.compile(r'\n  - filter: "qty > `10`"\n'))
        expect(page.locator("#issues")).to_contain_text("No problems")
        # option names complete inside a step's options
        page.locator(".cm-line", has_text="json.render").click()
        page.keyboard.press("End")
        page.keyboard.press("ArrowLeft")  # before the closing }
        page.keyboard.type(", ")
        page.keyboard.press("Control+Space")
        expect(offered.locator(".cm-completionLabel")).to_have_text(["ascii", "indent", "sort_keys"], ignore_case=False)
        page.keyboard.type("so")
        expect(offered.locator(".cm-completionLabel")).to_have_text(["sort_keys"])
        page.wait_for_timeout(200)
        page.keyboard.press("Enter")
        page.keyboard.press("Control+Space")  # a boolean option's values
        expect(offered.locator(".cm-completionLabel")).to_have_text(["false", "true"])  # sorted
        page.keyboard.type("true")
        page.keyboard.press("Escape")
        expect(page.locator("#yaml")).to_have_value(re.compile(r"- json.render: \{indent: 4, sort_keys: true\}"))
        expect(page.locator("#issues")).to_contain_text("No problems")

        # -- hover on an option key shows its help from the schema --------------------------
        page.locator(".cm-line", has_text="csv.parse").get_by_text("delimiter").hover()
        expect(page.locator(".cm-flowyard-hover")).to_contain_text("the field separator")

        # -- the form view: csv types as rows of inputs; add one, apply, save --------------
        page.locator("#tab-form").click()
        # an expression field is a small code editor with the JMESPath marked
        expression = page.locator("#form-pane fieldset", has_text="step 2: jmespath").locator(".code-expression")
        expect(expression.locator(".cm-jp-literal")).to_have_text(["`0`"])
        expect(expression.locator(".cm-jp-function")).to_have_count(0)
        expect(page.locator("#form-pane textarea[name='opt.expression']").first).to_be_hidden()  # the editor instead
        csv_form = page.locator("#form-pane fieldset", has_text="step 1: csv.parse")
        types = csv_form.get_by_role("group", name="types")
        expect(types.get_by_label("types name")).to_have_value("qty")
        types.get_by_role("button", name="Add a row").click()
        types.get_by_label("types name").nth(1).fill("price")
        types.get_by_label("types value").nth(1).select_option("number")
        columns = csv_form.get_by_role("group", name="columns")
        for n, name in enumerate(["sku", "qty", "price"]):
            columns.get_by_role("button", name="Add an item").click()
            columns.get_by_label("columns item").nth(n).fill(name)
        page.screenshot(path=str(SHOTS / "32-form-map-rows.png"))
        csv_form.get_by_role("button", name="Apply to the YAML").click()
        expect(page.locator("#yaml")).to_have_value(
            re.compile(r"types: \{qty: integer, price: number\}, columns: \[sku, qty, price\]")
        )
        expect(page.locator("#issues")).to_contain_text("No problems")
        page.locator("#tab-yaml").click()
        expect(page.locator(".cm-line", has_text="csv.parse")).to_contain_text("price: number")  # the editor shows it
        page.locator("#show-diff").click()
        expect(page.locator("#diff-pane")).to_contain_text("Changes to save")
        page.locator("#confirm-save").click()
        expect(page.locator("#diff-pane")).to_contain_text("Saved wms-stock.yaml")
        saved = (flows / "wms-stock.yaml").read_text(encoding="utf-8")
        assert "types: {qty: integer, price: number}, columns: [sku, qty, price]}" in saved
        assert "- json.render: {indent: 4, sort_keys: true}" in saved and '- filter: "qty > `10`"' in saved
        assert "# the WMS writes semicolons" in saved
        assert errors == []

        # -- without the editor's script the page is the plain textarea, still checked -----
        plain = context.new_page()  # logged in, as the first page
        plain.route("**/static/vendor/codemirror.min.js", lambda route: route.abort())
        plain.goto(f"{base}/flows/wms-stock/edit")
        area = plain.locator("#yaml")
        expect(area).to_be_visible()
        assert plain.locator(".cm-editor").count() == 0
        area.fill(saved.replace("json.render", "json.rendr"))
        expect(plain.locator("#issues")).to_contain_text("did you mean 'json.render'")
        bad_line = next(n for n, line in enumerate(saved.splitlines(), 1) if "json.render" in line)
        expect(plain.locator("#gutter .bad")).to_have_text([str(bad_line)])  # the plain gutter marks it
        plain.screenshot(path=str(SHOTS / "33-editor-without-script.png"))
        browser.close()
