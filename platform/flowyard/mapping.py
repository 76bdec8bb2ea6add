"""Object-building JMESPath expressions as field trees, and back.

A mapping step in a flow is a `jmespath` step whose expression builds an object: a
multi-select hash `{order_id: AUFNR, plant: WERKS}`, possibly from a base
(`DespatchAdvice.{...}`), with nested objects (`supplier: {id: ISA06}`) and lists of
objects (`items: HL_loop[?HL.HL03=='I'].{item_id: LIN.LIN03}`). The mapper shows such
an expression field by field; `parse` splits it (the jmespath parser decides what the
expression is, its lexer where each field's text starts and ends) and `render` writes
it back.

Writing back keeps every field's text as it was written; an object whose fields did not
change is written exactly as it was (same bytes, on one line if it was), and an
unchanged mapping gives back the very text it came from. A changed object is written one
field per line, in order. An expression that is not an object-building one raises
`Unrepresentable`, saying why; the mapper then leaves it as text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from jmespath import exceptions as jexc
from jmespath.lexer import Lexer
from jmespath.parser import Parser
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from .yamlio import dump_text, load_text

INDENT = "  "
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OPENERS = {"lbrace", "lbracket", "filter", "lparen"}
CLOSERS = {"rbrace", "rbracket", "rparen"}


class Unrepresentable(ValueError):
    """The expression is not one the mapper can show field by field."""


@dataclass
class Field:
    """One target field: a leaf with its expression text, or a nested object."""

    key: str
    expression: str = ""
    nested: Shape | None = None
    key_text: str = ""

    @property
    def kind(self) -> str:
        if self.nested is None:
            return "value"
        return "list" if self.nested.many else "object"


@dataclass
class Shape:
    """An object built by a multi-select hash: `{...}`, `SOURCE.{...}` (one object from
    SOURCE) or `SOURCE[].{...}` / `SOURCE[?...].{...}` (`many`: one object per element)."""

    fields: list[Field] = field(default_factory=list)
    source: str = ""
    many: bool = False
    original: str = ""  # the text this shape was parsed from ("" when new)
    parsed: tuple[Any, ...] | None = None  # its signature then

    def field_named(self, key: str) -> Field | None:
        return next((f for f in self.fields if f.key == key), None)


@dataclass
class Mapping:
    shape: Shape
    text: str  # the whole expression as it was written, surrounding blanks included


def quote_key(key: str) -> str:
    return key if IDENTIFIER.fullmatch(key) else json.dumps(key)


def quote_path_part(name: str) -> str:
    """A name as a JMESPath identifier (quoted when it must be)."""
    return quote_key(name)


def _tokens(text: str) -> list[dict[str, Any]]:
    return list(Lexer().tokenize(text))


def _ast(text: str) -> dict[str, Any]:
    try:
        parsed: dict[str, Any] = Parser().parse(text).parsed
    except jexc.JMESPathError as exc:
        raise Unrepresentable(f"the expression does not parse: {str(exc).splitlines()[0]}") from exc
    return parsed


def _hash_start(tokens: list[dict[str, Any]]) -> int | None:
    """The index of the `{` opening a hash that runs to the end of the expression (the
    last token before eof is its `}`), when it is the whole expression or follows a dot
    at the top level; else None."""
    if len(tokens) < 3 or tokens[-2]["type"] != "rbrace":
        return None
    depth = 0
    for i in range(len(tokens) - 2, -1, -1):
        kind = tokens[i]["type"]
        if kind in CLOSERS:
            depth += 1
        elif kind in OPENERS:
            depth -= 1
            if depth == 0:
                if kind != "lbrace":
                    return None
                if i == 0 or tokens[i - 1]["type"] == "dot":
                    return i
                return None
    return None


def _signature(shape: Shape) -> tuple[Any, ...]:
    return (
        shape.source,
        shape.many,
        tuple((f.key, f.expression if f.nested is None else _signature(f.nested)) for f in shape.fields),
    )


def _shape_of(text: str) -> Shape | None:
    """The shape `text` (stripped) builds, or None when it is some other expression."""
    try:
        tokens = _tokens(text)
    except jexc.JMESPathError:
        return None
    start = _hash_start(tokens)
    if start is None:
        return None
    ast = _ast(text)
    if start == 0:
        if ast["type"] != "multi_select_dict":
            return None
        source, many = "", False
    else:
        children = ast.get("children") or []
        if ast["type"] not in ("subexpression", "projection", "filter_projection") or len(children) < 2:
            return None
        if children[1].get("type") != "multi_select_dict":  # a filter's condition comes third
            return None
        source, many = text[: tokens[start - 1]["start"]].rstrip(), ast["type"] != "subexpression"
    shape = Shape(_fields(text, tokens, start), source, many, text)
    shape.parsed = _signature(shape)
    return shape


def _fields(text: str, tokens: list[dict[str, Any]], start: int) -> list[Field]:
    fields: list[Field] = []
    seen: set[str] = set()
    i = start + 1
    end = len(tokens) - 2  # the closing brace
    while i < end:
        key_token = tokens[i]
        if key_token["type"] not in ("unquoted_identifier", "quoted_identifier") or tokens[i + 1]["type"] != "colon":
            raise Unrepresentable("a field of the object is not `name: expression`")
        key = str(key_token["value"])
        if key in seen:
            raise Unrepresentable(f"the field {key!r} is given twice")
        seen.add(key)
        key_text = text[key_token["start"] : tokens[i + 1]["start"]].strip()
        value_start = tokens[i + 1]["end"]
        j = i + 2
        depth = 0
        while j < end and not (depth == 0 and tokens[j]["type"] == "comma"):
            if tokens[j]["type"] in OPENERS:
                depth += 1
            elif tokens[j]["type"] in CLOSERS:
                depth -= 1
            j += 1
        value = text[value_start : tokens[j]["start"]].strip()
        nested = _shape_of(value)
        fields.append(Field(key, value, nested, key_text))
        i = j + 1
    return fields


def parse(text: str) -> Mapping:
    """The field tree of an object-building expression; Unrepresentable otherwise."""
    stripped = text.strip()
    if not stripped:
        raise Unrepresentable("the expression is empty")
    _ast(stripped)  # a syntax error is reported as such
    shape = _shape_of(stripped)
    if shape is None:
        raise Unrepresentable("the expression does not build an object field by field (`{name: expression, ...}`)")
    return Mapping(shape, text)


def is_mapping(text: str) -> bool:
    try:
        parse(text)
    except Unrepresentable:
        return False
    return True


def _render_shape(shape: Shape, level: int) -> str:
    if shape.original and shape.parsed == _signature(shape):
        return shape.original
    pad = INDENT * (level + 1)
    lines = []
    for f in shape.fields:
        key_text = f.key_text if f.key_text and _key_value(f.key_text) == f.key else quote_key(f.key)
        value = f.expression if f.nested is None else _render_shape(f.nested, level + 1)
        lines.append(f"{pad}{key_text}: {value}")
    prefix = f"{shape.source}." if shape.source else ""
    return prefix + "{\n" + ",\n".join(lines) + "\n" + INDENT * level + "}"


def _key_value(key_text: str) -> str:
    return json.loads(key_text) if key_text.startswith('"') else key_text


def render(mapping: Mapping) -> str:
    """The expression text: the original when nothing changed, else one field per line."""
    shape = mapping.shape
    if shape.original and shape.parsed == _signature(shape):
        return mapping.text
    return _render_shape(shape, 0) + "\n"


# -- the mapping steps of a flow file ---------------------------------------------------


@dataclass
class MappingStep:
    index: int  # the step's position in the flow's steps
    name: str  # its name, or "" when it has none
    expression: str
    mapping: Mapping | None  # None when the mapper cannot show it
    reason: str = ""  # why not


def _steps_of(document: Any) -> Any:
    if not isinstance(document, dict):
        return None
    steps = document.get("steps")
    if steps is None and isinstance(document.get("flow"), dict):
        steps = document["flow"].get("steps")
    return steps if isinstance(steps, list) else None


def _expression_of(item: Any) -> str | None:
    if not isinstance(item, dict) or "jmespath" not in item:
        return None
    value = item["jmespath"]
    if isinstance(value, dict):
        value = value.get("expression")
    return value if isinstance(value, str) else None


def jmespath_steps(document: Any) -> list[MappingStep]:
    """Every `jmespath` step of a flow (or template) document, with its field tree when
    it builds an object."""
    found: list[MappingStep] = []
    for index, item in enumerate(_steps_of(document) or []):
        expression = _expression_of(item)
        if expression is None:
            continue
        name = str(item.get("name") or "")
        try:
            found.append(MappingStep(index, name, expression, parse(expression)))
        except Unrepresentable as exc:
            found.append(MappingStep(index, name, expression, None, str(exc)))
    return found


def write_expression(text: str, file: str, index: int, expression: str) -> str:
    """The flow text with step `index`'s JMESPath expression replaced (the YAML round
    trip: comments, order and quoting elsewhere kept). The same text when the expression
    is unchanged."""
    document = load_text(text, file)
    steps = _steps_of(document)
    if steps is None or not 0 <= index < len(steps) or _expression_of(steps[index]) is None:
        raise ValueError(f"step {index + 1} of {file} is not a jmespath step")
    item = steps[index]
    if _expression_of(item) == expression:
        return text
    value: Any = LiteralScalarString(expression) if "\n" in expression.rstrip("\n") else expression.strip()
    if isinstance(item["jmespath"], CommentedMap):
        item["jmespath"]["expression"] = value
    else:
        item["jmespath"] = value
    assert isinstance(steps, CommentedSeq | list)
    return dump_text(document)


def field_changes(old: str, new: str) -> list[str] | None:
    """The fields `new` added, removed or changed against `old`, nested ones named by
    their dotted path (`supplier.id`); None when either is not an object-building
    expression."""
    try:
        a, b = parse(old).shape, parse(new).shape
    except Unrepresentable:
        return None
    out: list[str] = []

    def compare(before: Shape, after: Shape, prefix: str) -> None:
        if (before.source, before.many) != (after.source, after.many):
            what = f"{prefix.rstrip('.')!r}" if prefix else "the mapping"
            out.append(f"{what} now reads from {after.source or 'the whole input'!r}")
        for f in after.fields:
            was = before.field_named(f.key)
            name = prefix + f.key
            if was is None:
                shown = f.expression if f.nested is None else f"{len(f.nested.fields)} field(s)"
                out.append(f"field {name!r} added ({' '.join(shown.split())})")
            elif f.nested is not None and was.nested is not None:
                compare(was.nested, f.nested, name + ".")
            elif " ".join(f.expression.split()) != " ".join(was.expression.split()):
                out.append(f"field {name!r} changed from {' '.join(was.expression.split())!r} to {' '.join(f.expression.split())!r}")
        out.extend(f"field {prefix + f.key!r} removed" for f in before.fields if after.field_named(f.key) is None)
        kept = [f.key for f in after.fields if before.field_named(f.key) is not None]
        if kept != [f.key for f in before.fields if after.field_named(f.key) is not None]:
            out.append(f"fields of {prefix.rstrip('.') or 'the mapping'!r} reordered")

    compare(a, b, "")
    return out
