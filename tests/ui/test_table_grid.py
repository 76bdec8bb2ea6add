"""Code tables as a grid (issue 16 item 5): the grid's rows written back into CSV and
YAML files with the smallest change (one edited cell is a one-line diff, comments and
quoting stay), problems placed at their cell, and the grid routes with their roles,
CSRF and conflicts; a saved grid is a draft on the changes page, and the table page
lists the flows that use the table."""

from __future__ import annotations

import difflib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.orm import Session

from flowyard_ui.models import AuditEntry
from flowyard_ui.tablegrid import (
    MAX_GRID_ROWS,
    GridOutOfDate,
    GridUnsupported,
    SentRow,
    apply_grid,
    read_grid,
    tables_named,
)

from . import seed
from .conftest import ORDERS_FLOW, UiClient

ROOT = Path(__file__).resolve().parents[2]

UOM_CSV = """\
code,value,description
ST,EA,"piece (SAP ""Stück"")"
PC,EA,piece

EA,EA,each
KG,KGM,"kilogram, by weight"
"""

WORK_CENTRES = """\
# Stuttgart work centres (MES resource -> ERP work centre)
description: "Stuttgart MES resources -> ERP work centres"   # shown in the UI
codes:
  # casting hall
  CAST-01: "DE02-CAST"   # the old furnace
  CNC-04: "DE02-CNC"
  # paint shop, since 2025
  PAINT-02: "DE02-PAINT"
"""

PLANTS = """\
# plants by code
MX01: {name: Monterrey, erp: 1000}   # first plant
DE02: {name: Stuttgart, erp: 2000}
"""


def rows_of(file_name: str, text: str) -> list[SentRow]:
    """The grid as the page shows it, each row naming the file row it came from."""
    return [SentRow(i, list(cells)) for i, cells in enumerate(read_grid(file_name, text).rows)]


