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

from .guides import Guide
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


def validate_set(guide: Guide, segments: list[Segment]) -> list[Problem]:
    """Every problem pyx12 finds in the set ST..SE (empty when it is valid)."""
    import pyx12.errors
    import pyx12.segment
    from pyx12.map_walker import walk_tree

    problems: list[Problem] = []
    node = _start(guide)
    cache = _cache(guide)
    walker = walk_tree()
    walker.counter = _fast_counter()
    walker.forceWalkCounterToLoopStart("/ISA_LOOP/GS_LOOP", "/ISA_LOOP/GS_LOOP/GS")
    for count, seg in enumerate(segments, start=1):
        seps = seg.separators
        text = seg.text()
        if seps.repetition and seps.repetition in text:
            text = _first_repetitions(seg, guide)
        key = (text, seps)
        pyseg = cache.segments.get(key)
        if pyseg is None:
            pyseg = pyx12.segment.Segment(text, seps.segment, seps.element, seps.component, seps.repetition or "\x1d")
            cache.remember(cache.segments, key, pyseg)
        try:
            found, _pop, _push, seg_errors = walker.walk_errors(node, pyseg, count, seg.line, None)
        except pyx12.errors.EngineError as exc:
            problems.append(Problem("7", seg.id, count, seg.line, f"pyx12 could not place the segment: {exc}"))
            break
        for error in seg_errors:
            problems.append(_segment_problem(error, seg, count))
        if found is None:
            continue
        node = found
        checked = cache.checked.get((id(node), key))
        if checked is None:
            # the same segment text at the same map node always gets the same verdict
            try:
                checked = list(node.is_valid_errors(pyseg)[1])
            except (IndexError, KeyError, pyx12.errors.EngineError) as exc:  # pyx12 trips on some malformed composites
                checked = [exc]
            cache.remember(cache.checked, (id(node), key), checked)
        if checked and isinstance(checked[0], Exception):
            problems.append(Problem("8", seg.id, count, seg.line, f"segment has data element errors: pyx12 could not check it ({type(checked[0]).__name__})"))
            continue
        first_code = _first_element_problem(guide, seg, count)
        if first_code is not None:
            problems.append(first_code)
        for error in checked:
            problem = _element_problem(error, seg, count)
            if problem.element is not None and problem.data_element is None:
                problem.data_element = _data_element(guide, seg.id, problem.element)
            if not any(p.position == count and p.element == problem.element and p.code == problem.code for p in problems):
                problems.append(problem)
    return problems


_FastCounter: Any = None


def _fast_counter() -> Any:
    """pyx12's NodeCounter keyed by path strings formatted once: the same counts, without
    re-formatting every X12Path at each loop start (the walker's main cost)."""
    global _FastCounter
    if _FastCounter is None:
        from collections import OrderedDict

        import pyx12.path
        from pyx12.nodeCounter import NodeCounter

        names: dict[int, tuple[Any, str]] = {}
        strings: dict[str, str] = {}

        def name(xpath: Any) -> str:
            if isinstance(xpath, str):
                found = strings.get(xpath)
                if found is None:
                    found = strings[xpath] = pyx12.path.X12Path(xpath).format()
                return found
            entry = names.get(id(xpath))
            if entry is None or entry[0] is not xpath:
                entry = names[id(xpath)] = (xpath, xpath.format())  # keeps the object, so its id stays its own
            return entry[1]

        class FastCounter(NodeCounter):  # type: ignore[misc]
            def __init__(self) -> None:
                self.counts: dict[str, int] = {}

            def reset_to_node(self, xpath: Any) -> None:
                prefix = name(xpath) + "/"
                for key in [k for k in self.counts if k.startswith(prefix)]:
                    del self.counts[key]

            def increment(self, xpath: Any) -> None:
                key = name(xpath)
                self.counts[key] = self.counts.get(key, 0) + 1

            def setCount(self, xpath: Any, ct: int) -> None:
                self.counts[name(xpath)] = ct

            def get_count(self, xpath: Any) -> int:
                return self.counts.get(name(xpath), 0)

            def getState(self) -> Any:
                return OrderedDict((pyx12.path.X12Path(k), v) for k, v in self.counts.items())

        _FastCounter = FastCounter
    return _FastCounter()


class _Cache:
    """Per guide: pyx12 segments and element verdicts by segment text (bounded)."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self.segments: dict[Any, Any] = {}
        self.checked: dict[Any, list[Any]] = {}

    def remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= self.LIMIT:
            table.clear()
        table[key] = value


def _cache(guide: Guide) -> _Cache:
    cache: _Cache | None = getattr(guide, "_validation_cache", None)
    if cache is None:
        cache = _Cache()
        guide._validation_cache = cache  # type: ignore[attr-defined]
    return cache


def _first_element_problem(guide: Guide, seg: Segment, count: int) -> Problem | None:
    """The first element's code list, which the compiled map leaves to this check."""
    definition = guide.segments().get(seg.id)
    if definition is None or not definition.elements or definition.elements[0].position != 1:
        return None
    element = definition.elements[0]
    value = seg.get(1)
    if not element.codes or not value or value in element.codes:
        return None
    allowed = ", ".join(element.codes[:10]) + (", ..." if len(element.codes) > 10 else "")
    return Problem("7", seg.id, count, seg.line, f"invalid code value: {value!r} is not a valid code for {element.key} ({allowed})",
                   1, None, element.number if element.number[:1].isdigit() else None, value)


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
    return Problem(code, seg_id, position, error.src_line or seg.line, text)


def _first_segment_id(map_node: Any) -> str | None:
    node = map_node
    while node is not None and getattr(node, "base_name", "") == "loop":
        children = getattr(node, "children", None) or []
        node = children[0] if children else None
    return getattr(node, "id", None)


def _element_problem(error: Any, seg: Segment, count: int) -> Problem:
    code = str(error.err_cde)
    map_node = error.map_node
    element: int | None = None
    component: int | None = None
    data_element: str | None = None
    if map_node is not None:
        parent = getattr(map_node, "parent", None)
        if parent is not None and getattr(parent, "base_name", "") == "composite":
            element, component = parent.seq, map_node.seq
        else:
            element = map_node.seq
        data_element = getattr(map_node, "data_ele", None)
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
    return Problem(code, seg.id, count, seg.line, text, element, component, data_element, error.err_val)
