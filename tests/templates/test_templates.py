"""Templates and instances: rendering, value errors at the instance's lines, template
errors at the template's lines, the load_flow hook, `flowyard render` and `validate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyard.cli import main
from flowyard.definitions import check_file
from flowyard.errors import DefinitionError
from flowyard.loader import load_flow, load_flows
from flowyard.onboarding.render import render_instance, render_values
from flowyard.onboarding.template import find_template, list_templates, load_instance_file, load_template
from flowyard.testing import run_tests
from flowyard.yamlio import load_text

TEMPLATE = """\
apiVersion: flowyard/v1
kind: Template
metadata: {name: tiny, version: "2"}
parameters:
  plant: {type: string, pattern: "^[A-Z]{2}[0-9]{2}$", description: ERP plant code}
  batch: {type: integer, default: 10, minimum: 1}
  mode: {type: string, enum: [fast, safe], default: safe}
flow:
  metadata:
    name: "{{ plant | lower }}-tiny"
  source:
    file: {path: in, pattern: "*.json"}
  steps:
    - jmespath: "{plant: '{{ plant }}', id: id}"
    - name: keep runtime names
      jinja:
        template: "<id>{{ data.id }}</id>"
        content_type: application/xml
  targets:
    - file:
        path: "out/{{ plant }}"
        name: "{{ message.flow }}-{{ key }}.xml"
"""

INSTANCE = """\
apiVersion: flowyard/v1
kind: FlowInstance
metadata:
  name: mx01-tiny
template: tiny
values:
  plant: MX01
  batch: 5
"""


def write(tmp_path: Path, template: str = TEMPLATE, instance: str = INSTANCE) -> Path:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "tiny.yaml").write_text(template, encoding="utf-8")
    path = tmp_path / "mx01-tiny.yaml"
    path.write_text(instance, encoding="utf-8")
    return path


def test_an_instance_renders_to_a_flow_with_runtime_templates_untouched(tmp_path: Path) -> None:
    path = write(tmp_path)
    rendered = render_instance(load_instance_file(path))
    assert rendered.ok, rendered.issues
    doc = load_text(rendered.text, "r")
    assert doc["kind"] == "Flow" and doc["metadata"]["name"] == "mx01-tiny"
    assert doc["steps"][0]["jmespath"] == "{plant: 'MX01', id: id}"
    assert doc["steps"][1]["jinja"]["template"] == "<id>{{ data.id }}</id>"  # run-time template kept
    assert doc["targets"][0]["file"]["path"] == "out/MX01"
    assert doc["targets"][0]["file"]["name"] == "{{ message.flow }}-{{ key }}.xml"


def test_load_flow_of_an_instance_returns_the_rendered_flow(tmp_path: Path) -> None:
    flow = load_flow(write(tmp_path))
    assert flow.name == "mx01-tiny"
    assert [s.kind for s in flow.steps] == ["jmespath", "jinja"]
    assert flow.path == tmp_path / "mx01-tiny.yaml"  # paths in the flow are relative to the instance


def test_the_flow_version_changes_when_the_template_changes(tmp_path: Path) -> None:
    path = write(tmp_path)
    before = load_flow(path).version
    write(tmp_path, TEMPLATE.replace("path: in,", "path: inbox,"))
    assert load_flow(path).version != before


def test_a_single_expression_keeps_the_values_type(tmp_path: Path) -> None:
    template = TEMPLATE.replace("file: {path: in, pattern: \"*.json\"}", "file: {path: in, pattern: \"*.json\", recursive: \"{{ batch > 3 }}\"}")
    path = write(tmp_path, template)
    doc = load_text(render_instance(load_instance_file(path)).text, "r")
    assert doc["source"]["file"]["recursive"] is True


@pytest.mark.parametrize(
    ("values", "line", "col", "words"),
    [
        ("  plant: mx1\n", 7, 10, "'mx1' does not match the pattern"),
        ("  plant: MX01\n  batch: 0\n", 8, 10, "parameter 'batch'"),
        ("  plant: MX01\n  mode: turbo\n", 8, 9, "'turbo' is not one of 'fast', 'safe'"),
        ("  plant: MX01\n  plnat: MX02\n", 8, 3, "unknown parameter 'plnat'; did you mean 'plant'?"),
        ("  batch: 3\n", 6, 1, "missing value for parameter 'plant' (ERP plant code)"),
    ],
)
def test_bad_values_are_reported_at_the_instances_lines(tmp_path: Path, values: str, line: int, col: int, words: str) -> None:
    instance = INSTANCE.split("values:\n")[0] + "values:\n" + values
    path = write(tmp_path, instance=instance)
    issues = check_file(path)
    assert issues, "expected an error"
    first = issues[0]
    assert str(first.position) == f"{path}:{line}:{col}", str(first)
    assert words in first.message
    with pytest.raises(DefinitionError) as info:
        load_flow(path)
    assert f"{path}:{line}:{col}" in str(info.value)


def test_a_string_mixing_parameters_and_runtime_names_is_an_error_at_the_template_line(tmp_path: Path) -> None:
    template = TEMPLATE.replace('template: "<id>{{ data.id }}</id>"', 'template: "<p>{{ plant }}</p><id>{{ data.id }}</id>"')
    path = write(tmp_path, template)
    issues = check_file(path)
    text = [str(i) for i in issues]
    assert any(f"{tmp_path / 'templates' / 'tiny.yaml'}:17:" in t and "{% raw %}" in t for t in text), text


def test_raw_blocks_let_runtime_jinja_sit_beside_parameters(tmp_path: Path) -> None:
    template = TEMPLATE.replace(
        'template: "<id>{{ data.id }}</id>"',
        'template: "<p>{{ plant }}</p>{% raw %}<id>{{ data.id }}</id>{% endraw %}"',
    )
    doc = load_text(render_instance(load_instance_file(write(tmp_path, template))).text, "r")
    assert doc["steps"][1]["jinja"]["template"] == "<p>MX01</p><id>{{ data.id }}</id>"


def test_a_flow_problem_points_at_the_template_line_and_the_value_used(tmp_path: Path) -> None:
    template = TEMPLATE.replace("""- jmespath: "{plant: '{{ plant }}', id: id}\"""", """- jmespath: "{plant: '{{ plant }}', id: id"  """)
    path = write(tmp_path, template)
    with pytest.raises(DefinitionError) as info:
        load_flow(path)
    message = str(info.value)
    assert f"{tmp_path / 'templates' / 'tiny.yaml'}:14:" in message
    assert f"plant at {path}:7:10" in message


