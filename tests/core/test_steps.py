"""Each core step on real data, including the bad input each one must refuse clearly."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from flowyard.engine import RunResult

Run = Callable[..., RunResult]


def only(result: RunResult) -> object:
    assert result.ok, [str(f.error) for f in result.failures]
    assert len(result.outputs) == 1
    return result.outputs[0].payload


def error(result: RunResult) -> str:
    assert not result.ok and len(result.failures) == 1
    return str(result.failures[0].error)


def test_json_parse_and_render(run_steps: Run) -> None:
    out = only(run_steps("  - json.parse: {}\n  - json.render: {indent: null, sort_keys: true}", b'{"b": 1, "a": "\xc3\xa4"}'))
    assert out == '{"a": "ä", "b": 1}\n'.encode()


def test_json_parse_reports_line_and_column(run_steps: Run) -> None:
    text = error(run_steps("  - json.parse: {}", b'{\n  "a": 1,\n  "b": }'))
    assert text == "step '1-json.parse': invalid JSON: Expecting value (line 3, column 8)"


def test_json_parse_refuses_non_utf8(run_steps: Run) -> None:
    assert "is not utf-8 text (byte 1)" in error(run_steps("  - json.parse: {}", b'"\xff"'))


def test_data_step_decodes_json_bytes_implicitly(run_steps: Run) -> None:
    assert only(run_steps("  - jmespath: a.b", b'{"a": {"b": [1, 2]}}')) == [1, 2]


def test_data_step_refuses_bytes_of_another_type(run_steps: Run) -> None:
    assert "takes data but the message is text/csv bytes" in error(run_steps("  - jmespath: a", b"a,b", "text/csv"))


def test_csv_parse_with_types_and_dialect(run_steps: Run) -> None:
    steps = '  - csv.parse: {delimiter: ";", types: {qty: number, n: integer, ok: boolean}}'
    out = only(run_steps(steps, "\ufeffitem;qty;n;ok\nA;1.5;2;yes\nB; 3 ;4;no\n\n".encode(), "text/csv"))
    assert out == [{"item": "A", "qty": 1.5, "n": 2, "ok": True}, {"item": "B", "qty": 3, "n": 4, "ok": False}]


def test_csv_parse_column_count_error_has_line(run_steps: Run) -> None:
    text = error(run_steps("  - csv.parse: {}", b"a,b\n1,2\n3\n", "text/csv"))
    assert text == "step '1-csv.parse': row has 1 values but there are 2 columns (line 3)"


def test_csv_parse_malformed_quotes(run_steps: Run) -> None:
    assert "malformed CSV" in error(run_steps("  - csv.parse: {}", b'a,b\n"x"y,2\n', "text/csv"))


def test_csv_render_round_trip(run_steps: Run) -> None:
    steps = "  - csv.parse: {}\n  - csv.render: {columns: [b, a], line_terminator: \"\\n\"}"
    assert only(run_steps(steps, b'a,b\n1,"x, y"\n', "text/csv")) == b'b,a\n"x, y",1\n'


def test_csv_render_needs_rows(run_steps: Run) -> None:
    assert "needs a list of objects" in error(run_steps("  - csv.render: {}", b'{"a": 1}'))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("pad_left(`42`, `6`, '0')", "000042"),
        ("pad_right('AB', `4`)", "AB  "),
        ("to_date('20261122', '%Y%m%d')", "2026-11-22"),
        ("format_date('2026-11-22T08:30:00', '%y%m%d')", "261122"),
        ("to_decimal('12.345', `2`)", 12.35),
        ("to_int('0042')", 42),
        ("format_number(`3.14159`, `2`)", "3.14"),
        ("coalesce(`null`, '', 'x')", "x"),
        ("default(`null`, 'EA')", "EA"),
        ("concat('PO', '-', `42`)", "PO-42"),
        ("upper(trim('  ea '))", "EA"),
        ("split('a,b', ',')", ["a", "b"]),
        ("replace('A-1', '-', '')", "A1"),
        ("lookup('uom', 'ST')", "EA"),
        ("lookup('uom', 'XX', 'NONE')", "NONE"),
    ],
)
def test_jmespath_extra_functions(run_steps: Run, expression: str, expected: object) -> None:
    steps = f"  - jmespath: \"{expression}\""
    assert only(run_steps(steps, b"{}", tables__uom_csv="code,value\nST,EA\n")) == expected


def test_jmespath_function_error_is_a_step_error(run_steps: Run) -> None:
    assert "to_int: 'abc' is not a number" in error(run_steps("  - jmespath: \"to_int('abc')\"", b"{}"))


@pytest.mark.parametrize("expression, message", [
    ("to_int(AUFNR)", "to_int: '1e9999999999' is out of range"),
    ("to_decimal(AUFNR)", "to_decimal: '1e9999999999' is out of range"),
    ("format_number(AUFNR, `2`)", "format_number: '1e9999999999' is out of range"),
    ("to_int('NaN')", "to_int: 'NaN' is not a finite number"),
    ("to_decimal('1.5', `1000000000`)", "to_decimal: 1000000000 decimal places; between 0 and 30"),
])
def test_numbers_a_message_controls_are_bounded(run_steps: Run, expression: str, message: str) -> None:
    started = time.monotonic()
    text = error(run_steps(f"  - jmespath: \"{expression}\"", b'{"AUFNR": "1e9999999999"}'))
    assert message in text
    assert time.monotonic() - started < 5  # unbounded, to_int ran for minutes at gigabytes


def test_jmespath_lookup_missing_code(run_steps: Run) -> None:
    text = error(run_steps("  - jmespath: \"lookup('uom', 'XX')\"", b"{}", tables__uom_csv="code,value\nST,EA\n"))
    assert "code 'XX' is not in table 'uom'" in text


def test_jinja_autoescapes_xml_and_exposes_data_and_message(run_steps: Run) -> None:
    steps = "  - jinja: {template: '<a n=\"{{ name }}\">{{ data.name }}|{{ message.flow }}</a>', content_type: application/xml}"
    assert only(run_steps(steps, b'{"name": "A&B <C>"}')) == b'<a n="A&amp;B &lt;C&gt;">A&amp;B &lt;C&gt;|t</a>'


def test_jinja_does_not_escape_plain_text(run_steps: Run) -> None:
    steps = "  - jinja: {template: '{{ name }}', content_type: text/plain}"
    assert only(run_steps(steps, b'{"name": "A&B"}')) == b"A&B"


def test_jinja_filters(run_steps: Run) -> None:
    template = "{{ d | date('%Y%m%d') }}|{{ n | number(2) }}|{{ 7 | x12_num(9) }}|{{ 'acme' | x12_id(6) }}|{{ 'ABCDEF' | fixed(4) }}|{{ 'CT' | lookup('uom') }}"
    steps = f"  - jinja: {{template: \"{template}\"}}"
    out = only(run_steps(steps, b'{"d": "2026-11-22", "n": 2.345}', tables__uom_csv="code,value\nCT,CTN\n"))
    assert out == b"20261122|2.35|000000007|ACME  |ABCD|CTN"


def test_jinja_runtime_error_names_the_template_line(run_steps: Run) -> None:
    steps = "  - jinja: {template_file: t.j2, strict: true}"
    text = error(run_steps(steps, b'{"a": 1}', **{"t.j2": "line one\n{{ a }}\n{{ missing.deeper }}\n"}))
    assert "template error" in text and "t.j2 line 3" in text


def test_jinja_template_file_must_stay_in_the_flow_folder(run_steps: Run) -> None:
    from flowyard.errors import DefinitionError

    with pytest.raises(DefinitionError, match="must stay inside the flow's folder"):
        run_steps("  - jinja: {template_file: ../../etc/passwd}", b"{}")


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
        ("{{ data.update({'x': 1}) }}", "unsafe"),
        ("{% for i in range(100) %}{% for j in range(100000) %}{% for k in range(100000) %}{% endfor %}{% endfor %}{% endfor %}", "longer than"),
        ("{{ 'x' * 100000000 }}", "output limit"),
        ("{% for i in range(99999) %}{{ 'abcdefghij' * 99 }}{% endfor %}", "larger than"),
        ("{{ range(10000000) | list }}", "range() of more than"),
    ],
)
def test_jinja_sandbox_and_limits(run_steps: Run, template: str, reason: str) -> None:
    steps = f"  - jinja: {{template: \"{template}\", time_limit: 1, max_output: 100000}}"
    text = error(run_steps(steps, b'{"a": 1}'))
    assert reason in text, text


def test_lookup_translates_in_place_with_nested_paths(run_steps: Run) -> None:
    steps = "  - lookup: {table: uom, at: \"items[].uom\"}\n  - lookup: {table: plants, at: header.plant}"
    payload = json.dumps({"header": {"plant": "MTY"}, "items": [{"uom": "ST"}, {"uom": "KG"}, {"x": 1}]}).encode()
    out = only(run_steps(steps, payload, tables__uom_csv="code,value\nST,EA\nKG,KGM\n", tables__plants_yaml="codes:\n  MTY: MX01\n"))
    assert out == {"header": {"plant": "MX01"}, "items": [{"uom": "EA"}, {"uom": "KGM"}, {"x": 1}]}


def test_lookup_missing_code_names_code_table_and_place(run_steps: Run) -> None:
    payload = json.dumps({"items": [{"uom": "ST"}, {"uom": "BOX"}, {"uom": "BAG"}]}).encode()
    text = error(run_steps("  - lookup: {table: uom, at: \"items[].uom\"}", payload, tables__uom_csv="code,value\nST,EA\n"))
    assert text.startswith("step '1-lookup': code 'BOX' is not in table 'uom' (and 1 more) (at items[1].uom)")
    assert "code 'BAG' at items[2].uom" in text


def test_lookup_default_and_keep(run_steps: Run) -> None:
    payload = b'{"a": "ZZ", "b": "ZZ"}'
    steps = "  - lookup: {table: uom, at: a, on_missing: default, default: EA}\n  - lookup: {table: uom, at: b, on_missing: keep}"
    assert only(run_steps(steps, payload, tables__uom_csv="code,value\nST,EA\n")) == {"a": "EA", "b": "ZZ"}


def test_lookup_table_default_from_yaml(run_steps: Run) -> None:
    out = only(run_steps("  - lookup: {table: t, at: a}", b'{"a": "?"}', tables__t_yaml="default: UNKNOWN\ncodes: {A: B}\n"))
    assert out == {"a": "UNKNOWN"}


def test_lookup_unknown_table_is_a_definition_error(run_steps: Run) -> None:
    from flowyard.errors import DefinitionError

    with pytest.raises(DefinitionError, match="no code table named 'nope'"):
        run_steps("  - lookup: {table: nope, at: a}", b"{}")


def test_validate_canonical_reports_every_violation(run_steps: Run) -> None:
    payload = json.dumps({"order_id": "1", "plant": "mx1", "item_id": "A", "quantity": 0, "uom": "EA"}).encode()
    text = error(run_steps("  - validate: canonical:production-order", payload))
    assert "2 problem(s)" in text
    assert "$.plant: 'mx1' does not match" in text
    assert "$.quantity: 0 is less than or equal to the minimum of 0" in text


def test_validate_passes_valid_data_through(run_steps: Run) -> None:
    payload = {"hold_id": "H1", "plant": "DE02", "item_id": "X", "reason": "crack", "status": "hold", "placed_at": "2026-11-22T10:00:00Z"}
    assert only(run_steps("  - validate: canonical:quality-hold", json.dumps(payload).encode())) == payload


def test_validate_with_a_schema_file_and_unknown_canonical(run_steps: Run) -> None:
    from flowyard.errors import DefinitionError

    assert only(run_steps("  - validate: s.json", b'{"a": 1}', **{"s.json": '{"type": "object", "required": ["a"]}'})) == {"a": 1}
    with pytest.raises(DefinitionError, match="no canonical model 'shipmnt'; did you mean 'shipment'"):
        run_steps("  - validate: canonical:shipmnt", b"{}")


def test_every_canonical_model_is_a_valid_schema() -> None:
    from jsonschema import Draft202012Validator

    from flowyard.schemas import canonical_names, canonical_schema

    names = canonical_names()
    assert names == ["inventory-movement", "invoice", "item", "production-confirmation", "production-order", "purchase-order", "quality-hold", "shipment"]
    for name in names:
        Draft202012Validator.check_schema(canonical_schema(name))


def test_split_keeps_correlation_and_order(run_steps: Run) -> None:
    result = run_steps("  - split: items\n  - jmespath: '{n: n}'", b'{"items": [{"n": 1}, {"n": 2}, {"n": 3}]}')
    assert [m.payload for m in result.outputs] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert len({m.correlation_id for m in result.outputs}) == 1
    assert len({m.id for m in result.outputs}) == 3
    assert [m.headers["split_index"] for m in result.outputs] == [0, 1, 2]


def test_split_one_bad_part_does_not_stop_the_others(run_steps: Run) -> None:
    result = run_steps("  - split: items\n  - jmespath: \"to_int(n)\"", b'{"items": [{"n": "1"}, {"n": "x"}, {"n": "3"}]}')
    assert [m.payload for m in result.outputs] == [1, 3]
    assert len(result.failures) == 1 and "'x' is not a number" in str(result.failures[0].error)


def test_split_needs_a_list(run_steps: Run) -> None:
    assert "split needs a list" in error(run_steps("  - split: a", b'{"a": 1}'))


def test_filter_drops_falsy(run_steps: Run) -> None:
    result = run_steps("  - split: '@'\n  - filter: 'qty > `0`'", b'[{"qty": 1}, {"qty": 0}, {"qty": 2}]')
    assert [m.payload["qty"] for m in result.outputs] == [1, 2]
    assert result.dropped == 1


def test_when_skips_a_step(run_steps: Run) -> None:
    steps = "  - jmespath: '{a: a, b: `1`}'\n    when: 'a == `1`'\n  - jmespath: '{a: a, c: `2`}'\n    when: 'a == `2`'"
    assert only(run_steps(steps, b'{"a": 1}')) == {"a": 1, "b": 1}
