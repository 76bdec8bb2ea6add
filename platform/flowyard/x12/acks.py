"""997 / 999 functional acknowledgments and TA1 interchange acknowledgments.

One acknowledgment interchange answers one received interchange: sender and receiver
swapped, the received delimiters, an optional TA1, then one 997 or 999 set per
functional group (never for a group of acknowledgments, GS01 = FA).

Codes: AK3/IK3 segment errors carry pyx12's segment codes (1-8); AK4/IK4 element
errors its element codes (1-10); AK5/IK5 A accepted or R rejected with the set codes
(1 not supported, 2 trailer missing, 3 control numbers differ, 4 segment count, 5 segments
in error, 23 control number not unique), or E (accepted, errors noted: only non-fatal
problems, see flowyard.x12.validate) with code 5 and the AK3/AK4 that say what; AK9 A, E
(all sets accepted, errors noted in a set or the group envelope), P (partially accepted:
some sets rejected) or R with the group codes (3 trailer missing, 4 control numbers
differ, 5 set count).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .document import UNREAD_NOTES, GroupResult, InterchangeResult
from .envelope import GroupOut, Party, isa_segment, now, st_se, write
from .reader import Separators
from .validate import Problem

AckKind = str  # "997" or "999"
IMPLEMENTATION_999 = "005010X231A1"


def _clean(value: str | None, seps: Separators) -> str:
    """A bad value copied into AK404/IK404 without any delimiter (max 99 characters)."""
    text = value or ""
    for char in seps.all():
        text = text.replace(char, " ")
    return text.strip()[:99]


def group_status(group: GroupResult) -> str:
    """AK901: R none accepted, P some rejected, E all accepted but errors noted (in a set
    or in the group's envelope), A all accepted clean."""
    accepted = group.accepted_count
    if not group.sets or accepted == 0:
        return "R"
    if accepted < len(group.sets):
        return "P"
    return "E" if group.codes or any(s.status == "E" for s in group.sets) else "A"


def _problem_segments(kind: AckKind, problems: list[Problem], seps: Separators) -> list[str]:
    e = seps.element
    out: list[str] = []
    by_segment: dict[tuple[int, str], list[Problem]] = {}
    for p in problems:
        if p.envelope:
            continue
        by_segment.setdefault((p.position, p.segment), []).append(p)
    seg_tag, ele_tag = ("AK3", "AK4") if kind == "997" else ("IK3", "IK4")
    for (position, segment), items in by_segment.items():
        segment_level = [p for p in items if p.element is None]
        element_level = [p for p in items if p.element is not None]
        code = segment_level[0].code if segment_level else "8"
        out.append(e.join([seg_tag, segment, str(position), "", code]))
        for p in element_level[:99]:
            place = str(p.element) + (f"{seps.component}{p.component}" if p.component else "")
            fields = [ele_tag, place, p.data_element or "", p.code, _clean(p.value, seps)]
            while fields and fields[-1] == "":
                fields.pop()
            out.append(e.join(fields))
    return out


def ack_set(kind: AckKind, group: GroupResult, control: str, seps: Separators) -> list[str]:
    """The segments ST..SE of the 997 or 999 answering one functional group."""
    e = seps.element
    version = group.group.version
    five = version.startswith("005") or kind == "999"
    body = [e.join(["AK1", group.group.functional_id, group.group.control_number] + ([version] if five else []))]
    for s in group.sets:
        ak2 = ["AK2", s.transaction, s.control_number] + ([s.implementation] if five and s.implementation else [])
        body.append(e.join(ak2))
        body.extend(_problem_segments(kind, s.problems, seps))
        status = s.status
        codes = s.codes if status == "R" else []
        if status != "A" and not codes:
            codes = ["5"]  # one or more segments in error (noted, for E)
        body.append(e.join(["AK5" if kind == "997" else "IK5", status, *codes[:5]]))
    declared = group.declared_sets if group.declared_sets is not None else len(group.sets)
    body.append(e.join(["AK9", group_status(group), str(declared), str(len(group.sets)), str(group.accepted_count), *group.codes[:5]]))
    convention = IMPLEMENTATION_999 if kind == "999" else None
    return st_se(kind, control, body, seps, convention)


REJECTING_NOTES = UNREAD_NOTES | {"025"}  # TA104 R: the interchange was not read to its end, or is a duplicate


def ta1_segment(result: InterchangeResult, seps: Separators, notes: list[str] | None = None) -> str:
    """TA1: the first note that rejects the interchange (R), else the first one (E, the
    interchange read with its envelope noted), else A 000."""
    isa = result.interchange.isa
    codes = notes if notes is not None else result.notes
    code = next((c for c in codes if c in REJECTING_NOTES), codes[0]) if codes else "000"
    status = "A" if code == "000" else ("R" if code in REJECTING_NOTES else "E")
    return seps.element.join(["TA1", isa.get(13).strip(), isa.get(9).strip(), isa.get(10).strip(), status, code])


def acknowledgment(result: InterchangeResult, kind: AckKind | None, *, ta1: bool, counter: Callable[[str], int],
                   when: datetime | None = None, ta1_notes: list[str] | None = None) -> str | None:
    """The acknowledgment interchange for a received one, or None when nothing is due.

    `counter(kind)` gives the next control number for "ISA", "GS", "ST"."""
    isa = result.interchange.isa
    seps = isa.separators
    groups = [g for g in result.groups if g.group.functional_id != "FA"] if kind else []
    if not groups and not ta1:
        return None
    when = when or now()
    us = Party(isa.get(7).strip(), isa.get(8).strip())
    them = Party(isa.get(5).strip(), isa.get(6).strip())
    version = isa.get(12).strip()
    out_version = "00501" if kind == "999" and version < "00501" else version
    isa_control = counter("ISA")
    out_groups = []
    for group in groups:
        assert kind is not None
        gs = group.group.gs
        st_control = f"{counter('ST'):04d}"
        gs_version = IMPLEMENTATION_999 if kind == "999" else group.group.version
        out_groups.append(GroupOut("FA", gs.get(3).strip(), gs.get(2).strip(), counter("GS"), gs_version,
                                   [ack_set(kind, group, st_control, seps)]))
    isa_text = isa_segment(us, them, isa_control, out_version, isa.get(15).strip() or "P", seps, when)
    extra = [ta1_segment(result, seps, ta1_notes)] if ta1 else None
    return write(isa_text, out_groups, seps, True, when, isa_control, extra)
