"""Deploy/undeploy/rollback, runs and the message timeline, dead letters and replay,
the dashboard with SLA, code tables, users and the audit log: every route, its role
check, and what it shows from the real store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.orm import Session

from flowyard.store.models import DeadLetter, StoredMessage
from flowyard_ui.models import AuditEntry

from . import seed
from .conftest import ORDERS_FLOW, UiClient


def store(app: Litestar) -> Any:
    return app.state.ui.store


def audit_actions(app: Litestar) -> list[str]:
    with Session(app.state.ui.engine) as db:
        return [e.action for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]


# -- deploy ---------------------------------------------------------------------------


def test_deploy_undeploy_history_and_rollback(app: Litestar, deployer: UiClient, flows: Path) -> None:
    path = flows / "erp-orders.yaml"
    first = seed.flow_version(path)
    response = deployer.post("/flows/erp-orders/deploy", {"note": "first go"})
    assert response.status_code == 200, response.text
    assert f"Deployed erp-orders version {first}" in response.text
    assert store(app).flow_state("erp-orders").enabled
    path.write_text(ORDERS_FLOW.replace("qty: qty}", "qty: amount}"))
    second = seed.flow_version(path)
    flow_page = deployer.get("/flows/erp-orders")
    assert "has changes that are not deployed yet" in flow_page.text
    deployer.post("/flows/erp-orders/deploy", {"note": "rename"})
    assert store(app).flow_state("erp-orders").version == second
    rolled = deployer.post("/flows/erp-orders/rollback", {"version": first})
    assert rolled.status_code == 200 and "Rolled erp-orders back" in rolled.text
    assert path.read_text() != ORDERS_FLOW  # the draft stays as it is
    assert store(app).flow_state("erp-orders").version == first
    restored = store(app).snapshot("erp-orders", first)
    assert restored is not None and restored.text == ORDERS_FLOW  # what runs is the first, byte for byte
    history = deployer.get("/flows/erp-orders").text
    assert "rollback" in history and "first go" in history and "rename" in history
    undone = deployer.post("/flows/erp-orders/undeploy", {"note": "pause"})
    assert undone.status_code == 200 and not store(app).flow_state("erp-orders").enabled
    assert audit_actions(app)[-4:] == ["deploy", "deploy", "rollback", "undeploy"]


def test_an_invalid_flow_is_not_deployed(deployer: UiClient, flows: Path) -> None:
    (flows / "erp-orders.yaml").write_text(ORDERS_FLOW.replace("jmespath:", "jmespth:"))
    response = deployer.post("/flows/erp-orders/deploy", {"note": "x"})
    assert response.status_code == 400
    line = ORDERS_FLOW.splitlines().index('  - jmespath: "{order: po, qty: qty}"   # keep this comment') + 1
    assert "Not deployed" in response.text and f"erp-orders.yaml:{line}:5: unknown step" in response.text


@pytest.mark.parametrize(
    "path", ["/flows/erp-orders/deploy", "/flows/erp-orders/undeploy", "/flows/erp-orders/rollback"]
)
def test_analyst_cannot_deploy(analyst: UiClient, path: str) -> None:
    assert analyst.post(path, {"note": "x", "version": "abc"}).status_code == 403


def test_deploy_needs_csrf(deployer: UiClient) -> None:
    assert deployer.post("/flows/erp-orders/deploy", {"note": "x"}, csrf=False).status_code == 403


# -- flows list -----------------------------------------------------------------------


def test_flows_list_filters_by_labels_and_shows_state(app: Litestar, viewer: UiClient, flows: Path) -> None:
    (flows / "de02-stock.yaml").write_text(ORDERS_FLOW.replace("erp-orders", "de02-stock").replace("MX01", "DE02"))
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    seed.message(store(app), "erp-orders", version, {"po": "PO-1"}, state="dead", error="bad qty", step="1-jmespath")
    everything = viewer.get("/flows")
    assert "erp-orders" in everything.text and "de02-stock" in everything.text
    assert "1 dead letter(s)" in everything.text
    only = viewer.htmx_get("/flows?plant=DE02", headers={"HX-Target": "flow-rows"})
    assert "de02-stock" in only.text and "erp-orders" not in only.text
    assert "<html" not in only.text  # a fragment for htmx


def test_flow_page_shows_the_pipeline_diagram(viewer: UiClient) -> None:
    page = viewer.get("/flows/erp-orders")
    assert page.status_code == 200
    for part in (
        'class="node source',
        '<div class="kind">jmespath</div>',
        '<div class="kind">json.render</div>',
        'class="node target',
    ):
        assert part in page.text
    assert viewer.get("/flows/nope").status_code == 404


# -- runs -----------------------------------------------------------------------------


def test_runs_search_and_timeline(app: Litestar, viewer: UiClient, flows: Path) -> None:
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    ok = seed.message(store(app), "erp-orders", version, {"po": "PO-1001", "qty": 3})
    bad = seed.message(
        store(app),
        "erp-orders",
        version,
        {"po": "PO-2002", "qty": -1},
        state="dead",
        error="quantity must be positive",
        step="1-jmespath",
        plant="DE02",
    )
    page = viewer.get("/runs")
    assert ok[:0] + "erp-orders" in page.text and "quantity must be positive" in page.text
    dead_only = viewer.htmx_get("/runs?state=dead", headers={"HX-Target": "run-rows"})
    assert f"/runs/{bad}" in dead_only.text and f"/runs/{ok}" not in dead_only.text
    by_plant = viewer.htmx_get("/runs?plant=DE02", headers={"HX-Target": "run-rows"})
    assert f"/runs/{bad}" in by_plant.text and f"/runs/{ok}" not in by_plant.text
    detail = viewer.get(f"/runs/{bad}")
    assert detail.status_code == 200
    assert "Timeline" in detail.text and "1-jmespath" in detail.text and "PO-2002" in detail.text
    assert viewer.get("/runs/does-not-exist").status_code == 404


def test_runs_search_by_business_key(app: Litestar, viewer: UiClient, flows: Path) -> None:
    (flows / "erp-orders.yaml").write_text(ORDERS_FLOW + "keys:\n  po_number: order\n")
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    wanted = seed.message(store(app), "erp-orders", version, {"po": "PO-777", "qty": 1})
    other = seed.message(store(app), "erp-orders", version, {"po": "PO-778", "qty": 1})
    page = viewer.get("/runs")
    assert "po_number" in page.text
    found = viewer.htmx_get("/runs?key=po_number&value=PO-777", headers={"HX-Target": "run-rows"})
    assert f"/runs/{wanted}" in found.text and f"/runs/{other}" not in found.text
    quoted = seed.message(store(app), "erp-orders", version, {"po": 'PO "9"\\A', "qty": 1})
    found = viewer.htmx_get("/runs", params={"key": "po_number", "value": 'PO "9"\\A'},
                            headers={"HX-Target": "run-rows"})
    assert f"/runs/{quoted}" in found.text and f"/runs/{wanted}" not in found.text


# -- dead letters ---------------------------------------------------------------------


def test_dead_letters_grouped_and_replayed(app: Litestar, deployer: UiClient, flows: Path) -> None:
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    ids = [
        seed.message(
            store(app),
            "erp-orders",
            version,
            {"po": f"PO-{n}"},
            state="dead",
            error=f"code 'X{n}' is not in table uom",
            step="lookup",
        )
        for n in range(3)
    ]
    seed.message(
        store(app), "erp-orders", version, {"po": "PO-9"}, state="dead", error="invalid JSON", step="1-jmespath"
    )
    page = deployer.get("/dead-letters")
    assert page.status_code == 200
    assert "Replay 3" in page.text and "Replay 1" in page.text
    with Session(app.state.ui.engine) as db:
        first = db.scalar(select(DeadLetter.id).where(DeadLetter.message_id == ids[0]))
    one = deployer.post("/dead-letters/replay", {"ids": str(first), "version": "failed"})
    assert one.status_code == 200 and "Replayed 1 dead letter(s)" in one.text
    group = deployer.post(
        "/dead-letters/replay",
        {"group_flow": "erp-orders", "group_reason": "code '…' is not in table uom", "version": "current"},
    )
    assert "Replayed 2 dead letter(s)" in group.text, group.text
    with Session(app.state.ui.engine) as db:
        open_left = list(db.scalars(select(DeadLetter).where(DeadLetter.status == "open")))
        replays = list(db.scalars(select(StoredMessage).where(StoredMessage.replay_of.is_not(None))))
    assert len(open_left) == 1 and open_left[0].reason == "invalid JSON"
    assert len(replays) == 3 and {r.replay_of for r in replays} == set(ids)
    assert audit_actions(app)[-2:] == ["replay", "replay"]


def test_a_dead_letter_replays_once_unless_forced(app: Litestar, deployer: UiClient, flows: Path) -> None:
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    [message] = [seed.message(store(app), "erp-orders", version, {"po": "PO-7"}, state="dead", error="boom", step="s")]
    with Session(app.state.ui.engine) as db:
        dead = db.scalar(select(DeadLetter.id))
    assert "Replayed 1 dead letter(s)" in deployer.post("/dead-letters/replay", {"ids": str(dead)}).text
    again = deployer.post("/dead-letters/replay", {"ids": str(dead)})
    assert "Replayed 0" in again.text and "was replayed already" in again.text and "--force" in again.text
    page = deployer.get(f"/runs/{message}")
    assert "Replay again" in page.text and '"force": "on"' in page.text
    forced = deployer.post("/dead-letters/replay", {"ids": str(dead), "force": "on"})
    assert "Replayed 1 dead letter(s)" in forced.text
    with Session(app.state.ui.engine) as db:
        replays = list(db.scalars(select(StoredMessage).where(StoredMessage.replay_of == message)))
    assert len(replays) == 2 and replays[1].headers["idempotency_of"] == replays[0].id


def test_replay_a_selection_and_discard(app: Litestar, deployer: UiClient, flows: Path) -> None:
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    for n in range(3):
        seed.message(store(app), "erp-orders", version, {"po": f"PO-{n}"}, state="dead", error="boom", step="s")
    with Session(app.state.ui.engine) as db:
        dead = list(db.scalars(select(DeadLetter.id).order_by(DeadLetter.id)))
    response = deployer.client.post(
        "/dead-letters/replay",
        data={"ids": [str(dead[0]), str(dead[1])], "version": "current"},
        headers={"HX-Request": "true", "X-CSRFToken": deployer.token},
    )
    assert "Replayed 2" in response.text
    discarded = deployer.post("/dead-letters/discard", {"ids": str(dead[2])})
    assert "1 dead letter(s) marked as handled" in discarded.text
    assert "No open dead letter" in deployer.get("/dead-letters").text


def test_analyst_cannot_replay(analyst: UiClient) -> None:
    assert analyst.post("/dead-letters/replay", {"ids": "1"}).status_code == 403
    assert analyst.post("/dead-letters/discard", {"ids": "1"}).status_code == 403


# -- dashboard ------------------------------------------------------------------------


def test_dashboard_tile_turns_red_past_the_sla(app: Litestar, viewer: UiClient, flows: Path) -> None:
    (flows / "erp-orders.yaml").write_text(ORDERS_FLOW + "sla:\n  max_failure_age: 10m\n")
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    for n in range(4):
        seed.message(store(app), "erp-orders", version, {"po": f"PO-{n}"}, age=120 + n)
    calm = viewer.get("/dashboard")
    assert calm.status_code == 200
    assert "within SLA" in calm.text and "SLA broken" not in calm.text
    assert "100.0%" in calm.text and "<svg" in calm.text
    seed.message(store(app), "erp-orders", version, {"po": "PO-X"}, state="dead", error="boom", step="s", age=3600)
    red = viewer.get("/dashboard")
    assert "SLA broken" in red.text and "oldest failure" in red.text and 'class="tile red"' in red.text
    assert "80.0%" in red.text


# -- code tables ----------------------------------------------------------------------


def test_code_table_view_check_and_save(app: Litestar, analyst: UiClient, flows: Path) -> None:
    listing = analyst.get("/tables")
    assert "uom.csv" in listing.text and "valid" in listing.text
    page = analyst.get("/tables/uom.csv")
    assert "pallet" in page.text
    duplicate = "code,value\nEA,each\nEA,again\n"
    checked = analyst.post("/tables/uom.csv/check", {"text": duplicate})
    assert "appears twice" in checked.text and 'data-lines="3"' in checked.text
    refused = analyst.post("/tables/uom.csv/save", {"text": duplicate})
    assert refused.status_code == 400
    assert (flows / "tables/uom.csv").read_text() == "code,value\nEA,each\nPL,pallet\n"
    saved = analyst.post("/tables/uom.csv/save", {"text": "code,value\nEA,each\nPL,pallet\nCS,case\n"})
    assert saved.status_code == 200 and "+CS,case" in saved.text
    assert (flows / "tables/uom.csv").read_text().endswith("CS,case\n")
    assert "table-saved" in audit_actions(app)


def test_viewer_cannot_save_a_table_and_names_are_confined(viewer: UiClient, analyst: UiClient) -> None:
    assert viewer.post("/tables/uom.csv/save", {"text": "code,value\nA,b\n"}).status_code == 403
    assert analyst.get("/tables/..%2Fsecret.csv").status_code == 404
    assert analyst.post("/tables", {"name": "../x", "kind": "csv"}, htmx=False).status_code == 400
    created = analyst.post("/tables", {"name": "plants", "kind": "yaml"}, htmx=False)
    assert created.status_code == 303 and created.headers["location"] == "/tables/plants.yaml"


# -- users and audit ------------------------------------------------------------------


def test_admin_manages_users_and_others_cannot(app: Litestar, admin: UiClient, analyst: UiClient) -> None:
    assert analyst.get("/admin/users").status_code == 403
    assert (
        analyst.post(
            "/admin/users", {"username": "x", "password": "long enough pass", "role": "viewer"}, htmx=False
        ).status_code
        == 403
    )
    created = admin.post(
        "/admin/users", {"username": "olga", "password": "long enough pass", "role": "viewer"}, htmx=False
    )
    assert created.status_code == 200 and "olga" in created.text
    promoted = admin.post("/admin/users/olga", {"role": "deployer"}, htmx=False)
    assert "role viewer -&gt; deployer" in promoted.text or "role viewer -> deployer" in promoted.text
    self_demote = admin.post("/admin/users/admin", {"role": "viewer"}, htmx=False)
    assert self_demote.status_code == 400
    assert {"user-created", "user-changed"} <= set(audit_actions(app))


def test_audit_log_lists_changes(app: Litestar, analyst: UiClient, viewer: UiClient) -> None:
    analyst.post("/flows/new", {"name": "audited-flow"})
    page = viewer.get("/audit")
    assert "flow-created" in page.text and "audited-flow" in page.text
    filtered = viewer.htmx_get("/audit?action=login", headers={"HX-Target": "audit-rows"})
    assert "flow-created" not in filtered.text and "login" in filtered.text


def test_errors_are_plain_pages_without_traceback(viewer: UiClient) -> None:
    missing = viewer.get("/flows/no-such-flow/edit")
    assert missing.status_code == 404 and "Traceback" not in missing.text and "no flow named" in missing.text
