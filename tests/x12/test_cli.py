"""`flowyard x12 parse` and `flowyard x12 ack`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from flowyard.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "x12"


def test_parse_prints_the_sets(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["x12", "parse", str(EXAMPLES / "850-4010-two-sets.edi")])
    out = capsys.readouterr().out
    sets = json.loads(out)
    assert code == 0
    assert [s["BEG"]["BEG03"] for s in sets] == ["PO-45001", "PO-45002"]


def test_parse_with_a_partner_guide_reports_invalid_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (EXAMPLES / "856-supplierx-2cartons.edi").read_text().replace("BSN*00*", "BSN*05*")
    path = tmp_path / "replacement.856"
    path.write_text(text)
    code = main(["x12", "parse", str(path), "--guide", "856-4010-supplierx"])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out) == []
    assert f"{path}:3: transaction set 856 0001 is invalid" in captured.err
    assert "BSN01" in captured.err and "'05'" in captured.err


def test_parse_refuses_what_is_not_x12(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "garbage.edi"
    path.write_bytes(b"\x00\x01binary\x02" * 50)
    assert main(["x12", "parse", str(path)]) == 1
    err = capsys.readouterr().err
    assert "binary data, not X12" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["997", "999"])
def test_ack_prints_the_functional_acknowledgment(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["x12", "ack", str(EXAMPLES / "856-supplierx-one-bad-set.edi"), "--type", kind])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line.rstrip("~") for line in out.splitlines()]
    assert lines[0].startswith("ISA*00*") and "*ZZ*ACMEBUYER      *ZZ*SUPPLIERX      *" in lines[0]
    assert f"ST*{kind}*0001" + ("*005010X231A1" if kind == "999" else "") in lines
    status = "AK5" if kind == "997" else "IK5"
    assert f"{status}*A" in lines and f"{status}*R*5" in lines
    element = "AK4" if kind == "997" else "IK4"
    assert f"{element}*3*355*1" in lines
    assert "AK9*P*2*2*1" in lines
    assert lines[-1] == "IEA*1*000000001"


def test_overdue_lists_late_outbound_sets(tmp_path: Path, x12_db: object, capsys: pytest.CaptureFixture[str]) -> None:
    from flowyard.store import x12_control as control

    assert main(["x12", "overdue"]) == 0
    control.record_outbound(partner="acme", receiver="ZZ:SENDER", interchange_control="000000007", group_control="7",
                            set_control="0007", transaction="850", deadline=timedelta(seconds=-1),
                            correlation_id="c1")
    capsys.readouterr()
    assert main(["x12", "overdue"]) == 1
    out = capsys.readouterr().out
    assert "acme\tZZ:SENDER\t850\tGS06 7\tST02 0007" in out
