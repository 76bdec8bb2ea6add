"""Issue 15 item 7 (part): the operator's pages tell the truth: the dashboard stops
listing a failure a replay fixed, and a message's 'replayed as' links to the replay."""

from __future__ import annotations

import re
from pathlib import Path

from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.orm import Session

from flowyard.store.models import DeadLetter

from . import seed
from .conftest import UiClient


def test_a_failure_a_replay_fixed_leaves_the_dashboard_and_links_to_its_replay(
    app: Litestar, deployer: UiClient, flows: Path
) -> None:
    store = app.state.ui.store
    version = seed.deploy(store, flows / "erp-orders.yaml")
    fixed = seed.message(store, "erp-orders", version, {"po": "PO-1"}, state="dead", error="target down", step="s")
    still = seed.message(store, "erp-orders", version, {"po": "PO-2"}, state="dead", error="bad qty", step="s")
    before = deployer.get("/dashboard").text
    assert f"/runs/{fixed}" in before and f"/runs/{still}" in before
    with Session(app.state.ui.engine) as db:
        dead = db.scalar(select(DeadLetter.id).where(DeadLetter.message_id == fixed))
    replayed = deployer.post("/dead-letters/replay", {"ids": str(dead), "version": "current"})
    assert "Replayed 1" in replayed.text
    after = deployer.get("/dashboard").text
    assert f"/runs/{fixed}" not in after and f"/runs/{still}" in after
    with Session(app.state.ui.engine) as db:
        replay_id = db.scalar(select(DeadLetter.replay_message_id).where(DeadLetter.id == dead))
    assert replay_id
    detail = deployer.get(f"/runs/{fixed}").text
    link = re.search(r'replayed as <a class="replay-link" href="/runs/([^"]+)">', detail)
    assert link and link.group(1) == replay_id
    assert deployer.get(f"/runs/{replay_id}").status_code == 200
