"""`flowyard onboard`: a new instance from a template and values, validated, with the
per-plant files of the template's skeleton; all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyard.cli import main
from flowyard.definitions import check_file
from flowyard.errors import DefinitionError
from flowyard.loader import load_flow
from flowyard.onboarding.onboard import OnboardingError, coerce, onboard
from flowyard.onboarding.template import load_template
from flowyard.testing import run_tests
from flowyard.yamlio import load_file

PL07 = ["--set", "plant=PL07", "--set", "plant_name=Gliwice", "--set", "mes_url=https://mes.pl07.example/api", "--set", "utc_offset=+01:00"]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_onboard_a_third_plant_with_one_command(onboarding: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = onboarding / "templates" / "plant-mes.yaml"
    assert main(["onboard", str(template), *PL07, "--set", "shift_start=07:00"]) == 0
    out = capsys.readouterr().out
    instance = onboarding / "pl07-mes-production.yaml"
    assert f"wrote {instance}" in out or "wrote " in out
    document = load_file(instance)
    assert document["kind"] == "FlowInstance" and document["template"] == "plant-mes"
    assert dict(document["values"]) == {"plant": "PL07", "plant_name": "Gliwice", "mes_url": "https://mes.pl07.example/api", "shift_start": "07:00", "utc_offset": "+01:00"}
    assert "07:00" in instance.read_text(encoding="utf-8").split("shift_start:")[1].split("\n")[0]
    table = load_file(onboarding / "tables" / "pl07-work-centres.yaml")
    assert table["codes"]["CNC-04"] == "PL07-CNC"
    assert (onboarding / "tests" / "pl07-mes-production" / "order.json").is_file()
    assert check_file(instance) == []
    results = run_tests(load_flow(instance))
    assert len(results) == 3 and all(r.passed for r in results), [r.report for r in results]
    assert main(["test", str(instance)]) == 0


def test_values_file_and_set_override(onboarding: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("plant: PL08\nplant_name: Wroclaw\nmes_url: https://mes.pl08.example\nutc_offset: '+01:00'\nconfirmations: final-only\n", encoding="utf-8")
    assert main(["onboard", str(onboarding / "templates" / "plant-mes.yaml"), "--values", str(values), "--set", "plant_name=Wrocław"]) == 0
    document = load_file(onboarding / "pl08-mes-production.yaml")
    assert document["values"]["plant_name"] == "Wrocław" and document["values"]["confirmations"] == "final-only"


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["--set", "plant=pl07"], "'pl07' does not match the pattern '^[A-Z]{2}[0-9]{2}$'"),
        (["--set", "confirmations=sometimes"], "'sometimes' is not one of 'every-operation', 'final-only'"),
        (["--set", "mes_url=http://mes.example"], "does not match the pattern '^https://'"),
        (["--set", "plnt=PL07"], "unknown parameter; did you mean 'plant'?"),
        (["--set", "plant"], "write KEY=VALUE"),
    ],
)
def test_bad_values_write_nothing_and_say_why(onboarding: Path, capsys: pytest.CaptureFixture[str], sets: list[str], words: str) -> None:
    before = files_under(onboarding)
    overridden = sets[1].split("=")[0] + "="
    args = [x for pair in zip(PL07[::2], PL07[1::2], strict=True) if not pair[1].startswith(overridden) for x in pair]
    assert main(["onboard", str(onboarding / "templates" / "plant-mes.yaml"), *args, *sets]) == 1
    err = capsys.readouterr().err
    assert words in err, err
    assert "Traceback" not in err
    assert files_under(onboarding) == before


def test_a_missing_value_is_named_with_its_help(onboarding: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["onboard", str(onboarding / "templates" / "plant-mes.yaml"), "--set", "plant=PL07"]) == 1
    err = capsys.readouterr().err
    assert "missing value for parameter 'plant_name' (the plant's name as people say it (Monterrey))" in err


def test_an_existing_instance_is_not_overwritten(onboarding: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = onboarding / "mx01-mes-production.yaml"
    before = existing.read_text(encoding="utf-8")
    args = ["--set", "plant=MX01", "--set", "plant_name=Monterrey", "--set", "mes_url=https://mes.example", "--set", "utc_offset=-06:00"]
    assert main(["onboard", str(onboarding / "templates" / "plant-mes.yaml"), *args]) == 1
    assert "already exists" in capsys.readouterr().err
    assert existing.read_text(encoding="utf-8") == before


def test_skeleton_files_that_exist_are_kept(onboarding: Path) -> None:
    table = onboarding / "tables" / "pl07-work-centres.yaml"
    table.write_text("codes:\n  CNC-04: PL07-MILL\n  CAST-01: PL07-FOUNDRY\n", encoding="utf-8")
    template = load_template(onboarding / "templates" / "plant-mes.yaml")
    values = {"plant": "PL07", "plant_name": "Gliwice", "mes_url": "https://mes.pl07.example", "utc_offset": "+01:00"}
    result = onboard(template, values, onboarding)
    assert table in result.kept and table not in result.written
    assert "PL07-MILL" in table.read_text(encoding="utf-8")


def test_a_rendered_flow_that_does_not_load_leaves_nothing_behind(onboarding: Path) -> None:
    path = onboarding / "templates" / "plant-mes.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("lookup: {table: uom, at: uom}", "lookup: {table: uom-missing, at: uom}"), encoding="utf-8")
    before = files_under(onboarding)
    values = {"plant": "PL07", "plant_name": "Gliwice", "mes_url": "https://mes.pl07.example", "utc_offset": "+01:00"}
    with pytest.raises(DefinitionError) as info:
        onboard(load_template(path), values, onboarding)
    assert "no code table named 'uom-missing'" in str(info.value)
    assert f"{path}:" in str(info.value)  # pointed at the template's line
    assert files_under(onboarding) == before
    assert not (onboarding / "tests" / "pl07-mes-production").exists()


def test_a_skeleton_path_may_not_leave_the_instance_folder(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    path = tmp_path / "templates" / "t.yaml"
    path.write_text(
        "apiVersion: flowyard/v1\nkind: Template\nmetadata: {name: t}\nparameters:\n  p: {type: string}\n"
        "flow:\n  metadata: {name: \"{{ p }}\"}\n  source: {file: {path: in}}\n  targets: [{file: {path: out}}]\n"
        "skeleton:\n  \"../{{ p }}.txt\": hello\n", encoding="utf-8")
    with pytest.raises(OnboardingError) as info:
        onboard(load_template(path), {"p": "x"}, tmp_path)
    assert "leaves the instance's folder" in str(info.value)
    assert not (tmp_path.parent / "x.txt").exists()


def test_dry_run_writes_nothing(onboarding: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = files_under(onboarding)
    assert main(["onboard", str(onboarding / "templates" / "plant-mes.yaml"), *PL07, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "kind: FlowInstance" in out and "kind: Flow\n" in out and "https://mes.pl07.example/api/production-orders" in out
    assert files_under(onboarding) == before


def test_list_shows_the_parameters_help(onboarding: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["onboard", str(onboarding / "templates" / "plant-mes.yaml"), "--list"]) == 0
    out = capsys.readouterr().out
    assert "plant_name" in out and "one of every-operation, final-only" in out and "default '06:00'" in out


def test_set_values_take_the_parameters_type() -> None:
    assert coerce({"type": "integer"}, "12") == 12
    assert coerce({"type": "number"}, "1.5") == 1.5
    assert coerce({"type": "boolean"}, "yes") is True
    assert coerce({"type": "array"}, "a, b") == ["a", "b"]
    assert coerce({"type": "array"}, '["a", 1]') == ["a", 1]
    assert coerce({"type": ["integer", "string"]}, "abc") == "abc"
    assert coerce({"type": "string"}, "0012") == "0012"


def test_onboard_a_supplier_with_a_997(onboarding: Path) -> None:
    from flowyard.runner import run_flow

    template = load_template(onboarding / "templates" / "supplier-x12.yaml")
    values = {"partner": "acme-steel", "partner_name": "Acme Steel", "isa_id": "ACMESTEEL", "plant": "DE02"}
    result = onboard(template, values, onboarding)
    instance = result.instance_path
    assert instance.name == "de02-acme-steel-x12.yaml"
    partner = load_file(onboarding / "partners" / "acme-steel.yaml")
    assert partner["interchange"]["them"] == "ZZ:ACMESTEEL"
    flow = load_flow(instance)
    report = run_flow(flow, onboarding / "tests" / "de02-acme-steel-x12" / "810.edi", deliver=False)
    outputs = report.result.outputs
    assert len(outputs) == 2, [o.payload_text(200) for o in outputs]
    invoice = outputs[0].payload_text(10_000)
    assert '"total": 677.5' in invoice and '"id": "ACMESTEEL"' in invoice
    ack = outputs[1].payload_text(10_000)
    assert "ST*997*" in ack and "AK1*IN*102" in ack and "AK2*810*0001" in ack and "ACMESTEEL" in ack


def test_validating_a_template_leaves_no_scratch_files(onboarding: Path) -> None:
    before = files_under(onboarding)
    for name in ("plant-mes.yaml", "supplier-x12.yaml"):
        assert [i for i in check_file(onboarding / "templates" / name) if i.severity == "error"] == []
    assert files_under(onboarding) == before
    assert not list(onboarding.glob(".template-check-*"))


def test_try_samples_before_saving(onboarding: Path) -> None:
    from flowyard.onboarding.onboard import try_samples

    template = load_template(onboarding / "templates" / "plant-mes.yaml")
    before = files_under(onboarding)
    values = {"plant": "PL07", "plant_name": "Gliwice", "mes_url": "https://mes.pl07.example", "utc_offset": "+01:00"}
    issues, results = try_samples(template, values, onboarding)
    assert issues == [] and len(results) == 3 and all(r.passed for r in results)
    issues, results = try_samples(template, {**values, "plant": "pl7"}, onboarding)
    assert results == [] and "does not match the pattern" in issues[0].message
    assert files_under(onboarding) == before and not list(onboarding.glob(".onboard-preview-*"))


def test_onboard_by_template_name_from_a_repository_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "flows", tmp_path / "flows", ignore=shutil.ignore_patterns("mx02-*", "tests"))
    monkeypatch.chdir(tmp_path)
    args = ["--set", "plant=MX03", "--set", "plant_name=Saltillo", "--set", "shopfloor_name=QRO", "--set", "delimiter=;"]
    assert main(["onboard", "plant-production-confirmations", *args]) == 0
    instance = tmp_path / "flows" / "mx03-production-confirmations.yaml"
    assert instance.is_file()
    # QRO is MX02's shop-floor name: the instance's own test shows the rows are not MX03's
    assert main(["test", str(instance)]) == 1
    assert "expected 2 output message(s), got 0" in capsys.readouterr().out


@pytest.fixture
def flows_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped flows folder and the examples its tests read."""
    import shutil

    root = Path(__file__).resolve().parents[2]
    for folder in ("flows", "examples"):
        shutil.copytree(root / folder, tmp_path / folder)
    return tmp_path / "flows"


