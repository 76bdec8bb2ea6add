"""Memoised pyx12 validation: the same verdicts as the plain walk, paid for once.

pyx12's walker searches the map for every segment, and its element validators run on
every segment, although a 20,000-line purchase order repeats the same few moves
(PID after PO1, PO1 after PID) and the same few element values. Both are pure functions
of a small input, so each is computed by pyx12 once and replayed after:

- A walker transition depends only on the start node, the values pyx12 matches a
  segment by (its id and qualifier elements), and how the loop and segment counts it
  reads compare with 1 and with their maximum. The first walk of a transition runs
  pyx12's walker with a counter that records what it reads and writes; a later segment
  with the same start node and match values replays the writes if every count read
  falls in the same class (0, 1..max, over max). A transition that reported an error
  is never memoised, and a segment whose reads differ is walked by pyx12 instead.
- A segment's element verdict is the verdicts of its elements (each depends on its own
  value) and of its syntax notes (which depend on which elements are present). Each
  element value is checked by pyx12 once per map node (values differing only in their
  digits once, where the element's checks cannot tell digits apart); a segment whose
  elements and presence pattern all passed is valid; a segment seen before (most of a
  big file) is one look-up. Any failure goes to pyx12's whole-segment check, so errors are pyx12's
  own, in its order; the few segments pyx12 checks with context (DTP, a 1251 value
  read by its 1250 format) get the whole-segment check on their first sight.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .reader import Separators

_GET, _INC, _RESET = 0, 1, 2
MAXINT = 2**31
LIMIT = 200_000  # entries per table before it is dropped (distinct values of a huge file)

_counter_class: Any = None


def counter() -> Any:
    """A pyx12 NodeCounter keyed by path strings formatted once (the plain one
    re-formats an X12Path at every call), which records its reads and writes while
    `trace` is a list."""
    global _counter_class
    if _counter_class is None:
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

        class RecordingCounter(NodeCounter):  # type: ignore[misc]
            def __init__(self) -> None:
                self.counts: dict[str, int] = {}
                self.trace: list[tuple[Any, ...]] | None = None
                self.memo: Memo | None = None

            def reset_to_node(self, xpath: Any) -> None:
                prefix = name(xpath) + "/"
                if self.trace is not None:
                    self.trace.append((_RESET, prefix))
                for key in [k for k in self.counts if k.startswith(prefix)]:
                    del self.counts[key]

            def increment(self, xpath: Any) -> None:
                key = name(xpath)
                if self.memo is not None and key not in self.memo.limits:
                    self.memo.unknown(key)
                if self.trace is not None:
                    self.trace.append((_INC, key))
                self.counts[key] = self.counts.get(key, 0) + 1

            def setCount(self, xpath: Any, ct: int) -> None:
                self.trace = None  # not a walker move: nothing to memoise
                self.counts[name(xpath)] = ct

            def get_count(self, xpath: Any) -> int:
                key = name(xpath)
                value = self.counts.get(key, 0)
                if self.trace is not None:
                    limit = self.memo.limits.get(key, MAXINT) if self.memo is not None else MAXINT
                    self.trace.append((_GET, key, 0 if value < 1 else 1 if value <= limit else 2, limit))
                return value

            def getState(self) -> Any:
                return OrderedDict((pyx12.path.X12Path(k), v) for k, v in self.counts.items())

        _counter_class = RecordingCounter
    return _counter_class()


Transition = tuple[Any, tuple[tuple[str, int, int, int], ...], tuple[tuple[str, tuple[str, ...]], ...], tuple[tuple[str, int], ...],
                   tuple[tuple[str, int], ...], "_NodeVerdicts", dict[Any, Any]]


def compile_trace(found: Any, trace: list[tuple[Any, ...]], limits: dict[str, int], verdicts: _NodeVerdicts,
                  table: dict[Any, Any]) -> Transition:
    """A recorded walk as (found node, guards, resets, sets, increments, the found node's
    element verdicts, the found node's transitions: where the next segment starts).

    The walk's reads and writes are evaluated symbolically: a count it reset or set is
    known (its reads need no check), a count it only incremented is the stored count plus
    the increments (its reads become guards on the stored count). So a replay checks the
    guards first and writes only when they all hold: nothing to undo."""
    state: dict[str, tuple[bool, int]] = {}  # key -> (known absolute value?, value or increment)
    guards: list[tuple[str, int, int, int]] = []
    resets: list[str] = []
    for op in trace:
        kind, key = op[0], op[1]
        if kind == _RESET:
            for name in state:
                if name.startswith(key):
                    state[name] = (True, 0)
            resets.append(key)
            continue
        current = state.get(key)
        if current is None:
            current = (True, 0) if any(key.startswith(prefix) for prefix in resets) else (False, 0)
        if kind == _INC:
            state[key] = (current[0], current[1] + 1)
        else:
            state.setdefault(key, current)
            if not current[0]:
                guards.append((key, current[1], op[2], op[3]))
    sets = tuple((k, v) for k, (known, v) in state.items() if known)
    increments = tuple((k, v) for k, (known, v) in state.items() if not known and v)
    # a reset deletes the counts under a loop: every count is a map node's, so they can be
    # listed once; the replay pops them or scans the counts, whichever list is shorter
    cleared = tuple((prefix, tuple(k for k in limits if k.startswith(prefix))) for prefix in resets)
    return found, tuple(guards), cleared, sets, increments, verdicts, table


def replay(transition: Transition, counts: dict[str, int]) -> bool:
    """Apply a compiled transition if its guards hold (else change nothing, return False)."""
    for key, add, klass, limit in transition[1]:
        value = counts.get(key, 0) + add
        if (0 if value < 1 else 1 if value <= limit else 2) != klass:
            return False
    for prefix, keys in transition[2]:
        if len(keys) <= len(counts):
            for key in keys:
                counts.pop(key, None)
        else:
            for key in [k for k in counts if k.startswith(prefix)]:
                del counts[key]
    for key, value in transition[3]:
        if value:
            counts[key] = value
        else:
            counts.pop(key, None)
    for key, add in transition[4]:
        counts[key] = counts.get(key, 0) + add
    return True


class Memo:
    """Per compiled guide: walker transitions, match positions, count limits and
    element verdicts. Lives as long as the guide's pyx12 map (its nodes are the keys)."""

    def __init__(self, pyx12_map: Any) -> None:
        # start node -> {segment key: transition}; a transition holds its end node's table
        self.tables: dict[int, dict[Any, Transition]] = {}
        self.size = 0
        self.limits: dict[str, int] = {}
        match: dict[str, set[int]] = {}
        for node in pyx12_map.loop_segment_iterator():
            max_repeat = getattr(node, "get_max_repeat", None)
            if max_repeat is not None:
                self.limits[node.x12path.format()] = max_repeat()
            if node.is_segment():
                match.setdefault(node.id, set()).update(_match_positions(node))
        # element positions (0-based) pyx12 matches a segment id by, besides the id
        self.match: dict[str, tuple[int, ...]] = {k: tuple(sorted(v)) for k, v in match.items() if v}
        self.nodes: dict[int, _NodeVerdicts] = {}
        self._keep: list[Any] = []  # the nodes whose ids key the tables
        # segment keys from ST -> [node, verdicts, children, counts after it] (see validate_set)
        self.trie: dict[Any, list[Any]] = {}
        self.trie_size = 0

    def table(self, node: Any) -> dict[Any, Transition]:
        found = self.tables.get(id(node))
        if found is None:
            found = self.tables[id(node)] = {}
            self._keep.append(node)
        return found

    def key(self, seg_id: str, elements: list[str]) -> Any:
        """The segment id, with the element values pyx12 matches it by if it has any."""
        positions = self.match.get(seg_id)
        if not positions:
            return seg_id
        n = len(elements)
        return (seg_id, *[elements[i] if i < n else None for i in positions])

    def remember(self, node: Any, key: Any, found: Any, trace: list[tuple[Any, ...]]) -> None:
        if self.size >= LIMIT:
            self.forget()
        self.table(node)[key] = compile_trace(found, trace, self.limits, self.verdicts(found), self.table(found))
        self.size += 1

    def moves(self) -> int:
        return sum(len(table) for table in self.tables.values())

    def forget(self) -> None:
        for table in self.tables.values():
            table.clear()  # in place: transitions still point at these tables
        self.size = 0
        self.trie.clear()
        self.trie_size = 0

    def unknown(self, key: str) -> None:
        """A count of a path the map did not list: resets compiled without it are stale."""
        self.limits[key] = MAXINT
        self.forget()

    def verdicts(self, node: Any) -> _NodeVerdicts:
        found = self.nodes.get(id(node))
        if found is None:
            found = self.nodes[id(node)] = _NodeVerdicts(node)
        return found


def _match_positions(node: Any) -> set[int]:
    resolve = getattr(node, "_resolve_unique_key_field", None)
    if resolve is None:  # another pyx12: match by the first three elements, always correct
        return {0, 1, 2}
    key = resolve(node.id, with_qual=False)
    return set() if key is None else {key[1] - 1}


_ZEROS = str.maketrans("123456789", "000000000")


class _Tables:
    """One node's verdicts for one component separator."""

    __slots__ = ("blind", "blind_ok", "size", "values", "whole")

    def __init__(self, children: int, blind_ok: bool) -> None:
        self.values: list[dict[str, bool]] = [{} for _ in range(children)]  # per element: value -> passes
        self.whole: dict[tuple[str, ...], bool] = {}  # a segment seen before (most of them in a big file)
        self.blind: dict[tuple[str, ...], bool] = {}  # the same, keyed with digits as 0 where digit-blind
        self.blind_ok = blind_ok
        self.size = 0


def _digit_blind(child: Any, composite: bool) -> bool:
    """pyx12 checks an element of type AN, ID, N or R with no code list and no pattern by
    its length, control characters, trailing spaces and character classes, in which every
    ASCII digit is alike ([0-9]); dates, times and codes depend on the digits."""
    if composite or getattr(child, "_valid_codes_set", True) or getattr(child, "external_codes", True) is not None:
        return False
    if getattr(child, "rec", True) is not None:
        return False
    try:
        data_type = child.get_data_type() or ""
    except Exception:  # an element pyx12 cannot resolve: no shortcut
        return False
    return data_type in ("AN", "ID", "R") or data_type[:1] == "N"


class _NodeVerdicts:
    """Which element values and presence patterns pass one segment node."""

    def __init__(self, node: Any) -> None:
        import pyx12.map_if

        self.node = node
        self.children = list(node.children)
        # pyx12 checks these with context from other elements: only the whole-segment check is exact
        self.contextual = node.id == "DTP" or any(getattr(c, "data_ele", None) in ("1250", "1251") for c in self.children)
        self.composite = [isinstance(c, pyx12.map_if.composite_if) for c in self.children]
        # elements whose verdict cannot tell 1-9 from 0 (line numbers, quantities, ids):
        # their values are looked up with every digit as 0
        self.digits = [_digit_blind(c, self.composite[i]) for i, c in enumerate(self.children)]
        self.tails: dict[int, bool] = {}
        self.patterns: dict[tuple[bool, ...], bool] = {}
        # per component separator (one table cleared when it changes would race between
        # threads reading interchanges with different separators)
        self.per: dict[str, _Tables] = {}

    def tables(self, component: str) -> _Tables:
        """The verdicts found with this component separator (a composite splits on it)."""
        tables = self.per.get(component)
        if tables is None:
            blind_ok = not self.contextual and not component.isdigit() and any(self.digits)
            tables = self.per[component] = _Tables(len(self.children), blind_ok)
        return tables

    def clean(self, elements: list[str], seps: Separators) -> bool:
        """True when pyx12's is_valid_errors would find nothing (never a false True)."""
        tables = self.tables(seps.component)
        key = tuple(elements)
        verdict = tables.whole.get(key)
        if verdict is None:
            if len(tables.whole) >= LIMIT:
                tables.whole.clear()
            if self.contextual:
                verdict = self._whole(elements, seps)
            elif tables.blind_ok and len(elements) <= len(self.children):
                # the same segment but for digits where they do not matter: one look-up too
                blind = tuple([e.translate(_ZEROS) if d else e for e, d in zip(elements, self.digits, strict=False)])
                verdict = tables.blind.get(blind)
                if verdict is None:
                    if len(tables.blind) >= LIMIT:
                        tables.blind.clear()
                    verdict = tables.blind[blind] = self._clean(elements, seps.component, tables)
            else:
                verdict = self._clean(elements, seps.component, tables)
            tables.whole[key] = verdict
        return verdict

    def _whole(self, elements: list[str], seps: Separators) -> bool:
        import pyx12.segment

        text = seps.element.join([self.node.id, *elements])
        try:
            return not self.node.is_valid_errors(pyx12.segment.Segment(text, seps.segment, seps.element, seps.component, seps.repetition or "\x1d"))[1]
        except Exception:  # pyx12 trips on some malformed values: the caller's check reports it
            return False

    def _clean(self, elements: list[str], component: str, tables: _Tables) -> bool:
        n = len(elements)
        if n > len(self.children):
            return False
        values, digits = tables.values, self.digits
        for i in range(n):
            raw = elements[i]
            key = raw.translate(_ZEROS) if digits[i] else raw
            verdict = values[i].get(key)
            if verdict is None:
                verdict = self._check(i, raw, component)
                if tables.size >= LIMIT:
                    for table in values:
                        table.clear()
                    tables.size = 0
                values[i][key] = verdict
                tables.size += 1
            if not verdict:
                return False
        tail = self.tails.get(n)
        if tail is None:
            tail = self.tails[n] = all(not c.is_valid_errors(None)[1] for c in self.children[n:])
        if not tail:
            return False
        if not self.node.syntax:
            return True
        pattern = tuple(bool(raw.replace(component, "")) for raw in elements) if component else tuple(bool(raw) for raw in elements)
        verdict = self.patterns.get(pattern)
        if verdict is None:
            verdict = self.patterns[pattern] = self._syntax(elements, component)
        return verdict

    def _check(self, i: int, raw: str, component: str) -> bool:
        import pyx12.segment

        child = self.children[i]
        try:
            data = pyx12.segment.Composite(raw, component)
            if self.composite[i] and len(data) > child.get_child_count() and child.usage != "N":
                return False
            return not child.is_valid_errors(data)[1]
        except Exception:  # pyx12 trips on some malformed values: let the whole-segment check report it
            return False

    def _syntax(self, elements: list[str], component: str) -> bool:
        import pyx12.segment
        from pyx12.syntax import is_syntax_valid

        # the pattern stands for the values: a segment with these elements present
        text = "*".join(["XX", *["X" if raw.replace(component, "") else "" for raw in elements]])
        seg = pyx12.segment.Segment(text, "~", "*", ":")
        return all(is_syntax_valid(seg, syn)[0] for syn in self.node.syntax)
