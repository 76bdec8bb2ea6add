"""The store: migrations on SQLite and PostgreSQL, the durability settings, and the
query/command API the UI and the CLI use."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from rthelp import order, write_flow
from sqlalchemy import inspect, text

from flowyard.message import Message
from flowyard.operations import deployments
from flowyard.store.api import Store, StoreError, reason_kind
from flowyard.store.database import Base, make_engine
from flowyard.store.migrations import VERSION_TABLE, import_models, upgrade


def check_migrated(url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(url)
    try:
        with caplog.at_level(logging.WARNING, logger="flowyard.store"):
            upgrade(engine)
            upgrade(engine)  # a second run is a no-op
        assert "not yet covered by a migration" not in caplog.text
        import_models()
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert {"fy_messages", "fy_deliveries", "fy_dead_letters", "ui_audit",
                "x12_control_counter", VERSION_TABLE} <= tables
        with engine.connect() as c:
            diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
        ours = [d for d in diff if "fy_" in repr(d) and VERSION_TABLE not in repr(d)]
        assert ours == [], f"store models and migrations differ: {ours}"
    finally:
        engine.dispose()


def test_migrations_create_every_table_on_sqlite(sqlite_url: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    check_migrated(sqlite_url, caplog)
    engine = make_engine(sqlite_url)
    with engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    engine.dispose()


def test_migrations_create_every_table_on_postgresql(pg_url: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    check_migrated(pg_url, caplog)


def test_messages_dead_letters_and_dashboard(sqlite_store: Store) -> None:
    from flowyard.store import queue

    store = sqlite_store
    ids = store.accept_many([
        Message(payload=order(n), content_type="application/json", flow="orders",
                flow_version="v1", headers={"labels": {"plant": "MX01", "partner": "ACME"}})
        for n in range(3)
    ])
    assert [m.id for m in store.list_messages(plant="MX01")] == list(reversed(ids)) or \
        sorted(m.id for m in store.list_messages(plant="MX01")) == sorted(ids)
    assert store.list_messages(partner="OTHER") == []
    claimed = queue.claim_messages(store.engine, "w1", ["orders"], 10, 30)
    assert len(claimed) == 3
    outcomes = []
    for n, c in enumerate(claimed):
        o = queue.ProcessOutcome(message=c, state="dead" if n < 2 else "done")
        if n < 2:
            reason = f"step 'qty': value {n + 10} is not allowed"
            o.error = reason
            o.dead_letters.append({
                "message_id": c.id, "correlation_id": c.correlation_id, "flow": c.flow,
                "flow_version": c.flow_version, "kind": "step", "reason": reason,
                "reason_kind": reason_kind(reason), "step": "qty", "target": None,
                "input": c.payload, "input_content_type": c.content_type, "trace": [],
                "status": "open", "created_at": time.time()})
        outcomes.append(o)
    assert queue.commit_processing(store.engine, "w1", outcomes) == []
    [group] = store.dead_letter_groups()
    assert group.count == 2 and group.flow == "orders" and len(group.ids) == 2
    assert store.dead_letters(reason="not allowed")[0].step == "qty"
    board = store.dashboard()
    assert board.states == {"dead": 2, "done": 1}
    assert board.dead_letters_open == 2 and board.oldest_dead_letter_age is not None
    assert [f.flow for f in board.flows] == ["orders"]
    assert store.discard_dead_letters(group.ids) == 2
    assert store.dead_letters() == []


def test_deploy_history_and_rollback(tmp_path: Path, sqlite_store: Store) -> None:
    path = write_flow(tmp_path / "flows")
    first = deployments.deploy(sqlite_store, path, who="ana", note="first")
    path.write_text(path.read_text().replace("ACME", "ACME2"))
    second = deployments.deploy(sqlite_store, path, who="bo", note="partner renamed")
    assert first.version != second.version
    assert sqlite_store.flow_state("orders").version == second.version  # type: ignore[union-attr]
    back = deployments.rollback(sqlite_store, "orders", first.version, who="ana")
    # the snapshot runs again as it was deployed; the file (a draft) is not touched
    assert back.action == "rollback" and "ACME2" in path.read_text()
    assert sqlite_store.flow_state("orders").version == first.version  # type: ignore[union-attr]
    restored = sqlite_store.snapshot("orders", first.version)
    assert restored is not None and "ACME2" not in restored.text
    assert [d.who for d in sqlite_store.deployments("orders")] == ["ana", "bo", "ana"]
    assert deployments.rollback(sqlite_store, "orders", who="bo").version == second.version  # the one before
    with pytest.raises(StoreError, match="no deployed snapshot"):
        deployments.rollback(sqlite_store, "orders", "nope")
    deployments.undeploy(sqlite_store, "orders", who="ana")
    assert sqlite_store.flow_state("orders").enabled is False  # type: ignore[union-attr]


@pytest.mark.parametrize("store_fixture", ["sqlite_store", "pg_store"])
def test_json_columns_read_back_what_either_encoder_wrote(
        store_fixture: str, request: pytest.FixtureRequest) -> None:
    """JSON columns are read with msgspec, and what it refuses with json.loads: rows that
    json.dumps wrote before still load, NaN included on SQLite (PostgreSQL's json type
    never held one)."""
    import json
    import math

    from flowyard.store import queue

    store: Store = request.getfixturevalue(store_fixture)
    headers = {"context": {"plant": "Zaragoza-Ñ", "line": 7}, "big": 2**70, "only_targets": None}
    new, old = store.accept_many([
        Message(payload=b"{}", flow="f", flow_version="v", headers=headers),
        Message(payload=b"{}", flow="f", flow_version="v")])
    sqlite = store.engine.dialect.name == "sqlite"
    written = {"unit": "°C", "reading": math.nan if sqlite else 21.5}
    with store.engine.begin() as c:  # an older row: json.dumps text (ASCII escapes)
        c.execute(text("UPDATE fy_messages SET headers = :h WHERE id = :id"),
                  {"h": json.dumps(written), "id": old})
    claimed = {c.id: c for c in queue.claim_messages(store.engine, "w", ["f"], 10, 30.0)}
    assert claimed[new].headers == headers
    assert claimed[old].headers["unit"] == "°C"
    reading = claimed[old].headers["reading"]
    assert math.isnan(reading) if sqlite else reading == 21.5
