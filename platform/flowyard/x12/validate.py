"""Validating one transaction set against its guide with pyx12's walker.

pyx12 does the checking (segment order and repeats, loops, mandatory segments and
elements, lengths, types, codes, syntax notes); this module only feeds it one set's
segments and turns its findings into `Problem`s that carry what an analyst and a
997/999 need: segment id and position, line, element position, code and bad value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .guides import ElementDef, Guide
from .memo import Memo, replay
from .memo import counter as memo_counter
from .reader import Segment

_SYNTAX = re.compile(r"\(([PRECL])(\d{4,})\)")

SEGMENT_CODES = {
    "1": "unrecognized segment",
    "2": "unexpected segment",
    "3": "mandatory segment missing",
    "4": "loop occurs over maximum times",
    "5": "segment exceeds maximum use",
    "6": "segment not in defined transaction set",
    "7": "segment not in proper sequence",
    "8": "segment has data element errors",
}
ELEMENT_CODES = {
    "1": "mandatory data element missing",
    "2": "conditional required data element missing",
    "3": "too many data elements",
    "4": "data element too short",
    "5": "data element too long",
    "6": "invalid character in data element",
    "7": "invalid code value",
    "8": "invalid date",
    "9": "invalid time",
    "10": "exclusion condition violated",
}


# Severity. pyx12 rejects a set on any error; X12 lets a receiver accept a set with
# errors noted (AK5/IK5 "E") when what is wrong does not stop it from using the data.
# Noted only: a bad value (too short or long, invalid character, code, date or time, or a
# missing component) in an element the guide marks optional or not used, a not-used
# element that is present, and a segment or loop present although marked not used
# (AK304/IK304 2): the receiver ignores them and every mandatory value is intact.
# Everything else rejects the set: envelope errors, unrecognised, missing, misplaced or
# over-repeated segments and loops, any error in a mandatory element, syntax notes
# (paired, required, exclusion, conditional rules tie elements together: breaking one
# leaves the values ambiguous).
NOTED_ELEMENT_CODES = frozenset({"1", "4", "5", "6", "7", "8", "9", "10"})
NOTED_SEGMENT_CODE = "2"


def noted_only(code: str, usage: str) -> bool:
    """An element error that leaves the set acceptable: see the severity note above."""
    return usage in ("S", "N") and code in NOTED_ELEMENT_CODES


@dataclass
class Problem:
    """One finding in a transaction set (segment level when `element` is None)."""

    code: str  # AK304/IK304 for segments, AK403/IK403 for elements
    segment: str
    position: int  # segment position in the set, ST = 1
    line: int
    message: str
    element: int | None = None
    component: int | None = None
    data_element: str | None = None
    value: str | None = None
    envelope: bool = False  # an SE count/control problem: reported as an AK5/IK5 code, not AK3
    fatal: bool = True  # False: noted, the set is still accepted (AK5/IK5 "E"), see `noted_only`

    @property
    def path(self) -> str:
        if self.element is None:
            return self.segment
        path = f"{self.segment}{self.element:02d}"
        return f"{path}-{self.component:02d}" if self.component else path

    def describe(self) -> str:
        where = f"segment {self.segment} #{self.position} (line {self.line})"
        if self.element is not None:
            where += f", element {self.path}"
        value = f" (value {self.value!r})" if self.value else ""
        return f"{where}: {self.message}{value}"


def _start(guide: Guide) -> Any:
    node = getattr(guide, "_gs_node", None)
    if node is None:
        node = guide.pyx12_map().getnodebypath("/ISA_LOOP/GS_LOOP/GS")
        guide._gs_node = node  # type: ignore[attr-defined]
    return node


def validate_set(guide: Guide, segments: list[Segment], *, fast: bool = True) -> list[Problem]:
    """Every problem pyx12 finds in the set ST..SE (empty when it is valid).

    `fast` replays pyx12's memoised verdicts (see flowyard.x12.memo); False walks every
    segment with pyx12's plain walker and validators, which the tests compare it with."""
    from pyx12.map_walker import walk_tree

    walker = walk_tree()
    check = _Check(guide, walker, _memo(guide) if fast else None)
    walker.forceWalkCounterToLoopStart("/ISA_LOOP/GS_LOOP", "/ISA_LOOP/GS_LOOP/GS")
    node = _start(guide)
    memo = check.memo
    if memo is None:
        for count, seg in enumerate(segments, start=1):
            node = check.segment(node, seg, count, None, None)
            if node is None:
                break
        return check.problems
    match, counts = memo.match, check.counts
    first_codes = _first_codes(guide)
    table = memo.table(node)
    # Every set starts from the same counts, so the counts after its first N segments are a
    # function of their keys: while the set follows a path seen before (a trie of keys from
    # ST), each segment is one look-up and the counts are left alone; leaving the trie
    # restores the counts saved at its last node, and the walk goes on by replays.
    trie: dict[Any, Any] | None = memo.trie
    at: list[Any] | None = None  # the trie node reached: [node, verdicts, children, counts after it]
    for count, seg in enumerate(segments, start=1):
        seg_id, elements, seps = seg.id, seg.elements, seg.separators
        if seps.repetition and seps.repetition in "\x00".join(elements):
            if trie is not None:
                _leave_trie(at, counts)
                trie = None
            node = check.segment(node, seg, count, None, None)
            if node is None:
                break
            table = memo.table(node)
            continue
        key = seg_id if seg_id not in match else memo.key(seg_id, elements)
        if trie is not None:
            step = trie.get(key)
            if step is not None:
                at, node, verdicts, trie = step, step[0], step[1], step[2]
                tables = verdicts.per.get(seps.component)
                clean = tables.whole.get(tuple(elements)) if tables is not None else None
                if clean is None:
                    clean = verdicts.clean(elements, seps)
                if not clean or seg_id in first_codes:
                    check.segment(None, seg, count, node, key)
                continue
            extend = count <= TRIE_DEPTH and memo.trie_size < TRIE_LIMIT
            children = trie
            _leave_trie(at, counts)
            trie = None
            if at is not None:
                table = memo.table(node)
        else:
            extend = False
        # the common case inline: a known move, a segment that passed before, no first-element code list
        entry = table.get(key)
        if entry is not None and replay(entry, counts):
            verdicts = entry[5]
            tables = verdicts.per.get(seps.component)
            clean = tables.whole.get(tuple(elements)) if tables is not None else None
            if clean is None:
                clean = verdicts.clean(elements, seps)
            node, table = entry[0], entry[6]
            if not clean or seg_id in first_codes:
                check.segment(None, seg, count, node, key)
            moved = True
        else:
            node = check.segment(node, seg, count, None, None)
            if node is None:
                break
            table = memo.table(node)
            moved = check.moved
        if extend and moved:
            at = [node, memo.verdicts(node), {}, dict(counts)]
            children[key] = at
            memo.trie_size += 1
            trie = at[2]
    return check.problems