def test_a_jinja_syntax_error_in_the_template_is_reported_at_its_line(tmp_path: Path) -> None:
    template = TEMPLATE.replace('path: "out/{{ plant }}"', 'path: "out/{{ plant | }}"')
    issues = [str(i) for i in check_file(write(tmp_path, template).parent / "templates" / "tiny.yaml")]
    assert any(":21:" in i and "template syntax" in i for i in issues), issues


def test_the_template_checker_renders_with_examples_or_defaults(tmp_path: Path) -> None:
    template = TEMPLATE.replace("description: ERP plant code}", "description: ERP plant code, examples: [MX01]}")
    template = template.replace("- jmespath: \"{plant", "- jmespatch: \"{plant")
    path = write(tmp_path, template).parent / "templates" / "tiny.yaml"
    issues = [str(i) for i in check_file(path)]
    assert any("unknown step 'jmespatch'; did you mean 'jmespath'?" in i and f"{path}:14:7" in i for i in issues), issues


def test_a_template_without_examples_only_warns(tmp_path: Path) -> None:
    path = write(tmp_path).parent / "templates" / "tiny.yaml"
    issues = check_file(path)
    assert [i.severity for i in issues] == ["warning"]
    assert "plant" in issues[0].message


def test_a_pinned_version_selects_that_template(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "templates" / "tiny-v3.yaml").write_text(TEMPLATE.replace('version: "2"', 'version: "3"').replace("out/", "v3/"), encoding="utf-8")
    assert find_template("tiny", None, tmp_path).version == "3"
    pinned = write(tmp_path, instance=INSTANCE.replace("template: tiny", "template: tiny@2"))
    doc = load_text(render_instance(load_instance_file(pinned)).text, "r")
    assert doc["targets"][0]["file"]["path"] == "out/MX01"
    missing = write(tmp_path, instance=INSTANCE.replace("template: tiny", "template: tiny@9"))
    issues = [str(i) for i in check_file(missing)]
    assert any(f"{missing}:5:11" in i and "no version '9'" in i for i in issues), issues


