"""The mapper's converter (flowyard.mapping): object-building JMESPath <-> field trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from jmespath.parser import Parser

from flowyard import mapping
from flowyard.yamlio import load_text

ROOT = Path(__file__).resolve().parents[2]


def shipped_files() -> list[Path]:
    return sorted(p for folder in ("examples", "flows") for p in (ROOT / folder).rglob("*.yaml"))


def shipped_mappings() -> list[tuple[str, int, str]]:
    """Every object-building jmespath expression in examples/ and flows/, found by reading
    each YAML file's steps (flows and templates)."""
    found = []
    for path in shipped_files():
        try:
            document = load_text(path.read_text(encoding="utf-8"), path.name)
        except Exception:  # not every YAML file there is a flow
            continue
        for step in mapping.jmespath_steps(document):
            if step.mapping is not None:
                found.append((path.relative_to(ROOT).as_posix(), step.index, step.expression))
    return found


SHIPPED = shipped_mappings()


def test_the_shipped_mappings_are_found() -> None:
    files = {f for f, _, _ in SHIPPED}
    assert len(SHIPPED) >= 20
    assert "flows/supplier-ubl-ship-notices.yaml" in files  # a mapping from a base: DespatchAdvice.{...}
    assert "examples/onboarding/templates/supplier-x12.yaml" in files  # inside a template's flow


def _all_changed(shape: mapping.Shape) -> None:
    shape.parsed = None
    for f in shape.fields:
        if f.nested is not None:
            _all_changed(f.nested)


@pytest.mark.parametrize(("file", "index", "expression"), SHIPPED, ids=[f"{f}#{i}" for f, i, _ in SHIPPED])
def test_every_shipped_mapping_round_trips(file: str, index: int, expression: str) -> None:
    parsed = mapping.parse(expression)
    assert mapping.render(parsed) == expression  # unchanged: the very same text
    # written one field per line, it still means exactly the same thing
    _all_changed(parsed.shape)
    rewritten = mapping.render(parsed)
    assert Parser().parse(rewritten).parsed == Parser().parse(expression).parsed
    assert mapping.render(mapping.parse(rewritten)) == rewritten
    # and the flow file is untouched when the expression is written back unchanged
    text = (ROOT / file).read_text(encoding="utf-8")
    assert mapping.write_expression(text, file, index, expression) == text


def test_fields_nested_objects_and_lists() -> None:
    text = "{\n  a: x.y,\n  \"b c\": `1`,\n  s: {id: ISA06, q: ISA05},\n  items: HL[?HL03=='I'].{n: to_number(q), u: u},\n  all: lines[].{z: w}\n}\n"
    m = mapping.parse(text)
    assert [f.key for f in m.shape.fields] == ["a", "b c", "s", "items", "all"]
    assert [f.kind for f in m.shape.fields] == ["value", "value", "object", "list", "list"]
    items = m.shape.fields[3].nested
    assert items is not None and items.source == "HL[?HL03=='I']" and [f.expression for f in items.fields] == ["to_number(q)", "u"]
    assert m.shape.fields[4].nested is not None and m.shape.fields[4].nested.source == "lines[]"
    assert m.shape.fields[1].key_text == '"b c"'


def test_one_changed_field_keeps_the_others_text() -> None:
    text = "{a: x, s: {id: ISA06,   q: ISA05}, n: to_number( q )}"
    m = mapping.parse(text)
    m.shape.fields[0].expression = "upper(x)"
    m.shape.fields.append(mapping.Field("new field", "BSN.BSN02"))
    assert mapping.render(m) == '{\n  a: upper(x),\n  s: {id: ISA06,   q: ISA05},\n  n: to_number( q ),\n  "new field": BSN.BSN02\n}\n'
    nested = m.shape.fields[1].nested
    assert nested is not None
    nested.fields.pop()
    assert "  s: {\n    id: ISA06\n  },\n" in mapping.render(m)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{a: x} | b", "does not build an object"),
        ("items[*].name", "does not build an object"),
        ("{a: x, a: y}", "given twice"),
        ("{a: x", "does not parse"),
        ("  ", "empty"),
        ("a || {b: c}", "does not build an object"),
    ],
)
def test_what_the_mapper_cannot_show_is_reported(text: str, why: str) -> None:
    with pytest.raises(mapping.Unrepresentable, match=why):
        mapping.parse(text)


def test_writing_a_step_keeps_the_comments_around_it() -> None:
    text = (
        "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: t}\nsource: {file: {path: in}}\nsteps:\n"
        "  # the mapping\n  - name: map\n    jmespath: '{a: x, b: y}'  # inline\n  - json.render: {}\n"
        "targets:\n  - file: {path: out}  # the outbox\n"
    )
    m = mapping.parse("{a: x, b: y}")
    m.shape.fields.append(mapping.Field("c", "z"))
    out = mapping.write_expression(text, "t.yaml", 0, mapping.render(m))
    assert "  # the mapping\n  - name: map\n    jmespath: |\n      {\n        a: x,\n        b: y,\n        c: z\n      }\n" in out
    assert "# inline" in out
    assert out.endswith("  - json.render: {}\ntargets:\n  - file: {path: out}  # the outbox\n")
    with pytest.raises(ValueError, match="not a jmespath step"):
        mapping.write_expression(text, "t.yaml", 1, "{}")


def test_field_changes_name_nested_fields() -> None:
    old = "{a: x, s: {id: ISA06, q: ISA05}, items: lines[].{n: n}}"
    new = "{\n  a: x,\n  s: {id: ISA06, q: ISA05 || 'ZZ'},\n  items: lines[].{n: n, u: u},\n  b: y\n}\n"
    assert mapping.field_changes(old, new) == [
        "field 's.q' changed from 'ISA05' to \"ISA05 || 'ZZ'\"",
        "field 'items.u' added (u)",
        "field 'b' added (y)",
    ]
    assert mapping.field_changes(old, old.replace("{a: x, ", "{")) == ["field 'a' removed"]
    assert mapping.field_changes("DespatchAdvice.{a: ID}", "{a: ID}") == ["the mapping now reads from 'the whole input'"]
    assert mapping.field_changes("a | b", "{a: x}") is None