TRIE_DEPTH = 2000  # segments from ST followed by the trie (a longer set goes on by replays)
TRIE_LIMIT = 100_000  # trie nodes per guide


def _leave_trie(at: list[Any] | None, counts: dict[str, int]) -> None:
    """Back to replays: the counts become those saved at the last trie node (untouched
    since the set began when no trie node was reached)."""
    if at is not None:
        counts.clear()
        counts.update(at[3])


class _Check:
    """One set's walk: pyx12's walker (its counter recording when memoised) and the problems found."""

    def __init__(self, guide: Guide, walker: Any, memo: Memo | None) -> None:
        self.guide = guide
        self.walker = walker
        self.memo = memo
        self.problems: list[Problem] = []
        self.counts: dict[str, int] = {}
        self.moved = False  # the last segment's move was memoised or walked without errors
        if memo is not None:
            counter = walker.counter = memo_counter()
            counter.memo = memo
            self.counts = counter.counts

    def segment(self, node: Any, seg: Segment, count: int, found: Any, key: Any) -> Any:
        """Walk one segment from node (or take `found`, already walked) and check its
        elements; returns the node it is at, None when the walk cannot go on."""
        import pyx12.errors

        guide, memo, problems = self.guide, self.memo, self.problems
        seps = seg.separators
        elements = seg.elements
        text: str | None = None
        if seps.repetition and any(seps.repetition in e for e in elements):
            text = _first_repetitions(seg, guide)
            elements = text.split(seps.element)[1:]
        pyseg = None
        self.moved = True
        if found is None and memo is not None and key is None:
            key = memo.key(seg.id, elements)
            entry = memo.table(node).get(key)
            if entry is not None and replay(entry, self.counts):
                found = entry[0]
        if found is None:
            pyseg = _pyx12_segment(seg, text)
            counter = self.walker.counter
            if memo is not None:
                counter.trace = []
            try:
                found, _pop, _push, seg_errors = self.walker.walk_errors(node, pyseg, count, seg.line, None)
            except pyx12.errors.EngineError as exc:
                problems.append(Problem("7", seg.id, count, seg.line, f"pyx12 could not place the segment: {exc}"))
                return None
            self.moved = found is not None and not seg_errors
            if memo is not None:
                if self.moved and counter.trace is not None and key is not None:
                    memo.remember(node, key, found, counter.trace)
                counter.trace = None
            for error in seg_errors:
                problems.append(_segment_problem(error, seg, count))
            if found is None:
                return node
        if memo is not None and memo.verdicts(found).clean(elements, seps):
            checked: list[Any] = []
        else:
            try:
                checked = list(found.is_valid_errors(pyseg or _pyx12_segment(seg, text))[1])
            except (IndexError, KeyError, pyx12.errors.EngineError) as exc:  # pyx12 trips on some malformed composites
                checked = [exc]
        if checked and isinstance(checked[0], Exception):
            problems.append(Problem("8", seg.id, count, seg.line, f"segment has data element errors: pyx12 could not check it ({type(checked[0]).__name__})"))
            return found
        first_code = _first_element_problem(guide, seg, count)
        if first_code is not None:
            problems.append(first_code)
        for error in checked:
            problem = _element_problem(error, seg, count)
            if problem.element is not None and problem.data_element is None:
                problem.data_element = _data_element(guide, seg.id, problem.element)
            if not any(p.position == count and p.element == problem.element and p.code == problem.code for p in problems):
                problems.append(problem)
        return found


