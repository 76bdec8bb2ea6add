"""A fast parse of flow YAML for the editor's checks and the playground.

ruamel's round-trip scanner and parser are pure Python and are most of the time of a
check or a preview (tens of milliseconds for a 300-line flow on a busy machine). Here
libyaml (PyYAML's C parser, a dependency of Litestar) reads the text into events, and
ruamel's own composer, resolver and round-trip constructor build the document from
them. The result is the document `flowyard.yamlio.load_text` gives, with the same types
and the same line/column records, less the comments (which only a save needs; saves
keep using the round trip).

Anything out of the ordinary (a syntax error, an explicit tag, a `%YAML` or `%TAG`
directive, no C parser) returns None, and the caller uses the round trip, so syntax
errors keep ruamel's wording and position.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import events as rt
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import StreamMark
from ruamel.yaml.resolver import VersionedResolver

from flowyard.definitions import kind_of
from flowyard.flow import Flow
from flowyard.loader import FlowLoader
from flowyard.loader import load_flow as core_load_flow
from flowyard.services import Services
from flowyard.yamlio import round_trip

try:
    import yaml as _pyyaml
    from yaml import _yaml as _libyaml
except ImportError:  # pragma: no cover - PyYAML without libyaml: always the round trip
    _libyaml = None
    _pyyaml = None


ENABLED = True
"""Off: always the round trip (bench/ui.py compares both in one run)."""


UNUSUAL = "\t\r\x85\u2028\u2029\ufeff"
"""Tabs, line breaks other than LF and a byte-order mark: the two parsers count lines
and columns around them differently, or the positions here assume LF; such text is
rare in a flow, and the round trip reads it."""


class _Fallback(Exception):
    """The text needs the round-trip parser."""


def _mark(mark: Any) -> StreamMark:
    return StreamMark("<unicode string>", mark.index, mark.line, mark.column)


def _end_of(text: str) -> tuple[int, int]:
    return text.count("\n"), len(text) - text.rfind("\n") - 1


def _after_empty_value(text: str, index: int) -> tuple[int, int]:
    """Where ruamel places a block mapping's empty value (`key:` and nothing): at the
    next token, not just after the colon as libyaml does. A comment in between changes
    ruamel's choice; such text goes to the round trip."""
    line = text.count("\n", 0, index)
    column = index - text.rfind("\n", 0, index) - 1
    for i in range(index, len(text)):
        char = text[i]
        if char == "\n":
            line, column = line + 1, 0
        elif char == " ":
            column += 1
        elif char in "#?:\t":
            raise _Fallback
        else:
            return line, column
    return _end_of(text)


class _Converter:
    """Turns libyaml events into the ruamel events its parser would give for the same
    text. Collections are tracked to know where an empty scalar stands."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.open: list[list[Any]] = []  # [is_mapping, is_flow, nodes so far]

    def node(self, event: Any) -> tuple[Any, Any, Any]:
        if event.tag is not None and event.tag != "!":
            raise _Fallback  # explicit tags: ruamel keeps their handles; leave them to it
        return event.anchor, _mark(event.start_mark), _mark(event.end_mark)

    def counted(self) -> None:
        if self.open:
            self.open[-1][2] += 1

    def empty(self, event: Any) -> tuple[Any, Any]:
        """The marks of an empty plain scalar, where ruamel would put them."""
        if not self.open or self.open[-1][1]:
            raise _Fallback  # an empty document or a flow collection entry
        is_mapping, _flow, count = self.open[-1]
        if not is_mapping:
            return _mark(event.start_mark), _mark(event.end_mark)  # `- ` : just after the dash
        if count % 2 == 0:
            raise _Fallback  # an empty key
        line, column = _after_empty_value(self.text, event.start_mark.index)
        mark = StreamMark("<unicode string>", event.start_mark.index, line, column)
        return mark, mark

    def convert(self, event: Any) -> Any:
        kind = type(event).__name__
        if kind == "ScalarEvent":
            anchor, start, end = self.node(event)
            style = event.style or None
            if event.value == "" and style is None and event.start_mark.index == event.end_mark.index:
                start, end = self.empty(event)
            self.counted()
            return rt.ScalarEvent(anchor, None, event.implicit, event.value, start, end, style=style)
        if kind in ("MappingStartEvent", "SequenceStartEvent"):
            anchor, start, end = self.node(event)
            self.open.append([kind == "MappingStartEvent", bool(event.flow_style), 0])
            return getattr(rt, kind)(anchor, None, event.implicit, start, end, flow_style=event.flow_style)
        start, end = _mark(event.start_mark), _mark(event.end_mark)
        if kind == "AliasEvent":
            self.counted()
            return rt.AliasEvent(event.anchor, start, end)
        if kind in ("MappingEndEvent", "SequenceEndEvent"):
            self.open.pop()
            self.counted()
            return getattr(rt, kind)(start, end)
        if kind == "StreamEndEvent":
            return rt.StreamEndEvent(start, end)
        if kind == "StreamStartEvent":
            return rt.StreamStartEvent(start, end, encoding=None)
        if kind == "DocumentStartEvent":
            if event.version is not None or event.tags:
                raise _Fallback  # directives change resolution; the round trip handles them
            return rt.DocumentStartEvent(start, end, explicit=event.explicit)
        if kind == "DocumentEndEvent":
            return rt.DocumentEndEvent(start, end, explicit=event.explicit)
        raise _Fallback


class _Replay:
    """Stands in for ruamel's parser: hands the converted events to its composer."""

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        self.position = 0

    def check_event(self, *choices: Any) -> bool:
        if self.position >= len(self.events):
            return False
        return not choices or isinstance(self.events[self.position], choices)

    def peek_event(self) -> Any:
        return self.events[self.position] if self.position < len(self.events) else None

    def get_event(self) -> Any:
        event = self.peek_event()
        self.position += 1
        return event

    def dispose(self) -> None:
        self.events = []


