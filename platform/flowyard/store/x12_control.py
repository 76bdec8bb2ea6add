"""Persistent X12 state: control-number counters, received interchanges, outbound sets
waiting for their 997/999.

Control numbers come from one row per (partner, kind) incremented by a single
`INSERT ... ON CONFLICT DO UPDATE ... RETURNING` statement, which both SQLite and
PostgreSQL execute atomically: two workers (threads or processes) can never get the same
number, and a restart continues where the last process stopped. ISA13 and GS06 wrap
after 999999999 (nine digits), ST02 after 999999999 too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, String, Table, UniqueConstraint, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..services import DuplicateCheck
from .database import Base
from .engines import get_engine

__all__ = ["claim_interchange", "get_engine", "next_number", "overdue", "reconcile", "record_outbound"]

LIMIT = 999_999_999


class ControlCounter(Base):
    __tablename__ = "x12_control_counter"

    partner: Mapped[str] = mapped_column(String(120), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # ISA, GS, ST
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ReceivedInterchange(Base):
    __tablename__ = "x12_received_interchange"
    __table_args__ = (UniqueConstraint("partner", "sender", "control_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner: Mapped[str] = mapped_column(String(120), nullable=False)
    sender: Mapped[str] = mapped_column(String(40), nullable=False)
    control_number: Mapped[str] = mapped_column(String(9), nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    correlation_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")


class OutboundSet(Base):
    __tablename__ = "x12_outbound_set"
    __table_args__ = (UniqueConstraint("receiver", "group_control", "set_control"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner: Mapped[str] = mapped_column(String(120), nullable=False)
    receiver: Mapped[str] = mapped_column(String(40), nullable=False)  # QUAL:ID of the partner
    interchange_control: Mapped[str] = mapped_column(String(9), nullable=False)
    group_control: Mapped[str] = mapped_column(String(9), nullable=False)
    set_control: Mapped[str] = mapped_column(String(9), nullable=False)
    transaction: Mapped[str] = mapped_column(String(3), nullable=False)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ack_status: Mapped[str | None] = mapped_column(String(1), nullable=True)  # A, E, R (AK501/IK501)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    correlation_id: Mapped[str] = mapped_column(String(64), nullable=False, default="")


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite gives naive datetimes back
    return value


def next_number(partner: str, kind: str, engine: Engine | None = None) -> int:
    """The next control number for (partner, kind): atomic across processes."""
    engine = engine or get_engine()
    table = _table(ControlCounter)
    insert: Any = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(partner=partner, kind=kind, value=1)
        .on_conflict_do_update(
            index_elements=[table.c.partner, table.c.kind],
            set_={"value": table.c.value % LIMIT + 1},
        )
        .returning(table.c.value)
    )
    with engine.begin() as connection:
        value = connection.execute(statement).scalar_one()
    return int(value)


def claim_interchange(partner: str, sender: str, control_number: str, window: timedelta, correlation_id: str,
                      engine: Engine | None = None) -> DuplicateCheck:
    """Record an interchange as received; say whether it was already received within
    the window (the same message replayed is not a duplicate of itself)."""
    engine = engine or get_engine()
    now = _now()
    row = {"partner": partner, "sender": sender, "control_number": control_number, "received_at": now, "correlation_id": correlation_id}
    try:
        with engine.begin() as connection:
            connection.execute(_table(ReceivedInterchange).insert().values(**row))
        return DuplicateCheck(False)
    except IntegrityError:
        pass
    table = _table(ReceivedInterchange)
    with engine.begin() as connection:
        existing = connection.execute(
            select(table.c.received_at, table.c.correlation_id).where(
                table.c.partner == partner, table.c.sender == sender, table.c.control_number == control_number
            )
        ).first()
        if existing is None:
            return DuplicateCheck(False)
        first_seen = _aware(existing.received_at)
        if existing.correlation_id == correlation_id:
            return DuplicateCheck(False)
        if first_seen is not None and now - first_seen > window:
            connection.execute(
                update(table)
                .where(table.c.partner == partner, table.c.sender == sender, table.c.control_number == control_number)
                .values(received_at=now, correlation_id=correlation_id)
            )
            return DuplicateCheck(False)
        return DuplicateCheck(True, first_seen)


def release_interchange(partner: str, sender: str, control_number: str, correlation_id: str,
                        engine: Engine | None = None) -> None:
    """Forget an interchange this message claimed but could not read to its end (cut
    off, malformed): nothing of it was accepted, so the partner's complete resend is not
    a duplicate. Only the claim of this message (its correlation id) is removed."""
    engine = engine or get_engine()
    table = _table(ReceivedInterchange)
    with engine.begin() as connection:
        connection.execute(table.delete().where(
            table.c.partner == partner, table.c.sender == sender, table.c.control_number == control_number,
            table.c.correlation_id == correlation_id))


def record_outbound(*, partner: str, receiver: str, interchange_control: str, group_control: str, set_control: str,
                    transaction: str, deadline: timedelta | None, correlation_id: str, engine: Engine | None = None) -> None:
    engine = engine or get_engine()
    now = _now()
    with engine.begin() as connection:
        connection.execute(
            _table(OutboundSet).insert().values(
                partner=partner, receiver=receiver, interchange_control=interchange_control, group_control=group_control,
                set_control=set_control, transaction=transaction, sent_at=now,
                deadline=now + deadline if deadline is not None else None, correlation_id=correlation_id,
            )
        )


def reconcile(receiver: str, group_control: str, set_control: str, status: str, engine: Engine | None = None) -> bool:
    """Mark an outbound set acknowledged (from an inbound 997/999 AK2/AK5 or IK5);
    False when no such outbound set is known."""
    engine = engine or get_engine()
    table = _table(OutboundSet)
    with engine.begin() as connection:
        result = connection.execute(
            update(table)
            .where(table.c.receiver == receiver, table.c.group_control == group_control,
                   table.c.set_control == set_control)
            .values(ack_status=status, acknowledged_at=_now())
        )
    return bool(result.rowcount)


class ControlNumbersStore:
    """The X12 control service (`flowyard.services.ControlNumbers`) over one store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def next_number(self, partner: str, kind: str) -> int:
        return next_number(partner, kind, self.engine)

    def claim_interchange(self, partner: str, sender: str, control_number: str, window: timedelta,
                          correlation_id: str) -> DuplicateCheck:
        return claim_interchange(partner, sender, control_number, window, correlation_id, self.engine)

    def record_outbound(self, *, partner: str, receiver: str, interchange_control: str, group_control: str,
                        set_control: str, transaction: str, deadline: timedelta | None, correlation_id: str) -> None:
        record_outbound(partner=partner, receiver=receiver, interchange_control=interchange_control,
                        group_control=group_control, set_control=set_control, transaction=transaction,
                        deadline=deadline, correlation_id=correlation_id, engine=self.engine)

    def reconcile(self, receiver: str, group_control: str, set_control: str, status: str) -> bool:
        return reconcile(receiver, group_control, set_control, status, self.engine)

    def release_interchange(self, partner: str, sender: str, control_number: str, correlation_id: str) -> None:
        release_interchange(partner, sender, control_number, correlation_id, self.engine)