def _pyx12_segment(seg: Segment, text: str | None) -> Any:
    import pyx12.segment

    seps = seg.separators
    return pyx12.segment.Segment(text if text is not None else seg.text(), seps.segment, seps.element, seps.component, seps.repetition or "\x1d")


def _memo(guide: Guide) -> Memo:
    memo: Memo | None = getattr(guide, "_memo", None)
    if memo is None:
        memo = Memo(guide.pyx12_map())
        guide._memo = memo  # type: ignore[attr-defined]
    return memo


def _first_element_problem(guide: Guide, seg: Segment, count: int) -> Problem | None:
    """The first element's code list, which the compiled map leaves to this check."""
    codes = _first_codes(guide).get(seg.id)
    if codes is None:
        return None
    value = seg.elements[0] if seg.elements else ""
    if not value or value in codes[0]:
        return None
    element = codes[1]
    allowed = ", ".join(element.codes[:10]) + (", ..." if len(element.codes) > 10 else "")
    return Problem("7", seg.id, count, seg.line, f"invalid code value: {value!r} is not a valid code for {element.key} ({allowed})",
                   1, None, element.number if element.number[:1].isdigit() else None, value, fatal=not noted_only("7", element.usage))


def _first_codes(guide: Guide) -> dict[str, tuple[frozenset[str], ElementDef]]:
    """Segment id -> (codes, element) for the segments whose first element has a code list."""
    cached: dict[str, tuple[frozenset[str], ElementDef]] | None = getattr(guide, "_first_codes", None)
    if cached is None:
        cached = {}
        for seg_id, definition in guide.segments().items():
            if definition.elements and definition.elements[0].position == 1 and definition.elements[0].codes:
                cached[seg_id] = (frozenset(definition.elements[0].codes), definition.elements[0])
        guide._first_codes = cached  # type: ignore[attr-defined]
    return cached


