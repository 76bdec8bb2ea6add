"""schedule: a timer that starts a flow (cron expression or fixed interval).

Each tick hands over one small JSON message (`scheduled_at`, `fired_at`, plus the fixed
`data` of the options); the flow's first step fetches what it needs, typically an ERP
API through a lookup or an HTTP call. A tick the store could not take is tried again
with back-off rather than skipped, and the next tick is computed from the schedule, not
from when the last one finished, so a slow flow does not drift.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from flowyard.connector import Accept, Connector, Source
from flowyard.message import Message
from flowyard.options import Duration, Options
from flowyard.step import FlowContext

from .backoff import Backoff


class ScheduleSourceOptions(Options):
    cron: str | None = Field(
        None, description="cron expression, 5 fields (or 6 with seconds last), e.g. */15 6-22 * * 1-5"
    )
    every: Duration | None = Field(None, description="fixed interval instead of cron, e.g. 10m")
    timezone: str = Field("UTC", description="time zone of the cron expression, e.g. America/Monterrey")
    data: dict[str, Any] = Field(default_factory=dict, description="fixed data put in every message")
    run_at_start: bool = Field(False, description="also fire once when the flow starts")
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

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        if self.options.every is not None:
            return moment + self.options.every
        assert self.options.cron is not None
        nxt: dt.datetime = croniter(self.options.cron, moment.astimezone(self.zone)).get_next(dt.datetime)
        return nxt.astimezone(dt.UTC)

    async def fire(self, accept: Accept, scheduled: dt.datetime) -> None:
        backoff = Backoff(0.5, 30)
        while True:
            payload = {
                "scheduled_at": scheduled.isoformat(),
                "fired_at": dt.datetime.now(dt.UTC).isoformat(),
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
            self.fired += 1
            self.health.ok()
            self.health.details["last_tick"] = scheduled.isoformat()
            return

    async def run(self, accept: Accept) -> None:
        self.health.connected = True
        now = dt.datetime.now(dt.UTC)
        if self.options.run_at_start:
            await self.fire(accept, now)
        scheduled = self.next_after(now)
        while True:
            self.health.details["next_tick"] = scheduled.isoformat()
            delay = (scheduled - dt.datetime.now(dt.UTC)).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.fire(accept, scheduled)
            following = self.next_after(scheduled)
            now = dt.datetime.now(dt.UTC)
            if following < now:  # far behind (a long outage): one tick now, no burst of old ones
                following = self.next_after(now)
            scheduled = following


class ScheduleConnector(Connector):
    """A timer (cron or interval) that starts a flow, e.g. to poll an ERP API."""

    kind = "schedule"
    SourceOptions = ScheduleSourceOptions
    source_class = ScheduleSource

    @classmethod
    def input_message(cls, options: Any, payload: bytes, name: str) -> Message:
        return Message(payload=payload, content_type="application/json", source={"connector": "schedule", "file": name})
