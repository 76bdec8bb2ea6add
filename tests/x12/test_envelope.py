"""Envelope checks are loud by default and name the real cause (issue 19 item 3).

Interchanges are built by hand here (tests/x12/conftest.py); each test breaks one thing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flowyard.cli import main
from flowyard.engine import Pipeline
from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.step import ROUTE_TO_TARGETS
from flowyard.x12.acks import acknowledgment
from flowyard.x12.document import GroupResult, InterchangeResult, SetResult, envelope_findings, walk
from flowyard.x12.functional_groups import groups_of, table
from flowyard.x12.guides import SHIPPED, load_guide
from flowyard.x12.reader import X12InputError, read_segments

from .conftest import PO_BODY, interchange

SEPS5 = ("*", ":", "~", "^")


def no_guide(_transaction: str, _version: str) -> None:
    return None


def events(data: str | bytes, unguided: str = "accept") -> list[Any]:
    return list(walk(data, no_guide, unguided=unguided))


def ack_text(data: str | bytes, kind: str = "997", ta1: bool = False) -> list[str]:
    numbers = iter(range(1, 100))
    texts = [acknowledgment(e, kind, ta1=ta1, counter=lambda _k: next(numbers))
             for e in walk(data, no_guide, unguided="accept", shape=False) if isinstance(e, InterchangeResult)]
    return [s.text() for text in texts if text for s in read_segments(text)]


# -- GS01 against ST01 ---------------------------------------------------------------


def test_every_shipped_guide_is_in_the_functional_group_table() -> None:
    for path in sorted(SHIPPED.glob("*.yaml")):
        if path.stem == "x12-elements":
            continue
        guide = load_guide(path)
        assert guide.functional_group in (groups_of(guide.transaction) or ()), (path.name, guide.functional_group)
    supply_chain = {"180", "204", "210", "214", "753", "754", "810", "820", "824", "830", "846", "850", "855", "856",
                    "860", "862", "864", "865", "866", "867", "940", "943", "944", "945", "997", "999"}
    assert supply_chain <= set(table()), supply_chain - set(table())
    assert groups_of("850") == {"PO"} and groups_of("856") == {"SH"} and groups_of("810") == {"IN"}
    assert groups_of("997") == {"FA"} and groups_of("999") == {"FA"}


@pytest.mark.parametrize(("version", "isa", "code"), [("004010", "00401", "6"), ("005010", "00501", "18")])
def test_a_set_in_the_wrong_functional_group_is_rejected(version: str, isa: str, code: str) -> None:
    text = interchange([("0001", "850", PO_BODY), ("0002", "810", ["BIG*20261120*INV-1"])], version=version,
                       functional_id="SC", isa_version=isa, seps=SEPS5 if isa == "00501" else ("*", ">", "~", "U"))
    sets = [e for e in events(text) if isinstance(e, SetResult)]
    assert [(s.transaction, s.codes) for s in sets] == [("850", [code]), ("810", [code])]
    assert "an 850 belongs in functional group PO, not in GS01 'SC'" in sets[0].reasons()[1]
    segments = ack_text(text, "997" if version == "004010" else "999")
    tag = "AK5" if version == "004010" else "IK5"
    assert segments.count(f"{tag}*R*{code}") == 2 and any(s.startswith("AK9*R*2*2*0") for s in segments)
    right = interchange([("0001", "850", PO_BODY)], version=version, functional_id="PO", isa_version=isa)
    assert [e.codes for e in events(right) if isinstance(e, SetResult)] == [[]]


# -- control numbers and counts, by default -----------------------------------------------


def broken_envelopes() -> str:
    """Set 0001: SE02 differs from ST02; set 0002: SE01 wrong; GE02 and GE01 wrong; IEA02 wrong."""
    text = interchange([("0001", "850", PO_BODY), ("0002", "850", PO_BODY)], control=7)
    text = text.replace("SE*7*0001", "SE*7*0009").replace("SE*7*0002", "SE*9*0002")
    return text.replace("GE*2*7", "GE*3*8").replace("IEA*1*000000007", "IEA*1*000000070")


def test_the_default_997_carries_every_set_and_group_mismatch() -> None:
    segments = ack_text(broken_envelopes())
    assert "AK5*R*3" in segments and "AK5*R*4" in segments
    assert "AK9*R*3*2*0*5*4" in segments  # GE01 says 3, 2 received, none accepted; codes 5 (count) and 4 (GE02)
    found = [f for e in events(broken_envelopes()) if isinstance(e, (GroupResult, InterchangeResult)) for f in envelope_findings(e)]
    assert any("GE02 '8' does not match GS06 '7'" in f for f in found), found
    assert any("GE01 says 3 transaction sets, the group has 2" in f for f in found), found
    assert any("IEA02 '000000070' does not match ISA13 '000000007'" in f and "IEA line" in f for f in found), found


def flow(folder: Path, steps: str) -> Any:
    path = folder / "flow.yaml"
    path.write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: envelopes}\nsource:\n  file: {path: in}\n"
                    f"steps:\n{steps}\ntargets:\n  - file: {{path: out}}\n", encoding="utf-8")
    return load_flow(path)


def test_parse_reports_envelope_errors_without_being_asked(tmp_path: Path, x12_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowyard.x12"):
        result = Pipeline(flow(tmp_path, '  - x12.parse: {acknowledge: "997"}')).run(Message(payload=broken_envelopes().encode()))
    ack = [s.text() for m in result.outputs if m.headers.get(ROUTE_TO_TARGETS) for s in read_segments(m.payload)]
    assert "TA1*000000007*261120*0930*E*001" in ack  # no `ta1:` option: the TA1 rides in the 997 because IEA02 is wrong
    assert "AK5*R*3" in ack and "AK5*R*4" in ack
    logged = " | ".join(r.getMessage() for r in caplog.records)
    assert "IEA02 '000000070' does not match ISA13" in logged and "GE02 '8' does not match GS06 '7'" in logged
    assert len(result.failures) == 2 and "SE02 '0009' does not match ST02 '0001'" in str(result.failures[0].error)


def test_the_cli_parse_lists_envelope_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = interchange([("0001", "850", PO_BODY)], control=7).replace("IEA*1*000000007", "IEA*1*000000070")
    path = tmp_path / "iea.edi"
    path.write_text(text)
    code = main(["x12", "parse", str(path)])
    captured = capsys.readouterr()
    assert code == 1 and len(json.loads(captured.out)) == 1
    assert "IEA02 '000000070' does not match ISA13 '000000007'" in captured.err
    assert main(["x12", "ack", str(path)]) == 0
    assert "TA1*000000007*261120*0930*E*001~" in capsys.readouterr().out


def test_a_group_of_997s_reports_its_envelope_errors(tmp_path: Path, x12_db: Any, capsys: pytest.CaptureFixture[str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    ack_body = ["AK1*PO*1", "AK2*850*0001", "AK5*A", "AK9*A*1*1*1"]
    text = interchange([("0001", "997", ack_body), ("0002", "997", ack_body)], functional_id="FA", control=3)
    text = text.replace("GE*2*3", "GE*1*4")
    path = tmp_path / "acks.997"
    path.write_text(text)
    assert main(["x12", "parse", str(path), "--unguided", "accept"]) == 1
    err = capsys.readouterr().err
    assert "functional group FA 3" in err and "GE01 says 1 transaction sets, the group has 2" in err and "GE02 '4'" in err
    with caplog.at_level(logging.WARNING, logger="flowyard.x12"):
        result = Pipeline(flow(tmp_path, '  - x12.parse: {acknowledge: "997"}')).run(Message(payload=text.encode()))
    assert not [m for m in result.outputs if m.headers.get(ROUTE_TO_TARGETS)], "no 997 answers 997s"
    logged = [r.getMessage() for r in caplog.records if "GE01 says 1" in r.getMessage()]
    assert logged and "no 997/999 answers a group of acknowledgments" in logged[0]


# -- reader refusals name their cause in the TA1 -------------------------------------------


def refused(text: str) -> tuple[str, str]:
    """(TA1 of the refused interchange, the error message)."""
    found: list[Any] = []
    with pytest.raises(X12InputError) as info:
        for event in walk(text, no_guide, unguided="accept"):
            found.append(event)
    (result,) = [e for e in found if isinstance(e, InterchangeResult)]
    numbers = iter(range(1, 100))
    ta1 = acknowledgment(result, None, ta1=True, counter=lambda _k: next(numbers))
    assert ta1 is not None
    (segment,) = [s.text() for s in read_segments(ta1) if s.id == "TA1"]
    assert any(str(info.value.message) in f for f in envelope_findings(result))
    return segment, str(info.value)


def test_ta1_note_codes_name_the_cause() -> None:
    good = interchange([("0001", "850", PO_BODY)])
    ta1, _ = refused(good[: good.index("CTT")])
    assert ta1.endswith("*R*023")  # cut off: premature end of file
    ta1, message = refused(good.replace("N1*ST", "NAME*ST"))
    assert ta1.endswith("*R*024") and "'NAME' is not a segment id: X12 segment ids have 2 or 3" in message
    assert "terminators" not in message
    ta1, message = refused(good.replace("N1*ST*ACME MONTERREY", "N1|ST|ACME MONTERREY"))
    assert ta1.endswith("*R*024") and "mixed or wrong segment terminators?" in message
    isa_end = good.index("~") + 1
    ta1, message = refused(good[:isa_end] + good[isa_end:].replace("~", "!"))
    assert ta1.endswith("*R*004") and "terminator the ISA declares ('~'" in message
    ta1, message = refused(good.replace("GE*1*1~", "GE*1*1~\nGE*1*1~"))
    assert ta1.endswith("*R*022") and "GE trailer without its GS" in message
    ta1, message = refused(good.replace("GS*PO", "N9*XX~\nGS*PO"))
    assert ta1.endswith("*R*022") and "segment N9 outside a transaction set" in message


def test_a_valid_segment_id_is_not_refused_nor_blamed_on_terminators() -> None:
    text = interchange([("0001", "850", [*PO_BODY[:2], "N1X*ZZ*ODD BUT WELL FORMED", *PO_BODY[2:]])])
    (result,) = [e for e in events(text) if isinstance(e, SetResult)]
    assert [s["id"] for s in (result.data or {})["segments"]][2] == "N1X"


# -- optional interchange segments -------------------------------------------------------


def test_isb_ise_ta3_and_group_security_segments_are_read() -> None:
    text = interchange([("0001", "850", PO_BODY)])
    text = text.replace("~\nGS*", "~\nISB*1~\nISE*261121*0800*Z*05~\nTA3*000000001*261120*0930*A~\nGS*", 1)
    text = text.replace("~\nST*", "~\nS3S*00*0*0*ZZ*KEY~\nST*", 1).replace("~\nGE*", "~\nS3E*00~\nGE*", 1)
    found = events(text)
    (result,) = [e for e in found if isinstance(e, SetResult)]
    (interchange_result,) = [e for e in found if isinstance(e, InterchangeResult)]
    assert result.accepted and not interchange_result.notes
    data = result.interchange.as_data()
    assert data["ISB"] == [{"ISB01": "1"}] and data["ISE"][0]["ISE03"] == "Z" and data["TA3"][0]["TA304"] == "A"
    assert result.group.as_data()["S3S"][0]["S3S05"] == "KEY" and result.group.as_data()["S3E"] == [{"S3E01": "00"}]
