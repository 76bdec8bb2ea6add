"""The dashboard's figures over the last hours, kept up to date by reading what changed.

Reading every message of the window on each refresh cost the dashboard a third of a
second at 100,000 messages (and grows with the traffic). A `MessageWindow` reads the
window once, then on each refresh only (1) the messages created since the last read,
(2) the ids still open or dead, whose changes are the only ones a message makes after it
arrives (`done` and `dropped` are final, a dead message can be sent again: `resend`), and
(3) a count of the `created_at` index, which shows a message stored late or deleted. Its
figures are exact: counts and latencies are summed per minute and per flow, and the one
minute the window cuts in two is read from the store when asked for.

Memory: a few numbers per minute and flow, plus one entry per message that is open or
dead (a healthy system has few), and the ids of the last minute's messages.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.engine import Connection, Engine

from .models import OPEN_STATES, DeadLetter, StoredMessage

Key = tuple[str, str, str]  # flow, plant, partner
HORIZON = 72 * 3600  # the dashboard's longest window
SLACK = 60.0  # a message committed this late after its created_at is still counted
RECENT = 600.0  # stragglers are looked for here at each refresh...
WHOLE_CHECK_EVERY = 30.0  # ...and in the whole window this often (seconds)
LOOKUP_CHUNK = 500


@dataclass(slots=True)
class Minute:
    """One flow's messages created in one minute."""

    received: int = 0
    done: int = 0
    dead: int = 0
    latency_max: float | None = None
    latencies: list[float] = field(default_factory=list)  # of the done ones


@dataclass(slots=True)
class Tracked:
    """A message whose state can still change (open or dead)."""

    key: Key
    created: float
    state: str
    finished: float | None


@dataclass
class WindowFigures:
    """What one window of hours holds, per flow, plant and partner."""

    received: dict[Key, int] = field(default_factory=dict)
    done: dict[Key, int] = field(default_factory=dict)
    dead: dict[Key, int] = field(default_factory=dict)
    latency_max: dict[Key, float] = field(default_factory=dict)
    latencies: dict[Key, list[float]] = field(default_factory=dict)  # sorted
    hourly: dict[Key, list[int]] = field(default_factory=dict)


def _key(flow: str, plant: str | None, partner: str | None) -> Key:
    return (flow, plant or "", partner or "")


def _latency(state: str, created: float, finished: float | None) -> float | None:
    return finished - created if state == "done" and finished is not None else None


def _minute_of(at: float) -> int:
    """The minute `at` falls in, computed as the SQL `floor(created_at / 60)` is (one
    IEEE division, then floor), so that both sides agree at a minute's edge."""
    return math.floor(at / 60)


def _held_as(state: str) -> str | None:
    """What a tracked message is: open or dead (None: final, not tracked)."""
    return "open" if state in OPEN_STATES else "dead" if state == "dead" else None


def _millis(at: float) -> int:
    """`created_at` in whole milliseconds, as `MILLIS` computes it in SQL: the window's
    sums are compared with the store's exactly (sums of floats differ with their order:
    by 274 over 100,000 messages)."""
    return math.floor(at * 1000)


MILLIS = cast(func.floor(StoredMessage.created_at * 1000), BigInteger)


def _figures(row: Any) -> tuple[int, int]:
    count, total = row
    return int(count), int(total or 0)


def _same(stored: tuple[int, int] | None, held: list[int] | None) -> bool:
    """The store's count and sum of `created_at` (milliseconds) against the window's."""
    if stored is None or stored[0] == 0 or held is None or held[0] == 0:
        return (stored is None or stored[0] == 0) and (held is None or held[0] == 0)
    return stored[0] == held[0] and stored[1] == held[1]