class _Composer(Composer):
    """ruamel's composer, reaching the replayed events without the YAML object's
    property lookups (a few of them per node)."""

    @property
    def parser(self) -> Any:
        return self.loader._parser


class _Resolver(VersionedResolver):
    """ruamel's resolver, working out the YAML version once per document instead of
    once per scalar (no directive reaches here, so it cannot change midway)."""

    @property
    def processing_version(self) -> Any:
        version = self.__dict__.get("_version_once")
        if version is None:
            version = self.__dict__["_version_once"] = VersionedResolver.processing_version.fget(self)  # type: ignore[attr-defined]
        return version


def _events(text: str) -> list[Any]:
    assert _libyaml is not None
    parser = _libyaml.CParser(text)
    converter = _Converter(text)
    found = []
    try:
        while parser.check_event():
            found.append(converter.convert(parser.get_event()))
    except _pyyaml.YAMLError as exc:
        raise _Fallback from exc
    finally:
        parser.dispose()
    return found


BLOCK_SCALAR_COMMENT = re.compile(r"[|>][-+0-9]*#")
"""A block scalar's indicator with a comment stuck to it (`- >#x`): libyaml reads it, the
round trip refuses it (found by the generated-text test)."""


def load(text: str) -> Any:
    """The document (round-trip types and positions, no comments), or None when only
    the round trip should read this text."""
    if not ENABLED or _libyaml is None or any(char in text for char in UNUSUAL):
        return None
    if BLOCK_SCALAR_COMMENT.search(text):
        return None
    try:
        events = _events(text)
        yaml = round_trip()
        yaml.Composer = _Composer
        yaml.Resolver = _Resolver
        yaml._parser = _Replay(events)  # type: ignore[attr-defined]
        return yaml.constructor.get_single_data()
    except _Fallback:
        return None
    except Exception:  # any other difference (a duplicate key...): the round trip says it
        return None


class FastFlowLoader(FlowLoader):
    """The core loader reading the YAML with `load` (the round trip when it declines)."""

    def parse(self) -> Any:
        document = load(self.text)
        return document if document is not None else super().parse()


def load_flow(path: Path, text: str, services: Services | None = None) -> Flow:
    """`flowyard.loader.load_flow` with the fast parse: the same Flow, or the same
    DefinitionError with the same positions. `services` are given to the steps."""
    if kind_of(text) not in (None, "Flow"):
        rendered = core_load_flow(path, text)  # an instance renders through its own loader
        if services is not None:  # new objects, seen by no one else yet
            for spec in rendered.steps:
                spec.step.context.services = services
        return rendered
    loader = FastFlowLoader(path, text)
    if services is not None:
        loader.context.services = services
    return loader.load_or_raise()
