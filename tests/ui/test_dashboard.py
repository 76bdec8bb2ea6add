"""Dashboard latency: p50 and p95 per flow and per plant/partner tile, from known
latencies (nearest rank) in the store, and shown on the server-rendered page."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from flowyard.store import figures as queries
from flowyard.store.database import make_engine
from flowyard.store.migrations import upgrade
from flowyard.store.models import DeadLetter, StoredMessage
from flowyard.store.window import MessageWindow

from .conftest import UiClient

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _messages(engine: Engine, rows: list[tuple[str, str, str, str, float | None, float]]) -> None:
    """(flow, plant, partner, state, latency seconds, age seconds) per message."""
    now = time.time()
    values = []
    for flow, plant, partner, state, latency, age in rows:
        created = now - age
        values.append(
            {
                "id": uuid.uuid4().hex,
                "correlation_id": uuid.uuid4().hex,
                "flow": flow,
                "flow_version": "v1",
                "state": state,
                "content_type": "application/json",
                "payload": b"{}",
                "size": 2,
                "source": {},
                "headers": {},
                "plant": plant,
                "partner": partner,
                "replay_of": None,
                "attempt": 1,
                "outputs": 1,
                "created_at": created,
                "updated_at": created,
                "lease_token": 0,
                "finished_at": created + latency if latency is not None else None,
                "error": None,
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(StoredMessage), values)


def _known(engine: Engine) -> None:
    rows: list[tuple[str, str, str, str, float | None, float]] = []
    rows += [("orders", "MX01", "ERP", "done", k / 100, 600 + k) for k in range(1, 101)]  # 0.01 .. 1.00 s
    rows += [("confirmations", "MX01", "ERP", "done", 2.0, 900) for _ in range(20)]
    rows += [("stock", "DE02", "WMS", "done", 0.3, 300)]
    rows += [("orders", "MX01", "ERP", "dead", 50.0, 500), ("orders", "MX01", "ERP", "received", None, 100)]
    rows += [("orders", "MX01", "ERP", "done", 99.0, 3 * 86400)]  # outside the 24 hours
    _messages(engine, rows)


def _check_known(engine: Engine) -> None:
    found = queries.latency_percentiles(engine, time.time() - 24 * 3600)
    per_flow = found.by_flow
    assert per_flow[("orders", "MX01", "ERP")] == {50: pytest.approx(0.50), 95: pytest.approx(0.95)}
    assert per_flow[("confirmations", "MX01", "ERP")] == {50: pytest.approx(2.0), 95: pytest.approx(2.0)}
    assert per_flow[("stock", "DE02", "WMS")] == {50: pytest.approx(0.3), 95: pytest.approx(0.3)}
    per_tile = found.by_tile
    # 120 messages: the 60th smallest is 0.60 s, the 114th is one of the twenty 2.0 s
    assert per_tile[("MX01", "ERP")] == {50: pytest.approx(0.60), 95: pytest.approx(2.0)}
    assert per_tile[("DE02", "WMS")] == {50: pytest.approx(0.3), 95: pytest.approx(0.3)}


def test_percentiles_from_known_latencies_on_sqlite(app: Litestar) -> None:
    _known(app.state.ui.engine)
    _check_known(app.state.ui.engine)


def test_one_message_and_none(app: Litestar) -> None:
    engine = app.state.ui.engine
    assert queries.latency_percentiles(engine, 0) == queries.Percentiles()
    _messages(engine, [("solo", "US03", "", "done", 1.5, 10)])
    found = queries.latency_percentiles(engine, 0)
    assert found.by_flow == {("solo", "US03", ""): {50: 1.5, 95: 1.5}}
    assert found.by_tile == {("US03", ""): {50: 1.5, 95: 1.5}}


@pytest.fixture
def pg_engine(require_service: Callable[[str], Any]) -> Iterator[Engine]:
    require_service("postgresql")
    import psycopg

    name = f"fy_ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_percentiles_from_known_latencies_on_postgresql(pg_engine: Engine) -> None:
    _known(pg_engine)
    _check_known(pg_engine)


def test_the_dashboard_shows_p50_and_p95_per_tile_and_flow(app: Litestar, viewer: UiClient) -> None:
    _known(app.state.ui.engine)
    page = viewer.get("/dashboard")
    assert page.status_code == 200
    text = page.text
    assert "latency p50 / p95" in text and "average" not in text
    mx01 = text[text.index('aria-label="MX01 ERP"') :]
    mx01 = mx01[: mx01.index("</section>")]
    assert '<dd class="latency"' in mx01 and "600.0 ms / 2.00 s" in mx01
    assert "<dt>slowest message</dt><dd>2.00 s</dd>" in mx01  # the 50 s one died, the 99 s one is older
    assert "<dt>messages per hour</dt><dd>5.1</dd>" in mx01  # 122 received in 24 hours
    assert "99.2%" in mx01  # 120 done and 1 dead of the 121 finished (1 still open)
    orders = mx01[mx01.index('data-flow="orders"') :]
    orders = orders[: orders.index("</tr>")]
    assert "<td>500.0 ms</td><td>950.0 ms</td><td>100</td>" in orders
    confirmations = mx01[mx01.index('data-flow="confirmations"') :]
    assert "<td>2.00 s</td><td>2.00 s</td><td>20</td>" in confirmations[: confirmations.index("</tr>")]
    de02 = text[text.index('aria-label="DE02 WMS"') :]
    assert "300.0 ms / 300.0 ms" in de02[: de02.index("</section>")]


# -- the dashboard's window, kept between refreshes ---------------------------------------


def _truth(engine: Engine, since: float) -> dict[str, Any]:
    """The figures computed the plain way, from every row (the oracle)."""
    m = StoredMessage
    counts: dict[tuple[str, str, str], list[int]] = {}
    latencies: dict[tuple[str, str, str], list[float]] = {}
    opened: dict[tuple[str, str, str], int] = {}
    with engine.connect() as c:
        for flow, plant, partner, state, created, finished in c.execute(
            select(m.flow, m.plant, m.partner, m.state, m.created_at, m.finished_at)
        ):
            key = (flow, plant or "", partner or "")
            if state in ("received", "delivering"):
                opened[key] = opened.get(key, 0) + 1
            if created < since:
                continue
            got = counts.setdefault(key, [0, 0, 0])
            got[0] += 1
            got[1] += state == "done"
            got[2] += state == "dead"
            if state == "done":
                latencies.setdefault(key, []).append(finished - created)
    return {"counts": counts, "latencies": {k: sorted(v) for k, v in latencies.items()}, "open": opened}


def _window_figures(window: MessageWindow, since: float) -> dict[str, Any]:
    got = window.figures(since)
    return {
        "counts": {k: [got.received[k], got.done[k], got.dead[k]] for k in got.received},
        "latencies": {k: v for k, v in got.latencies.items() if v},
        "open": window.open_counts(),
    }


def _churn(engine: Engine, rng: random.Random, now: float) -> None:
    """A round of what a store sees: new messages, some finishing, some dying, a dead one
    sent again and done, one stored late with an old created_at, one deleted."""
    m = StoredMessage
    rows: list[tuple[str, str, str, str, float | None, float]] = []
    for _ in range(rng.randint(1, 12)):
        state = rng.choice(["received", "received", "delivering", "done", "dead", "dropped"])
        rows.append((rng.choice(["orders", "asn"]), rng.choice(["MX01", "DE02"]), "ERP", state,
                     rng.uniform(0.01, 5) if state in ("done", "dead", "dropped") else None, rng.uniform(0, 30)))
    rows.append(("orders", "MX01", "ERP", "done", 0.5, rng.uniform(600, 7200)))  # a straggler
    _messages(engine, rows)
    with engine.begin() as c:
        open_ids = list(c.scalars(select(m.id).where(m.state.in_(("received", "delivering")))))
        for id_ in rng.sample(open_ids, min(len(open_ids), 4)):
            state = rng.choice(["done", "dead", "delivering"])
            c.execute(update(m).where(m.id == id_).values(
                state=state, finished_at=None if state == "delivering" else now + rng.uniform(0, 2)))
        dead_ids = list(c.scalars(select(m.id).where(m.state == "dead")))
        for id_ in rng.sample(dead_ids, min(len(dead_ids), 2)):  # resent, and done before the next look
            c.execute(update(m).where(m.id == id_).values(state=rng.choice(["delivering", "done"]),
                                                          finished_at=now + 1))
        done_ids = list(c.scalars(select(m.id).where(m.state == "done")))
        if done_ids:
            c.execute(delete(m).where(m.id == rng.choice(done_ids)))


def _check_window_keeps_up(engine: Engine) -> None:
    rng = random.Random(7)
    _known(engine)
    window = MessageWindow(engine, whole_check_every=0)
    for round_ in range(25):
        now = time.time()
        _churn(engine, rng, now)
        window.refresh(now)
        for hours in (6, 24, 72):
            since = now - hours * 3600
            assert _window_figures(window, since) == _truth(engine, since), (round_, hours)
    fresh = MessageWindow(engine)
    fresh.refresh()
    assert fresh.finished_since(0) == window.finished_since(0)


def test_the_dashboards_window_keeps_up_with_every_change_on_sqlite(app: Litestar) -> None:
    _check_window_keeps_up(app.state.ui.engine)


def test_the_dashboards_window_keeps_up_with_every_change_on_postgresql(pg_engine: Engine) -> None:
    _check_window_keeps_up(pg_engine)


def test_the_windows_open_dead_letters_follow_new_and_closed_ones(app: Litestar) -> None:
    engine = app.state.ui.engine
    _messages(engine, [("orders", "MX01", "ERP", "dead", 1.0, 300), ("asn", "DE02", "WMS", "dead", 1.0, 200)])
    with engine.connect() as c:
        ids = dict(c.execute(select(StoredMessage.flow, StoredMessage.id)).all())
    now = time.time()

    def letter(flow: str, age: float) -> dict[str, Any]:
        return {"message_id": ids[flow], "flow": flow, "kind": "step", "reason": "boom", "input": b"{}",
                "status": "open", "created_at": now - age}

    window = MessageWindow(engine, whole_check_every=0)
    assert window.open_dead_letters() == {}
    with engine.begin() as c:
        c.execute(insert(DeadLetter), [letter("orders", 250), letter("orders", 100)])
    assert window.open_dead_letters() == {("orders", "MX01", "ERP"): (2, pytest.approx(now - 250))}
    with engine.begin() as c:  # the oldest replayed and a new failure in another flow, at once
        c.execute(update(DeadLetter).where(DeadLetter.created_at < now - 200).values(status="replayed"))
        c.execute(insert(DeadLetter), [letter("asn", 50)])
    assert window.open_dead_letters() == {
        ("orders", "MX01", "ERP"): (1, pytest.approx(now - 100)),
        ("asn", "DE02", "WMS"): (1, pytest.approx(now - 50)),
    }


def test_a_message_stored_late_with_an_old_created_at_counts_at_the_next_refresh(app: Litestar) -> None:
    engine = app.state.ui.engine
    _known(engine)
    window = MessageWindow(engine)  # the whole-window check only every 30 s...
    window.refresh()
    _messages(engine, [("orders", "MX01", "ERP", "dead", 1.0, 5 * 3600)])  # ...but the count moved
    now = time.time()
    window.refresh(now)
    assert _window_figures(window, now - 24 * 3600) == _truth(engine, now - 24 * 3600)
