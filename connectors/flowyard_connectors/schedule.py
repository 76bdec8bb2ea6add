"""schedule: a timer that starts a flow (cron expression or fixed interval).

Each tick hands over one small JSON message (`scheduled_at`, `fired_at`, plus the fixed
`data` of the options); the flow's first step fetches what it needs, typically an ERP
API through a lookup or an HTTP call. A tick the store could not take is tried again
with back-off rather than skipped, and the next tick is computed from the schedule, not
from when the last one finished, so a slow flow does not drift.

Missed ticks: the time of the last tick handed over is kept in the connector state (the
store's `connector_state` table, like the SQL source's watermark), so it survives a
restart and is shared by the workers. Ticks that fell due while the runtime was down,
or while a tick was being retried, are run according to `catch_up`: `none` skips them,
`latest` runs the most recent one, `all` runs each of them in order (at most
`catch_up_limit`, the most recent ones). A caught-up tick carries `"caught_up": true`.
On the very first start there is no last tick, so nothing is caught up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from flowyard.connector import Accept, Connector, Source
from flowyard.message import Message
from flowyard.options import Duration, Options
from flowyard.services import SourceState
from flowyard.step import FlowContext

from .backoff import reconnecting


class ScheduleSourceOptions(Options):
    cron: str | None = Field(
        None, description="cron expression, 5 fields (or 6 with seconds last), e.g. */15 6-22 * * 1-5"
    )
    every: Duration | None = Field(None, description="fixed interval instead of cron, e.g. 10m")
    timezone: str = Field("UTC", description="time zone of the cron expression, e.g. America/Monterrey")
    data: dict[str, Any] = Field(default_factory=dict, description="fixed data put in every message")
    run_at_start: bool = Field(
        False, description="also fire once when the flow starts (unless a missed tick was just caught up)"
    )
    catch_up: Literal["none", "latest", "all"] = Field(
        "latest", description="ticks missed while the runtime was down: skip them, run the latest, or run all"
    )
    catch_up_limit: int = Field(100, ge=1, le=100_000, description="with catch_up: all, run at most this many (the latest)")
    state_key: str | None = Field(
        None, description="name under which the last tick is kept (default: the flow's name)"
    )
    content_type: str = Field("application/json", description="messages are JSON")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _one(self) -> ScheduleSourceOptions:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of `cron` or `every`")
        if self.every is not None and self.every.total_seconds() <= 0:
            raise ValueError("`every` must be longer than zero")
        return self


class ScheduleSource(Source[ScheduleSourceOptions]):
    def __init__(self, options: ScheduleSourceOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.zone = ZoneInfo(options.timezone)
        self.fired = 0
        self.state = SourceState(context.services)
        self.key = f"schedule:{options.state_key or context.flow_name}:last-tick"
        self.health.details["state_store"] = self.state.kind

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        if self.options.every is not None:
            return moment + self.options.every
        assert self.options.cron is not None
        nxt: dt.datetime = croniter(self.options.cron, moment.astimezone(self.zone)).get_next(dt.datetime)
        return nxt.astimezone(dt.UTC)

    def latest_at_or_before(self, moment: dt.datetime, anchor: dt.datetime) -> dt.datetime:
        """The last tick not after `moment` (`every` ticks count from `anchor`)."""
        if self.options.every is not None:
            steps = (moment - anchor) // self.options.every
            return anchor + steps * self.options.every
        assert self.options.cron is not None
        after = (moment + dt.timedelta(microseconds=1)).astimezone(self.zone)  # get_prev is strictly before
        prev: dt.datetime = croniter(self.options.cron, after).get_prev(dt.datetime)
        return prev.astimezone(dt.UTC)

    def missed(self, last: dt.datetime, now: dt.datetime) -> list[dt.datetime]:
        """Ticks after `last` and not after `now` to run now, oldest first, per `catch_up`;
        walks back from `now`, so a long outage costs at most `catch_up_limit` steps."""
        if self.options.catch_up == "none":
            return []
        wanted = 1 if self.options.catch_up == "latest" else self.options.catch_up_limit
        ticks: list[dt.datetime] = []
        moment = now
        while len(ticks) < wanted:
            tick = self.latest_at_or_before(moment, last)
            if tick <= last:
                break
            ticks.append(tick)
            moment = tick - dt.timedelta(microseconds=1)
        return ticks[::-1]

    async def last_tick(self) -> dt.datetime | None:
        stored = await self.state.get(self.key)
        if stored is None:
            return None
        try:
            return dt.datetime.fromisoformat(json.loads(stored)).astimezone(dt.UTC)
        except (ValueError, TypeError, AttributeError):
            self.health.failed(f"the last tick kept under {self.key} is unreadable ({stored[:40]!r}); not caught up")
            return None

    async def fire(self, accept: Accept, scheduled: dt.datetime, caught_up: bool = False) -> None:
        backoff = reconnecting()
        while True:
            payload = {
                "scheduled_at": scheduled.isoformat(),
                "fired_at": dt.datetime.now(dt.UTC).isoformat(),
                **({"caught_up": True} if caught_up else {}),
                **self.options.data,
            }
            message = Message(
                payload=json.dumps(payload).encode(),
                content_type="application/json",
                source={"connector": "schedule", "scheduled_at": scheduled.isoformat()},
            )
            try:
                await accept(message)
            except Exception as exc:  # the store is down: this tick is not skipped
                self.health.failed(f"could not store the tick of {scheduled.isoformat()}: {exc}")
                await backoff.wait()
                continue
            break
        self.fired += 1
        self.health.ok()
        self.health.details["last_tick"] = scheduled.isoformat()
        try:
            await self.state.set(self.key, json.dumps(scheduled.isoformat()))
        except Exception as exc:  # the tick is stored; only catching up after a restart may repeat it
            self.health.failed(f"could not keep the time of the last tick: {exc}")

    async def catch_up(self, accept: Accept, last: dt.datetime, now: dt.datetime) -> int:
        ticks = self.missed(last, now)
        for tick in ticks:
            await self.fire(accept, tick, caught_up=True)
        if ticks:
            self.health.details["caught_up"] = self.health.details.get("caught_up", 0) + len(ticks)
        return len(ticks)

    async def run(self, accept: Accept) -> None:
        self.health.connected = True
        now = dt.datetime.now(dt.UTC)
        last = await self.last_tick()
        caught = await self.catch_up(accept, last, now) if last is not None else 0
        if self.options.run_at_start and not caught:
            await self.fire(accept, now)
        # `every` ticks keep their rhythm across restarts when the last one is known
        scheduled = self.next_after(now if last is None or self.options.every is None else
                                    self.latest_at_or_before(now, last))
        while True:
            self.health.details["next_tick"] = scheduled.isoformat()
            delay = (scheduled - dt.datetime.now(dt.UTC)).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.fire(accept, scheduled)
            now = dt.datetime.now(dt.UTC)
            await self.catch_up(accept, scheduled, now)  # fell due while this one was retried
            following = self.next_after(scheduled)
            if following <= now:
                following = self.next_after(self.latest_at_or_before(now, scheduled))
            scheduled = following


class ScheduleConnector(Connector):
    """A timer (cron or interval) that starts a flow, e.g. to poll an ERP API."""

    kind = "schedule"
    SourceOptions = ScheduleSourceOptions
    source_class = ScheduleSource

    @classmethod
    def input_message(cls, options: Any, payload: bytes, name: str) -> Message:
        return Message(payload=payload, content_type="application/json", source={"connector": "schedule", "file": name})
