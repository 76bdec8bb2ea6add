"""Outbound X12 sets whose 997/999 did not come back before the partner's deadline.

Which sets are overdue is decided in one place, `flowyard.store.x12_control.overdue` (also
behind `flowyard x12 overdue` and the `/metrics` gauge); here each is completed with
its interchange control number and correlation id for the page, and the sets still
within their deadline are counted for the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Engine

from flowyard.store import x12_control as control

CHUNK = 500  # row values per IN (...), well under every database's parameter limit


@dataclass
class OverdueSet:
    partner: str
    receiver: str
    transaction: str
    interchange_control: str
    group_control: str
    set_control: str
    sent_at: datetime
    deadline: datetime
    correlation_id: str
    now: datetime

    @property
    def age(self) -> float:
        return (self.now - self.sent_at).total_seconds()

    @property
    def late_by(self) -> float:
        return (self.now - self.deadline).total_seconds()


@dataclass
class Summary:
    overdue: int
    waiting: int  # sent, not acknowledged, deadline not reached yet
    partners: dict[str, int]

    @property
    def red(self) -> bool:
        return self.overdue > 0


def overdue_sets(engine: Engine, now: datetime | None = None) -> list[OverdueSet]:
    """Every overdue set, the longest overdue first (the deadline passed earliest)."""
    now = now or datetime.now(UTC)
    late = control.overdue(engine, now)
    table = control.OutboundSet.__table__
    extra: dict[tuple[str, str, str], tuple[str, str]] = {}
    keys = [(o.receiver, o.group_control, o.set_control) for o in late]
    with engine.connect() as connection:
        for start in range(0, len(keys), CHUNK):
            rows = connection.execute(
                select(table.c.receiver, table.c.group_control, table.c.set_control,
                       table.c.interchange_control, table.c.correlation_id)
                .where(tuple_(table.c.receiver, table.c.group_control, table.c.set_control).in_(keys[start:start + CHUNK]))
            )
            for receiver, group, set_control, interchange, correlation in rows:
                extra[(receiver, group, set_control)] = (interchange, correlation)
    found = []
    for o in late:
        interchange, correlation = extra.get((o.receiver, o.group_control, o.set_control), ("", ""))
        found.append(OverdueSet(o.partner, o.receiver, o.transaction, interchange, o.group_control, o.set_control,
                                o.sent_at, o.deadline, correlation, now))
    return found


def summary(engine: Engine, now: datetime | None = None) -> Summary:
    now = now or datetime.now(UTC)
    partners: dict[str, int] = {}
    for item in control.overdue(engine, now):
        partners[item.partner] = partners.get(item.partner, 0) + 1
    table = control.OutboundSet.__table__
    with engine.connect() as connection:
        waiting = connection.execute(
            select(func.count()).select_from(table)
            .where(table.c.ack_status.is_(None), table.c.deadline.is_not(None), table.c.deadline >= now)
        ).scalar_one()
    return Summary(sum(partners.values()), int(waiting), dict(sorted(partners.items())))
