"""schedule connector: real timers, real croniter."""

from __future__ import annotations

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
        ScheduleSourceOptions(every="200ms", data={"plant": "MX01"}, run_at_start=True), context(tmp_path)
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
