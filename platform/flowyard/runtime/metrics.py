"""Prometheus metrics of the runtime, served at `/metrics`.

Counters and latency histograms are kept by each process (Prometheus sums them over
processes); the backlog and dead-letter figures are read from the store at scrape time,
so every worker reports the same, true, shared figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from ..store.models import OPEN_DELIVERIES_SQL, OPEN_STATES, DeadLetter, Delivery, StoredMessage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                   5, 10, 30, 60)


class StoreCollector(Collector):
    """Backlog, pending deliveries and dead letters, read from the store per scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily("flowyard_backlog_messages",
                                    "messages not finished, by flow and state",
                                    labels=["flow", "state"])
        pending = GaugeMetricFamily("flowyard_pending_deliveries",
                                    "deliveries waiting for an attempt, by flow and target",
                                    labels=["flow", "target"])
        dead = GaugeMetricFamily("flowyard_dead_letters_open", "open dead letters by flow",
                                 labels=["flow"])
        oldest = GaugeMetricFamily("flowyard_dead_letter_oldest_age_seconds",
                                   "age of the oldest open dead letter", labels=["flow"])
        now = time.time()
        try:
            with self.engine.connect() as c:
                m = StoredMessage
                shown = m.shown_state  # one expression: PostgreSQL matches the GROUP BY by its text
                for flow, state, count in c.execute(
                    select(m.flow, shown, func.count()).where(m.state.in_(OPEN_STATES))
                    .group_by(m.flow, shown)
                ):
                    backlog.add_metric([flow, state], count)
                for flow, target, count in c.execute(
                    select(Delivery.flow, Delivery.target, func.count())
                    .where(text(OPEN_DELIVERIES_SQL))
                    .group_by(Delivery.flow, Delivery.target)
                ):
                    pending.add_metric([flow, target], count)
                for flow, count, first in c.execute(
                    select(DeadLetter.flow, func.count(), func.min(DeadLetter.created_at))
                    .where(DeadLetter.status == "open").group_by(DeadLetter.flow)
                ):
                    dead.add_metric([flow], count)
                    oldest.add_metric([flow], now - float(first))
        except Exception:  # the store is down: report what we can (nothing) but answer
            pass
        yield backlog
        yield pending
        yield dead
        yield oldest


class Metrics:
    def __init__(self, engine: Engine | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("flowyard_messages", "messages by flow, plant, partner and state",
                                ["flow", "plant", "partner", "state"], registry=r)
        self.accepted = Counter("flowyard_accepted_messages", "messages stored from sources",
                                ["flow"], registry=r)
        self.deliveries = Counter("flowyard_deliveries", "delivery attempts by outcome",
                                  ["flow", "target", "outcome"], registry=r)
        self.step_seconds = Histogram("flowyard_step_seconds", "time spent in one step",
                                      ["flow", "step"], buckets=LATENCY_BUCKETS, registry=r)
        self.delivery_seconds = Histogram("flowyard_delivery_seconds",
                                          "time of one delivery attempt", ["flow", "target"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.refused = Counter("flowyard_refused_commits",
                               "results dropped because the lease had expired", registry=r)
        if engine is not None:
            r.register(StoreCollector(engine))
            from ..store.x12_control import OverdueCollector

            r.register(OverdueCollector(engine))

        self.children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: `labels()` takes a lock and builds
        a tuple on every call, a measurable share of a message's cost at hundreds per
        second (the label sets are few: flows, steps, targets)."""
        key = (id(metric), labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found

    def message_finished(self, flow: str, labels: dict[str, Any], state: str) -> None:
        self.child(self.messages, flow, str(labels.get("plant", "")),
                   str(labels.get("partner", "")), state).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
