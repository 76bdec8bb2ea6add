"""Walking an interchange: envelopes, one transaction set at a time.

`walk(data, ...)` yields events in file order, holding only the current set in memory:

- `SetResult` for every transaction set (its segments, data shape, problems, status);
- `GroupResult` when a functional group ends (what a 997/999 needs: every set's
  control number, status and problems, plus group-level codes);
- `InterchangeResult` when an interchange ends (ISA/IEA checks, for TA1 and duplicates).

Envelope checks: SE01 segment count, SE02 = ST02, ST02 unique in its group, ST01 in the
functional group GS01 names (flowyard.x12.functional_groups), GE01 set count, GE02 = GS06,
IEA01 group count, IEA02 = ISA13, trailers present. `envelope_findings` words what a group or
interchange result found for an analyst (the 997/999 and TA1 carry the codes).

The optional interchange segments (ISB grade of service, ISE deferred delivery, TA1 and
TA3 before the first group) and the group-level security segments (S1S/S1E ... S3S/S3E
between GS and ST, or after the last SE) are read and kept, never refused.

A set without a guide (`guide` None) is read structurally (see flowyard.x12.shape). With
`unguided="refuse"` (the default) and validation on it is rejected as not supported
(AK5/IK5 R 1); with `unguided="accept"`, or validation off, it is accepted and
`SetResult.unguided` says no guide validated its content.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .functional_groups import groups_of, wrong_group_code
from .guides import Guide
from .reader import Segment, X12InputError, read_batches
from .shape import build, segment_object
from .validate import Problem, validate_set

SET_CODES = {
    "1": "transaction set not supported",
    "2": "transaction set trailer missing",
    "3": "transaction set control number in header and trailer do not match",
    "4": "number of included segments does not match actual count",
    "5": "one or more segments in error",
    "6": "missing or invalid transaction set identifier",
    "7": "missing or invalid transaction set control number",
    "18": "transaction set not in functional group",
    "23": "transaction set control number not unique within the functional group",
}
GROUP_CODES = {
    "1": "functional group not supported",
    "2": "functional group version not supported",
    "3": "functional group trailer missing",
    "4": "group control number in the functional group header and trailer do not agree",
    "5": "number of included transaction sets does not match actual count",
    "6": "group control number violates syntax",
}
INTERCHANGE_NOTES = {  # TA105, the codes this translator gives
    "000": "no error",
    "001": "the interchange control number in the header and trailer do not match",
    "004": "the segment terminator is invalid",
    "021": "invalid number of included groups value",
    "022": "invalid control structure",
    "023": "improper (premature) end-of-file",
    "024": "invalid interchange content",
    "025": "duplicate interchange control number",
}
# notes of an interchange that was not read to its end (the reader refused it): its TA1 says R
UNREAD_NOTES = frozenset({"004", "022", "023", "024"})
INTERCHANGE_SEGMENTS = frozenset({"ISB", "ISE", "TA1", "TA3"})  # optional, between ISA and the first GS (or between groups)
GROUP_SEGMENTS = frozenset({"S1S", "S1E", "S2S", "S2E", "S3S", "S3E"})  # group-level security, between GS and ST or SE and GE
UNGUIDED_POLICIES = ("refuse", "accept")


def trim(value: str) -> str:
    return value.strip()


@dataclass
class InterchangeInfo:
    isa: Segment
    groups: int = 0
    extra: list[Segment] = field(default_factory=list)  # ISB, ISE, TA1, TA3 as read

    @property
    def control_number(self) -> str:
        return self.isa.get(13).strip()

    @property
    def sender(self) -> str:
        return f"{self.isa.get(5).strip()}:{self.isa.get(6).strip()}"

    @property
    def receiver(self) -> str:
        return f"{self.isa.get(7).strip()}:{self.isa.get(8).strip()}"

    _data: dict[str, Any] | None = None

    def as_data(self) -> dict[str, Any]:
        """The `interchange` object of every set's data (built once, copied per set)."""
        if self._data is not None:
            return {**self._data, "separators": dict(self._data["separators"])}
        data: dict[str, Any] = {f"ISA{i:02d}": v.strip() for i, v in enumerate(self.isa.elements, start=1)}
        data.update(
            sender=self.sender,
            receiver=self.receiver,
            control_number=self.control_number,
            version=self.isa.get(12).strip(),
            usage=self.isa.get(15).strip(),
            separators=self.isa.separators.as_dict(),
        )
        for seg in self.extra:  # ISB, ISE ...: read before the first set, so they are here for every set
            data.setdefault(seg.id, []).append(segment_object(seg, None))
        self._data = data
        return {**data, "separators": dict(data["separators"])}


