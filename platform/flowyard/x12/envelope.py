"""Writing ISA/GS/ST envelopes around transaction sets (x12.generate and acknowledgments).

Counts are computed here, never taken from the input: SE01 is the number of segments
ST..SE, GE01 the number of sets, IEA01 the number of groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .reader import Separators


@dataclass
class Party:
    qualifier: str
    id: str

    @classmethod
    def parse(cls, text: str) -> Party:
        qualifier, _, ident = text.partition(":")
        return cls(qualifier.strip(), ident.strip())

    def __str__(self) -> str:
        return f"{self.qualifier}:{self.id}"


@dataclass
class GroupOut:
    functional_id: str
    sender: str
    receiver: str
    control_number: int
    version: str
    sets: list[list[str]]  # each set: its segments ST..SE as text, without terminators


def isa_segment(sender: Party, receiver: Party, control_number: int, version: str, usage: str, seps: Separators,
                when: datetime, ack_requested: bool = False) -> str:
    rep = seps.repetition if version >= "00402" and seps.repetition else "U"
    fields = [
        "00", " " * 10, "00", " " * 10,
        sender.qualifier.ljust(2)[:2], sender.id.ljust(15)[:15],
        receiver.qualifier.ljust(2)[:2], receiver.id.ljust(15)[:15],
        when.strftime("%y%m%d"), when.strftime("%H%M"), rep, version, f"{control_number:09d}",
        "1" if ack_requested else "0", usage, seps.component,
    ]
    return seps.element.join(["ISA", *fields])


def st_se(transaction: str, control: str, body: list[str], seps: Separators, convention: str | None = None) -> list[str]:
    head = [transaction, control] + ([convention] if convention else [])
    st = seps.element.join(["ST", *head])
    se = seps.element.join(["SE", str(len(body) + 2), control])
    return [st, *body, se]


def write(isa: str, groups: list[GroupOut], seps: Separators, newline: bool, when: datetime, isa_control: int,
          extra: list[str] | None = None) -> str:
    """The interchange text: ISA, optional TA1 segments, the groups, IEA."""
    e = seps.element
    out = [isa, *(extra or [])]
    for group in groups:
        out.append(e.join(["GS", group.functional_id, group.sender, group.receiver, when.strftime("%Y%m%d"),
                           when.strftime("%H%M"), str(group.control_number), "X", group.version]))
        for segments in group.sets:
            out.extend(segments)
        out.append(e.join(["GE", str(len(group.sets)), str(group.control_number)]))
    out.append(e.join(["IEA", str(len(groups)), f"{isa_control:09d}"]))
    end = seps.segment + ("\n" if newline and seps.segment != "\n" else "")
    return end.join(out) + end


def now() -> datetime:
    return datetime.now(UTC)