def test_an_unknown_template_is_reported_at_the_template_line(tmp_path: Path) -> None:
    path = write(tmp_path, instance=INSTANCE.replace("template: tiny", "template: tinny"))
    issues = [str(i) for i in check_file(path)]
    assert issues == [f"{path}:5:11: no template named 'tinny' in a templates/ folder beside {tmp_path} or above it"]


def test_render_command_prints_the_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    assert main(["render", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kind: Flow" in out and "out/MX01" in out and "mx01-tiny" in out
    bad = write(tmp_path, instance=INSTANCE.replace("plant: MX01", "plant: mx01"))
    assert main(["render", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and f"{bad}:7:10" in captured.err and "Traceback" not in captured.err


def test_the_examples_validate_and_their_tests_pass(onboarding: Path) -> None:
    instances = sorted(onboarding.glob("*.yaml"))
    assert len(instances) >= 3
    for path in [*instances, *sorted((onboarding / "templates").glob("*.yaml"))]:
        errors = [i for i in check_file(path) if i.severity == "error"]
        assert errors == [], errors
    for path in instances:  # every flow of each (supplier-x12-full gives three)
        results = [r for flow in load_flows(path) for r in run_tests(flow)]
        assert results and all(r.passed for r in results), [r.report for r in results]


def test_list_templates_and_fields_for_the_wizard(onboarding: Path) -> None:
    templates = {t.name: t for t in list_templates(onboarding / "templates")}
    assert "plant-mes" in templates
    fields = {f.name: f for f in templates["plant-mes"].fields()}
    assert fields["plant"].required and fields["plant"].pattern
    assert fields["confirmations"].enum == ["every-operation", "final-only"]
    assert not fields["shift_start"].required and fields["shift_start"].default == "06:00"
    assert all(f.description for f in fields.values())


def test_preview_without_an_instance_file(onboarding: Path) -> None:
    template = load_template(onboarding / "templates" / "plant-mes.yaml")
    values = {"plant": "PL07", "plant_name": "Gliwice", "mes_url": "https://mes.pl07.example", "utc_offset": "+01:00"}
    rendered = render_values(template, values, onboarding / "pl07-preview.yaml")
    assert rendered.ok and rendered.name == "pl07-mes-production"
    assert "https://mes.pl07.example/production-orders" in rendered.text


def test_an_instance_may_add_tests_and_pin_with_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_text('{"id": 7}', encoding="utf-8")
    (tmp_path / "expected.xml").write_text("<id>7</id>", encoding="utf-8")
    instance = INSTANCE.replace("template: tiny", "template: {name: tiny, version: \"2\"}") + (
        "tests:\n  - name: one order\n    input: in/a.json\n    expect: expected.xml\n"
    )
    path = write(tmp_path, instance=instance)
    flow = load_flow(path)
    assert [t.name for t in flow.tests] == ["one order"]
    results = run_tests(flow)
    assert results[0].passed, results[0].report
    broken = write(tmp_path, instance=instance.replace("expected.xml", "missing.xml"))
    issues = [str(i) for i in check_file(broken)]
    assert any(i.startswith(f"{broken}:12:13: test 'one order': expect file 'missing.xml' does not exist") for i in issues), issues


def test_a_template_with_a_bad_parameter_schema(tmp_path: Path) -> None:
    template = TEMPLATE.replace("batch: {type: integer, default: 10, minimum: 1}", "batch: {type: integr, default: 10}")
    path = write(tmp_path, template).parent / "templates" / "tiny.yaml"
    issues = [str(i) for i in check_file(path)]
    assert any("not a valid JSON Schema" in i and f"{path}:6:" in i for i in issues), issues


def test_a_parameter_may_not_hide_a_runtime_name(tmp_path: Path) -> None:
    template = TEMPLATE.replace("  mode: {type: string", "  data: {type: string, default: x}\n  mode: {type: string")
    path = write(tmp_path, template).parent / "templates" / "tiny.yaml"
    issues = [str(i) for i in check_file(path)]
    assert any("parameter 'data' would hide" in i and f"{path}:7:3" in i for i in issues), issues
