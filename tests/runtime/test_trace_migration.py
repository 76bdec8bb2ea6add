"""Migration 0009 turns a store's step traces (a row per step) into one row per message,
each message's steps in the order they ran, and back again, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

from flowyard.store.database import make_engine
from flowyard.store.migrations import config
from flowyard.store.models import MessageTrace

# (message, step index, step, snapshot, at): stored out of order on purpose
OLD_ROWS = [
    ("m1", 1, "pick", '{"order": "PO-1"}', 20.0),
    ("m2", 0, "parse", "", 30.0),
    ("m1", 0, "parse", 'a "quoted" \\ text, ü', 10.0),
    ("m1", 2, "render", "<x/>", 30.0),
]


def migrate(url: str, revision: str, down: bool = False) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        (command.downgrade if down else command.upgrade)(config(connection), revision)
    engine.dispose()


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(sql))]
    engine.dispose()
    return rows


@pytest.fixture(params=["sqlite", "postgresql"])
def store_at_0008(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    migrate(url, "0008")
    engine = make_engine(url)
    with engine.begin() as connection:
        for message, index, step, snapshot, at in OLD_ROWS:
            connection.execute(text(
                "INSERT INTO fy_step_traces (message_id, step_index, step, status, duration, "
                "snapshot, at) VALUES (:m, :i, :s, 'ok', 0.5, :snap, :at)"),
                {"m": message, "i": index, "s": step, "snap": snapshot, "at": at})
    engine.dispose()
    return url


def test_step_rows_become_one_row_per_message_and_back(store_at_0008: str) -> None:
    url = store_at_0008
    migrate(url, "0009")
    engine = make_engine(url)
    with engine.connect() as connection:
        traces = {r.message_id: (r.at, r.steps) for r in connection.execute(
            MessageTrace.__table__.select())}
    engine.dispose()
    assert set(traces) == {"m1", "m2"}
    at, steps = traces["m1"]
    assert at == 10.0  # when the first step ran
    assert [(s["step_index"], s["step"], s["snapshot"], s["at"]) for s in steps] == [
        (0, "parse", 'a "quoted" \\ text, ü', 10.0), (1, "pick", '{"order": "PO-1"}', 20.0),
        (2, "render", "<x/>", 30.0)]
    assert steps[0]["status"] == "ok" and steps[0]["duration"] == 0.5
    assert traces["m2"][1] == [{"step_index": 0, "step": "parse", "status": "ok", "duration": 0.5,
                                "snapshot": "", "at": 30.0}]

    migrate(url, "0008", down=True)
    back = query(url, "SELECT message_id, step_index, step, snapshot, at FROM fy_step_traces "
                      "ORDER BY message_id, step_index")
    assert back == sorted(OLD_ROWS)