@dataclass
class GroupInfo:
    gs: Segment
    extra: list[Segment] = field(default_factory=list)  # S3S, S3E ... as read

    @property
    def control_number(self) -> str:
        return self.gs.get(6).strip()

    @property
    def version(self) -> str:
        return self.gs.get(8).strip()

    @property
    def functional_id(self) -> str:
        return self.gs.get(1).strip()

    _data: dict[str, Any] | None = None

    def as_data(self) -> dict[str, Any]:
        if self._data is None:
            data: dict[str, Any] = {f"GS{i:02d}": v for i, v in enumerate(self.gs.elements, start=1)}
            data.update(functional_id=self.functional_id, control_number=self.control_number, version=self.version)
            for seg in self.extra:
                data.setdefault(seg.id, []).append(segment_object(seg, None))
            self._data = data
        return dict(self._data)


@dataclass
class SetResult:
    interchange: InterchangeInfo
    group: GroupInfo
    segments: list[Segment]
    guide: Guide | None
    codes: list[str] = field(default_factory=list)  # AK5/IK5 codes
    problems: list[Problem] = field(default_factory=list)
    data: dict[str, Any] | None = None
    unguided: bool = False  # accepted without a guide: read structurally, content not validated

    @property
    def unguided_note(self) -> str:
        """What an analyst reads when no guide validated the set."""
        return (f"transaction set {self.transaction} {self.control_number} (version {self.group.version or '?'}) has no guide: "
                f"read structurally, its envelopes checked, its content not validated")

    @property
    def transaction(self) -> str:
        return self.segments[0].get(1).strip()

    @property
    def control_number(self) -> str:
        return self.segments[0].get(2).strip()

    @property
    def accepted(self) -> bool:
        """Accepted, perhaps with errors noted (see `noted`)."""
        return not self.codes and not any(p.fatal for p in self.problems)

    @property
    def noted(self) -> bool:
        """Accepted with errors noted (AK5/IK5 "E"): every problem is non-fatal."""
        return self.accepted and bool(self.problems)

    @property
    def status(self) -> str:
        return ("E" if self.problems else "A") if self.accepted else "R"

    @property
    def line(self) -> int:
        return self.segments[0].line

    def reasons(self) -> list[str]:
        out = [f"transaction set {self.transaction} {self.control_number}: {SET_CODES.get(c, c)}"
               + (f" (no guide for {self.transaction} version {self.group.version or '?'}; a partner profile with "
                  f"`unguided: accept` reads it structurally)" if c == "1" and self.guide is None else "")
               for c in self.codes if c != "5"]
        out.extend(p.describe() for p in self.problems)
        return out


@dataclass
class SetSummary:
    transaction: str
    control_number: str
    implementation: str
    accepted: bool
    codes: list[str]
    problems: list[Problem]

    @property
    def status(self) -> str:
        """AK501/IK501: A accepted, E accepted with errors noted, R rejected."""
        return ("E" if self.problems else "A") if self.accepted else "R"


@dataclass
class GroupResult:
    interchange: InterchangeInfo
    group: GroupInfo
    sets: list[SetSummary] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # AK9/AK905 codes
    declared_sets: int | None = None
    counted: int = 0  # sets seen without keeping their summaries
    ge: Segment | None = None

    @property
    def set_count(self) -> int:
        return len(self.sets) + self.counted

    @property
    def accepted_count(self) -> int:
        return sum(1 for s in self.sets if s.accepted)


@dataclass
class InterchangeResult:
    interchange: InterchangeInfo
    notes: list[str] = field(default_factory=list)  # TA105 codes
    groups: list[GroupResult] = field(default_factory=list)
    iea: Segment | None = None
    cause: str | None = None  # the reader's refusal, when the interchange was not read to its end


