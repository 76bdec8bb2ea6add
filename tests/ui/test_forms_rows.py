"""The form view's list and map fields: real inputs, one row per item (csv `types` as
name/type rows, `columns` as items), written back through the round trip."""

from __future__ import annotations

import html
import re
from pathlib import Path

from flowyard_ui import forms

from .conftest import UiClient

CSV_FLOW = """\
# Stock levels from the WMS export
apiVersion: flowyard/v1
kind: Flow
metadata:
  name: erp-orders
source:
  file: {path: inbox/stock, pattern: "*.csv"}
steps:
  - csv.parse: {delimiter: ";", types: {qty: integer}}   # the WMS writes semicolons
  - json.render: {}
targets:
  - file: {path: outbox/stock}
"""


def _yaml_in(response_text: str) -> str:
    found = re.search(r'<textarea id="yaml"[^>]*>(.*?)</textarea>', response_text, re.S)
    assert found is not None, response_text[:500]
    return html.unescape(found.group(1))


def _apply(analyst: UiClient, text: str, fields: dict[str, str | list[str]]) -> str:
    response = analyst.post("/flows/erp-orders/form/apply", {"yaml": text, "part": "steps.0", **fields})
    assert response.status_code == 200, response.text
    return _yaml_in(response.text)


def _form(delimiter: str = ";", **rows: list[str]) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {"opt.delimiter": delimiter}
    fields.update({f"opt.{k.replace('__', '.')}": v for k, v in rows.items()})
    return fields


def test_a_map_and_a_list_are_shown_as_rows_of_inputs(analyst: UiClient, flows: Path) -> None:
    page = analyst.post("/flows/erp-orders/form", {"yaml": CSV_FLOW}).text
    types = re.search(r'<div class="field rows-field" role="group" aria-label="types" data-rows="map">(.*?)</template>', page, re.S)
    assert types, page[:2000]
    assert 'name="opt.types.key" value="qty"' in types.group(1)
    assert re.search(r'name="opt.types.value".*?<option selected>integer</option>', types.group(1), re.S)
    assert 'name="opt.types"' not in page  # no JSON text field any more
    columns = re.search(r'aria-label="columns" data-rows="list"(.*?)</template>', page, re.S)
    assert columns and 'name="opt.columns.item"' in columns.group(1) and "data-add-row" in page


def test_rows_are_written_back_and_nothing_else_changes(analyst: UiClient) -> None:
    unchanged = _apply(analyst, CSV_FLOW, _form(types__key=["qty"], types__value=["integer"]))
    assert unchanged == CSV_FLOW  # same rows: not a byte changed, the comment kept
    more = _apply(
        analyst,
        CSV_FLOW,
        _form(types__key=["qty", "price", ""], types__value=["integer", "number", "string"], columns__item=["sku", "qty", "price"]),
    )
    line = next(x for x in more.splitlines() if "csv.parse" in x)
    written = '  - csv.parse: {delimiter: ";", types: {qty: integer, price: number}, columns: [sku, qty, price]}'
    assert line.startswith(written) and line.endswith(" # the WMS writes semicolons")  # the comment kept
    assert more.replace(line, "") == CSV_FLOW.replace(next(x for x in CSV_FLOW.splitlines() if "csv.parse" in x), "")
    removed = _apply(analyst, more, _form(types__key=["price"], types__value=["number"]))
    assert "types: {price: number}" in removed and "columns" not in removed


def test_a_bad_row_is_refused_with_its_name(analyst: UiClient) -> None:
    twice = analyst.post(
        "/flows/erp-orders/form/apply",
        {"yaml": CSV_FLOW, "part": "steps.0", **_form(types__key=["qty", "qty"], types__value=["integer", "number"])},
    )
    assert twice.status_code == 400 and "'qty' is given twice" in html.unescape(twice.text)
    xslt = CSV_FLOW.replace("- json.render: {}", "- xml.xslt: {stylesheet: a.xsl}")
    nameless = analyst.post(
        "/flows/erp-orders/form/apply",
        {"yaml": xslt, "part": "steps.1", "opt.stylesheet": "a.xsl", "opt.parameters.key": [""], "opt.parameters.value": ["3"]},
    )
    assert nameless.status_code == 400 and "the row with the value '3' has no name" in html.unescape(nameless.text)


def test_a_value_rows_cannot_show_stays_yaml_text() -> None:
    from flowyard import registry

    fields = {f.name: f for f in forms.fields_for(registry.step_class("csv.parse").Options, {"types": "qty"})}
    assert fields["types"].widget == "yaml" and fields["types"].value == "qty"  # shown as it is, not lost
    fields = {f.name: f for f in forms.fields_for(registry.step_class("csv.parse").Options, {"types": {"a": "number"}})}
    assert fields["types"].widget == "map" and fields["types"].rows == [("a", "number")]
    assert fields["types"].item_choices == ["string", "integer", "number", "boolean"]


def test_a_map_of_mixed_plain_values_keeps_their_types() -> None:
    from flowyard import registry

    view = forms.PartView(
        "steps.0", "step", "xml.xslt", "step 1", "", forms.fields_for(registry.step_class("xml.xslt").Options, {})
    )
    values = forms._option_values(
        view, {"opt.parameters.key": ["plant", "limit", "code"], "opt.parameters.value": ["MX01", "3", "'007'"]}
    )
    assert dict(values["parameters"]) == {"plant": "MX01", "limit": 3, "code": "007"}


def test_expression_fields_name_their_language_for_the_editor(analyst: UiClient) -> None:
    from flowyard import registry

    def languages(kind: str) -> dict[str, str]:
        return {f.name: f.language for f in forms.fields_for(registry.step_class(kind).Options, {}) if f.language}

    assert languages("jmespath") == {"expression": "jmespath"}
    assert languages("filter") == {"expression": "jmespath"}
    assert languages("jinja") == {"template": "jinja"}
    text = CSV_FLOW.replace("- json.render: {}", "- jmespath: \"[?qty > `0`]\"\n  - json.render: {}")
    page = analyst.post("/flows/erp-orders/form", {"yaml": text}).text
    assert re.search(r'<textarea name="opt.expression"[^>]*data-code-expression="jmespath"', page)
