"""schedule connector: real timers, real croniter."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from pathlib import Path

import pytest
from connector_helpers import Collector, Running, context, wait_for
from pydantic import ValidationError

from flowyard_connectors.schedule import ScheduleSource, ScheduleSourceOptions


async def test_interval_ticks_carry_data_and_times(tmp_path: Path) -> None:
    store = Collector()
    src = ScheduleSource(
        # catch_up: all, so a tick that falls due while a slow one is stored is run, not skipped
        ScheduleSourceOptions(every="200ms", data={"plant": "MX01"}, run_at_start=True, catch_up="all"),
        context(tmp_path),
    )
    async with Running(src, store):
        await wait_for(lambda: len(store.messages) >= 3)
    ticks = [json.loads(m.payload) for m in store.messages]
    assert all(t["plant"] == "MX01" for t in ticks)
    scheduled = [dt.datetime.fromisoformat(t["scheduled_at"]) for t in ticks]
    assert scheduled == sorted(scheduled)
    gaps = {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(scheduled[1:])}
    assert gaps <= {0.2}  # computed from the schedule, not from when the last one ended


async def test_store_down_retries_the_same_tick(tmp_path: Path) -> None:
    store = Collector()
    store.fail = True
    src = ScheduleSource(ScheduleSourceOptions(every="100ms"), context(tmp_path))
    async with Running(src, store):
        await wait_for(lambda: store.refused >= 2)
        store.fail = False
        await wait_for(lambda: len(store.messages) >= 2)
    first, second = (json.loads(m.payload)["scheduled_at"] for m in store.messages[:2])
    assert dt.datetime.fromisoformat(second) > dt.datetime.fromisoformat(first)
    assert src.health.last_error is not None and "could not store the tick" in src.health.last_error


def test_cron_next_ticks_follow_the_time_zone(tmp_path: Path) -> None:
    src = ScheduleSource(ScheduleSourceOptions(cron="30 6 * * 1-5", timezone="America/Monterrey"), context(tmp_path))
    friday = dt.datetime(2026, 11, 20, 13, 0, tzinfo=dt.UTC)  # 07:00 in Monterrey
    monday = src.next_after(friday)
    assert monday == dt.datetime(2026, 11, 23, 12, 30, tzinfo=dt.UTC)  # 06:30 local, UTC-6


async def test_cron_with_seconds_fires(tmp_path: Path) -> None:
    store = Collector()
    async with Running(ScheduleSource(ScheduleSourceOptions(cron="* * * * * *"), context(tmp_path)), store):
        await wait_for(lambda: len(store.messages) >= 2, timeout=10)
    stamps = [dt.datetime.fromisoformat(json.loads(m.payload)["scheduled_at"]) for m in store.messages]
    assert all(s.microsecond == 0 for s in stamps)


def test_options_are_checked() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ScheduleSourceOptions()
    with pytest.raises(ValidationError, match="not a cron expression"):
        ScheduleSourceOptions(cron="every monday")
    with pytest.raises(ValidationError, match="unknown time zone"):
        ScheduleSourceOptions(every="1m", timezone="Mars/Base")


# ---------------------------------------------------------------- missed ticks


@pytest.fixture(autouse=True)
def own_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The last tick is kept in the store's connector_state table: a SQLite store per test."""
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLOWYARD_DATABASE_URL", raising=False)


T = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def schedule(tmp_path: Path, **options: object) -> ScheduleSource:
    return ScheduleSource(ScheduleSourceOptions.model_validate(options), context(tmp_path, name="erp-poll"))


@pytest.mark.parametrize(
    ("catch_up", "limit", "expected"),
    [("none", 100, []), ("latest", 100, [30]), ("all", 100, [10, 20, 30]), ("all", 2, [20, 30])],
)
def test_missed_interval_ticks_per_policy(tmp_path: Path, catch_up: str, limit: int, expected: list[int]) -> None:
    src = schedule(tmp_path, every="10m", catch_up=catch_up, catch_up_limit=limit)
    assert src.missed(T, T + dt.timedelta(minutes=35)) == [T + dt.timedelta(minutes=m) for m in expected]


def test_missed_cron_ticks_include_one_due_exactly_now(tmp_path: Path) -> None:
    src = schedule(tmp_path, cron="0 * * * *", catch_up="all")
    now = T.replace(hour=13)
    assert src.missed(T, now) == [T.replace(hour=11), T.replace(hour=12), T.replace(hour=13)]
    assert src.missed(T, now + dt.timedelta(seconds=1)) == [T.replace(hour=h) for h in (11, 12, 13)]
    assert src.missed(now, now + dt.timedelta(minutes=59)) == []  # nothing new since the last tick


