"""Queries the UI needs that the store API does not offer, written over the store's
models (read-only): dashboard figures per plant and partner, hourly counts, and search
by business key (the flow's `keys:` evaluated over its step snapshots)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jmespath
from sqlalchemy import case, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from flowyard.options import parse_duration
from flowyard.store.models import OPEN_STATES, DeadLetter, StepTrace, StoredMessage


@dataclass
class FlowFigures:
    flow: str
    plant: str
    partner: str
    received: int = 0
    done: int = 0
    dead: int = 0
    backlog: int = 0
    latency_avg: float | None = None
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
    def latency_avg(self) -> float | None:
        weighted = [(f.latency_avg, f.done) for f in self.flows if f.latency_avg is not None and f.done]
        count = sum(n for _, n in weighted)
        return None if not count else sum(v * n for v, n in weighted) / count

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
    from .filters import age

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


def latency_percentiles(
    engine: Engine, since: float, by: tuple[str, ...] = ("flow", "plant", "partner")
) -> dict[tuple[str, ...], dict[int, float]]:
    """p50 and p95 of the latency (received to finished) of the messages done since
    `since`, per group. Nearest rank: p95 is the latency that 95% of the messages
    did not exceed (the ceil(0.95 n)-th smallest). Window functions, so the database
    sorts and only the rows at those ranks come back (SQLite and PostgreSQL alike)."""
    m = StoredMessage
    columns = [getattr(m, name) for name in by]
    latency = (m.finished_at - m.created_at).label("latency")
    ranked = (
        select(
            *columns,
            latency,
            func.row_number().over(partition_by=columns, order_by=latency).label("rank"),
            func.count().over(partition_by=columns).label("n"),
        )
        .where(m.created_at >= since, m.state == "done", m.finished_at.is_not(None))
        .subquery()
    )
    wanted = [ranked.c.rank == (ranked.c.n * q + 99) // 100 for q in PERCENTILES]
    found: dict[tuple[str, ...], dict[int, float]] = {}
    with Session(engine) as db:
        rows = db.execute(
            select(*[ranked.c[name] for name in by], ranked.c.latency, ranked.c.rank, ranked.c.n).where(or_(*wanted))
        )
        for row in rows:
            key = tuple(str(v or "") for v in row[: len(by)])
            latency_value, rank, n = float(row[len(by)]), int(row[len(by) + 1]), int(row[len(by) + 2])
            for q in PERCENTILES:
                if rank == (n * q + 99) // 100:
                    found.setdefault(key, {})[q] = latency_value
    return found


def flow_figures(engine: Engine, hours: int = 24, now: float | None = None) -> list[FlowFigures]:
    """Per flow, plant and partner over the last `hours`: counts, latency, backlog,
    open dead letters and the age of the oldest, and messages per hour."""
    now = now or time.time()
    since = now - hours * 3600
    m = StoredMessage
    figures: dict[tuple[str, str, str], FlowFigures] = {}

    def get(flow: str, plant: str, partner: str) -> FlowFigures:
        key = (flow, plant or "", partner or "")
        if key not in figures:
            figures[key] = FlowFigures(flow, plant or "", partner or "", hourly=[0] * hours)
        return figures[key]

    with Session(engine) as db:
        latency = m.finished_at - m.created_at
        rows = db.execute(
            select(
                m.flow,
                m.plant,
                m.partner,
                func.count(),
                func.sum(case((m.state == "done", 1), else_=0)),
                func.sum(case((m.state == "dead", 1), else_=0)),
                func.avg(case((m.state == "done", latency), else_=None)),
                func.max(case((m.state == "done", latency), else_=None)),
            )
            .where(m.created_at >= since)
            .group_by(m.flow, m.plant, m.partner)
        )
        for flow, plant, partner, count, done, dead, avg, longest in rows:
            f = get(flow, plant, partner)
            f.received, f.done, f.dead = int(count), int(done or 0), int(dead or 0)
            f.latency_avg = float(avg) if avg is not None else None
            f.latency_max = float(longest) if longest is not None else None
        for flow, plant, partner, count in db.execute(
            select(m.flow, m.plant, m.partner, func.count())
            .where(m.state.in_(OPEN_STATES))
            .group_by(m.flow, m.plant, m.partner)
        ):
            get(flow, plant, partner).backlog = int(count)
        hour = func.floor((m.created_at - since) / 3600)
        for flow, plant, partner, bucket, count in db.execute(
            select(m.flow, m.plant, m.partner, hour, func.count())
            .where(m.created_at >= since)
            .group_by(m.flow, m.plant, m.partner, hour)
        ):
            index = int(bucket or 0)
            if 0 <= index < hours:
                get(flow, plant, partner).hourly[index] += int(count)
        d = DeadLetter
        for flow, plant, partner, count, oldest in db.execute(
            select(d.flow, m.plant, m.partner, func.count(), func.min(d.created_at))
            .join(m, m.id == d.message_id)
            .where(d.status == "open")
            .group_by(d.flow, m.plant, m.partner)
        ):
            f = get(flow, plant, partner)
            f.open_dead_letters = int(count)
            f.oldest_failure_age = now - float(oldest)
    for (flow, plant, partner), values in latency_percentiles(engine, since).items():
        f = get(flow, plant, partner)
        f.latency_p50, f.latency_p95 = values.get(50), values.get(95)
    return sorted(figures.values(), key=lambda f: (f.plant, f.partner, f.flow))


def tiles(
    figures: list[FlowFigures],
    slas: dict[str, dict[str, Any]],
    hours: int,
    percentiles: dict[tuple[str, ...], dict[int, float]] | None = None,
) -> list[Tile]:
    """One tile per plant and partner; `percentiles` are the latency percentiles per
    (plant, partner) from `latency_percentiles(..., by=("plant", "partner"))`."""
    grouped: dict[tuple[str, str], list[FlowFigures]] = {}
    for f in figures:
        f.breaches = check_sla(f, slas.get(f.flow) or {})
        grouped.setdefault((f.plant, f.partner), []).append(f)
    result = []
    for (plant, partner), flows in grouped.items():
        values = (percentiles or {}).get((plant, partner), {})
        result.append(Tile(plant, partner, flows, hours, values.get(50), values.get(95)))
    return sorted(result, key=lambda t: (not t.red, t.plant, t.partner))


def search_by_key(
    engine: Engine, flows_keys: dict[str, dict[str, str]], key: str, value: str, limit: int = 100
) -> list[str]:
    """Message ids (newest first) whose business key `key` equals `value`: candidates by
    text match in the step snapshots, confirmed by evaluating the flow's key expression
    on the snapshot data when it parses as JSON."""
    flows = [name for name, keys in flows_keys.items() if key in keys]
    if not flows or not value:
        return []
    t, m = StepTrace, StoredMessage
    with Session(engine) as db:
        rows = db.execute(
            select(t.message_id, m.flow, t.snapshot)
            .join(m, m.id == t.message_id)
            .where(m.flow.in_(flows), t.snapshot.contains(value))
            .order_by(m.created_at.desc())
            .limit(limit * 5)
        ).all()
    found: list[str] = []
    for message_id, flow, snapshot in rows:
        if message_id in found:
            continue
        expression = flows_keys[flow][key]
        try:
            data = json.loads(snapshot)
        except ValueError:
            found.append(message_id)  # a cut or non-JSON snapshot: the text match stands
            continue
        try:
            result = jmespath.search(expression, data)
        except jmespath.exceptions.JMESPathError:
            continue
        values = result if isinstance(result, list) else [result]
        if any(str(v) == value for v in values if v is not None):
            found.append(message_id)
        if len(found) >= limit:
            break
    return found