def envelope_findings(event: GroupResult | InterchangeResult, *, unread: bool = True) -> list[str]:
    """What the group's or interchange's envelope checks found, one sentence each, with the
    line: the same findings the 997/999 (AK9 codes) or TA1 (TA105 notes) carry. `unread`
    False leaves out why an interchange was not read to its end (for a caller that reports
    the reader's error itself)."""
    out: list[str] = []
    if isinstance(event, GroupResult):
        gs = event.group.gs
        head = f"functional group {event.group.functional_id or '?'} {event.group.control_number or '?'} (GS line {gs.line})"
        ge = event.ge
        for code in event.codes:
            if code == "3":
                out.append(f"{head}: the GE trailer is missing")
            elif code == "4" and ge is not None:
                out.append(f"{head}: GE02 {ge.get(2).strip()!r} does not match GS06 {event.group.control_number!r} (GE line {ge.line})")
            elif code == "5" and ge is not None:
                out.append(f"{head}: GE01 says {ge.get(1).strip() or 'nothing'} transaction sets, the group has {event.set_count} (GE line {ge.line})")
            elif code == "6":
                out.append(f"{head}: GS06 {event.group.control_number!r} is not a number")
            else:
                out.append(f"{head}: {GROUP_CODES.get(code, 'error ' + code)}")
        return out
    info = event.interchange
    head = f"interchange {info.control_number or '?'} from {info.sender} (ISA line {info.isa.line})"
    iea = event.iea
    for note in event.notes:
        if note in UNREAD_NOTES and not unread:
            continue
        if note == "001" and iea is not None:
            out.append(f"{head}: IEA02 {iea.get(2).strip()!r} does not match ISA13 {info.control_number!r} (IEA line {iea.line})")
        elif note == "021" and iea is not None:
            out.append(f"{head}: IEA01 says {iea.get(1).strip() or 'nothing'} functional groups, the interchange has {info.groups} (IEA line {iea.line})")
        elif note in UNREAD_NOTES and event.cause:
            out.append(f"{head}: {INTERCHANGE_NOTES.get(note, note)}: {event.cause}")
        else:
            out.append(f"{head}: {INTERCHANGE_NOTES.get(note, 'note ' + note)}")
    return out


Event = SetResult | GroupResult | InterchangeResult
GuideResolver = Callable[[str, str], Guide | None]


