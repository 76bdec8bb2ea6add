"""Overdue X12 acknowledgments in the UI: a dashboard tile that turns red and a page that
lists them, from real rows written by the X12 control-number store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import update
from sqlalchemy.engine import Engine

from flowyard.store import x12_control as control

from .conftest import UiClient


def _sent(engine: Engine, partner: str, interchange: int, group: int, st: int, *, hours_ago: float,
          deadline_hours: float | None) -> None:
    """An outbound set recorded as x12.generate records it, then moved back in time."""
    receiver = f"ZZ:{partner.upper()}"
    control.record_outbound(
        partner=partner, receiver=receiver, interchange_control=f"{interchange:09d}", group_control=str(group),
        set_control=f"{st:04d}", transaction="850",
        deadline=timedelta(hours=deadline_hours) if deadline_hours is not None else None,
        correlation_id=f"corr-{interchange}", engine=engine,
    )
    sent = datetime.now(UTC) - timedelta(hours=hours_ago)
    table = control.OutboundSet.__table__
    with engine.begin() as connection:
        connection.execute(
            update(table)
            .where(table.c.receiver == receiver, table.c.group_control == str(group), table.c.set_control == f"{st:04d}")
            .values(sent_at=sent, deadline=sent + timedelta(hours=deadline_hours) if deadline_hours is not None else None)
        )


def _seed(engine: Engine) -> None:
    _sent(engine, "supplierx", 123, 45, 1, hours_ago=30, deadline_hours=24)  # 6 h late
    _sent(engine, "supplierx", 124, 46, 2, hours_ago=50, deadline_hours=24)  # 26 h late
    _sent(engine, "acme", 7, 8, 9, hours_ago=3, deadline_hours=2)  # 1 h late, then acknowledged
    _sent(engine, "acme", 10, 11, 12, hours_ago=1, deadline_hours=24)  # within its deadline
    _sent(engine, "acme", 13, 14, 15, hours_ago=99, deadline_hours=None)  # expects no acknowledgment
    assert control.reconcile("ZZ:ACME", "8", "0009", "A", engine)


def test_the_page_lists_each_overdue_set_with_its_control_numbers(app: Litestar, viewer: UiClient) -> None:
    _seed(app.state.ui.engine)
    response = viewer.get("/x12/overdue")
    assert response.status_code == 200
    text = response.text
    assert "<strong>2</strong> overdue (supplierx: 2); 1 waiting within their deadline" in text
    rows = text[text.index('id="overdue-sets"') : text.index("</table>", text.index('id="overdue-sets"'))]
    first, second = rows.index('data-set="46-0002"'), rows.index('data-set="45-0001"')
    assert first < second  # the longest overdue first
    row = rows[second : rows.index("</tr>", second)]
    assert "supplierx" in row and "ZZ:SUPPLIERX" in row and "<td>850</td>" in row
    assert "000000123 / 45 / 0001" in row
    assert "1.3 days" in row and "6.0 h" in row  # age since sent (30 h), late by
    assert "UTC" in row
    assert "000000124 / 46 / 0002" in rows and "2.1 days" in rows
    assert rows.count("data-set=") == 2
    assert all(f"data-set=\"{s}\"" not in rows for s in ("8-0009", "11-0012", "14-0015"))


def test_the_page_lists_the_sets_a_997_answered(app: Litestar, viewer: UiClient) -> None:
    engine = app.state.ui.engine
    assert "No outbound set was acknowledged yet." in viewer.get("/x12/overdue").text
    _seed(engine)  # acme's 8/0009 is acknowledged (A)
    assert control.reconcile("ZZ:SUPPLIERX", "45", "0001", "R", engine)
    text = viewer.get("/x12/overdue").text
    answered = text[text.index('id="acknowledged-sets"') : text.index("</table>", text.index('id="acknowledged-sets"'))]
    assert answered.count("data-set=") == 2
    assert answered.index('data-set="45-0001"') < answered.index('data-set="8-0009"')  # the latest first
    row = answered[answered.index('data-set="8-0009"') :]
    assert "000000007 / 8 / 0009" in row and "accepted" in row and "ZZ:ACME" in row
    assert "rejected" in answered[answered.index('data-set="45-0001"') : answered.index('data-set="8-0009"')]
    overdue_rows = text[text.index('id="overdue-sets"') : text.index('id="acknowledged-sets"')]
    assert 'data-set="45-0001"' not in overdue_rows  # answered (even rejected): no longer overdue


def test_the_dashboard_tile_is_red_while_any_set_is_overdue(app: Litestar, viewer: UiClient) -> None:
    engine = app.state.ui.engine
    assert 'id="x12-acks"' not in viewer.get("/dashboard").text  # nothing sent: no tile
    _seed(engine)
    red = viewer.get("/dashboard").text
    tile = red[red.index('id="x12-acks"') - 40 :]
    tile = tile[: tile.index("</section>")]
    assert 'class="tile red"' in tile and "2 overdue" in tile and "supplierx" in tile
    assert 'href="/x12/overdue"' in tile
    assert control.reconcile("ZZ:SUPPLIERX", "45", "0001", "A", engine)
    assert control.reconcile("ZZ:SUPPLIERX", "46", "0002", "E", engine)
    calm = viewer.get("/dashboard").text
    tile = calm[calm.index('id="x12-acks"') - 40 :]
    tile = tile[: tile.index("</section>")]
    assert 'class="tile red"' not in tile and "none overdue" in tile
    page = viewer.get("/x12/overdue").text
    assert "<strong>0</strong> overdue" in page and "Every outbound set was acknowledged in time" in page


def test_the_page_refreshes_itself_and_needs_a_login(app: Litestar, viewer: UiClient) -> None:
    page = viewer.get("/x12/overdue").text
    assert 'hx-trigger="every 30s"' in page
    partial = viewer.htmx_get("/x12/overdue", headers={"HX-Target": "overdue-body"})
    assert partial.status_code == 200 and "<html" not in partial.text and "overdue" in partial.text
    anonymous = TestClient(app, base_url="https://testserver.local")
    response = anonymous.get("/x12/overdue", follow_redirects=False)
    assert response.status_code in (302, 303, 401) and "supplierx" not in response.text