class MessageWindow:
    """The last `HORIZON` seconds of messages, summed per minute; thread-safe."""

    def __init__(self, engine: Engine, horizon: float = HORIZON, whole_check_every: float = WHOLE_CHECK_EVERY) -> None:
        self.engine = engine
        self.horizon = horizon
        self.whole_check_every = whole_check_every
        self.whole_checked_at = 0.0
        self.minutes: dict[int, dict[Key, Minute]] = {}
        self.tracked: dict[str, Tracked] = {}
        self.tracked_in: dict[int, set[str]] = {}  # minute created: the tracked ids
        self.held: dict[tuple[bool, int], list[int]] = {}  # (dead?, minute): count, sum of created
        self.open_by_key: dict[Key, int] = {}
        # per minute created: messages that finished, per minute they finished in
        self.finished: dict[int, dict[int, int]] = {}
        self.arrived: dict[int, list[int]] = {}  # per minute created: count, sum of created_at
        self.recent: dict[str, float] = {}  # ids created within SLACK of read_until
        self.read_until: float | None = None
        self.dead_letters_seen: tuple[tuple[Any, ...] | None, dict[Key, tuple[int, float]]] = (None, {})
        self.lock = threading.Lock()

    # -- keeping up ---------------------------------------------------------------------

    def refresh(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.lock, self.engine.connect() as connection:
            since = now - self.horizon
            start = since if self.read_until is None else max(since, self.read_until - SLACK)
            self._read_new(connection, start)
            self._follow_changes(connection, since)
            # the whole window when its message count moved (one count of the created_at
            # index: a message stored late, whatever its age), else now and then (an
            # arrival and a deletion that cancel out); the last RECENT seconds always
            whole = (now - self.whole_checked_at >= self.whole_check_every
                     or self._count_moved(connection, since))
            self._catch_stragglers(connection, since if whole else max(since, now - RECENT))
            if whole:
                self.whole_checked_at = now
            self._forget_before(since)

    def _read_new(self, connection: Connection, start: float) -> None:
        m = StoredMessage
        rows = connection.execute(
            select(m.id, m.flow, m.plant, m.partner, m.state, m.created_at, m.finished_at)
            .where(m.created_at >= start)
        )
        latest = self.read_until or start
        for id_, flow, plant, partner, state, created, finished in rows:
            created = float(created)
            latest = max(latest, created)
            if id_ in self.recent:
                continue  # seen by an earlier read; its changes come through _follow_changes
            self.recent[id_] = created
            self._arrive(id_, _key(flow, plant, partner), created, state, finished)
        self.read_until = latest
        cutoff = latest - SLACK
        if len(self.recent) > 1000 or any(c < cutoff for c in self.recent.values()):
            self.recent = {i: c for i, c in self.recent.items() if c >= cutoff}

    def _follow_changes(self, connection: Connection, since: float) -> None:
        """Re-read the tracked messages that left their state: the open ones no longer
        open, the dead ones no longer dead (or open again).

        Which ones is found without reading their ids (a table read per row: 80 ms for a
        stopped runtime's backlog of 20,000): the store's count and sum of `created_at`
        per state (open or dead) and minute, from the (state, created_at) index alone,
        against the same figures of the tracked messages. Only the tracked messages of
        a minute whose figures differ are read again."""
        m = StoredMessage
        dead = m.state == "dead"
        overall = {  # two range reads of the (state, created_at) index, no row read
            is_dead: _figures(connection.execute(
                select(func.count(), func.sum(MILLIS))
                .where(m.state.in_(("dead",) if is_dead else OPEN_STATES), m.created_at >= since)
            ).one())
            for is_dead in (False, True)
        }
        held_overall: dict[bool, list[int]] = {}
        for (is_dead, _), (count, total) in self.held.items():
            figures = held_overall.setdefault(is_dead, [0, 0])
            figures[0] += count
            figures[1] += total
        classes = [c for c in (False, True) if not _same(overall.get(c), held_overall.get(c))]
        if not classes:
            return  # the usual case: a few index pages read, no row
        minute = func.floor(m.created_at / 60)
        states = [s for c in classes for s in (("dead",) if c else OPEN_STATES)]
        stored = {
            (bool(is_dead), int(at)): (int(count), int(total))
            for is_dead, at, count, total in connection.execute(
                select(dead, minute, func.count(), func.sum(MILLIS))
                .where(m.state.in_(states), m.created_at >= since)
                .group_by(dead, minute)
            ).all()
        }
        differing = {
            at for (is_dead, at) in stored.keys() | self.held.keys()
            if is_dead in classes and not _same(stored.get((is_dead, at)), self.held.get((is_dead, at)))
        }
        changed = [id_ for minute in differing for id_ in self.tracked_in.get(minute, ())]
        for start in range(0, len(changed), LOOKUP_CHUNK):
            chunk = changed[start:start + LOOKUP_CHUNK]
            found = {
                row.id: row for row in connection.execute(
                    select(m.id, m.state, m.finished_at).where(m.id.in_(chunk))
                )
            }
            for id_ in chunk:
                old = self.tracked[id_]
                row = found.get(id_)
                if row is not None and _held_as(row.state) == _held_as(old.state):
                    continue
                self._untrack(id_)
                self._count(id_, old.key, old.created, old.state, old.finished, -1)
                if row is not None:  # else deleted: _catch_stragglers reads its minute again
                    self._count(id_, old.key, old.created, row.state, row.finished_at, +1)

    def _arrive(self, id_: str, key: Key, created: float, state: str, finished: float | None) -> None:
        self._minute(key, created).received += 1
        arrived = self.arrived.setdefault(_minute_of(created), [0, 0])
        arrived[0] += 1
        arrived[1] += _millis(created)
        self._count(id_, key, created, state, finished, +1)

    def _catch_stragglers(self, connection: Connection, since: float) -> None:
        """Messages stored with a `created_at` older than the last read's (a worker whose
        clock is behind, a commit that took longer than SLACK) and messages deleted:
        the count and sum of `created_at` of the window's whole minutes, from the
        `created_at` index alone, against the window's; a minute that differs is read
        again whole."""
        m = StoredMessage
        start = (_minute_of(since) + 1) * 60.0
        stored_all = _figures(connection.execute(
            select(func.count(), func.sum(MILLIS)).where(m.created_at >= start)
        ).one())
        mine = [0, 0]
        for minute, (n, created) in self.arrived.items():
            if minute * 60.0 >= start:
                mine[0] += n
                mine[1] += created
        if _same(stored_all, mine):
            return
        minute_of = func.floor(m.created_at / 60)
        stored = {
            int(at): (int(n), int(created)) for at, n, created in connection.execute(
                select(minute_of, func.count(), func.sum(MILLIS))
                .where(m.created_at >= start).group_by(minute_of)
            ).all()
        }
        for minute in sorted(stored.keys() | {at for at in self.arrived if at * 60.0 >= start}):
            if not _same(stored.get(minute), self.arrived.get(minute)):
                self._read_minute(connection, minute)

    def _count_moved(self, connection: Connection, since: float) -> bool:
        start = (_minute_of(since) + 1) * 60.0
        stored = connection.execute(select(func.count()).where(StoredMessage.created_at >= start)).scalar_one()
        return int(stored) != sum(n for minute, (n, _) in self.arrived.items() if minute * 60.0 >= start)

    def _read_minute(self, connection: Connection, minute: int) -> None:
        """Forget what the window holds of one minute and read it again."""
        for id_ in list(self.tracked_in.get(minute, ())):
            self._untrack(id_)
        self.minutes.pop(minute, None)
        self.finished.pop(minute, None)
        self.arrived.pop(minute, None)
        m = StoredMessage
        for id_, flow, plant, partner, state, created, finished in connection.execute(
            select(m.id, m.flow, m.plant, m.partner, m.state, m.created_at, m.finished_at).where(
                m.created_at >= minute * 60.0 - 1, m.created_at < (minute + 1) * 60.0 + 1,
                func.floor(m.created_at / 60) == minute)
        ):
            self._arrive(id_, _key(flow, plant, partner), float(created), state, finished)
            if self.read_until is not None and float(created) >= self.read_until - SLACK:
                self.recent[id_] = float(created)

    def _track(self, id_: str, key: Key, created: float, state: str, finished: float | None) -> None:
        self.tracked[id_] = Tracked(key, created, state, finished)
        self.tracked_in.setdefault(_minute_of(created), set()).add(id_)
        if state in OPEN_STATES:
            self.open_by_key[key] = self.open_by_key.get(key, 0) + 1
        figures = self.held.setdefault((_held_as(state) == "dead", _minute_of(created)), [0, 0])
        figures[0] += 1
        figures[1] += _millis(created)

    def _untrack(self, id_: str) -> None:
        t = self.tracked.pop(id_)
        in_minute = self.tracked_in[_minute_of(t.created)]
        in_minute.discard(id_)
        if not in_minute:
            del self.tracked_in[_minute_of(t.created)]
        if t.state in OPEN_STATES:
            self.open_by_key[t.key] -= 1
        slot = (_held_as(t.state) == "dead", _minute_of(t.created))
        figures = self.held[slot]
        figures[0] -= 1
        figures[1] -= _millis(t.created)
        if figures[0] == 0:
            del self.held[slot]

    def _count(self, id_: str, key: Key, created: float, state: str, finished: float | None, sign: int) -> None:
        """Add (sign +1) or take back (-1) what a message in `state` adds to its minute.
        Only open and dead messages are taken back, so only they are tracked; a done
        message's latency never needs taking back."""
        minute = self._minute(key, created)
        if state == "done":
            minute.done += sign
            latency = _latency(state, created, finished)
            if latency is not None:
                minute.latencies.append(latency)
                minute.latency_max = latency if minute.latency_max is None else max(minute.latency_max, latency)
        elif state == "dead":
            minute.dead += sign
        if finished is not None and state not in OPEN_STATES:
            by_end = self.finished.setdefault(_minute_of(created), {})
            at = _minute_of(finished)
            by_end[at] = by_end.get(at, 0) + sign
        if sign > 0 and _held_as(state):
            self._track(id_, key, created, state, finished)

    def _minute(self, key: Key, created: float) -> Minute:
        by_key = self.minutes.setdefault(_minute_of(created), {})
        found = by_key.get(key)
        if found is None:
            found = by_key[key] = Minute()
        return found

    def _forget_before(self, since: float) -> None:
        first = _minute_of(since)
        for minute in [m for m in self.minutes if m < first]:
            del self.minutes[minute]
        for minute in [m for m in self.finished if m < first]:
            del self.finished[minute]
        for minute in [m for m in self.arrived if m < first]:
            del self.arrived[minute]
        for minute in [at for at in self.tracked_in if at < first]:
            for id_ in list(self.tracked_in[minute]):
                self._untrack(id_)

    # -- asking -----------------------------------------------------------------------

    def finished_since(self, at: float) -> int:
        """Messages created within the horizon that finished (done, dead or dropped)
        since `at`, to the minute."""
        first = _minute_of(at)
        with self.lock:
            return sum(n for by_end in self.finished.values() for minute, n in by_end.items() if minute >= first)

    def open_dead_letters(self) -> dict[Key, tuple[int, float]]:
        """The open dead letters per flow, plant and partner: how many, and when the
        oldest was made. Read again only when the open dead letters changed: their
        count, sum of ids and oldest time, from the (status, created_at) index alone,
        tell (a new one has a higher id than any before; one closed lowers the count).
        Reading them means a message row per dead letter: 250 ms at 20,000."""
        d, m = DeadLetter, StoredMessage
        with self.lock, self.engine.connect() as connection:
            fingerprint = tuple(connection.execute(
                select(func.count(), func.sum(d.id), func.min(d.created_at)).where(d.status == "open")
            ).one())
            if fingerprint != self.dead_letters_seen[0]:
                found = {
                    _key(flow, plant, partner): (int(count), float(oldest))
                    for flow, plant, partner, count, oldest in connection.execute(
                        select(d.flow, m.plant, m.partner, func.count(), func.min(d.created_at))
                        .join(m, m.id == d.message_id).where(d.status == "open")
                        .group_by(d.flow, m.plant, m.partner)
                    )
                }
                self.dead_letters_seen = (fingerprint, found)
            return dict(self.dead_letters_seen[1])

    def open_counts(self) -> dict[Key, int]:
        """The open messages created within the horizon, per flow, plant and partner."""
        with self.lock:
            return {key: n for key, n in self.open_by_key.items() if n}

    def figures(self, since: float, bars: int = 0) -> WindowFigures:
        """Counts, latencies (sorted) and `bars` messages-per-hour counts of the messages
        created since `since` (within the horizon), exactly: the minute the window starts
        in is read from the store. (A minute counts in the hour bar its start falls in.)"""
        first = _minute_of(since)
        sums: dict[Key, Minute] = {}
        hourly: dict[Key, list[int]] = {}

        def add(key: Key, f: Minute, at: float) -> None:
            total = sums.get(key)
            if total is None:
                total = sums[key] = Minute()
                hourly[key] = [0] * bars
            total.received += f.received
            total.done += f.done
            total.dead += f.dead
            if f.latency_max is not None and (total.latency_max is None or f.latency_max > total.latency_max):
                total.latency_max = f.latency_max
            total.latencies += f.latencies
            index = int((at - since) // 3600)
            if 0 <= index < bars:
                hourly[key][index] += f.received

        with self.lock:
            for minute, by_key in self.minutes.items():
                if minute > first:
                    at = minute * 60.0
                    for key, f in by_key.items():
                        add(key, f, at)
        m = StoredMessage
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(m.flow, m.plant, m.partner, m.state, m.created_at, m.finished_at).where(
                    m.created_at >= since, m.created_at < (first + 2) * 60.0, func.floor(m.created_at / 60) <= first
                )
            )
            for flow, plant, partner, state, created, finished in rows:
                one = Minute(1, int(state == "done"), int(state == "dead"))
                latency = _latency(state, float(created), finished)
                if latency is not None:
                    one.latency_max, one.latencies = latency, [latency]
                add(_key(flow, plant, partner), one, float(created))
        result = WindowFigures()
        for key, total in sums.items():
            result.received[key], result.done[key], result.dead[key] = total.received, total.done, total.dead
            if total.latency_max is not None:
                result.latency_max[key] = total.latency_max
            result.latencies[key] = sorted(total.latencies)
            result.hourly[key] = hourly[key]
        return result