class _Walker:
    def __init__(self, resolve: GuideResolver, validate: bool, shape: bool, summaries: bool = True,
                 unguided: str = "refuse") -> None:
        self.summaries = summaries
        self.accept_unguided = unguided == "accept"
        self.resolve = resolve
        self.validate = validate
        self.shape = shape
        self.interchange: InterchangeInfo | None = None
        self.result: InterchangeResult | None = None
        self.group: GroupResult | None = None
        self.current: list[Segment] | None = None
        self.seen_controls: set[str] = set()

    def finish_set(self, trailer: bool) -> SetResult:
        segments = self.current or []
        self.current = None
        assert self.interchange is not None and self.group is not None
        st = segments[0]
        transaction = st.get(1).strip()
        guide = self.resolve(transaction, self.group.group.version) if transaction else None
        result = SetResult(self.interchange, self.group.group, segments, guide)
        codes = result.codes
        control = st.get(2).strip()
        if not transaction.isalnum() or len(transaction) != 3:
            codes.append("6")
        if not 4 <= len(control) <= 9:
            codes.append("7")
        elif control in self.seen_controls:
            codes.append("23")
        self.seen_controls.add(control)
        groups = groups_of(transaction)
        if groups is not None and self.group.group.functional_id not in groups:
            group = self.group.group
            codes.append(wrong_group_code(group.version))
            result.problems.append(Problem("8", "ST", 1, st.line,
                                           f"an {transaction} belongs in functional group {' or '.join(sorted(groups))}, "
                                           f"not in GS01 {group.functional_id!r} (GS line {group.gs.line})",
                                           1, None, "143", transaction, True))
        if not trailer:
            codes.append("2")
        else:
            se = segments[-1]
            count = se.get(1).strip()
            if not count.isdigit() or int(count) != len(segments):
                codes.append("4")
                result.problems.append(Problem("8", "SE", len(segments), se.line,
                                               f"SE01 says {count or 'nothing'} segments, the set has {len(segments)}", 1, None, "96", count, True))
            if se.get(2).strip() != control:
                codes.append("3")
                result.problems.append(Problem("8", "SE", len(segments), se.line,
                                               f"SE02 {se.get(2).strip()!r} does not match ST02 {control!r}", 2, None, "329", se.get(2).strip(), True))
        if guide is None:  # read structurally; refused as not supported only when validating under "refuse"
            if self.validate and not self.accept_unguided:
                codes.append("1")
            else:
                result.unguided = True
        elif self.validate and trailer and "6" not in codes:
            found = validate_set(guide, segments)
            result.problems.extend(found)
            if any(p.fatal for p in found):
                codes.append("5")
        if self.shape:
            result.data = build(segments, guide)
        if self.summaries:  # what an acknowledgment needs; skipped when none is sent
            self.group.sets.append(SetSummary(transaction, control, st.get(3).strip(), result.accepted, list(codes), list(result.problems)))
        else:
            self.group.counted += 1
        return result

    def finish_group(self, ge: Segment | None) -> GroupResult:
        group = self.group
        assert group is not None
        self.group = None
        group.ge = ge
        if ge is None:
            group.codes.append("3")
        else:
            declared = ge.get(1).strip()
            group.declared_sets = int(declared) if declared.isdigit() else None
            if group.declared_sets != group.set_count:
                group.codes.append("5")
            if ge.get(2).strip() != group.group.control_number:
                group.codes.append("4")
        if not group.group.control_number.isdigit():
            group.codes.append("6")
        assert self.result is not None
        self.result.groups.append(group)
        return group


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while one set is read and shaped.

    A set of 20,000 lines keeps some 100,000 new objects alive until it is yielded, and
    the collector traverses them again and again as they survive (about 40% of the
    parse time); nothing here makes reference cycles for it to find. Counted across
    threads, so the collector comes back on when the last paused section ends, and only
    if it was on before the first one began."""
    global _gc_depth, _gc_was_enabled
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was_enabled:
                _promote_if_big()
                gc.enable()


_PROMOTE_ABOVE = 50_000


def _promote_if_big() -> None:
    """After a big paused section, move the young objects to the old generation unscanned.

    Re-enabled, the collector would otherwise traverse the whole set just shaped (some
    150,000 objects for 20,000 lines, about 15% of the parse time) on the next
    allocation, only to find them alive: they live until the consumer drops the set.
    freeze+unfreeze is that move in O(1). Skipped for small sections (the usual
    collection is cheap there, and garbage cycles of other threads are then not kept
    until a full collection) and when the application froze objects itself (unfreeze
    would undo its freeze)."""
    if gc.get_count()[0] > _PROMOTE_ABOVE and gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def walk(data: bytes | str, resolve: GuideResolver, *, validate: bool = True, shape: bool = True,
         summaries: bool = True, unguided: str = "refuse") -> Iterator[Event]:
    """Yield the events of every interchange in the input (see the module docstring).

    An interchange the reader refuses part way (cut off, a bad segment id, envelopes out
    of order) yields what was complete, then its InterchangeResult with the TA105 note
    naming the cause (023, 004, 022, 024), then raises X12InputError."""
    if unguided not in UNGUIDED_POLICIES:
        raise ValueError(f"unguided must be one of {UNGUIDED_POLICIES}, not {unguided!r}")
    events = _events(data, resolve, validate, shape, summaries, unguided)
    while True:
        with _gc_paused():  # not across the yield: the consumer's work runs with the collector as it was
            event = next(events, None)
        if event is None:
            return
        yield event


def _events(data: bytes | str, resolve: GuideResolver, validate: bool, shape: bool, summaries: bool,
            unguided: str = "refuse") -> Iterator[Event]:
    w = _Walker(resolve, validate, shape, summaries, unguided)
    try:
        for batch in read_batches(data):
            for seg in batch:
                seg_id = seg.id
                if w.current is not None:
                    if seg_id == "SE":
                        w.current.append(seg)
                        yield w.finish_set(True)
                        continue
                    if seg_id in ("ST", "GE", "GS", "IEA"):
                        yield w.finish_set(False)
                    else:
                        w.current.append(seg)
                        continue
                if seg_id == "ISA":
                    w.interchange = InterchangeInfo(seg)
                    w.result = InterchangeResult(w.interchange)
                elif seg_id == "GS":
                    if w.group is not None:
                        yield w.finish_group(None)
                    assert w.interchange is not None
                    w.interchange.groups += 1
                    w.group = GroupResult(w.interchange, GroupInfo(seg))
                    w.seen_controls = set()
                elif seg_id == "ST":
                    if w.group is None:
                        raise X12InputError("a transaction set (ST) outside a functional group: there is no GS before it",
                                            where=_where(seg), note="022")
                    w.current = [seg]
                elif seg_id == "GE":
                    if w.group is None:
                        raise X12InputError("a GE trailer without its GS header", where=_where(seg), note="022")
                    yield w.finish_group(seg)
                elif seg_id == "IEA":
                    if w.group is not None:
                        yield w.finish_group(None)
                    result = w.result
                    assert result is not None and w.interchange is not None
                    declared = seg.get(1).strip()
                    if not declared.isdigit() or int(declared) != w.interchange.groups:
                        result.notes.append("021")
                    if seg.get(2).strip() != w.interchange.control_number:
                        result.notes.append("001")
                    result.iea = seg
                    yield result
                    w.result = None
                elif seg_id in INTERCHANGE_SEGMENTS and w.interchange is not None:
                    w.interchange.extra.append(seg)
                elif seg_id in GROUP_SEGMENTS and w.group is not None:
                    w.group.group.extra.append(seg)
                else:
                    place = "inside a functional group, outside a transaction set" if w.group is not None else "between the envelopes"
                    raise X12InputError(f"segment {seg_id} outside a transaction set ({place})", where=_where(seg), note="022")
    except X12InputError as exc:
        if w.result is not None:
            w.result.notes.append(exc.note)
            w.result.cause = f"{exc.message} ({exc.where})" if exc.where and str(exc.where) else str(exc.message)
            yield w.result
        raise


def _where(seg: Segment) -> Any:
    from ..errors import InputLocation

    return InputLocation(line=seg.line, segment=seg.id)
