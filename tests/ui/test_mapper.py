"""The mapper's pages and routes (a real app on a copy of the shipped flows): a mapping
step opens field by field with the targets of the schema its validate step names and
the values on its first test's input; choices wrap a field; saving writes back only
what changed; viewers cannot save; saving wants the CSRF token."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pytest

from .conftest import UiClient

ROOT = Path(__file__).resolve().parents[2]
ASN = "/flows/mx01-supplierx-asn/mapper/2"


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """The shipped flows beside the shipped examples (their tests read ../examples)."""
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path / "flows"


ROW = re.compile(r'<tr id="(f[0-9a-f]+)" class="mapper-row.*?</tr>', re.S)


def _value(row: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', row)
    assert found, f"no {name} in {row}"
    return html.unescape(found.group(1))


def rows(page: str) -> list[tuple[str, str, str]]:
    """(path, kind, expression) of every row of the targets form, in order."""
    return [(_value(m.group(0), "path"), _value(m.group(0), "kind"), _value(m.group(0), "expr")) for m in ROW.finditer(page)]


def row_id(page: str, path: str) -> str:
    return next(m.group(1) for m in ROW.finditer(page) if _value(m.group(0), "path") == path)


def form_of(page: str) -> dict[str, list[str]]:
    """What the mapper's form posts, read from the page."""
    data: dict[str, list[str]] = {name: [_value(m.group(0), name) for m in ROW.finditer(page)] for name in ("path", "kind", "expr", "src")}
    sample = re.search(r'<textarea id="mapper-sample"[^>]*>(.*?)</textarea>', page, re.S)
    data["sample"] = [html.unescape(sample.group(1)) if sample else ""]
    for name in ("sample_name", "base", "many", "version"):
        data[name] = [_value(page, name)]
    return data


def test_a_viewer_sees_a_mapping_field_by_field_and_cannot_save(viewer: UiClient, flows: Path) -> None:
    listing = viewer.get("/flows/mx01-supplierx-asn/mapper")
    assert listing.status_code == 200
    assert 'href="/flows/mx01-supplierx-asn/mapper/2"' in listing.text
    assert "shipment_id, ship_date, plant, supplier" in listing.text
    page = viewer.get(ASN)
    assert page.status_code == 200, page.text
    shown = rows(page.text)
    paths = [p for p, _, _ in shown]
    # the mapping's fields first, in its order, then the schema's fields not mapped yet
    assert paths[:4] == ["/shipment_id", "/ship_date", "/plant", "/supplier"]
    assert ("/items", "list", "") in shown and ("/items/quantity", "value", "to_number(SN1.SN102)") in shown
    assert "/expected_delivery" in paths  # canonical:shipment has it; the mapping does not
    assert "canonical:shipment" in page.text
    # values on the first test case's input (the 856 through x12.parse)
    cell = page.text.split(f'id="{row_id(page.text, "/shipment_id")}-value"')[1].split("</span>")[0]
    assert '<code class="got">&#34;ASN-77812&#34;</code>' in cell
    # the source side is the step's input as a tree; list elements merged (HL levels differ)
    assert 'data-path="BSN.BSN02"' in page.text and 'data-path="HL_loop[].LIN.LIN03"' in page.text
    assert "readonly" in page.text
    data = form_of(page.text)
    data["expr"][data["path"].index("/expected_delivery")] = "BSN.BSN03"
    assert viewer.post(f"{ASN}/preview", data).status_code == 200  # looking is fine
    assert viewer.post(f"{ASN}/save", data).status_code in (401, 403)
    assert "expected_delivery" not in (flows / "mx01-supplierx-asn.yaml").read_text()


def test_live_values_marks_and_choices(analyst: UiClient) -> None:
    page = analyst.get(ASN)
    data = form_of(page.text)
    at = data["path"].index("/expected_delivery")
    data["expr"][at] = "to_number(`5`)"
    answer = analyst.post(f"{ASN}/preview", data)
    assert answer.status_code == 200, answer.text
    cell = answer.text.split(f'id="{row_id(page.text, "/expected_delivery")}-value"')[1].split("</span>\n")[0]
    assert "wrong type: integer, the schema wants string or null" in cell
    assert 'hx-swap-oob="true"' in answer.text and "expected_delivery: to_number(`5`)" in answer.text
    # a required field left unmapped is marked
    unmapped = form_of(page.text)
    unmapped["expr"][unmapped["path"].index("/shipment_id")] = ""
    answer = analyst.post(f"{ASN}/preview", {**unmapped, "action": "refresh"})
    assert answer.status_code == 200
    assert "required, not mapped" in answer.text.split('data-path="/shipment_id"')[1].split("</tr>")[0]
    # a choice wraps a field: a date read with a format
    rid = row_id(page.text, "/expected_delivery")
    data["expr"][at] = "BSN.BSN03"
    answer = analyst.post(
        f"{ASN}/preview",
        {**data, "action": "wrap", "at": "/expected_delivery", f"fn-{rid}": "to_date", f"arg-{rid}": "%Y%m%d"},
    )
    assert answer.status_code == 200
    assert "to_date(BSN.BSN03, &#39;%Y%m%d&#39;)" in answer.text and "&#34;2026-11-20&#34;" in answer.text
    bad = analyst.post(f"{ASN}/preview", {**data, "action": "wrap", "at": "/expected_delivery", f"fn-{rid}": "lookup"})
    assert bad.status_code == 400 and "say which" in bad.text
    # a step that is not a mapping
    assert analyst.get("/flows/mx01-supplierx-asn/mapper/1").status_code == 404


def test_saving_writes_only_what_changed(analyst: UiClient, flows: Path) -> None:
    path = flows / "mx01-supplierx-asn.yaml"
    before = path.read_text()
    data = form_of(analyst.get(ASN).text)
    unchanged = analyst.post(f"{ASN}/save", data)
    assert unchanged.status_code == 200 and "Nothing to save" in unchanged.text
    assert path.read_text() == before
    data["expr"][data["path"].index("/expected_delivery")] = "to_date(BSN.BSN03, '%Y%m%d')"
    assert analyst.post(f"{ASN}/save", data, csrf=False).status_code == 403
    assert path.read_text() == before
    answer = analyst.post(f"{ASN}/save", data)
    assert answer.status_code == 200, answer.text
    assert "field &#39;expected_delivery&#39; added" in answer.text
    after = path.read_text()
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert removed == ["        }"]  # the items list closed the mapping; now a comma follows it
    assert added == ["        },", "        expected_delivery: to_date(BSN.BSN03, '%Y%m%d')"]
    # saving again from the old page is refused: the file changed since
    stale = analyst.post(f"{ASN}/save", data)
    assert stale.status_code == 409
    # an expression the mapper cannot show stays text
    start = after.index("    jmespath: |\n")
    end = after.index("  - validate: canonical:shipment")
    path.write_text(after[:start] + '    jmespath: "{a: BSN.BSN02} | a"\n' + after[end:])
    page = analyst.get(ASN)
    assert page.status_code == 200 and 'id="mapper-unrepresentable"' in page.text
    assert "{a: BSN.BSN02} | a" in page.text