def _data_element(guide: Guide, seg_id: str, position: int) -> str | None:
    definition = guide.segments().get(seg_id)
    if definition is None:
        return None
    for element in definition.elements:
        if element.position == position:
            return element.number if element.number[:1].isdigit() else None
    return None


def _repeatable(guide: Guide) -> dict[str, set[int]]:
    cached: dict[str, set[int]] | None = getattr(guide, "_repeatable", None)
    if cached is None:
        cached = {}
        for seg_id, definition in guide.segments().items():
            positions = {e.position for e in definition.elements if e.repeat > 1}
            if positions:
                cached[seg_id] = positions
        guide._repeatable = cached  # type: ignore[attr-defined]
    return cached


def _first_repetitions(seg: Segment, guide: Guide) -> str:
    """pyx12 does not split repetitions: give it the first one of each repeatable
    element (the others are checked for their count only)."""
    positions = _repeatable(guide).get(seg.id, set())
    rep = seg.separators.repetition or ""
    elements = [e.split(rep, 1)[0] if i in positions else e for i, e in enumerate(seg.elements, start=1)]
    return seg.separators.element.join([seg.id, *elements])


def _segment_problem(error: Any, seg: Segment, count: int) -> Problem:
    code = str(error.err_cde)
    map_node = error.map_node
    seg_id = seg.id
    position = error.seg_count or count
    if code in ("3", "4") and map_node is not None:
        seg_id = _first_segment_id(map_node) or seg_id
    text = f"{SEGMENT_CODES.get(code, 'segment error')}: {error.err_str}"
    return Problem(code, seg_id, position, error.src_line or seg.line, text, fatal=code != NOTED_SEGMENT_CODE)


def _first_segment_id(map_node: Any) -> str | None:
    node = map_node
    while node is not None and getattr(node, "base_name", "") == "loop":
        children = getattr(node, "children", None) or []
        node = children[0] if children else None
    return getattr(node, "id", None)


def _element_problem(error: Any, seg: Segment, count: int) -> Problem:
    code = str(error.err_cde)
    map_node = error.map_node
    text = f"{ELEMENT_CODES.get(code, 'element error')}: {error.err_str}"
    if map_node is None:
        rule = _SYNTAX.search(error.err_str or "")
        if rule and code in ("2", "10"):
            # a syntax note (P0607, C0506, ...): point at the element it is about
            positions = [int(rule.group(2)[i : i + 2]) for i in range(0, len(rule.group(2)), 2)]
            empty = [p for p in positions if not seg.get(p)] if code == "2" else positions[1:]
            position = (empty or positions)[0]
            return Problem(code, seg.id, count, seg.line, text, position, None, None, seg.get(position) or None)
        return Problem("8", seg.id, count, seg.line, text, value=error.err_val)
    parent = getattr(map_node, "parent", None)
    if parent is not None and getattr(parent, "base_name", "") == "composite":
        element, component, top = parent.seq, map_node.seq, parent
    else:
        element, component, top = map_node.seq, None, map_node
    fatal = not noted_only(code, getattr(top, "usage", "R"))
    return Problem(code, seg.id, count, seg.line, text, element, component, getattr(map_node, "data_ele", None), error.err_val, fatal=fatal)
