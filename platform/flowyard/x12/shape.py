"""The data shape of one transaction set, and back (shared by x12.parse and x12.generate).

The shape is made for JMESPath mapping and is stable for a given guide:

- top-level keys are the set's header segments and loops by name, in guide order, plus
  `ST`, `SE`, `interchange` and `group`;
- a segment is an object of its elements by position: ``{"BEG01": "00", "BEG03": "PO1"}``
  (empty elements are left out);
- a segment the guide allows more than once is a list of such objects, one that may
  appear once is an object;
- a loop is named ``FIRSTSEGMENT_loop`` (``PO1_loop``, ``N1_loop``, ``HL_loop``) and is a
  list of objects holding its own segments and loops (an object when it may appear once);
- a composite element is a list of its components: ``"SLN05": ["PC", "", "", "LB"]``;
- an element the guide declares repeatable (005010 repetition separator) is a list of
  repetitions, each a list of components: ``"HI01": [["ABK", "J20"], ["ABF", "E11"]]``;
- without a guide (a set or version no guide covers) the set is read structurally: the
  body is ``"segments": [{"id": "N1", "N101": "ST"}, ...]`` in file order, every element
  by position, an element holding the component separator as a list of components, one
  holding the repetition separator as a list of repetitions (each a list of components);
  a set with HL segments also gets ``"HL_loop"``, the hierarchy as nested loops: each
  ``{"HL": {...}, "LIN": [{...}], ..., "HL_loop": [its children]}`` holds the segments
  from its HL to the next HL (by id, each a list, as no guide says which repeat), its
  children being the HLs whose HL02 names its HL01; an HL whose parent is not before it
  is a root. The hierarchy ends at CTT (transaction totals, the summary of every set that
  has one). `x12.generate` writes `segments` (file order) and ignores `HL_loop`.

So `BEG.BEG03`, `PO1_loop[].PO1.PO102`, `HL_loop[?HL.HL03=='I'].LIN.LIN03` work as they
read. Generation walks the same guide tree and ignores keys it does not know.
"""

from __future__ import annotations

from typing import Any

from .guides import ElementDef, Guide, LoopDef, SegmentDef
from .reader import Segment, Separators

_keys: dict[tuple[str, int], str] = {}


def element_key(seg_id: str, position: int) -> str:
    key = _keys.get((seg_id, position))
    if key is None:
        key = _keys[(seg_id, position)] = f"{seg_id}{position:02d}"
    return key


SIMPLE, COMPOSITE, REPEATED = 0, 1, 2


def _plan(definition: SegmentDef) -> list[tuple[str, int]]:
    """(key, kind) per element position, computed once per segment definition."""
    plan = definition.plan
    if plan is None:
        plan = []
        by_position = {e.position: e for e in definition.elements}
        for position in range(1, max(by_position, default=0) + 1):
            element = by_position.get(position)
            kind = SIMPLE if element is None else REPEATED if element.repeat > 1 else COMPOSITE if element.components is not None else SIMPLE
            plan.append((element_key(definition.id, position), kind))
        definition.plan = plan
        if all(kind == SIMPLE for _, kind in plan):
            definition.keys = tuple(key for key, _ in plan)
    return plan


def _object(seg: Segment, definition: SegmentDef) -> dict[str, Any]:
    """segment_object for the usual segment: simple elements, none beyond the guide's."""
    keys = definition.keys
    elements = seg.elements
    if keys is None or len(elements) > len(keys):
        if definition.plan is None:
            _plan(definition)
            return _object(seg, definition)
        return segment_object(seg, definition)
    out: dict[str, Any] = {}
    i = 0
    for raw in elements:  # a plain loop: a comprehension over zip() is slower for ten items
        if raw:
            out[keys[i]] = raw
        i += 1  # noqa: SIM113
    return out


def segment_object(seg: Segment, definition: SegmentDef | None) -> dict[str, Any]:
    """One segment as {ID01: value, ...} following the rules in the module docstring."""
    out: dict[str, Any] = {}
    comp = seg.separators.component
    plan = (definition.plan or _plan(definition)) if definition is not None else ()
    n_plan = len(plan)
    for i, raw in enumerate(seg.elements):
        if not raw:
            continue
        if i < n_plan:
            key, kind = plan[i]
            if kind == SIMPLE:
                out[key] = raw
            elif kind == COMPOSITE:
                out[key] = raw.split(comp)
            else:
                rep = seg.separators.repetition
                out[key] = [p.split(comp) for p in (raw.split(rep) if rep else [raw])]
        else:
            rep = seg.separators.repetition
            if rep is not None and rep in raw:
                out[element_key(seg.id, i + 1)] = [p.split(comp) for p in raw.split(rep)]
            else:
                out[element_key(seg.id, i + 1)] = raw.split(comp) if comp in raw else raw
    return out


