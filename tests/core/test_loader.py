"""Loading flow files: positioned errors, suggestions, all errors at once, round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flowyard.errors import DefinitionError
from flowyard.loader import check_flow, load_flow
from flowyard.yamlio import dump_text, load_text

HEAD = """apiVersion: flowyard/v1
kind: Flow
metadata:
  name: t1
source:
  file: {path: in, pattern: "*.json"}
"""
TAIL = """targets:
  - file: {path: out}
"""

WriteFlow = Callable[..., Path]


def messages(path: Path) -> list[str]:
    return [f"{i.position.line}:{i.position.column}: {i.message}" for i in check_flow(path)]


def test_a_valid_flow_loads_with_compiled_steps(write_flow: WriteFlow) -> None:
    path = write_flow(HEAD + "steps:\n  - json.parse: {}\n  - jmespath: '{a: b}'\n" + TAIL)
    flow = load_flow(path)
    assert flow.name == "t1"
    assert [s.kind for s in flow.steps] == ["json.parse", "jmespath"]
    assert [s.name for s in flow.steps] == ["1-json.parse", "2-jmespath"]
    assert len(flow.version) == 16
    assert flow.targets[0].retry.attempts == 5


def test_misspelled_step_is_reported_with_position_and_suggestion(write_flow: WriteFlow) -> None:
    path = write_flow(HEAD + "steps:\n  - jmespth: '{a: b}'\n" + TAIL)
    assert messages(path) == ["8:5: unknown step 'jmespth'; did you mean 'jmespath'?"]


def test_every_error_in_a_file_is_reported(write_flow: WriteFlow) -> None:
    text = (
        "apiVersion: flowyard/v1\nkind: Flow\nmetadata:\n  name: Bad_Name\n  colour: red\n"
        "source:\n  fiel: {path: in}\n"
        "steps:\n  - jmespath: '{a: }'\n  - jinja: {template: '{% if %}', content_type: text/xml}\n"
        "  - lookup: {table: erp-uom}\n"
        "targets:\n  - file: {path: out, nmae: x}\n    retry: {attempts: 0}\n"
        "extra: 1\n"
    )
    found = messages(write_flow(text))
    assert len(found) >= 8, found
    joined = "\n".join(found)
    assert "4:9: name: String should match pattern" in joined
    assert "5:3: unknown option 'colour'" in joined
    assert "7:3: unknown connector 'fiel'; did you mean 'file'?" in joined
    assert "9:20: JMESPath syntax error: invalid token at '}'" in joined  # the `}` after `a: `
    assert "10:24: Jinja syntax error" in joined
    assert "missing required option 'at'" in joined
    assert "13:23: unknown option 'nmae'; did you mean 'name'?" in joined
    assert "attempts: Input should be greater than or equal to 1" in joined
    assert "15:1: unknown section 'extra'" in joined
    lines = [int(m.split(":")[0]) for m in found]
    assert lines == sorted(lines), "issues are listed in file order"


def test_jmespath_error_points_inside_a_block_expression(write_flow: WriteFlow) -> None:
    text = HEAD + "steps:\n  - json.parse: {}\n  - jmespath: |\n      {id: order.id,\n       qty: order.qty +}\n" + TAIL
    found = messages(write_flow(text))
    assert len(found) == 1
    assert found[0].startswith("11:23: JMESPath syntax error"), found
    line = write_flow(text).read_text().splitlines()[10]
    assert line[22] == "+"


def test_yaml_syntax_error_has_a_position(write_flow: WriteFlow) -> None:
    found = messages(write_flow(HEAD + "steps:\n  - jmespath: [unclosed\n" + TAIL))
    assert len(found) == 1 and found[0].split(":")[0] in ("9", "10") and "YAML syntax" in found[0]


def test_duplicate_keys_are_refused(write_flow: WriteFlow) -> None:
    found = messages(write_flow(HEAD.replace("  name: t1\n", "  name: t1\n  name: t2\n") + TAIL))
    assert any("duplicate key" in m for m in found), found


def test_missing_sections_and_wrong_kind(write_flow: WriteFlow) -> None:
    found = messages(write_flow("apiVersion: flowyard/v2\nkind: Flw\nmetadata: {name: x}\n"))
    joined = "\n".join(found)
    assert "apiVersion must be 'flowyard/v1'" in joined
    assert "kind must be 'Flow'" in joined
    assert "missing section 'source'" in joined and "missing section 'targets'" in joined


def test_bytes_step_after_data_is_a_configuration_error(write_flow: WriteFlow) -> None:
    found = messages(write_flow(HEAD + "steps:\n  - json.parse: {}\n  - csv.parse: {}\n" + TAIL))
    assert found == ["9:5: step 'csv.parse' takes bytes but step '1-json.parse' gives data; render it first (json.render, csv.render or jinja)"]


def test_data_step_on_csv_source_is_a_configuration_error(write_flow: WriteFlow) -> None:
    text = HEAD.replace('"*.json"', '"*.csv"') + "steps:\n  - jmespath: a\n" + TAIL
    found = messages(write_flow(text))
    assert len(found) == 1 and "takes data but the source (file) gives text/csv bytes" in found[0]


def test_data_step_on_json_source_decodes_implicitly(write_flow: WriteFlow) -> None:
    assert messages(write_flow(HEAD + "steps:\n  - jmespath: a\n" + TAIL)) == []


def test_load_flow_raises_with_all_issues(write_flow: WriteFlow) -> None:
    path = write_flow(HEAD + "steps:\n  - nope: {}\n  - jmespath: 'a['\n" + TAIL)
    with pytest.raises(DefinitionError) as info:
        load_flow(path)
    text = str(info.value)
    assert f"{path}:8:5: unknown step 'nope'" in text
    assert f"{path}:9:" in text


def test_round_trip_keeps_every_byte(flows_dir: Path) -> None:
    files = [p for p in flows_dir.rglob("*.yaml") if "archive" not in p.parts]
    assert len(files) >= 3
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert dump_text(load_text(text, str(path))) == text, path


def test_round_trip_keeps_comments_after_an_edit() -> None:
    text = "# top\napiVersion: flowyard/v1  # version\nmetadata:\n  name: a   # the name\n  labels: {plant: MX01}\n"
    document = load_text(text, "x.yaml")
    document["metadata"]["name"] = "b"
    out = dump_text(document)
    assert out == text.replace("name: a ", "name: b ")


def test_a_jinja_syntax_error_in_a_connector_option_is_reported_at_load(tmp_path: Path) -> None:
    """Validate, the editor and the playground called this flow valid; the runtime then
    failed on it at every look at the deployments (issue 15)."""
    path = tmp_path / "flow.yaml"
    path.write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: t}\nsource:\n  file: {path: in}\n"
                    "steps:\n  - json.parse: {}\ntargets:\n  - file:\n      path: out\n"
                    '      name: "conf-{{ data.order_id }-{{ key }}.json"\n'
                    "  - http:\n      url: https://erp.example/api\n      headers: {X-Plant: '{% if x %}MX'}\n")
    issues = check_flow(path)
    assert [(i.position.line, i.position.column, i.message) for i in issues] == [
        (11, 13, "file: Jinja syntax error in option 'name': unexpected '}'"),
        (14, 26, "http: Jinja syntax error in option 'headers.X-Plant': Unexpected end of template. "
                 "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. "
                 "The innermost block that needs to be closed is 'if'."),
    ]


def test_an_unknown_jmespath_function_is_reported_at_load_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: t}\nsource:\n  file: {path: in}\n"
                    'steps:\n  - jmespath: "{a: to_nmber(x), b: lookup(\'uom\', y)}"\ntargets:\n  - file: {path: out}\n')
    [issue] = check_flow(path)
    assert (issue.position.line, issue.message) == (7, "unknown JMESPath function to_nmber(); did you mean 'to_number'?")