def default_control_numbers() -> ControlNumbersStore:
    """Where nothing was lent: the store of FLOWYARD_DATABASE_URL (entry point)."""
    return ControlNumbersStore(get_engine())


@dataclass
class Acknowledged:
    partner: str
    receiver: str
    transaction: str
    interchange_control: str
    group_control: str
    set_control: str
    sent_at: datetime
    acknowledged_at: datetime
    status: str  # A accepted, E accepted with errors, R rejected (AK501 / IK501)
    correlation_id: str


def acknowledged(engine: Engine | None = None, limit: int = 50) -> list[Acknowledged]:
    """The outbound sets their partner's 997/999 answered, the latest first."""
    engine = engine or get_engine()
    table = _table(OutboundSet)
    with engine.connect() as connection:
        rows = connection.execute(
            select(table).where(table.c.acknowledged_at.is_not(None))
            .order_by(table.c.acknowledged_at.desc(), table.c.id.desc()).limit(limit)
        ).all()
    return [Acknowledged(r.partner, r.receiver, r.transaction, r.interchange_control, r.group_control,
                         r.set_control, _aware(r.sent_at) or r.sent_at, _aware(r.acknowledged_at) or r.acknowledged_at,
                         r.ack_status or "", r.correlation_id) for r in rows]


@dataclass
class Overdue:
    partner: str
    receiver: str
    transaction: str
    group_control: str
    set_control: str
    sent_at: datetime
    deadline: datetime


def overdue(engine: Engine | None = None, now: datetime | None = None) -> list[Overdue]:
    """Outbound sets whose acknowledgment did not come before the partner's deadline."""
    engine = engine or get_engine()
    now = now or _now()
    table = _table(OutboundSet)
    with engine.connect() as connection:
        rows = connection.execute(
            select(table).where(table.c.ack_status.is_(None), table.c.deadline.is_not(None), table.c.deadline < now)
            .order_by(table.c.deadline)
        ).all()
    return [Overdue(r.partner, r.receiver, r.transaction, r.group_control, r.set_control, _aware(r.sent_at) or now, _aware(r.deadline) or now)
            for r in rows]


class OverdueCollector:
    """Prometheus collector: `flowyard_x12_overdue_acknowledgments{partner}`, outbound
    sets not acknowledged before their partner's deadline. The runtime's metrics
    registry takes it with `registry.register(OverdueCollector(engine))`."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily("flowyard_x12_overdue_acknowledgments",
                                  "outbound X12 sets not acknowledged before the partner's deadline", labels=["partner"])
        counts: dict[str, int] = {}
        try:
            for item in overdue(self.engine):
                counts[item.partner] = counts.get(item.partner, 0) + 1
        except Exception:  # the store is unreachable: answer the scrape without the figure
            return
        for partner, count in sorted(counts.items()):
            gauge.add_metric([partner], count)
        yield gauge
