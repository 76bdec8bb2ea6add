"""`flowyard xml parse|xpath|validate` as a user runs it (the installed console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOWYARD = str(Path(sys.executable).parent / "flowyard")
B2MML = "http://www.mesa.org/xml/B2MML-V0600"
SCHEMA = ROOT / "flows" / "schemas" / "b2mml-v0600" / "B2MML-V0600-ProductionSchedule.xsd"
SCHEDULE = ROOT / "examples" / "xml" / "b2mml" / "mes-schedule-mty-2024-w18.xml"


def flowyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWYARD, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_parse_prints_the_data_a_mapping_sees() -> None:
    out = flowyard("xml", "parse", str(SCHEDULE), "--ns", f"={B2MML}", "--lists-from-schema", str(SCHEMA))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    requests = data["ProcessProductionSchedule"]["DataArea"]["ProductionSchedule"][0]["ProductionRequest"]
    assert [r["ID"] for r in requests] == ["4711", "4712"]


def test_xpath_prints_named_values() -> None:
    out = flowyard(
        "xml",
        "xpath",
        str(SCHEDULE),
        "n=count(//b:ProductionRequest)",
        "first=string(//b:ProductionRequest/b:ID)",
        "--ns",
        f"b={B2MML}",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"n": 2, "first": "4711"}


def test_validate_lists_errors_and_exits_1(tmp_path: Path) -> None:
    assert flowyard("xml", "validate", str(SCHEDULE), "--schema", str(SCHEMA)).returncode == 0
    bad = tmp_path / "bad.xml"
    bad.write_bytes(
        SCHEDULE.read_bytes().replace(b"<b2mml:Priority>2</b2mml:Priority>", b"<b2mml:Priority>high</b2mml:Priority>")
    )
    out = flowyard("xml", "validate", str(bad), "--schema", str(SCHEMA))
    assert out.returncode == 1
    assert (
        "line 22, at /b2mml:ProcessProductionSchedule/b2mml:DataArea/b2mml:ProductionSchedule/b2mml:ProductionRequest[1]/b2mml:Priority"
        in out.stderr
    )
    assert "Traceback" not in out.stderr


def test_hostile_input_is_refused_on_the_command_line_too(tmp_path: Path) -> None:
    doc = tmp_path / "xxe.xml"
    doc.write_text('<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>')
    out = flowyard("xml", "parse", str(doc))
    assert out.returncode == 1
    assert "declares entities (x)" in out.stderr
    assert "root:" not in out.stdout + out.stderr
