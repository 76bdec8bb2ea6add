"""The operator's figures, written over the store's models (read-only): dashboard figures per plant and partner, hourly counts, and search
by business key (the flow's `keys:` evaluated over its step snapshots)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jmespath
from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..options import parse_duration
from ..options import spoken_duration as age
from .models import OPEN_STATES, MessageTrace, StoredMessage
from .window import MessageWindow, WindowFigures


@dataclass
class FlowFigures:
    flow: str
    plant: str
    partner: str
    received: int = 0
    done: int = 0
    dead: int = 0
    backlog: int = 0
    latency_max: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None
    oldest_failure_age: float | None = None
    open_dead_letters: int = 0
    hourly: list[int] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        finished = self.done + self.dead
        return None if finished == 0 else 100.0 * self.done / finished


@dataclass
class Tile:
    plant: str
    partner: str
    flows: list[FlowFigures]
    hours: int
    latency_p50: float | None = None  # over all the tile's messages (percentiles do not add up)
    latency_p95: float | None = None

    def total(self, attr: str) -> int:
        return sum(int(getattr(f, attr) or 0) for f in self.flows)

    @property
    def per_hour(self) -> float:
        return self.total("received") / max(1, self.hours)

    @property
    def success_rate(self) -> float | None:
        finished = self.total("done") + self.total("dead")
        return None if finished == 0 else 100.0 * self.total("done") / finished

    @property
    def latency_max(self) -> float | None:
        values = [f.latency_max for f in self.flows if f.latency_max is not None]
        return max(values) if values else None

    @property
    def oldest_failure_age(self) -> float | None:
        values = [f.oldest_failure_age for f in self.flows if f.oldest_failure_age is not None]
        return max(values) if values else None

    @property
    def hourly(self) -> list[int]:
        out = [0] * self.hours
        for f in self.flows:
            for i, n in enumerate(f.hourly):
                out[i] += n
        return out

    @property
    def breaches(self) -> list[str]:
        return [f"{f.flow}: {b}" for f in self.flows for b in f.breaches]

    @property
    def red(self) -> bool:
        return bool(self.breaches)


def _seconds(value: Any) -> float | None:
    try:
        td: timedelta = parse_duration(value)
    except ValueError:
        return None
    return td.total_seconds()


def check_sla(figures: FlowFigures, sla: dict[str, Any]) -> list[str]:
    """Which of the flow's thresholds are broken, in words."""
    broken = []
    limit = _seconds(sla["max_failure_age"]) if "max_failure_age" in sla else None
    if limit is not None and figures.oldest_failure_age is not None and figures.oldest_failure_age > limit:
        broken.append(f"oldest failure {age(figures.oldest_failure_age)} old (limit {sla['max_failure_age']})")
    if "min_success_rate" in sla and figures.success_rate is not None:
        try:
            minimum = float(str(sla["min_success_rate"]).rstrip("%"))
        except ValueError:
            minimum = None
        if minimum is not None and figures.success_rate < minimum:
            broken.append(f"success {figures.success_rate:.1f}% (minimum {minimum:g}%)")
    limit = _seconds(sla["max_latency"]) if "max_latency" in sla else None
    if limit is not None and figures.latency_max is not None and figures.latency_max > limit:
        broken.append(f"slowest message took {age(figures.latency_max)} (limit {sla['max_latency']})")
    if "max_backlog" in sla:
        try:
            if figures.backlog > int(sla["max_backlog"]):
                broken.append(f"backlog {figures.backlog} (limit {sla['max_backlog']})")
        except (TypeError, ValueError):
            pass
    return broken


PERCENTILES = (50, 95)


@dataclass
class Percentiles:
    """Latency p50 and p95 (seconds) per flow and per plant/partner tile."""

    by_flow: dict[tuple[str, str, str], dict[int, float]] = field(default_factory=dict)
    by_tile: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)


