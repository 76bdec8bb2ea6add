"""Semantic diff (`flowyard diff A B`) and the rendered impact of a template change
(`flowyard diff --rendered`, and the UI's preview before saving), on a real git repo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowyard.cli import main
from flowyard.onboarding.impact import impact_since, instance_files, template_change_impact
from flowyard.onboarding.render import render_instance_flows
from flowyard.onboarding.template import load_instance_file
from flowyard.semdiff import compare, dict_changes
from flowyard.yamlio import load_text, to_plain

ROOT = Path(__file__).resolve().parents[2]
FLOW = (ROOT / "flows" / "mx01-erp-production-orders.yaml").read_text(encoding="utf-8")


def doc(text: str) -> dict:
    return to_plain(load_text(text, "f"))


def sentences(old: str, new: str) -> list[str]:
    return [str(c) for c in compare(doc(old), doc(new))]


def test_identical_flows_have_no_changes() -> None:
    assert sentences(FLOW, FLOW) == []
    assert sentences(FLOW, FLOW.replace("# Released", "# Comment changed; Released")) == []


def test_mapping_fields_are_compared_one_by_one() -> None:
    new = FLOW.replace("uom: GMEIN,", "uom: GMEIN,\n        batch: CHARG,").replace("priority: to_int(PRIO),", "priority: to_number(PRIO),")
    new = new.replace("        description: MAKTX,\n", "")
    out = sentences(FLOW, new)
    step = "step 'to canonical production order' (jmespath)"
    assert f"~ {step}: mapping: field 'batch' added (CHARG)" in out
    assert f"~ {step}: mapping: field 'description' removed" in out
    assert f"~ {step}: mapping: field 'priority' changed from 'to_int(PRIO)' to 'to_number(PRIO)'" in out
    assert len(out) == 3


def test_steps_added_removed_moved_and_options() -> None:
    new = FLOW.replace('  - name: component units\n    lookup: {table: erp-uom, at: "components[].uom"}\n', "")
    new = new.replace("lookup: {table: erp-uom, at: uom}", "lookup: {table: erp-uom, at: uom, on_missing: keep}")
    new = new.replace("  - validate: canonical:production-order\n", "  - validate: canonical:production-order\n  - filter: \"quantity > `0`\"\n")
    out = sentences(FLOW, new)
    assert "- step 'component units': removed (lookup, was step 3)" in out
    assert "~ step 'units of measure' (lookup): option 'on_missing' added: 'keep'" in out
    assert any(s.startswith("+ step 'filter': added as step 4 (filter") for s in out), out
    moved = FLOW.replace(
        "  - name: units of measure\n    lookup: {table: erp-uom, at: uom}\n  - name: component units\n    lookup: {table: erp-uom, at: \"components[].uom\"}\n",
        "  - name: component units\n    lookup: {table: erp-uom, at: \"components[].uom\"}\n  - name: units of measure\n    lookup: {table: erp-uom, at: uom}\n",
    )
    assert moved != FLOW
    out = sentences(FLOW, moved)
    assert len(out) == 1 and out[0].startswith(">") and "moved from position" in out[0], out


def test_connectors_targets_retry_and_metadata() -> None:
    new = FLOW.replace('pattern: "*.json"', 'pattern: "*.JSON"').replace("retry: {attempts: 5,", "retry: {attempts: 8,")
    new = new.replace("labels: {plant: MX01,", "labels: {plant: MX02,")
    new = new.replace("targets:\n", "targets:\n  - name: audit\n    when: \"priority > `1`\"\n    file: {path: audit}\n")
    out = sentences(FLOW, new)
    assert "~ source (file): option 'pattern' changed from '*.json' to '*.JSON'" in out
    assert "~ target 'file-2': retry 'attempts' changed from 5 to 8" in out  # unnamed, now second
    assert "~ metadata: metadata 'labels': 'plant' changed from 'MX01' to 'MX02'" in out
    assert any(s.startswith("+ target 'audit': added as target 1 (file") for s in out), out
    swapped = FLOW.replace("source:\n  file:\n    path: ../data/inbox/mx01-erp-production-orders\n", "source:\n  sftp:\n    path: /out\n")
    assert any("connector changed from 'file' to 'sftp'" in s for s in sentences(FLOW, swapped))


def test_a_mappings_changes_are_named_field_by_field_nested_ones_by_their_path() -> None:
    old = "{a: x, b: f(y, `1`), c: 'p, q', d: items[].{e: f, g: h}}"
    new = "{a: x, b: f(y, `2`), c: 'p, q', d: items[].{e: f, g: upper(h), k: k}}"
    out = dict_changes({"jmespath": old}, {"jmespath": new})
    assert out == [
        "mapping 'jmespath': field 'b' changed from 'f(y, `1`)' to 'f(y, `2`)'",
        "mapping 'jmespath': field 'd.g' changed from 'h' to 'upper(h)'",
        "mapping 'jmespath': field 'd.k' added (k)",
    ]
    assert dict_changes({"jmespath": "items[0]"}, {"jmespath": "items[1]"}) == [
        "option 'jmespath' changed from 'items[0]' to 'items[1]'"]


def test_diff_command_words_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(FLOW, encoding="utf-8")
    b.write_text(FLOW.replace("poll: 5s", "poll: 30s"), encoding="utf-8")
    assert main(["diff", str(a), str(a)]) == 0
    assert main(["diff", str(a), str(b)]) == 1
    assert "~ source (file): option 'poll' changed from '5s' to '30s'" in capsys.readouterr().out
    assert main(["diff", str(a), str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


# -- the rendered impact across instances, with git --------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(onboarding: Path) -> Path:
    git(onboarding, "init", "-q", "-b", "main")
    git(onboarding, "add", ".")
    git(onboarding, "commit", "-q", "-m", "onboarding")
    return onboarding


def edit_template(repo: Path, old: str, new: str) -> None:
    path = repo / "templates" / "plant-mes.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_template_change_shows_for_every_instance_and_their_tests_run(repo: Path) -> None:
    edit_template(repo, "retry: {attempts: 10,", "retry: {attempts: 12,")
    impacts = impact_since("HEAD", [repo])
    plants = [i for i in impacts if i.template == "plant-mes"]
    assert len(plants) >= 2
    for impact in plants:
        assert [str(c) for c in impact.changes] == ["~ target 'mes': retry 'attempts' changed from 10 to 12"]
        assert impact.tests and all(r.passed for r in impact.tests)
        assert "-    retry: {attempts: 10" in impact.line_diff() and "+    retry: {attempts: 12" in impact.line_diff()


def test_a_template_change_that_breaks_an_instance_test_fails(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_template(repo, "plant: WERKS,", "plant: 'XX99',")
    impacts = {i.name: i for i in impact_since("HEAD", [repo])}
    mx01 = impacts["mx01-mes-production"]
    assert "~ step 'order for the MES' (jmespath): mapping: field 'plant' changed from 'WERKS' to \"'XX99'\"" in [str(c) for c in mx01.changes]
    assert not mx01.ok and any(not r.passed for r in mx01.tests)
    assert main(["diff", "--rendered", "HEAD", "--paths", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "FAIL test 'a released order goes to the MES'" in out


def test_values_that_no_longer_fit_the_parameters_are_reported(repo: Path) -> None:
    edit_template(repo, 'pattern: "^https://"', 'pattern: "^https://mes\\\\."')
    impacts = {i.name: i for i in impact_since("HEAD", [repo], run=False)}
    assert all(i.error is None for i in impacts.values())  # both plants' URLs start with https://mes.
    edit_template(repo, 'pattern: "^https://mes\\\\."', 'pattern: "^https://mes-"')
    impacts = {i.name: i for i in impact_since("HEAD", [repo], run=False)}
    error = impacts["mx01-mes-production"].error
    assert error is not None and "mx01-mes-production.yaml:" in error and "does not match the pattern" in error


def test_unchanged_template_means_no_changes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert all(not i.changed for i in impact_since("HEAD", [repo], run=False))
    assert main(["diff", "--rendered", "--paths", str(repo)]) == 0
    assert "0 changed" in capsys.readouterr().err


def test_the_ui_preview_of_an_unsaved_template(onboarding: Path) -> None:
    path = onboarding / "templates" / "plant-mes.yaml"
    edited = path.read_text(encoding="utf-8").replace("poll: 5s", "poll: 15s")
    impacts = template_change_impact(path, edited, [onboarding])
    assert len(impacts) == len([p for p in instance_files([onboarding]) if "mes-production" in p.name]) >= 2
    for impact in impacts:
        assert [str(c) for c in impact.changes] == ["~ source (file): option 'poll' changed from '5s' to '15s'"]
        assert all(r.passed for r in impact.tests)
    assert "poll: 5s" in path.read_text(encoding="utf-8")  # nothing saved


def test_two_instances_are_compared_as_the_flows_they_render_to(onboarding: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(onboarding / "mx01-mes-production.yaml"), str(onboarding / "de02-mes-production.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "~ step 'ERP work centre' (lookup): option 'table' changed from 'mx01-work-centres' to 'de02-work-centres'" in out
    assert "~ step 'final confirmations only' (filter): option changed from '`true`' to 'final'" in out
    assert "~ target 'mes' (http): option 'headers': 'Authorization' changed from 'Bearer ${secret:MX01_MES_TOKEN}' to 'Bearer ${secret:DE02_MES_TOKEN}'" in out


def test_a_revision_and_the_working_tree(repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(repo)
    instance = repo / "mx01-mes-production.yaml"
    instance.write_text(instance.read_text(encoding="utf-8").replace("mes_url: https://mes.mx01.example/api", "mes_url: https://mes2.mx01.example/api"), encoding="utf-8")
    assert main(["diff", "HEAD:mx01-mes-production.yaml", "mx01-mes-production.yaml"]) == 1
    out = capsys.readouterr().out
    assert "option 'url' changed from 'https://mes.mx01.example/api/production-orders' to 'https://mes2.mx01.example/api/production-orders'" in out


def test_git_uses_flowyard_as_its_diff_driver(repo: Path) -> None:
    git(repo, "config", "diff.flowyard.command", f"{Path(sys.executable).parent / 'flowyard'} diff --git")
    (repo / ".gitattributes").write_text("*.yaml diff=flowyard\n", encoding="utf-8")
    instance = repo / "mx01-mes-production.yaml"
    instance.write_text(instance.read_text(encoding="utf-8").replace("mes.mx01.example", "mes2.mx01.example"), encoding="utf-8")
    table = repo / "tables" / "mx01-work-centres.yaml"
    table.write_text(table.read_text(encoding="utf-8").replace('"MX01-CAST"', '"MX01-FOUNDRY"'), encoding="utf-8")
    result = subprocess.run(["git", "diff", "--ext-diff"], cwd=repo, capture_output=True, text=True, check=True)
    assert "~ target 'mes' (http): option 'url' changed from 'https://mes.mx01.example/api/production-orders' to 'https://mes2.mx01.example/api/production-orders'" in result.stdout
    assert '+  CAST-01: "MX01-FOUNDRY"' in result.stdout  # not a flow: a line diff


# -- a repository's first commit: nothing to compare with yet ------------------------------


@pytest.fixture
def unborn(onboarding: Path) -> Path:
    """The onboarding files in a git repository with no commit yet (a pre-commit hook on
    the first commit sees this)."""
    git(onboarding, "init", "-q", "-b", "main")
    git(onboarding, "add", ".")
    return onboarding


def test_the_first_commit_compares_with_an_empty_tree(unborn: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diff", "--rendered", "HEAD", "--paths", str(unborn)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "no commits yet: comparing with an empty tree instead of HEAD (every instance is new)" in err
    heads = [line for line in out.splitlines() if line.startswith("== ")]
    flows = sum(len(render_instance_flows(load_instance_file(p))) for p in instance_files([unborn]))  # one per flow
    assert len(heads) == flows > len(instance_files([unborn])) >= 3
    assert all(head.endswith(": new since an empty tree") for head in heads), heads
    assert any("(mx01-supplierz: flow mx01-supplierz-850," in head for head in heads), heads
    assert out.count("  PASS test ") >= 3 and "FAIL" not in out  # the tests of every instance ran
    assert "unknown git revision" not in err


def test_the_first_commit_still_fails_on_a_broken_instance_test(unborn: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_template(unborn, "plant: WERKS,", "plant: 'XX99',")
    code = main(["diff", "--rendered", "HEAD", "--paths", str(unborn)])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "FAIL test 'a released order goes to the MES'" in out


def test_an_unknown_revision_is_an_error_once_there_are_commits(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "--rendered", "no-such-branch", "--paths", str(repo)]) == 2
    assert "flowyard diff: unknown git revision 'no-such-branch'" in capsys.readouterr().err


def test_rendered_diff_outside_a_repository(onboarding: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "--rendered", "HEAD", "--paths", str(onboarding)]) == 2
    assert "not inside a git repository" in capsys.readouterr().err
