"""Guide corrections of issue 19: the 862 004010 BSS has BSS08, so BSS09-BSS11 are the
contract number, the PO number and the schedule quantity qualifier; the 850 004010 takes
IT8 (conditions of sale) in the PO1 loop and TC2 (commodity) in the header and PO1 loop.
Each set validates, lands where the guide puts it and round-trips through x12.generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowyard.x12.acks import ack_set
from flowyard.x12.document import GroupResult, SetResult, walk
from flowyard.x12.guides import find_guide

from .conftest import interchange
from .test_corpus import resolve, round_trip

SS = [
    "BSS*05*SCHED-1*20261120*SH*20261201*20261231**REL-9*CONTRACT-7*PO-4711*A",
    "N1*SU*SUPPLIER X*92*SX01",
    "LIN*1*BP*A-1001", "UIT*EA", "FST*100*C*D*20261205",
    "CTT*1*100",
]


def events(body: list[str], transaction: str, functional_id: str, version: str, isa: str) -> list[Any]:
    text = interchange([("0001", transaction, body)], functional_id=functional_id, version=version, isa_version=isa)
    return list(walk(text, resolve))


def one_set(found: list[Any]) -> SetResult:
    (result,) = [e for e in found if isinstance(e, SetResult)]
    return result


@pytest.mark.parametrize(("version", "isa"), [("004010", "00401"), ("005010", "00501")])
def test_862_bss_elements_in_their_places(version: str, isa: str, tmp_path: Path, x12_db: Any) -> None:
    result = one_set(events(SS, "862", "SS", version, isa))
    assert result.accepted and not result.problems, result.reasons()
    bss = (result.data or {})["BSS"]
    assert (bss["BSS08"], bss["BSS09"], bss["BSS10"], bss["BSS11"]) == ("REL-9", "CONTRACT-7", "PO-4711", "A")
    assert "BSS07" not in bss
    original, generated = round_trip(result, tmp_path)
    assert generated == original


def test_862_bss_needs_a_release_or_a_reference_number() -> None:
    body = [SS[0].replace("**REL-9*", "***"), *SS[1:]]
    found = events(body, "862", "SS", "004010", "00401")
    result = one_set(found)
    assert not result.accepted
    assert [(p.segment, p.code) for p in result.problems] == [("BSS", "2")], [p.describe() for p in result.problems]
    group = next(e for e in found if isinstance(e, GroupResult))
    ack = ack_set("997", group, "0001", result.segments[0].separators)
    assert {"AK3*BSS*2**8", "AK4*7*328*2", "AK5*R*5"} <= set(ack), ack  # BSS07, the first of R0708, is missing


def test_862_bss11_is_a_schedule_quantity_qualifier() -> None:
    body = [SS[0].replace("*PO-4711*A", "*PO-4711*AB"), *SS[1:]]
    result = one_set(events(body, "862", "SS", "004010", "00401"))
    assert [(p.path, p.code) for p in result.problems] == [("BSS11", "5")], [p.describe() for p in result.problems]
    assert result.accepted  # an optional element too long: accepted with the error noted


PO = [
    "BEG*00*SA*PO-88**20261118", "TC2*A*8708.29.5060",
    "N1*ST*ACME MONTERREY*92*MX01",
    "PO1*1*300*EA*12.50*PE*BP*A-1001", "SAC*C*D240***1500", "IT8*N*******BP*A-1001-ALT",
    "DTM*002*20261201", "TC2*A*8708.29.5060", "TC2*J*8708295060",
    "PO1*2*25*EA*7.10*PE*BP*A-1002",
    "CTT*2",
]


@pytest.mark.parametrize(("version", "isa"), [("004010", "00401"), ("005010", "00501")])
def test_850_conditions_of_sale_and_commodity(version: str, isa: str, tmp_path: Path, x12_db: Any) -> None:
    result = one_set(events(PO, "850", "PO", version, isa))
    assert result.accepted and not result.problems, result.reasons()
    data = result.data or {}
    assert data["TC2"] == [{"TC201": "A", "TC202": "8708.29.5060"}]
    first, second = data["PO1_loop"]
    assert first["IT8"] == {"IT801": "N", "IT808": "BP", "IT809": "A-1001-ALT"}
    assert [t["TC201"] for t in first["TC2"]] == ["A", "J"]
    assert "IT8" not in second
    original, generated = round_trip(result, tmp_path)
    assert generated == original


def test_850_it8_syntax_notes_are_checked() -> None:
    body = [s if not s.startswith("IT8") else "IT8*N*******BP" for s in PO]  # IT808 without IT809 (P0809)
    result = one_set(events(body, "850", "PO", "004010", "00401"))
    assert not result.accepted
    assert ("IT8", "2") in [(p.segment, p.code) for p in result.problems], [p.describe() for p in result.problems]


def test_850_destination_quantities_per_line(tmp_path: Path, x12_db: Any) -> None:
    body = [*PO[:6], "SDQ*EA*92*STORE-1*100*STORE-2*150", "SDQ*EA*92*STORE-3*50", *PO[6:]]  # after IT8, before DTM
    result = one_set(events(body, "850", "PO", "004010", "00401"))
    assert result.accepted and not result.problems, result.reasons()
    first = (result.data or {})["PO1_loop"][0]
    assert [(s["SDQ03"], s["SDQ04"]) for s in first["SDQ"]] == [("STORE-1", "100"), ("STORE-3", "50")]
    original, generated = round_trip(result, tmp_path)
    assert generated == original
    unpaired = [s if not s.startswith("SDQ*EA*92*STORE-3") else "SDQ*EA*92*STORE-3*50*STORE-4" for s in body]
    refused = one_set(events(unpaired, "850", "PO", "004010", "00401"))
    assert not refused.accepted
    assert [(p.path, p.code) for p in refused.problems] == [("SDQ06", "2")], [p.describe() for p in refused.problems]


def test_a_partner_guide_narrows_the_new_segments(tmp_path: Path) -> None:
    folder = tmp_path / "guides"
    folder.mkdir()
    (folder / "850-4010-acme.yaml").write_text(
        "apiVersion: flowyard/v1\nkind: Guide\nmetadata: {name: 850-4010-acme}\nextends: 850-4010\n"
        "changes:\n  PO1_loop/IT8: unused\n  PO1_loop/TC2: {max: 1}\n  SDQ01: {codes: [EA]}\n",
        encoding="utf-8",
    )
    guide = find_guide("850-4010-acme", [folder])
    body = [*PO[:6], "SDQ*CA*92*STORE-1*100", *PO[6:]]
    text = interchange([("0001", "850", body)], functional_id="PO")
    (result,) = [e for e in walk(text, lambda _t, _v: guide) if isinstance(e, SetResult)]
    found = sorted((p.path, p.code) for p in result.problems)
    assert found == [("IT8", "2"), ("SDQ01", "7"), ("TC2", "5")], [p.describe() for p in result.problems]
    assert not result.accepted  # TC2 over its maximum rejects; IT8 unused and SDQ01's code alone would be noted
