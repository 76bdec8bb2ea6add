"""Template filters: times people can read, sizes, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from flowyard.options import spoken_duration

from . import diffview


def ago(value: datetime | float | None) -> str:
    if value is None:
        return "never"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - value).total_seconds()
    return age(seconds) + " ago"


age = spoken_duration


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def install(env: Environment) -> None:
    env.filters.update(
        ago=ago, age=age, when=when, pretty_json=pretty_json, ms=ms,
        diff_lines=diffview.lines, side_by_side=diffview.side_by_side,
    )
