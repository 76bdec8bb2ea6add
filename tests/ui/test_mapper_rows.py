"""The mapper's rows (flowyard_ui.mapper, no server): posted rows back to a mapping,
new lists and objects, the choices, the source tree and the marks."""

from __future__ import annotations

import pytest

from flowyard import mapping
from flowyard_ui import mapper

ORIGINAL = "{\n  id: BSN.BSN02,\n  supplier: {id: ISA06, q: ISA05}\n}\n"


def test_rows_back_to_the_same_text() -> None:
    rows = mapper.rows_of(mapping.parse(ORIGINAL))
    assert [(r.path, r.kind) for r in rows] == [("/id", "value"), ("/supplier", "object"), ("/supplier/id", "value"), ("/supplier/q", "value")]
    assert mapping.render(mapper.rebuild(ORIGINAL, rows)) == ORIGINAL


def test_a_new_list_of_objects_and_an_unmapped_field() -> None:
    rows = [
        *mapper.rows_of(mapping.parse(ORIGINAL)),
        mapper.Row("/expected", "expected", 0, "value", ""),  # shown, not mapped: left out
        mapper.Row("/items", "items", 0, "list", "", "HL_loop[?HL.HL03=='I']"),
        mapper.Row("/items/item_id", "item_id", 1, "value", "LIN.LIN03"),
        mapper.Row("/items/uom", "uom", 1, "value", ""),
        mapper.Row("/packages", "packages", 0, "list", "", ""),  # no source list yet: left out
        mapper.Row("/packages/sscc", "sscc", 1, "value", "MAN[0].MAN02"),
    ]
    text = mapping.render(mapper.rebuild(ORIGINAL, rows))
    assert text == (
        "{\n  id: BSN.BSN02,\n  supplier: {id: ISA06, q: ISA05},\n"
        "  items: HL_loop[?HL.HL03=='I'].{\n    item_id: LIN.LIN03\n  }\n}\n"
    )
    assert mapping.parse(text).shape.fields[2].kind == "list"


def test_one_nested_field_changed_rewrites_only_that_object() -> None:
    rows = mapper.rows_of(mapping.parse(ORIGINAL))
    rows[3].expression = "ISA05 || 'ZZ'"
    assert mapping.render(mapper.rebuild(ORIGINAL, rows)) == (
        "{\n  id: BSN.BSN02,\n  supplier: {\n    id: ISA06,\n    q: ISA05 || 'ZZ'\n  }\n}\n"
    )


@pytest.mark.parametrize(
    ("function", "argument", "expected"),
    [
        ("to_number", "", "to_number(SN1.SN102)"),
        ("to_date", "", "to_date(SN1.SN102, '%Y%m%d')"),
        ("default", "it's EA", "default(SN1.SN102, 'it\\'s EA')"),
        ("lookup", "erp-uom", "lookup('erp-uom', SN1.SN102)"),
    ],
)
def test_choices_wrap_the_expression(function: str, argument: str, expected: str) -> None:
    wrapped = mapper.wrap("SN1.SN102", function, argument)
    assert wrapped == expected
    mapping.parse("{a: " + wrapped + "}")  # still JMESPath


def test_a_choice_that_needs_an_argument_says_so() -> None:
    with pytest.raises(mapper.MapperError, match="say which"):
        mapper.wrap("x", "lookup", "")
    with pytest.raises(mapper.MapperError, match="no choice"):
        mapper.wrap("x", "eval", "")


def test_the_source_tree_merges_list_elements_and_quotes_names() -> None:
    data = {"HL_loop": [{"HL": {"HL03": "S"}}, {"HL": {"HL03": "I"}, "LIN": {"LIN03": "4711"}}], "cbc:ID": "X-1"}
    paths = {n.path: n for n in mapper.source_tree(data)}
    assert "HL_loop[].LIN.LIN03" in paths and paths["HL_loop[].LIN.LIN03"].shown == '"4711"'
    assert paths["HL_loop[]"].shown == "2 item(s)"
    assert '"cbc:ID"' in paths
    assert mapper.context_of("HL_loop[?HL.HL03=='I']") == "HL_loop[]"


def test_marks_wrong_types_required_and_values_inside_lists() -> None:
    schema = {
        "type": "object",
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "qty": {"type": ["number", "null"]},
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
        },
    }
    step = mapping.MappingStep(0, "map", "{id: n, qty: q}", mapping.parse("{id: n, qty: q}"))
    rows = [*mapper.rows_of(step.mapping), mapper.Row("/items", "items", 0, "list", "", "lines[]"), mapper.Row("/items/sku", "sku", 1, "value", "s")]
    data = {"n": 5, "q": "7", "lines": [{"s": "A-1"}, {"s": "B"}]}
    view = mapper.build_view(step, rows, data, "", schema, "a schema", None)
    by_path = {r.path: r for r in view.rows}
    assert by_path["/id"].problem == "wrong type: integer, the schema wants string"
    assert by_path["/qty"].problem == "wrong type: string, the schema wants number or null"
    assert by_path["/name"].problem == "required, not mapped"
    assert by_path["/items/sku"].shown == '"A-1"' and by_path["/items/sku"].context == "lines[]."
    assert view.problems == 3
    assert "items: lines[].{\n    sku: s\n  }" in view.expression


def test_a_mapping_from_a_base_reads_its_fields_there() -> None:
    text = "DespatchAdvice.{\n  shipment_id: ID,\n  lines: DespatchLine[].{qty: to_number(Qty)}\n}\n"
    step = mapping.MappingStep(0, "ubl", text, mapping.parse(text))
    assert step.mapping is not None
    shape = step.mapping.shape
    data = {"DespatchAdvice": {"ID": "DA-1", "DespatchLine": [{"Qty": "4"}]}}
    view = mapper.build_view(step, mapper.rows_of(step.mapping), data, "", None, "", None, shape.source, shape.many)
    by_path = {r.path: r for r in view.rows}
    assert by_path["/shipment_id"].context == "DespatchAdvice." and by_path["/shipment_id"].shown == '"DA-1"'
    assert by_path["/lines/qty"].context == "DespatchAdvice.DespatchLine[]." and by_path["/lines/qty"].shown == "4"
    assert view.expression == text  # unchanged: the very text