def test_a_value_that_must_be_a_code_of_a_table_is_checked_against_it(
        flows_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`x-table: plant-codes` on shopfloor_name: onboard and validate refuse a value the
    table does not hold, naming the table and the close codes."""
    template = str(flows_copy / "templates" / "plant-production-confirmations.yaml")
    values = ["--set", "plant=MX03", "--set", "plant_name=Puebla"]
    before = files_under(flows_copy)
    assert main(["onboard", template, *values, "--set", "shopfloor_name=QRX"]) == 1
    err = capsys.readouterr().err
    assert "'QRX' is not a code in table 'plant-codes' (plant-codes.yaml); close: 'QRO'" in err
    assert files_under(flows_copy) == before
    instance = flows_copy / "mx09.yaml"
    instance.write_text("apiVersion: flowyard/v1\nkind: FlowInstance\nmetadata: {name: mx09-production-confirmations}\n"
                        "template: plant-production-confirmations\n"
                        "values: {plant: MX09, plant_name: X, shopfloor_name: QRX}\n")
    [issue] = check_file(instance)
    assert issue.position.line == 5 and "'QRX' is not a code in table 'plant-codes'" in issue.message
    assert main(["onboard", template, *values, "--set", "shopfloor_name=QRO", "--name", "mx03-production-confirmations"]) == 0