def _nearest_rank(ordered: list[float]) -> dict[int, float]:
    """p is the ceil(p/100 * n)-th smallest: the latency p in 100 messages did not exceed."""
    n = len(ordered)
    return {q: float(ordered[(n * q + 99) // 100 - 1]) for q in PERCENTILES}


def percentiles_of(window: WindowFigures) -> Percentiles:
    """p50 and p95 per flow, and per tile over all the tile's messages (percentiles do
    not add up, so each tile needs its own sorted list)."""
    result = Percentiles()
    by_tile: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    for key, values in window.latencies.items():
        if values:
            result.by_flow[key] = _nearest_rank(values)
            by_tile[(key[1], key[2])] += values
    for tile, values in by_tile.items():
        values.sort()
        result.by_tile[tile] = _nearest_rank(values)
    return result


def _window(engine: Engine, since: float, now: float, window: MessageWindow | None) -> MessageWindow:
    """The dashboard's own window, brought up to date, or a new one read once."""
    if window is None:
        window = MessageWindow(engine, horizon=now - since)
    window.refresh(now)
    return window


def latency_percentiles(engine: Engine, since: float, window: MessageWindow | None = None) -> Percentiles:
    """p50 and p95 of the latency (received to finished) of the messages done since
    `since`, nearest rank."""
    now = time.time()
    return percentiles_of(_window(engine, since, now, window).figures(since))


def flow_figures(
    engine: Engine, hours: int = 24, now: float | None = None, window: MessageWindow | None = None
) -> tuple[list[FlowFigures], Percentiles]:
    """Per flow, plant and partner over the last `hours`: counts, latency (max, p50,
    p95), backlog, open dead letters and the age of the oldest, and messages per hour;
    with the percentiles per tile. `window` (kept by the caller between calls) reads
    only what changed since its last call."""
    now = now or time.time()
    since = now - hours * 3600
    m = StoredMessage
    figures: dict[tuple[str, str, str], FlowFigures] = {}

    def get(flow: str, plant: str, partner: str) -> FlowFigures:
        key = (flow, plant or "", partner or "")
        if key not in figures:
            figures[key] = FlowFigures(flow, plant or "", partner or "", hourly=[0] * hours)
        return figures[key]

    window = _window(engine, since, now, window)
    counted = window.figures(since, bars=hours)
    for key, received in counted.received.items():
        f = get(*key)
        f.received = received
        f.done = counted.done.get(key, 0)
        f.dead = counted.dead.get(key, 0)
        f.latency_max = counted.latency_max.get(key)
        f.hourly = counted.hourly.get(key) or [0] * hours
    for key, count in window.open_counts().items():
        get(*key).backlog = count
    with Session(engine) as db:
        for flow, plant, partner, count in db.execute(  # open for longer than the window keeps
            select(m.flow, m.plant, m.partner, func.count())
            .where(m.state.in_(OPEN_STATES), m.created_at < now - window.horizon)
            .group_by(m.flow, m.plant, m.partner)
        ):
            get(flow, plant, partner).backlog += int(count)
    for key, (count, oldest) in window.open_dead_letters().items():
        f = get(*key)
        f.open_dead_letters = count
        f.oldest_failure_age = now - oldest
    percentiles = percentiles_of(counted)
    for (flow, plant, partner), values in percentiles.by_flow.items():
        f = get(flow, plant, partner)
        f.latency_p50, f.latency_p95 = values.get(50), values.get(95)
    return sorted(figures.values(), key=lambda f: (f.plant, f.partner, f.flow)), percentiles


def tiles(
    figures: list[FlowFigures],
    slas: dict[str, dict[str, Any]],
    hours: int,
    percentiles: Percentiles | None = None,
) -> list[Tile]:
    """One tile per plant and partner, with its latency percentiles over all its
    messages from `percentiles`."""
    grouped: dict[tuple[str, str], list[FlowFigures]] = {}
    for f in figures:
        f.breaches = check_sla(f, slas.get(f.flow) or {})
        grouped.setdefault((f.plant, f.partner), []).append(f)
    result = []
    for (plant, partner), flows in grouped.items():
        values = percentiles.by_tile.get((plant, partner), {}) if percentiles else {}
        result.append(Tile(plant, partner, flows, hours, values.get(50), values.get(95)))
    return sorted(result, key=lambda t: (not t.red, t.plant, t.partner))


def _has_key(expression: str, value: str, snapshot: str) -> bool:
    """Whether this snapshot's data gives `value` for the key expression; a cut or
    non-JSON snapshot that holds the text counts (the text match stands)."""
    try:
        data = json.loads(snapshot)
    except ValueError:
        return value in snapshot
    try:
        result = jmespath.search(expression, data)
    except jmespath.exceptions.JMESPathError:
        return False
    values = result if isinstance(result, list) else [result]
    return any(str(v) == value for v in values if v is not None)


def search_by_key(
    engine: Engine, flows_keys: dict[str, dict[str, str]], key: str, value: str, limit: int = 100
) -> list[str]:
    """Message ids (newest first) whose business key `key` equals `value`: candidates by
    text match in the step snapshots, confirmed by evaluating the flow's key expression
    on the snapshot data when it parses as JSON."""
    flows = [name for name, keys in flows_keys.items() if key in keys]
    if not flows or not value:
        return []
    rows = _traces_holding(engine, flows, value, limit * 5)
    found: list[str] = []
    for message_id, flow, steps in rows:
        expression = flows_keys[flow][key]
        if any(_has_key(expression, value, step.get("snapshot") or "") for step in steps):
            found.append(message_id)
        if len(found) >= limit:
            break
    return found


def _traces_holding(engine: Engine, flows: list[str], value: str, limit: int,
                    ignore_case: bool = False) -> list[Any]:
    """(message id, flow, steps) of the newest traces of `flows` whose step snapshots hold
    `value` as text: candidates, which the caller confirms on the snapshot data. The steps
    are stored as JSON: a value with quotes or backslashes appears escaped in a text
    snapshot, and twice in a JSON one (a JSON string inside a JSON string)."""
    t, m = MessageTrace, StoredMessage
    once = json.dumps(value, ensure_ascii=False)[1:-1]
    forms = {value, once, json.dumps(once, ensure_ascii=False)[1:-1]}
    steps = func.lower(cast(t.steps, Text)) if ignore_case else cast(t.steps, Text)
    matches = or_(*(steps.contains(form, autoescape=True) for form in sorted(forms)))
    with Session(engine) as db:
        return list(db.execute(
            select(t.message_id, m.flow, t.steps)
            .join(m, m.id == t.message_id)
            .where(m.flow.in_(flows), matches)
            .order_by(m.created_at.desc())
            .limit(limit)
        ).all())


def search_key_values(
    engine: Engine, flows_keys: dict[str, dict[str, str]], text: str, limit: int = 100
) -> list[str]:
    """Message ids (newest first) of flows that declare business keys, one of whose key
    values holds `text` (ignoring case): `4711` finds order 4711 and PO-4711. Candidates
    by text match in the step snapshots, confirmed by evaluating each of the flow's key
    expressions on the snapshot data."""
    flows = sorted(name for name, keys in flows_keys.items() if keys)
    wanted = text.strip().lower()
    if not flows or not wanted:
        return []
    rows = _traces_holding(engine, flows, wanted, limit * 5, ignore_case=True)
    found: list[str] = []
    for message_id, flow, trace in rows:
        expressions = list(flows_keys[flow].values())
        if any(_key_holds(expression, wanted, step.get("snapshot") or "")
               for step in trace for expression in expressions):
            found.append(message_id)
        if len(found) >= limit:
            break
    return found


def _key_holds(expression: str, wanted: str, snapshot: str) -> bool:
    """Whether the key expression gives, on this snapshot's data, a value that holds
    `wanted` (lower case)."""
    try:
        data = json.loads(snapshot)
        result = jmespath.search(expression, data)
    except (ValueError, jmespath.exceptions.JMESPathError):
        return False
    values = result if isinstance(result, list) else [result]
    return any(wanted in str(v).lower() for v in values if v is not None and not isinstance(v, dict | list))