def _place(segments: list[Segment], first: int, last: int, guide: Guide, data: dict[str, Any]) -> None:
    """Place segments[first:last] into the guide's loops (no validation here: an
    unexpected segment is kept in the innermost object, where it was met; pyx12 reports it).

    The stack holds a frame per open loop: [loop definition, the object being filled,
    index of the last child used]. A segment goes to the innermost loop that has it
    after the last child used (or at it, when it repeats), closing the loops inside."""
    stack: list[list[Any]] = [[guide.body, data, -1]]
    for k in range(first, last):
        seg = segments[k]
        seg_id = seg.id
        placed = False
        depth = len(stack) - 1
        while depth >= 0:
            frame = stack[depth]
            loop: LoopDef = frame[0]
            indexes = loop.index.get(seg_id)
            if indexes:
                current = frame[2]
                for ix in indexes:
                    child = loop.children[ix]
                    if ix > current or (ix == current and child.max_use != 1):
                        if depth + 1 < len(stack):
                            del stack[depth + 1 :]
                        frame[2] = ix
                        if type(child) is SegmentDef:
                            _put(frame[1], seg_id, _object(seg, child), child.max_use != 1)
                        else:
                            _open(stack, child, frame[1], seg)  # type: ignore[arg-type]
                        placed = True
                        break
                if placed:
                    break
            depth -= 1
        if not placed:
            _put(stack[-1][1], seg_id, segment_object(seg, None), True)


def _open(stack: list[list[Any]], loop: LoopDef, parent: dict[str, Any], seg: Segment) -> None:
    first = loop.children[0]
    if isinstance(first, SegmentDef) and first.max_use == 1:  # the usual loop: open it with its trigger
        instance = {seg.id: _object(seg, first)}
        if loop.max_use != 1:
            existing = parent.get(loop.name)
            if existing is None:
                parent[loop.name] = [instance]
            elif isinstance(existing, list):
                existing.append(instance)
            else:
                parent[loop.name] = [existing, instance]
        else:
            _put(parent, loop.name, instance, False)
        stack.append([loop, instance, 0])
        return
    instance = {}
    _put(parent, loop.name, instance, loop.max_use != 1)
    frame: list[Any] = [loop, instance, -1]
    stack.append(frame)
    while isinstance(first, LoopDef):  # a loop whose first child is a loop
        frame[2] = 0
        inner: dict[str, Any] = {}
        _put(frame[1], first.name, inner, first.max_use != 1)
        frame = [first, inner, -1]
        stack.append(frame)
        first = first.children[0]
    frame[2] = 0
    _put(frame[1], seg.id, _object(seg, first), first.max_use != 1)


def _put(target: dict[str, Any], key: str, value: Any, many: bool) -> None:
    if many:
        existing = target.get(key)
        if existing is None:
            target[key] = [value]
        elif isinstance(existing, list):
            existing.append(value)
        else:
            target[key] = [existing, value]
    elif key in target:
        # a second occurrence of a once-only segment: keep both, validation reports it
        existing = target[key]
        target[key] = [*existing, value] if isinstance(existing, list) else [existing, value]
    else:
        target[key] = value


def build(segments: list[Segment], guide: Guide | None) -> dict[str, Any]:
    """The shape of one set from its segments ST..SE."""
    data: dict[str, Any] = {"ST": segment_object(segments[0], None)}
    last = len(segments) - 1 if segments[-1].id == "SE" else len(segments)
    if guide is None:
        body = data["segments"] = [{"id": s.id, **segment_object(s, None)} for s in segments[1:last]]
        hierarchy = hl_loops(body)
        if hierarchy:
            data["HL_loop"] = hierarchy
    else:
        _place(segments, 1, last, guide, data)
    if segments[-1].id == "SE":
        data["SE"] = segment_object(segments[-1], None)
    return data


HL_AREA_END = frozenset({"CTT"})  # the summary after the hierarchy in the sets that have HL loops


