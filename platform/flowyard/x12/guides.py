"""Implementation guides in a compact YAML form, compiled to pyx12 maps.

pyx12 ships maps for HIPAA sets only. Supply-chain guides (850, 855, 856, 810, 830,
862, 940, 945, 997, 999) are written here as short YAML files an analyst can review and
copy for one partner; they compile to pyx12's map XML so pyx12's walker and segment
validation do the checking. The same compiled tree drives the data shape of `x12.parse`
and the segment order of `x12.generate`.

A guide file::

    apiVersion: flowyard/v1
    kind: Guide
    metadata: {name: 856-4010-supplierx}
    extends: 856-4010                 # inherit everything, then tighten
    transaction: "856"                # ST01
    version: "004010"                 # GS08 (first six characters)
    functional_group: SH              # GS01
    elements:                         # data element dictionary: TYPE MIN/MAX name
      "396": AN 2/30 Shipment Identification
    composites:                       # composite data elements: their components
      C001: 355 M, 1018, 649
    segments:                         # element list in order: NUMBER [M|O|N] [*REPEAT]
      BSN: 353 M, 396 M, 373 M, 337 M, 1005
      # or {elements: "...", codes: {BSN01: ["00", "05"]}, syntax: [P0304]}
    structure:                        # order of segments and loops in the set
      - BSN M                         # ID [M|O|N] [MAX] (MAX a number or >1; default 1)
      - DTM 10
      - HL_loop M 200000:             # a loop: NAME_loop [M] [MAX]; first child triggers it
          - HL M
          - LIN
    changes:                          # tighten what `extends` gave (partner guides)
      TD3: unused                     # a segment or loop (by id; A_loop/B for a nested one)
      HL_loop: {max: 500}
      BSN01: {codes: ["00"]}          # an element: restrict codes, usage M/O/N
      MAN: {usage: M, max: 1}

Usage: M mandatory (pyx12 R), O optional (S), N not used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib.resources import files as resource_files
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, RootModel

from ..definitions.kinds import DefinitionKind
from ..errors import DefinitionError, Issue, IssueList, Position
from ..flow import API_VERSION, ApiVersion
from ..options import Options
from ..yamlio import YamlSyntaxError, load_text, locate, to_plain

SHIPPED = Path(__file__).resolve().parent / "guides"
ELEMENT_DEF_PATTERN = r"^(ID|AN|N\d?|R|DT|TM|B)\s+(\d+)/(\d+)\s*(.*)$"
_ELEMENT_DEF = re.compile(ELEMENT_DEF_PATTERN)
_ELEMENT_REF = re.compile(r"^([A-Z][A-Z0-9]{1,2})(\d{2})$")
_USAGE = {"M": "R", "O": "S", "X": "S", "N": "N"}


# -- the file's shape --------------------------------------------------------------
# Declared once: the keys `_merged` accepts and the JSON Schema an editor checks guide
# files with (`flowyard schema`) come from these models; the compiler below checks the
# rest (elements named, structure consistent) with positions.

Usage = Literal["M", "O", "X", "N"]


class GuideMetadata(Options):
    name: str | None = Field(None, description="the guide's name, as `guide:` and `extends:` give it (default: the file name)")
    description: str = Field("", description="what the guide is for, in one line")


class SegmentSpec(Options):
    elements: str | list[str] = Field(description="the elements in order: `NUMBER [M|O|N] [*REPEAT]`, comma-separated or a list")
    name: str = Field("", description="the segment's name")
    codes: dict[str, list[str | int]] = Field(default_factory=dict, description="element (BSN01, SLN05-01): the codes it allows")
    syntax: list[str] = Field(default_factory=list, description="X12 syntax notes such as P0304 (paired) or R0203 (one required)")


class ChangeSpec(Options):
    usage: Usage | None = Field(None, description="M mandatory, O optional, N not used")
    max: int | Literal[">1"] | None = Field(None, description="how often a segment or loop may repeat (>1: unbounded)")
    codes: list[str | int] | None = Field(None, description="an element's codes, narrowed from the base guide's")


StructureSegment = Annotated[str, Field(pattern=r"^\s*\S+(\s+([MOXNmoxn]|>1|\d+))*\s*$", description="`SEG [M|O|N] [MAX]`")]


class StructureLoop(RootModel[Annotated[dict[str, list["StructureSegment | StructureLoop"]], Field(min_length=1, max_length=1)]]):
    """`NAME_loop [M] [MAX]:` and its segments and loops; the first one triggers the loop."""


class GuideDefinition(Options):
    """`kind: Guide`: an X12 implementation guide in compact form (see flowyard.x12.guides)."""

    model_config = ConfigDict(title="Flowyard X12 guide")

    apiVersion: ApiVersion = Field(API_VERSION, description=f"always {API_VERSION}")
    kind: Literal["Guide"] = Field(description="an X12 implementation guide")
    metadata: GuideMetadata = Field(default_factory=GuideMetadata)
    extends: str | None = Field(None, description="a guide beside this one or shipped (856-4010) to inherit, then tighten with `changes`")
    transaction: str | None = Field(None, description='the transaction set, ST01 ("856")')
    version: str | None = Field(None, description='GS08, its first six characters ("004010")')
    functional_group: str | None = Field(None, description="GS01 (SH for an 856)")
    elements: dict[str, Annotated[str, Field(pattern=ELEMENT_DEF_PATTERN)]] = Field(
        default_factory=dict, description="data element dictionary: NUMBER: `TYPE MIN/MAX name` (TYPE: ID, AN, N0, N2, R, DT, TM, B)"
    )
    composites: dict[str, str | list[str]] = Field(default_factory=dict, description="composite data elements: their components, `NUMBER [M]` each")
    segments: dict[str, str | SegmentSpec] = Field(default_factory=dict, description="segment id: its elements in order, or {elements, name, codes, syntax}")
    structure: list[StructureSegment | StructureLoop] = Field(default_factory=list, description="the order of segments and loops in the set")
    changes: dict[str, Literal["unused"] | ChangeSpec] = Field(
        default_factory=dict, description="tighten what `extends` gave: a segment, loop (A_loop/B when nested) or element (BSN01): `unused` or {usage, max, codes}"
    )


@dataclass
class ElementDef:
    key: str  # BEG03 (composites: SLN05; components: SLN05-01)
    position: int
    number: str
    type: str
    min: int
    max: int
    usage: str  # pyx12 usage: R, S, N
    name: str = ""
    codes: tuple[str, ...] = ()
    components: list[ElementDef] | None = None
    repeat: int = 1


@dataclass
class SegmentDef:
    id: str
    usage: str
    max_use: int  # 0: unbounded
    elements: list[ElementDef]
    syntax: list[str] = field(default_factory=list)
    name: str = ""
    plan: list[tuple[str, int]] | None = None  # the data shape's (key, kind) per position, see shape.py
    keys: tuple[str, ...] | None = None  # the plan's keys when every element is simple (shape.py's fast path)


@dataclass
class LoopDef:
    name: str
    usage: str
    max_use: int
    children: list[SegmentDef | LoopDef] = field(default_factory=list)
    index: dict[str, list[int]] = field(default_factory=dict)  # segment id -> child indexes

    @property
    def trigger(self) -> str:
        first = self.children[0]
        return first.id if isinstance(first, SegmentDef) else first.trigger

    def build_index(self) -> None:
        self.index = {}
        for i, child in enumerate(self.children):
            key = child.id if isinstance(child, SegmentDef) else child.trigger
            self.index.setdefault(key, []).append(i)
            if isinstance(child, LoopDef):
                child.build_index()


@dataclass
class Guide:
    name: str
    transaction: str
    version: str
    functional_group: str
    body: LoopDef
    elements: dict[str, tuple[str, int, int, str]]
    source: str
    _map: Any = None

    def pyx12_map(self) -> Any:
        """The pyx12 map (map_if) compiled from this guide, built once per guide."""
        if self._map is None:
            self._map = _load_pyx12_map(self)
        return self._map

    def segments(self) -> dict[str, SegmentDef]:
        cached: dict[str, SegmentDef] | None = getattr(self, "_segments", None)
        if cached is not None:
            return cached
        found: dict[str, SegmentDef] = {}

        def walk(loop: LoopDef) -> None:
            for child in loop.children:
                if isinstance(child, SegmentDef):
                    found.setdefault(child.id, child)
                else:
                    walk(child)

        walk(self.body)
        self._segments = found
        return found


class GuideError(DefinitionError):
    """A guide file is invalid (every problem, FILE:LINE:COL)."""


# -- loading -----------------------------------------------------------------------


def guide_path(name: str, search: list[Path] | tuple[Path, ...] = ()) -> Path | None:
    """A guide by name: the given folders first (flows/guides/), then the shipped ones."""
    for folder in [*search, SHIPPED]:
        candidate: Path = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


_cache: dict[tuple[str, float], Guide] = {}
_cache_lock = threading.Lock()


def load_guide(path: Path) -> Guide:
    """Load and compile a guide file (cached per file and modification time)."""
    key = (str(path.resolve()), path.stat().st_mtime)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    raw = _merged(path, [])
    guide = _compile(raw, str(path))
    with _cache_lock:
        _cache[key] = guide
    return guide


def find_guide(name: str, search: list[Path] | tuple[Path, ...] = ()) -> Guide:
    path = guide_path(name, search)
    if path is None:
        shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
        raise GuideError([Issue(Position(name), f"no guide named {name!r}: expected guides/{name}.yaml beside the flow or above it; shipped guides: {shipped}")])
    return load_guide(path)


def guide_name_for(transaction: str, version: str) -> str | None:
    """The base guide for a set: 004xxx versions use the 4010 guide, 005xxx the 5010."""
    if version.startswith("004"):
        return f"{transaction}-4010"
    if version.startswith("005"):
        return f"{transaction}-5010"
    return None


def default_guide(transaction: str, version: str, search: list[Path] | tuple[Path, ...] = ()) -> Guide | None:
    name = guide_name_for(transaction, version)
    if name is None:
        return None
    path = guide_path(name, search)
    return load_guide(path) if path is not None else None


def _read(path: Path) -> tuple[Any, str]:
    text = path.read_text(encoding="utf-8")
    try:
        return load_text(text, str(path)), text
    except YamlSyntaxError as exc:
        raise GuideError([exc.issue]) from exc


def _merged(path: Path, chain: list[str]) -> dict[str, Any]:
    """The guide document with everything it extends merged in (child wins)."""
    if str(path) in chain:
        raise GuideError([Issue(Position(str(path), 1, 1), "guide extends itself through " + " -> ".join(chain))])
    document, _ = _read(path)
    issues = IssueList(str(path))
    if not isinstance(document, dict) or document.get("kind") != "Guide":
        raise GuideError([Issue(Position(str(path), 1, 1), "a guide file needs `kind: Guide`")])
    allowed = set(GuideDefinition.model_fields)
    for key in document:
        if key not in allowed:
            line, col = locate(document, [key], at_key=True)
            issues.add(f"unknown key {key!r} in a guide; expected one of: {', '.join(sorted(allowed))}", line, col)
    if issues.errors:
        raise GuideError(issues.errors)
    plain: dict[str, Any] = to_plain(document)
    plain["_doc"], plain["_file"] = document, str(path)
    parent_name = plain.get("extends")
    if not parent_name:
        plain.setdefault("_changes", [])
        if plain.get("changes"):
            plain["_changes"].append((plain["changes"], document, str(path)))
        return plain
    parent_path = guide_path(str(parent_name), [path.parent])
    if parent_path is None or parent_path.resolve() == path.resolve():
        line, col = locate(document, ["extends"])
        raise GuideError([Issue(Position(str(path), line, col), f"extends {parent_name!r}, which is not a guide beside this file or shipped with Flowyard")])
    base = _merged(parent_path, [*chain, str(path)])
    merged = dict(base)
    for key in ("transaction", "version", "functional_group", "structure", "metadata"):
        if key in plain:
            merged[key] = plain[key]
    for key in ("elements", "composites", "segments"):
        merged[key] = {**base.get(key, {}), **plain.get(key, {})}
    merged["_changes"] = list(base.get("_changes", []))
    if plain.get("changes"):
        merged["_changes"].append((plain["changes"], document, str(path)))
    merged["_doc"], merged["_file"] = document, str(path)
    return merged


# -- compiling ---------------------------------------------------------------------


def _split_items(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    return [item.strip() for item in str(value).split(",") if item.strip()]


class _Compiler:
    def __init__(self, raw: dict[str, Any], file: str) -> None:
        self.raw = raw
        self.file = file
        self.doc = raw.get("_doc")
        self.issues = IssueList(file)
        self.elements: dict[str, tuple[str, int, int, str]] = {}
        for number, spec in (raw.get("elements") or {}).items():
            match = _ELEMENT_DEF.match(str(spec).strip())
            if not match:
                self.error(f"element {number}: {spec!r} is not `TYPE MIN/MAX name` (TYPE: ID, AN, N0, N2, R, DT, TM)", ["elements", number])
                continue
            kind, low, high, name = match.groups()
            self.elements[str(number)] = ("N0" if kind == "N" else kind, int(low), int(high), name.strip())
        self.composites: dict[str, list[str]] = {str(k): _split_items(v) for k, v in (raw.get("composites") or {}).items()}
        self.segment_specs: dict[str, Any] = raw.get("segments") or {}
        self.built: dict[str, SegmentDef] = {}

    def error(self, message: str, path: list[Any]) -> None:
        line, col = locate(self.doc, path) if self.doc is not None else (None, None)
        self.issues.add(message, line, col)

    def element(self, seg: str, position: int, spec: str, path: list[Any], codes: dict[str, list[str]]) -> ElementDef | None:
        parts = spec.split()
        if not parts:
            self.error(f"{seg}: empty element at position {position}", path)
            return None
        number, usage, repeat = parts[0], "S", 1
        for flag in parts[1:]:
            if flag.upper() in _USAGE:
                usage = _USAGE[flag.upper()]
            elif flag.startswith("*") and (flag[1:].isdigit() or flag[1:] == ">1"):
                repeat = 99999 if flag[1:] == ">1" else int(flag[1:])
            else:
                self.error(f"{seg}{position:02d}: {flag!r} is not M, O, N or *REPEAT", path)
        key = f"{seg}{position:02d}"
        if number in self.composites:
            components: list[ElementDef] = []
            for j, sub in enumerate(self.composites[number], start=1):
                sub_parts = sub.split()
                if not sub_parts or sub_parts[0] not in self.elements:
                    self.error(f"composite {number}: component {j} {sub!r} names no element in `elements`", ["composites", number])
                    continue
                sub_usage = _USAGE.get(sub_parts[1].upper(), "S") if len(sub_parts) > 1 else "S"
                kind, low, high, name = self.elements[sub_parts[0]]
                components.append(ElementDef(f"{key}-{j:02d}", j, sub_parts[0], kind, low, high, sub_usage, name,
                                             tuple(codes.get(f"{key}-{j:02d}", ()))))
            return ElementDef(key, position, number, "composite", 0, 0, usage, number, (), components, repeat)
        if number not in self.elements:
            self.error(f"{key}: element {number!r} is not in `elements` nor `composites`", path)
            return None
        kind, low, high, name = self.elements[number]
        return ElementDef(key, position, number, kind, low, high, usage, name, tuple(str(c) for c in codes.get(key, ())), None, repeat)

    def segment(self, seg: str, usage: str, max_use: int, path: list[Any]) -> SegmentDef:
        spec = self.segment_specs.get(seg)
        if spec is None:
            self.error(f"segment {seg} is used in `structure` but not defined under `segments`", path)
            return SegmentDef(seg, usage, max_use, [])
        codes: dict[str, list[str]] = {}
        syntax: list[str] = []
        name = ""
        if isinstance(spec, dict):
            codes = {str(k): [str(c) for c in v] for k, v in (spec.get("codes") or {}).items()}
            syntax = [str(s) for s in spec.get("syntax") or []]
            name = str(spec.get("name") or "")
            items = _split_items(spec.get("elements", ""))
        else:
            items = _split_items(spec)
        elements = [e for i, item in enumerate(items, start=1) if (e := self.element(seg, i, item, ["segments", seg], codes)) is not None]
        return SegmentDef(seg, usage, max_use, elements, syntax, name)

    def node_spec(self, text: str, path: list[Any]) -> tuple[str, str, int]:
        parts = str(text).split()
        node_id, usage, max_use = parts[0], "S", 1 if not parts[0].endswith("_loop") else 0
        for flag in parts[1:]:
            if flag.upper() in _USAGE:
                usage = _USAGE[flag.upper()]
            elif flag == ">1":
                max_use = 0
            elif flag.isdigit():
                max_use = int(flag)
            else:
                self.error(f"{node_id}: {flag!r} is not M, O, N, a number or >1", path)
        return node_id, usage, max_use

    def loop(self, name: str, usage: str, max_use: int, items: Any, path: list[Any]) -> LoopDef:
        loop = LoopDef(name, usage, max_use)
        if not isinstance(items, list) or not items:
            self.error(f"{name}: a loop lists its segments and loops, the first one triggers it", path)
            return loop
        for i, item in enumerate(items):
            here = [*path, i]
            if isinstance(item, dict) and len(item) == 1:
                (key, children), = item.items()
                node_id, node_usage, node_max = self.node_spec(str(key), here)
                if not node_id.endswith("_loop"):
                    self.error(f"{node_id}: a nested list needs a loop name ending in _loop", here)
                loop.children.append(self.loop(node_id, node_usage, node_max, children, [*here, key]))
            elif isinstance(item, str):
                node_id, node_usage, node_max = self.node_spec(item, here)
                loop.children.append(self.segment(node_id, node_usage, node_max, here))
            else:
                self.error("a structure item is `SEG [M] [MAX]` or `{NAME_loop [M] [MAX]: [...]}`", here)
        if loop.children and isinstance(loop.children[0], SegmentDef) and name != "body":
            loop.children[0].usage = "R"
        return loop


def _find_nodes(loop: LoopDef, target: str) -> list[SegmentDef | LoopDef]:
    """Nodes named by a `changes` key: ID, NAME_loop, or A_loop/B for a nested one."""
    head, _, rest = target.partition("/")
    found: list[SegmentDef | LoopDef] = []
    for child in loop.children:
        name = child.id if isinstance(child, SegmentDef) else child.name
        if name == head:
            if not rest:
                found.append(child)
            elif isinstance(child, LoopDef):
                found.extend(_find_nodes(child, rest))
        elif isinstance(child, LoopDef) and not rest:
            found.extend(_find_nodes(child, target))
    return found


def _apply_changes(compiler: _Compiler, body: LoopDef) -> None:
    for changes, document, file in compiler.raw.get("_changes", []):
        issues = IssueList(file)
        for target, change in changes.items():
            line, col = locate(document, ["changes", target], at_key=True)
            spec: dict[str, Any] = {"usage": "N"} if change == "unused" else change if isinstance(change, dict) else {}
            if not spec:
                issues.add(f"change for {target}: write `unused` or {{usage: M|O|N, max: N, codes: [...]}}", line, col)
                continue
            element_match = _ELEMENT_REF.match(str(target))
            nodes = _find_nodes(body, str(target))
            if not nodes and element_match:
                seg_id, pos = element_match.group(1), int(element_match.group(2))
                elements = [e for n in _find_nodes(body, seg_id) if isinstance(n, SegmentDef) for e in n.elements if e.position == pos]
                if not elements:
                    issues.add(f"change for {target}: no element {target} in this guide", line, col)
                for element in elements:
                    if "usage" in spec:
                        element.usage = _USAGE.get(str(spec["usage"]).upper(), element.usage)
                    if "codes" in spec:
                        narrowed = tuple(str(c) for c in spec["codes"])
                        extra = set(narrowed) - set(element.codes) if element.codes else set()
                        if extra:
                            issues.add(f"change for {target}: codes {sorted(extra)} are not allowed by the base guide", line, col)
                        element.codes = narrowed
                continue
            if not nodes:
                issues.add(f"change for {target}: no segment or loop {target} in this guide", line, col)
                continue
            for node in nodes:
                if "usage" in spec:
                    node.usage = _USAGE.get(str(spec["usage"]).upper(), node.usage)
                if "max" in spec:
                    node.max_use = 0 if str(spec["max"]) == ">1" else int(spec["max"])
        compiler.issues.issues.extend(issues.issues)


def _compile(raw: dict[str, Any], file: str) -> Guide:
    compiler = _Compiler(raw, file)
    name = str((raw.get("metadata") or {}).get("name") or Path(file).stem)
    for key in ("transaction", "version", "structure"):
        if not raw.get(key):
            compiler.error(f"a guide needs `{key}:` (itself or from the guide it extends)", [])
    body = compiler.loop("body", "R", 1, raw.get("structure") or [], ["structure"])
    _apply_changes(compiler, body)
    if compiler.issues.errors:
        raise GuideError(compiler.issues.errors)
    body.build_index()
    return Guide(name, str(raw.get("transaction")), str(raw.get("version")), str(raw.get("functional_group") or ""),
                 body, compiler.elements, file)


def check_guide(path: Path, _text: str) -> list[Issue]:
    """`flowyard validate` for kind: Guide. A base file without `structure` (an element
    dictionary other guides extend) is checked for its element definitions only."""
    try:
        raw = _merged(path, [])
        if not raw.get("structure") and not raw.get("transaction"):
            compiler = _Compiler(raw, str(path))
            return compiler.issues.errors
        guide = _compile(raw, str(path))
        guide.pyx12_map()
    except DefinitionError as exc:
        return exc.issues
    except Exception as exc:  # pyx12 refusing the compiled map
        return [Issue(Position(str(path), 1, 1), f"the guide does not compile to a pyx12 map: {exc}")]
    return []


class GuideKind(DefinitionKind):
    """`kind: Guide`: an implementation guide in the compact YAML form."""

    kind = "Guide"
    model = GuideDefinition
    order = 4

    @classmethod
    def load(cls, path: Path, text: str) -> Guide:
        return load_guide(path)

    @classmethod
    def check(cls, path: Path, text: str) -> list[Issue]:
        return check_guide(path, text)


# -- pyx12 map XML -----------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def _repeat(max_use: int) -> str:
    return ">1" if max_use == 0 else str(max_use)


def _element_xml(parent: ET.Element, element: ElementDef) -> None:
    if element.components is not None:
        node = ET.SubElement(parent, "composite", xid=element.key)
        _sub(node, "data_ele", element.number)
        _sub(node, "name", element.name or element.number)
        _sub(node, "usage", element.usage)
        _sub(node, "seq", f"{element.position:02d}")
        if element.repeat > 1:
            _sub(node, "repeat", str(element.repeat))
        for component in element.components:
            _element_xml(node, component)
        return
    node = ET.SubElement(parent, "element", xid=element.key)
    _sub(node, "data_ele", element.number)
    _sub(node, "name", element.name or element.number)
    _sub(node, "usage", element.usage)
    _sub(node, "seq", f"{element.position:02d}")
    if element.repeat > 1:
        _sub(node, "repeat", str(element.repeat))
    if element.codes and not (element.position == 1 and element.key[-3:-2] != "-"):
        # pyx12 matches a segment by its first element's codes: a partner's narrower
        # list there would make a wrong value an "unrecognized segment" and derail the
        # walk, so those codes are checked by flowyard.x12.validate instead.
        codes = ET.SubElement(node, "valid_codes")
        for code in element.codes:
            _sub(codes, "code", code)


def _segment_xml(parent: ET.Element, seg: SegmentDef, pos: int) -> None:
    node = ET.SubElement(parent, "segment", xid=seg.id)
    _sub(node, "name", seg.name or seg.id)
    _sub(node, "usage", seg.usage)
    _sub(node, "pos", f"{pos:04d}")
    _sub(node, "max_use", _repeat(seg.max_use))
    for rule in seg.syntax:
        _sub(node, "syntax", rule)
    for element in seg.elements:
        _element_xml(node, element)


def _loop_xml(parent: ET.Element, loop: LoopDef, pos: int, kind: str = "explicit") -> None:
    node = ET.SubElement(parent, "loop", xid=loop.name, type=kind)
    _sub(node, "name", loop.name)
    _sub(node, "usage", loop.usage)
    _sub(node, "pos", f"{pos:04d}")
    _sub(node, "repeat", _repeat(loop.max_use))
    for i, child in enumerate(loop.children, start=1):
        if isinstance(child, SegmentDef):
            _segment_xml(node, child, i * 10)
        else:
            _loop_xml(node, child, i * 10)


def _plain_segment(seg_id: str, items: list[tuple[str, str, str]], pos: int) -> SegmentDef:
    elements = [ElementDef(f"{seg_id}{i:02d}", i, number, "", 0, 0, usage, "", tuple(codes.split()) if codes else ())
                for i, (number, usage, codes) in enumerate(items, start=1)]
    return SegmentDef(seg_id, "R", 1, elements)


def map_xml(guide: Guide) -> str:
    """The guide as a pyx12 map document (the ISA/GS envelope from pyx12's control map)."""
    control = "x12.control.00501.xml" if guide.version.startswith("005") else "x12.control.00401.xml"
    with resource_files("pyx12").joinpath("map", control).open("rb") as handle:
        root = ET.parse(handle).getroot()
    root.set("xid", guide.transaction)
    gs_loop = root.find("./loop[@xid='ISA_LOOP']/loop[@xid='GS_LOOP']")
    assert gs_loop is not None
    ge = gs_loop.find("./segment[@xid='GE']")
    index = list(gs_loop).index(ge) if ge is not None else len(gs_loop)
    st_loop = ET.Element("loop", xid="ST_LOOP", type="explicit")
    _sub(st_loop, "name", f"Transaction Set {guide.transaction}")
    _sub(st_loop, "usage", "R")
    _sub(st_loop, "pos", "0020")
    _sub(st_loop, "repeat", ">1")
    st_items = [("143", "R", guide.transaction), ("329", "R", "")]
    if guide.version.startswith("005"):
        st_items.append(("1705", "S", ""))
    _segment_xml(st_loop, _plain_segment("ST", st_items, 10), 10)
    header = LoopDef("HEADER", "R", 1, guide.body.children)
    _loop_xml(st_loop, header, 20, "wrapper")
    _segment_xml(st_loop, _plain_segment("SE", [("96", "R", ""), ("329", "R", "")], 30), 30)
    gs_loop.insert(index, st_loop)
    return ET.tostring(root, encoding="unicode")


def _dataele_xml(guide: Guide) -> str:
    with resource_files("pyx12").joinpath("map", "dataele.xml").open("rb") as handle:
        root = ET.parse(handle).getroot()
    known = {e.get("ele_num"): e for e in root.iter("data_ele")}
    for number, (kind, low, high, name) in guide.elements.items():
        node = known.get(number)
        if node is None:
            node = ET.SubElement(root, "data_ele", ele_num=number)
        node.set("data_type", kind)
        node.set("min_len", str(low))
        node.set("max_len", str(high))
        node.set("name", name or number)
    return ET.tostring(root, encoding="unicode")


_map_root = Path(tempfile.gettempdir()) / f"flowyard-x12-maps-{os.getuid() if hasattr(os, 'getuid') else 0}"


def compile_to_directory(guide: Guide, directory: Path | None = None) -> Path:
    """Write the pyx12 map, its data element dictionary and code lists to a folder
    (one per guide content, so a changed guide gets a new folder)."""
    xml = map_xml(guide)
    dataele = _dataele_xml(guide)
    digest = hashlib.sha256((xml + dataele).encode()).hexdigest()[:16]
    target = directory or (_map_root / f"{guide.name}-{digest}")
    map_file = target / f"{guide.name}.xml"
    if not map_file.is_file():
        target.mkdir(parents=True, exist_ok=True)
        with resource_files("pyx12").joinpath("map", "codes.xml").open("rb") as handle:
            codes = handle.read()
        # the map last: its presence says the folder is complete
        for name, content in (("dataele.xml", dataele.encode()), ("codes.xml", codes),
                              (map_file.name, xml.encode())):
            _replace_file(target / name, content)
    return map_file


def _replace_file(path: Path, content: bytes) -> None:
    """Write through a temporary file of its own, then rename: two threads or processes
    compiling the same guide at once never rename each other's file away or let a
    reader see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@functools.lru_cache(maxsize=1)
def _params() -> Any:
    import pyx12.params

    return pyx12.params.params()


def _load_pyx12_map(guide: Guide) -> Any:
    import pyx12.map_if

    map_file = compile_to_directory(guide)
    return pyx12.map_if.load_map_file(map_file.name, _params(), str(map_file.parent))