def changed_lines(old: str, new: str) -> list[str]:
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(old.splitlines(True), new.splitlines(True), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


# -- round trips: one cell is one line ------------------------------------------------------


def test_csv_one_cell_is_a_one_line_diff_and_other_rows_keep_their_bytes() -> None:
    grid = read_grid("uom.csv", UOM_CSV)
    assert grid.columns == ["code", "value", "description"]
    assert grid.rows[0] == ["ST", "EA", 'piece (SAP "Stück")']  # quoting undone for the cell
    assert len(grid.rows) == 4  # the blank line is kept in the file, not shown
    rows = rows_of("uom.csv", UOM_CSV)
    rows[1].cells[2] = "piece, counted"
    edit = apply_grid("uom.csv", UOM_CSV, rows)
    assert edit.ok and edit.changed
    assert changed_lines(UOM_CSV, edit.text) == ["-PC,EA,piece", '+PC,EA,"piece, counted"']


def test_csv_sorted_grid_with_a_deleted_and_a_new_row_keeps_the_file_order() -> None:
    rows = rows_of("uom.csv", UOM_CSV)
    rows.sort(key=lambda r: r.cells[0])  # the grid was sorted by code: a view only
    rows = [r for r in rows if r.cells[0] != "PC"]  # deleted
    rows.insert(0, SentRow(None, ["M", "MTR", "metre"], added=2))  # added second, sorted first
    rows.append(SentRow(None, ["CS", "CS", "case"], added=1))
    rows.append(SentRow(None, ["", "", ""], added=3))  # an empty new row is no row
    edit = apply_grid("uom.csv", UOM_CSV, rows)
    assert edit.ok
    assert edit.text == UOM_CSV.replace("PC,EA,piece\n", "") + "CS,CS,case\nM,MTR,metre\n"


def test_yaml_with_comments_one_cell_is_a_one_line_diff() -> None:
    rows = rows_of("de02-work-centres.yaml", WORK_CENTRES)
    assert [r.cells for r in rows] == [["CAST-01", "DE02-CAST"], ["CNC-04", "DE02-CNC"], ["PAINT-02", "DE02-PAINT"]]
    rows[1].cells[1] = "DE02-MILL"
    edit = apply_grid("de02-work-centres.yaml", WORK_CENTRES, rows)
    assert edit.ok
    assert changed_lines(WORK_CENTRES, edit.text) == ['-  CNC-04: "DE02-CNC"', '+  CNC-04: "DE02-MILL"']  # quoting kept
    for comment in ("# Stuttgart work centres", "# shown in the UI", "# casting hall", "# the old furnace", "# paint shop"):
        assert comment in edit.text


def test_yaml_rename_delete_and_add_keep_the_comments_around_them() -> None:
    rows = rows_of("de02-work-centres.yaml", WORK_CENTRES)
    rows[0].cells[0] = "CAST-02"  # renamed in place, its comment stays on its line
    del rows[1]
    rows.append(SentRow(None, ["WELD-07", "DE02-WELD"]))
    edit = apply_grid("de02-work-centres.yaml", WORK_CENTRES, rows)
    assert edit.ok, edit.errors
    assert changed_lines(WORK_CENTRES, edit.text) == [
        '-  CAST-01: "DE02-CAST"   # the old furnace',
        '-  CNC-04: "DE02-CNC"',
        '+  CAST-02: "DE02-CAST"   # the old furnace',
        '+  WELD-07: "DE02-WELD"',  # a new value is quoted like the column's others
    ]
    assert "# paint shop, since 2025" in edit.text


def test_yaml_deleting_the_first_or_last_code_keeps_the_comments_after_it() -> None:
    text = "# top\nA: a  # first\n# heading of B\nB: b\nC: c\n# the end\n"
    first = apply_grid("t.yaml", text, [SentRow(1, ["B", "b"]), SentRow(2, ["C", "c"])])
    assert first.text == "# top\n# heading of B\nB: b\nC: c\n# the end\n"
    last = apply_grid("t.yaml", text, [SentRow(0, ["A", "a"]), SentRow(1, ["B", "b"])])
    assert last.text == "# top\nA: a  # first\n# heading of B\nB: b\n# the end\n"


def test_yaml_rows_of_several_fields_keep_their_style_and_types() -> None:
    grid = read_grid("plants.yaml", PLANTS)
    assert grid.columns == ["code", "name", "erp"]
    rows = rows_of("plants.yaml", PLANTS)
    rows[1].cells[2] = "2001"
    rows.append(SentRow(None, ["US03", "Dallas", "3000"]))
    edit = apply_grid("plants.yaml", PLANTS, rows)
    assert changed_lines(PLANTS, edit.text) == [
        "-DE02: {name: Stuttgart, erp: 2000}",
        "+DE02: {name: Stuttgart, erp: 2001}",  # still a number, not '2001'
        "+US03: {name: Dallas, erp: 3000}",
    ]


def test_an_unchanged_grid_changes_no_byte_even_in_an_unusual_file() -> None:
    odd = "code , value\r\nA,  spaced  \r\nB,b"  # spaces, CRLF, no last newline
    edit = apply_grid("odd.csv", odd, rows_of("odd.csv", odd))
    assert not edit.changed and edit.text == odd


def test_problems_are_placed_at_their_cell_and_nothing_else_is_made() -> None:
    rows = rows_of("uom.csv", UOM_CSV)
    rows.append(SentRow(None, ["", "", ""]))  # left empty: not counted, not a problem
    rows.append(SentRow(None, ["KG", "KGM", "again"]))  # grid row 5
    rows.append(SentRow(None, ["", "X", ""]))  # grid row 6: no code
    edit = apply_grid("uom.csv", UOM_CSV, rows)
    assert not edit.ok and edit.text == UOM_CSV
    assert [(e.row, e.col, e.message) for e in edit.errors] == [
        (5, 0, "code 'KG' appears twice"),
        (6, 0, "empty code: every row needs a code"),
    ]


def test_the_table_check_of_the_loader_is_placed_at_the_row() -> None:
    # a YAML code the round trip writes as it was typed but lookups would read as empty
    rows = rows_of("de02-work-centres.yaml", WORK_CENTRES)
    rows.append(SentRow(None, ["   ", "X"]))
    edit = apply_grid("de02-work-centres.yaml", WORK_CENTRES, rows)
    assert [(e.row, e.col) for e in edit.errors] == [(3, 0)]


def test_tables_the_grid_cannot_show_are_said_so() -> None:
    with pytest.raises(GridUnsupported, match="nested"):
        read_grid("x.yaml", "A: {name: a, sites: {one: 1}}\n")
    with pytest.raises(GridUnsupported, match="one value and others to several"):
        read_grid("x.yaml", "A: a\nB: {name: b}\n")
    with pytest.raises(GridUnsupported, match="3 cells"):
        read_grid("x.csv", "code,value\nA,a,extra\n")
    with pytest.raises(GridOutOfDate):
        apply_grid("uom.csv", UOM_CSV, [SentRow(9, ["ZZ", "a", "b"])])


def test_the_tables_a_flow_uses_are_found_in_steps_and_expressions() -> None:
    flow = {
        "steps": [
            {"lookup": {"table": "uom", "at": "items[].uom"}},
            {"jmespath": "{plant: lookup('plants', plant), x: `1`}"},
            {"jinja": {"template": "{{ data.wc | lookup(\"de02-work-centres\") }}"}},
        ],
        "targets": [{"database": {"table": "orders"}}],  # a database table is no code table
    }
    assert tables_named(flow) == {
        "uom": "lookup step",
        "plants": "lookup() in an expression",
        "de02-work-centres": "lookup() in an expression",
    }


# -- the routes -----------------------------------------------------------------------------


def grid_form(rows: list[list[str]], origins: list[str], base: str = "") -> dict[str, Any]:
    data: dict[str, Any] = {"base": base, "row": origins}
    for i in range(len(rows[0])):
        data[f"c{i}"] = [r[i] for r in rows]
    return data


def base_of(page: str) -> str:
    found = re.search(r'<input type="hidden" name="base" value="(\w+)">', page)
    assert found, "the grid carries no version"
    return found.group(1)


def audit_actions(app: Litestar) -> list[str]:
    with Session(app.state.ui.engine) as db:
        return [e.action for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]


LOOKUP_FLOW = ORDERS_FLOW.replace("erp-orders", "uom-orders").replace(
    '  - jmespath: "{order: po, qty: qty}"   # keep this comment\n',
    '  - jmespath: "{order: po, qty: qty, uom: uom}"\n  - lookup: {table: uom, at: uom}\n',
)


def test_the_page_shows_the_grid_and_the_viewer_only_reads(viewer: UiClient) -> None:
    page = viewer.get("/tables/uom.csv").text
    assert 'id="grid-table"' in page and 'aria-selected="true">Grid' in page
    assert re.search(r'<div id="table-check"[^>]*><p class="ok">Valid: 2 code\(s\)', page)  # the file's state, as the text tab says it
    assert re.search(r'<input name="c1" value="pallet" aria-label="value, row 2"[^>]* readonly>', page)
    assert 'id="grid-save"' not in page and 'id="grid-add"' not in page and "grid-new-row" not in page
    assert "Read only" in page
    text_tab = viewer.get("/tables/uom.csv?view=text").text
    assert 'id="table-text"' in text_tab and 'id="grid-table"' not in text_tab
    data = grid_form([["EA", "each"]], ["0"])
    assert viewer.post("/tables/uom.csv/grid/save", data).status_code == 403
    assert viewer.post("/tables/uom.csv/grid/check", data).status_code == 403


def test_analyst_reviews_then_saves_a_draft(app: Litestar, analyst: UiClient, flows: Path) -> None:
    before = (flows / "tables/uom.csv").read_text()
    base = base_of(analyst.get("/tables/uom.csv").text)
    data = grid_form([["BX", "box"], ["EA", "each"], ["PL", "pallet"], ["CS", "case"]], ["+2", "0", "1", "+1"], base)
    review = analyst.post("/tables/uom.csv/grid/check", data)
    assert review.status_code == 200 and '<span class="dl add">+CS,case</span><span class="dl add">+BX,box</span>' in review.text
    assert (flows / "tables/uom.csv").read_text() == before  # a review writes nothing
    saved = analyst.post("/tables/uom.csv/grid/save", data)
    assert saved.status_code == 200, saved.text
    assert saved.headers["hx-retarget"] == "#grid-pane"  # the grid again, its rows naming the saved file's
    assert 'value="CS" aria-label="code, row 3"' in saved.text and "as a draft" in saved.text
    assert "Valid: 4 code(s)" in saved.text
    assert (flows / "tables/uom.csv").read_text() == before + "CS,case\nBX,box\n"
    assert audit_actions(app)[-1] == "table-saved"
    again = analyst.post("/tables/uom.csv/grid/save", data)  # the old version: someone saved since
    assert again.status_code == 409 and "changed since you opened it" in again.text


def test_a_duplicate_code_is_refused_at_its_cell(analyst: UiClient, flows: Path) -> None:
    before = (flows / "tables/uom.csv").read_text()
    data = grid_form([["EA", "each"], ["PL", "pallet"], ["EA", "again"]], ["0", "1", ""])
    refused = analyst.post("/tables/uom.csv/grid/save", data)
    assert refused.status_code == 200 and "nothing was saved" in refused.text
    found = re.search(r"data-errors='([^']*)'", refused.text)
    assert found and json.loads(found.group(1)) == [{"row": 2, "col": 0, "message": "code 'EA' appears twice"}]
    assert (flows / "tables/uom.csv").read_text() == before


def test_the_grid_needs_the_csrf_token_and_rows_that_fit(analyst: UiClient, flows: Path) -> None:
    before = (flows / "tables/uom.csv").read_text()
    data = grid_form([["EA", "each"], ["CS", "case"]], ["0", ""])
    assert analyst.post("/tables/uom.csv/grid/save", data, csrf=False).status_code == 403
    tampered = grid_form([["EA", "each"], ["CS", "case"]], ["0", "7"])
    assert analyst.post("/tables/uom.csv/grid/save", tampered).status_code == 409
    ragged = {**data, "c2": ["x", "y"]}
    assert analyst.post("/tables/uom.csv/grid/save", ragged).status_code == 409
    assert analyst.post("/tables/..%2Fuom.csv/grid/save", data).status_code == 404
    assert (flows / "tables/uom.csv").read_text() == before


def test_used_by_lists_the_flows_and_a_saved_grid_is_a_draft_on_the_changes_page(
    app: Litestar, analyst: UiClient, deployer: UiClient, flows: Path
) -> None:
    (flows / "uom-orders.yaml").write_text(LOOKUP_FLOW)
    seed.deploy(app.state.ui.store, flows / "uom-orders.yaml")
    page = analyst.get("/tables/uom.csv").text
    used = page[page.index('class="used-by"'):]
    assert '<a href="/flows/uom-orders">uom-orders</a>' in used and "runs this table" in used
    assert "erp-orders" not in used  # it looks up no code
    data = grid_form([["EA", "each"], ["PL", "pallets"]], ["0", "1"], base_of(page))
    saved = analyst.post("/tables/uom.csv/grid/save", data)
    assert "runs an older copy" in saved.text
    changes = deployer.get("/changes").text
    card = re.search(r'<article class="card draft-card"[^>]*data-key="tables/uom.csv".*?</article>', changes, re.S)
    assert card, "the saved table is not a draft on the changes page"
    assert '<span class="dl del">-PL,pallet</span><span class="dl add">+PL,pallets</span>' in card.group(0)
    assert "uom-orders" in card.group(0)


def test_an_instance_that_looks_codes_up_in_a_plant_table_is_listed(analyst: UiClient, flows: Path) -> None:
    """The table name is rendered from the template (`{{ plant | lower }}-work-centres`)."""
    shutil.copytree(ROOT / "examples" / "onboarding", flows, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".onboard-preview-*"))  # another test's scratch
    (flows / "templates" / "plant-pick.yaml").write_text(
        "apiVersion: flowyard/v1\nkind: Template\nmetadata: {name: plant-pick}\n"
        "parameters:\n  type: object\n  properties:\n    work_centre: {type: string, x-table: de02-work-centres}\n"
    )
    page = analyst.get("/tables/de02-work-centres.yaml").text
    used = page[page.index('class="used-by"'):]
    assert '<a href="/flows/de02-mes-production">de02-mes-production</a> <span class="tag">instance</span>' in used
    assert "mx01-mes-production" not in used and "not deployed" in used
    assert '<a href="/templates/plant-pick">plant-pick</a> <span class="tag">template</span>' in used  # its pick-list
    assert '<input name="c1" value="DE02-CAST" aria-label="value, row 1"' in page
    assert "<strong>description:</strong> Stuttgart MES resources" in page


def test_a_grid_larger_than_the_grid_shows_is_refused_before_anything_is_written(analyst: UiClient, flows: Path) -> None:
    before = (flows / "tables/uom.csv").read_text()
    count = MAX_GRID_ROWS + 1
    data = grid_form([[f"C{i}", "x"] for i in range(count)], [""] * count)
    refused = analyst.post("/tables/uom.csv/grid/save", data)
    assert refused.status_code == 400 and "more than the grid shows" in refused.text and "Text tab" in refused.text
    assert (flows / "tables/uom.csv").read_text() == before
