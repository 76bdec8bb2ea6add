"""Issue 15 in the UI: a save is a draft; the changes page lists drafts with the diff in
words and in lines and the gate's verdict; a deployer deploys one (a flow, a shared table,
a flow as a git commit holds it) or sends it back; only deployers and admins deploy; the
flows list, flow page and dashboard show what the runtime actually runs."""

from __future__ import annotations

import html
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from flowyard.operations import deployments
from flowyard.store.models import Worker
from flowyard_ui.models import AuditEntry

from . import seed
from .conftest import ORDERS_FLOW, UiClient

EDITED = ORDERS_FLOW.replace("qty: qty}", "quantity: qty}")
TESTED = ORDERS_FLOW + """\
tests:
  - name: one order
    input: tests/order.json
    expect: tests/order.expected.json
"""


def store(app: Litestar) -> Any:
    return app.state.ui.store


def audit(app: Litestar) -> list[AuditEntry]:
    with Session(app.state.ui.engine) as db:
        return list(db.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def with_tests(flows: Path) -> None:
    (flows / "tests").mkdir(exist_ok=True)
    (flows / "tests" / "order.json").write_text('{"po": "PO-1", "qty": 2}')
    (flows / "tests" / "order.expected.json").write_text('{"order": "PO-1", "qty": 2}')
    (flows / "erp-orders.yaml").write_text(TESTED)


def draft_card(page: str, key: str) -> str:
    found = re.search(rf'<article class="card draft-card"[^>]*data-key="{re.escape(key)}".*?</article>', page, re.S)
    assert found, f"no draft {key} on the changes page"
    return found.group(0)


def worker(app: Litestar, wid: str, beat_age: float, stopped: bool = False) -> None:
    now = time.time()
    with app.state.ui.engine.begin() as c:
        c.execute(insert(Worker), [{"id": wid, "host": "plant-host", "pid": 42, "mode": "serve", "started_at": now - 600,
                                    "heartbeat_at": now - beat_age, "stopped_at": now if stopped else None}])


# -- a save is a draft -------------------------------------------------------------------


def test_a_save_changes_nothing_that_runs_until_a_deployer_deploys_it(
    app: Litestar, analyst: UiClient, deployer: UiClient, flows: Path
) -> None:
    first = seed.deploy(store(app), flows / "erp-orders.yaml")
    saved = analyst.post("/flows/erp-orders/save", {"yaml": EDITED})
    assert saved.status_code == 200 and "Saved" in saved.text
    assert store(app).flow_state("erp-orders").version == first  # the file changed, what runs did not
    assert store(app).snapshot("erp-orders", first).text == ORDERS_FLOW
    flow_page = analyst.get("/flows/erp-orders").text
    assert "draft differs from deployed" in flow_page and f"version <code>{first}</code>" in flow_page

    page = deployer.get("/changes").text
    card = draft_card(page, "erp-orders.yaml")
    words = re.findall(r'<ul class="semantic">(.*?)</ul>', card, re.S)
    assert words and "quantity" in words[0]
    lines = [(k, html.unescape(t)) for k, t in re.findall(r'<span class="dl (\w+)">([^<]*)</span>', card)]
    assert ("del", '-  - jmespath: "{order: po, qty: qty}"   # keep this comment') in lines
    assert any(kind == "add" and "quantity: qty" in text for kind, text in lines)
    assert "last saved by analyst" in card

    gate = deployer.get("/changes/gate", params={"key": "erp-orders.yaml"})
    assert "would deploy" in gate.text
    version = re.search(r'name="version" value="(\w+)"', card).group(1)  # type: ignore[union-attr]
    done = deployer.post("/changes/deploy", {"key": "erp-orders.yaml", "version": version, "note": "reviewed"})
    assert done.status_code == 200, done.text
    assert "Deployed erp-orders.yaml" in done.text and 'id="no-drafts"' in done.text
    state = store(app).flow_state("erp-orders")
    assert state.version == version != first
    assert store(app).snapshot("erp-orders", version).text == EDITED
    entry = [e for e in audit(app) if e.action == "deploy"][-1]
    assert entry.username == "deployer" and entry.target == "erp-orders" and "reviewed" in entry.detail


def test_the_reviewed_version_is_the_one_deployed(app: Litestar, analyst: UiClient, deployer: UiClient, flows: Path) -> None:
    first = seed.deploy(store(app), flows / "erp-orders.yaml")
    analyst.post("/flows/erp-orders/save", {"yaml": EDITED})
    card = draft_card(deployer.get("/changes").text, "erp-orders.yaml")
    reviewed = re.search(r'name="version" value="(\w+)"', card).group(1)  # type: ignore[union-attr]
    (flows / "erp-orders.yaml").write_text(EDITED + "# changed after the review\n")
    late = deployer.post("/changes/deploy", {"key": "erp-orders.yaml", "version": reviewed})
    assert late.status_code == 409 and "changed since you reviewed it" in late.text
    assert store(app).flow_state("erp-orders").version == first


def test_send_back_with_a_comment_until_the_next_save(app: Litestar, analyst: UiClient, deployer: UiClient, flows: Path) -> None:
    seed.deploy(store(app), flows / "erp-orders.yaml")
    analyst.post("/flows/erp-orders/save", {"yaml": EDITED})
    empty = deployer.post("/changes/send-back", {"key": "erp-orders.yaml", "comment": " "})
    assert empty.status_code == 400
    back = deployer.post("/changes/send-back", {"key": "erp-orders.yaml", "comment": "keep the field name qty"})
    assert back.status_code == 200 and "Sent erp-orders.yaml back" in back.text
    entry = audit(app)[-1]
    assert (entry.action, entry.username, entry.target) == ("sent-back", "deployer", "erp-orders.yaml")
    assert "keep the field name qty" in entry.detail
    assert "keep the field name qty" in analyst.get("/flows/erp-orders").text
    assert "keep the field name qty" in draft_card(analyst.get("/changes").text, "erp-orders.yaml")
    analyst.post("/flows/erp-orders/save", {"yaml": ORDERS_FLOW.replace("qty: qty}", "qty: qty, plant: plant}")})
    assert "keep the field name qty" not in analyst.get("/flows/erp-orders").text


# -- refusals and broken files ----------------------------------------------------------------


def test_a_draft_that_fails_its_tests_leaves_the_running_version(app: Litestar, analyst: UiClient, deployer: UiClient, flows: Path) -> None:
    with_tests(flows)
    first = seed.deploy(store(app), flows / "erp-orders.yaml")
    analyst.post("/flows/erp-orders/save", {"yaml": TESTED.replace("qty: qty}", "qty: po}")})
    card = draft_card(deployer.get("/changes").text, "erp-orders.yaml")
    gate = deployer.get("/changes/gate", params={"key": "erp-orders.yaml"}).text
    assert "The gate would refuse it" in gate and "one order" in gate
    version = re.search(r'name="version" value="(\w+)"', card).group(1)  # type: ignore[union-attr]
    refused = deployer.post("/changes/deploy", {"key": "erp-orders.yaml", "version": version})
    assert refused.status_code == 400 and "Not deployed, the running version stays" in refused.text
    assert "one order" in refused.text
    state = store(app).flow_state("erp-orders")
    assert state.version == first and state.enabled and "one order" in state.refused
    page = deployer.get("/flows/erp-orders").text
    assert "Last deploy refused" in page and "one order" in page
    assert "deploy refused" in deployer.get("/flows").text
    assert [e.action for e in audit(app)][-1] == "deploy-refused"


def test_a_broken_file_leaves_every_other_flow_deployable(app: Litestar, deployer: UiClient, flows: Path) -> None:
    (flows / "zz-broken.yaml").write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: [unclosed\n")
    listing = deployer.get("/flows").text
    assert "zz-broken.yaml" in listing and "cannot be read" in listing
    page = deployer.get("/changes").text
    broken = draft_card(page, "zz-broken.yaml")
    assert "cannot be deployed" in broken and "line " in broken
    version = re.search(r'name="version" value="(\w+)"', draft_card(page, "erp-orders.yaml")).group(1)  # type: ignore[union-attr]
    done = deployer.post("/changes/deploy", {"key": "erp-orders.yaml", "version": version})
    assert done.status_code == 200 and store(app).flow_state("erp-orders").version == version
    assert deployer.post("/changes/deploy", {"key": "zz-broken.yaml"}).status_code == 400


def test_deploy_new_refuses_a_broken_file_and_deploys_the_others(app: Litestar, flows: Path) -> None:
    """What `flowyard serve --deploy-new` does at start (it stopped with an internal error)."""
    (flows / "zz-broken.yaml").write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: [unclosed\n")
    done, refused = deployments.deploy_new(store(app), flows, who="start")
    assert [d.flow for d in done] == ["erp-orders"]
    assert list(refused) == [flows / "zz-broken.yaml"] and "YAML syntax" in refused[flows / "zz-broken.yaml"]


# -- shared files and commits ---------------------------------------------------------------


def test_a_changed_table_is_deployed_into_every_flow_that_holds_it(app: Litestar, deployer: UiClient, flows: Path) -> None:
    (flows / "de02-stock.yaml").write_text(ORDERS_FLOW.replace("erp-orders", "de02-stock"))
    first = seed.deploy(store(app), flows / "erp-orders.yaml")
    seed.deploy(store(app), flows / "de02-stock.yaml")
    (flows / "tables" / "uom.csv").write_text("code,value\nEA,each\nPL,pallet\nCS,case\n")
    page = deployer.get("/changes").text
    card = draft_card(page, "tables/uom.csv")
    assert "de02-stock, erp-orders" in card
    assert re.search(r'<span class="dl add">\+CS,case</span>', card)
    assert "would deploy" in deployer.get("/changes/gate", params={"key": "tables/uom.csv"}).text
    version = re.search(r'name="version" value="(\w+)"', card).group(1)  # type: ignore[union-attr]
    done = deployer.post("/changes/deploy", {"key": "tables/uom.csv", "version": version, "note": "cases"})
    assert done.status_code == 200, done.text
    state = store(app).flow_state("erp-orders")
    assert state.version != first
    assert b"CS,case" in store(app).snapshot("erp-orders", state.version).files["tables/uom.csv"]
    assert b"CS,case" in store(app).snapshot("de02-stock", store(app).flow_state("de02-stock").version).files["tables/uom.csv"]


def git(flows: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=Setup", "-c", "user.email=setup@example.com", *args]
    return subprocess.run(cmd, cwd=flows, check=True, capture_output=True, text=True).stdout


def test_deploy_a_flow_as_a_review_commit_holds_it(app: Litestar, analyst: UiClient, deployer: UiClient, flows: Path) -> None:
    git(flows, "init", "-q", "-b", "main")
    git(flows, "add", ".")
    git(flows, "commit", "-qm", "start")
    first = seed.deploy(store(app), flows / "erp-orders.yaml")
    saved = analyst.post("/flows/erp-orders/save", {"yaml": EDITED, "commit": "1", "message": "rename qty"})
    assert "Committed" in saved.text
    branch = "flowyard/analyst/erp-orders"
    commit = git(flows, "rev-parse", branch).strip()
    (flows / "erp-orders.yaml").write_text(EDITED + "# not reviewed yet\n")  # the draft moved on
    page = deployer.get("/changes").text
    assert "rename qty" in draft_card(page, "erp-orders.yaml") and commit in page
    assert "Deploy this commit" in deployer.get("/flows/erp-orders").text
    done = deployer.post("/changes/deploy-commit", {"key": "erp-orders.yaml", "ref": commit, "note": "reviewed"})
    assert done.status_code == 200 and "Deployed erp-orders.yaml as commit" in done.text
    state = store(app).flow_state("erp-orders")
    assert state.version != first
    assert store(app).snapshot("erp-orders", state.version).text == EDITED  # the commit, not the file on disk
    assert store(app).deployments("erp-orders", limit=1)[0].git_commit == commit
    unknown = deployer.post("/changes/deploy-commit", {"key": "erp-orders.yaml", "ref": "no-such-branch"})
    assert unknown.status_code == 400 and store(app).flow_state("erp-orders").version == state.version
    bad = deployer.post("/changes/deploy-commit", {"key": "erp-orders.yaml", "ref": "--output=/tmp/x"})
    assert bad.status_code == 400


# -- who may deploy ---------------------------------------------------------------------------


DEPLOY_ROUTES = [
    ("/changes/deploy", {"key": "erp-orders.yaml"}),
    ("/changes/deploy", {"key": "tables/uom.csv"}),
    ("/changes/send-back", {"key": "erp-orders.yaml", "comment": "no"}),
    ("/changes/deploy-commit", {"key": "erp-orders.yaml", "ref": "HEAD"}),
    ("/flows/erp-orders/deploy", {"note": "x"}),
    ("/flows/erp-orders/undeploy", {"note": "x"}),
    ("/flows/erp-orders/rollback", {"version": "abc"}),
]


@pytest.mark.parametrize(("path", "data"), DEPLOY_ROUTES, ids=[f"{p} {sorted(d.values())[0]}" for p, d in DEPLOY_ROUTES])
@pytest.mark.parametrize("role", ["analyst", "viewer"])
def test_only_deployers_deploy_through_any_route(
    app: Litestar, client_for: Any, flows: Path, role: str, path: str, data: dict[str, str]
) -> None:
    first = seed.deploy(store(app), flows / "erp-orders.yaml")
    (flows / "erp-orders.yaml").write_text(EDITED)
    client = client_for(role)
    before = len(audit(app))
    response = client.post(path, data)
    assert response.status_code == 403
    assert store(app).flow_state("erp-orders").version == first and store(app).flow_state("erp-orders").enabled
    assert len(audit(app)) == before


def test_admin_deploys_and_csrf_is_checked(app: Litestar, admin: UiClient, deployer: UiClient) -> None:
    assert deployer.post("/changes/deploy", {"key": "erp-orders.yaml"}, csrf=False).status_code == 403
    assert store(app).flow_state("erp-orders") is None
    assert admin.post("/changes/deploy", {"key": "erp-orders.yaml"}).status_code == 200
    assert store(app).flow_state("erp-orders").enabled


# -- what runs ----------------------------------------------------------------------------------


def test_the_pages_show_what_workers_run_not_what_was_asked(app: Litestar, viewer: UiClient, flows: Path) -> None:
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    worker(app, "w-good", beat_age=2)
    worker(app, "w-bad", beat_age=3)
    store(app).report_runs("w-good", [("erp-orders", version, "")])
    store(app).report_runs("w-bad", [("erp-orders", version, "tables/uom.csv: no such file")])
    page = viewer.get("/flows/erp-orders").text
    assert f"version <code>{version}</code>" in page
    assert "w-good" in page and "w-bad" in page
    assert f"cannot load version <code>{version}</code>: tables/uom.csv: no such file" in page
    listing = viewer.get("/flows").text
    assert "cannot load on a worker" in listing and "w-bad cannot load" in listing
    assert "draft differs" not in listing  # the file is what is deployed


def test_the_dashboard_warns_of_a_worker_that_stopped_reporting(app: Litestar, viewer: UiClient) -> None:
    worker(app, "w-fresh", beat_age=1)
    assert "stale-workers" not in viewer.get("/dashboard").text
    worker(app, "w-silent", beat_age=300)
    worker(app, "w-stopped", beat_age=300, stopped=True)  # stopped cleanly: no warning
    page = viewer.get("/dashboard").text
    warning = re.search(r'<div class="error stale-workers".*?</div>', page, re.S)
    assert warning and "w-silent" in warning.group(0) and "w-stopped" not in warning.group(0)
    assert "w-fresh" not in warning.group(0)


def test_a_tile_without_sla_says_so(app: Litestar, viewer: UiClient, flows: Path) -> None:
    version = seed.deploy(store(app), flows / "erp-orders.yaml")
    seed.message(store(app), "erp-orders", version, {"po": "PO-1"})
    page = viewer.get("/dashboard").text
    assert "no SLA set" in page and "within SLA" not in page


# -- diffs as lines ------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/flows/erp-orders/diff"])
def test_every_diff_is_shown_line_by_line(analyst: UiClient, route: str) -> None:
    shown = analyst.post(route, {"yaml": EDITED}).text
    lines = re.findall(r'<span class="dl (\w+)">([^<]*)</span>', shown)
    assert [k for k, _ in lines[:3]] == ["head", "head", "hunk"]
    assert lines[0][1] == "--- a/erp-orders.yaml" and lines[1][1] == "+++ b/erp-orders.yaml"
    assert sum(1 for k, _ in lines if k in ("add", "del")) == 2
    rows = re.findall(r'<td class="(del|add)">([^<]*)</td>', shown)  # side by side
    assert [k for k, _ in rows] == ["del", "add"]


def test_a_table_diff_is_shown_line_by_line(analyst: UiClient) -> None:
    page = analyst.get("/tables/uom.csv").text
    base = re.search(r'name="base"[^>]*value="(\w+)"', page) or re.search(r'value="(\w+)"[^>]*name="base"', page)
    saved = analyst.post("/tables/uom.csv/save", {"text": "code,value\nEA,each\nPL,pallet\nCS,case\n",
                                             "base": base.group(1) if base else ""})
    assert saved.status_code == 200, saved.text
    lines = re.findall(r'<span class="dl (\w+)">([^<]*)</span>', saved.text)
    assert ("add", "+CS,case") in lines and ("head", "--- a/tables/uom.csv") in lines