def hl_loops(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The HL hierarchy of a structurally read set as nested loops (see the module
    docstring); [] when it has no HL segment. The segment objects are those of `body`."""
    roots: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for obj in body:
        seg_id = obj["id"]
        if seg_id == "HL":
            loop: dict[str, Any] = {"HL": obj}
            parent_id = obj.get("HL02")
            parent = by_id.get(parent_id) if isinstance(parent_id, str) else None
            if parent is None:
                roots.append(loop)
            else:
                parent.setdefault("HL_loop", []).append(loop)
            own_id = obj.get("HL01")
            if isinstance(own_id, str):
                by_id[own_id] = loop
            current = loop
        elif current is not None:
            if seg_id in HL_AREA_END:
                current = None
            else:
                current.setdefault(seg_id, []).append(obj)
    return roots


# -- back to segments -----------------------------------------------------------------


class UnwritableValue(ValueError):
    """A value that X12 cannot carry as it is; `key` names the element."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class SeparatorInData(UnwritableValue):
    """A value holds a delimiter character: X12 before 7040 has no escape for it."""

    def __init__(self, key: str, value: str, char: str, role: str) -> None:
        super().__init__(key, f"{key} value {value!r} contains {char!r}, the {role} separator; X12 before version 007040 has no escape character, so the value cannot be written")


class ControlCharacterInData(UnwritableValue):
    """A carriage return, line feed or other control character in a value: outside
    X12's character sets, and a partner reading line by line would split the segment."""

    def __init__(self, key: str, value: str) -> None:
        char = next(c for c in value if _is_control(c))
        super().__init__(key, f"{key} value {value[:60]!r} contains the control character {char!r}; X12 values cannot hold line breaks or other control characters")


def _value_text(key: str, value: Any, seps: Separators, roles: dict[str, str]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "Y" if value else "N"
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            if not seps.repetition and len(value) > 1:
                raise ValueError(f"{key} has {len(value)} repetitions but the interchange has no repetition separator (ISA11; version 00402 or later)")
            sep = seps.repetition or ""
            return sep.join(_components(key, v, seps, roles) for v in value)
        return _components(key, value, seps, roles)
    text = str(value)
    _check(key, text, roles)
    return text


def _components(key: str, parts: list[Any], seps: Separators, roles: dict[str, str]) -> str:
    texts = ["" if p is None else str(p) for p in parts]
    for t in texts:
        _check(key, t, roles)
    while texts and texts[-1] == "":
        texts.pop()
    return seps.component.join(texts)


def _check(key: str, text: str, roles: dict[str, str]) -> None:
    for char, role in roles.items():
        if char in text:
            raise SeparatorInData(key, text, char, role)
    if key not in BINARY_ELEMENTS and any(_is_control(c) for c in text):
        raise ControlCharacterInData(key, text)


BINARY_ELEMENTS = {"BIN02", "BDS03"}  # binary data, any byte, its length given beside it


def _is_control(char: str) -> bool:
    return char < " " or char == "\x7f"


def roles_of(seps: Separators) -> dict[str, str]:
    roles = {seps.element: "element", seps.component: "component", seps.segment: "segment"}
    if seps.repetition:
        roles[seps.repetition] = "repetition"
    return roles


def segment_text(seg_id: str, obj: dict[str, Any], seps: Separators, roles: dict[str, str]) -> str:
    """One segment object written as X12 (without terminator; no trailing separators)."""
    positions: dict[int, str] = {}
    prefix = len(seg_id)
    for key, value in obj.items():
        if key.startswith(seg_id) and key[prefix:].isdigit() and len(key) == prefix + 2:
            positions[int(key[prefix:])] = _value_text(key, value, seps, roles)
    if not positions:
        return seg_id
    last = max(positions)
    while last > 0 and not positions.get(last):
        last -= 1
    values = [positions.get(i, "") for i in range(1, last + 1)]
    return seps.element.join([seg_id, *values])


def body_segments(data: dict[str, Any], guide: Guide | None) -> list[tuple[str, dict[str, Any]]]:
    """The segments between ST and SE, in guide order, as (id, object) pairs."""
    out: list[tuple[str, dict[str, Any]]] = []
    if guide is None or ("segments" in data and isinstance(data["segments"], list)):
        for item in data.get("segments") or []:
            if isinstance(item, dict) and item.get("id"):
                out.append((str(item["id"]), item))
        return out
    _walk(guide.body, data, out)
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _walk(loop: LoopDef, obj: dict[str, Any], out: list[tuple[str, dict[str, Any]]]) -> None:
    for child in loop.children:
        if isinstance(child, SegmentDef):
            for item in _as_list(obj.get(child.id)):
                if isinstance(item, dict):
                    out.append((child.id, item))
        else:
            for instance in _as_list(obj.get(child.name)):
                if isinstance(instance, dict):
                    _walk(child, instance, out)


__all__ = ["ElementDef", "SeparatorInData", "body_segments", "build", "hl_loops", "segment_object", "segment_text"]