def test_missed_ticks_after_a_year_down_cost_only_the_limit(tmp_path: Path) -> None:
    src = schedule(tmp_path, cron="* * * * * *", catch_up="all", catch_up_limit=3)
    now = T + dt.timedelta(days=365)
    assert src.missed(T, now) == [now - dt.timedelta(seconds=s) for s in (2, 1, 0)]


async def keep_last_tick(src: ScheduleSource, when: dt.datetime) -> None:
    await src.state.set(src.key, json.dumps(when.isoformat()))


async def test_start_runs_all_missed_ticks_from_the_kept_last_tick(tmp_path: Path) -> None:
    store = Collector()
    src = schedule(tmp_path, every="10m", catch_up="all", data={"plant": "MX01"})
    last = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=65)
    await keep_last_tick(src, last)
    async with Running(src, store):
        await wait_for(lambda: "next_tick" in src.health.details, what="the catch-up to finish")
    ticks = [json.loads(m.payload) for m in store.messages]
    assert [dt.datetime.fromisoformat(t["scheduled_at"]) for t in ticks] == [
        last + dt.timedelta(minutes=10 * k) for k in range(1, 7)
    ]
    assert all(t["caught_up"] is True and t["plant"] == "MX01" for t in ticks)
    assert json.loads(await src.state.get(src.key) or "null") == ticks[-1]["scheduled_at"]  # kept for the next start
    # the rhythm of the interval continues from the kept tick
    assert src.health.details["next_tick"] == (last + dt.timedelta(minutes=70)).isoformat()


async def test_latest_runs_one_and_none_runs_nothing(tmp_path: Path) -> None:
    last = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
    latest, nothing = Collector(), Collector()
    src = schedule(tmp_path, cron="0 * * * *", catch_up="latest", state_key="a")
    await keep_last_tick(src, last)
    async with Running(src, latest):
        await wait_for(lambda: "next_tick" in src.health.details)
    src2 = schedule(tmp_path, cron="0 * * * *", catch_up="none", state_key="b")
    await keep_last_tick(src2, last)
    async with Running(src2, nothing):
        await wait_for(lambda: "next_tick" in src2.health.details)
    assert len(latest.messages) == 1 and nothing.messages == []
    tick = json.loads(latest.messages[0].payload)
    scheduled = dt.datetime.fromisoformat(tick["scheduled_at"])
    assert tick["caught_up"] and scheduled.minute == 0 and scheduled > last + dt.timedelta(hours=4)
    assert src.health.details["caught_up"] == 1


async def test_restart_catches_up_the_ticks_missed_while_down(tmp_path: Path) -> None:
    first, second = Collector(), Collector()
    options = {"every": "200ms", "catch_up": "all"}
    src = schedule(tmp_path, **options)
    async with Running(src, first):
        await wait_for(lambda: len(first.messages) >= 2)
    stopped_at = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.7)  # the runtime is down over a few ticks
    again = schedule(tmp_path, **options)
    async with Running(again, second):
        await wait_for(lambda: "next_tick" in again.health.details)
    last_before = dt.datetime.fromisoformat(json.loads(first.messages[-1].payload)["scheduled_at"])
    caught = [json.loads(m.payload) for m in second.messages if json.loads(m.payload).get("caught_up")]
    assert caught, "the ticks missed while down were not run"
    times = [dt.datetime.fromisoformat(t["scheduled_at"]) for t in caught]
    assert times[0] == last_before + dt.timedelta(milliseconds=200)  # none lost, none repeated
    assert {round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(times)} <= {0.2}
    assert times[-1] > stopped_at


async def test_first_start_catches_up_nothing_and_run_at_start_fires_once(tmp_path: Path) -> None:
    store = Collector()
    src = schedule(tmp_path, every="10m", catch_up="all", run_at_start=True)
    async with Running(src, store):
        await wait_for(lambda: "next_tick" in src.health.details)
    assert len(store.messages) == 1 and "caught_up" not in json.loads(store.messages[0].payload)


async def test_an_unreadable_last_tick_is_reported_not_caught_up(tmp_path: Path) -> None:
    store = Collector()
    src = schedule(tmp_path, every="10m", catch_up="all")
    await src.state.set(src.key, '"not a time"')
    async with Running(src, store):
        await wait_for(lambda: "next_tick" in src.health.details)
    assert store.messages == []
    assert "unreadable" in (src.health.last_error or "") and src.key in (src.health.last_error or "")
