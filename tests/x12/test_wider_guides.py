"""Segments real partners send beyond the corpus: loads (CLD) and industry codes (LM/LQ)
at any 856 HL level, a delivery schedule (SCH loop) per 850 line. Each validates, lands
where the guide puts it in the data shape, and round-trips (generate from the parsed
shape gives the same segments)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowyard.x12.document import SetResult, walk

from .conftest import interchange
from .test_corpus import resolve, round_trip

ASN = [
    "BSN*00*SHIP-77*20261120*0930*0001",
    "HL*1**S", "TD1*CTN25*4****G*88*LB", "TD5*B*2*UPSN*U", "REF*BM*BOL-77",
    "CLD*2*10*PLT90", "REF*LS*LOAD-A", "REF*LS*LOAD-B", "DTP*036*D8*20261201",
    "N1*ST*ACME MONTERREY*92*MX01",
    "LM*AI", "LQ*0*PPAP", "LQ*1*LEVEL3",
    "HL*2*1*O", "PRF*PO-4711", "REF*DP*038",
    "HL*3*2*I", "LIN**BP*A-1001*VP*SX-9", "SN1**40*EA", "LM*AI", "LQ*0*KANBAN",
    "CTT*3",
]


def parsed(tmp_path: Path, body: list[str], version: str = "004010", isa: str = "00401") -> SetResult:
    text = interchange([("0001", "856", body)], functional_id="SH", version=version, isa_version=isa)
    (result,) = [e for e in walk(text, resolve) if isinstance(e, SetResult)]
    return result


def test_856_loads_and_industry_codes_at_each_level(tmp_path: Path, x12_db: Any) -> None:
    for version, isa in (("004010", "00401"), ("005010", "00501")):
        result = parsed(tmp_path, ASN, version, isa)
        assert result.accepted and not result.problems, result.reasons()
        data = result.data or {}
        shipment, order, item = data["HL_loop"]
        assert shipment["CLD_loop"][0]["CLD"]["CLD01"] == "2"
        assert [r["REF02"] for r in shipment["CLD_loop"][0]["REF"]] == ["LOAD-A", "LOAD-B"]
        assert shipment["REF"] == [{"REF01": "BM", "REF02": "BOL-77"}]  # the level's own REF, not the load's
        assert [q["LQ02"] for q in shipment["LM_loop"][0]["LQ"]] == ["PPAP", "LEVEL3"]
        assert item["LM_loop"][0]["LQ"][0]["LQ02"] == "KANBAN"
        assert order["PRF"]["PRF01"] == "PO-4711"
        original, generated = round_trip(result, tmp_path)
        assert generated == original


def test_856_an_industry_code_without_its_lm_is_out_of_place(tmp_path: Path) -> None:
    body = [s for s in ASN if s != "LM*AI"]
    result = parsed(tmp_path, body)
    assert not result.accepted
    assert any(p.segment == "LQ" for p in result.problems)


PO = [
    "BEG*00*SA*PO-88**20261118", "N1*ST*ACME MONTERREY*92*MX01",
    "PO1*1*300*EA*12.50*PE*BP*A-1001", "PID*F****BRACKET",
    "SCH*100*EA***002*20261201", "TD5*B*2*UPSN", "SCH*200*EA***002*20261215", "REF*DO*DOCK-4",
    "PO1*2*25*EA*7.10*PE*BP*A-1002",
    "CTT*2",
]


def test_850_delivery_schedule_per_line(tmp_path: Path, x12_db: Any) -> None:
    for version, isa in (("004010", "00401"), ("005010", "00501")):
        text = interchange([("0001", "850", PO)], version=version, isa_version=isa)
        (result,) = [e for e in walk(text, resolve) if isinstance(e, SetResult)]
        assert result.accepted and not result.problems, result.reasons()
        first, second = (result.data or {})["PO1_loop"]
        assert [s["SCH"]["SCH01"] for s in first["SCH_loop"]] == ["100", "200"]
        assert first["SCH_loop"][0]["TD5"] == [{"TD501": "B", "TD502": "2", "TD503": "UPSN"}]
        assert first["SCH_loop"][1]["REF"] == [{"REF01": "DO", "REF02": "DOCK-4"}]
        assert "SCH_loop" not in second
        original, generated = round_trip(result, tmp_path)
        assert generated == original
