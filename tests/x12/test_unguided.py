"""Any set, any version: without a guide a set is read structurally (issue 19 item 1).

The samples below are HAND-MADE for these tests (shaped after real 850, 856, 860, 846,
204 and 271 sets; no partner's data), except the 837, which is the public stupidedi sample
of the shared corpus. Reading with a resolver that knows no guide keeps these tests about
the structural path whatever guides are shipped; the step tests use sets and versions no
guide covers (850 in 006020, the health-care 271 and 837).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from flowyard.engine import Pipeline
from flowyard.errors import StepError
from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.step import ROUTE_TO_TARGETS, FlowContext
from flowyard.x12.document import SetResult, walk
from flowyard.x12.reader import Segment, read_segments
from flowyard.x12.steps import X12Generate, X12GenerateOptions

from .conftest import interchange

CORPUS_837 = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "x12" / "kputnam__stupidedi" / \
    "005010__X222A1_HC837__pass__commercial-health-insurance.edi"

# hand-made: an 850 purchase order as a 003060 partner sends it
PO_003060 = [
    "BEG*00*SA*4500012345**19990315", "CUR*BY*USD", "REF*DP*038", "PER*BD*JANE DOE*TE*5555551212", "FOB*PP",
    "ITD*01*3*2**30**60", "DTM*002*19990401", "N1*ST*ACME PLANT 2*92*0002", "N3*100 INDUSTRIAL WAY",
    "N4*DAYTON*OH*45402*US", "PO1*1*120*EA*3.25**BP*A-1001*VP*V-77", "PID*F****HEX BOLT M8X40",
    "PO1*2*40*BX*12.5**BP*A-2002", "PID*F****WASHER M8, ZINC", "CTT*2*160",
]
# hand-made: an 850 in 006020 with a composite (MEA04 unit>exponent)
PO_006020 = [
    "BEG*00*NE*PO-60201**20261120", "REF*VR*V-77", "N1*ST*ACME PLANT 2*92*0002",
    "PO1*1*10*EA*9.99**BP*A-1*UP*012345678905", "MEA*PD*HT*10*IN>1", "PID*F****BRACKET, STEEL", "CTT*1",
]
# hand-made: an 860 purchase order change (004010)
POC_004010 = [
    "BCH*01*SA*4500012345**1*19990315*19990320", "REF*DP*038", "DTM*002*19990410", "N1*ST*ACME PLANT 2*92*0002",
    "POC*1*QD*120*20*EA*3.25**BP*A-1001", "PID*F****HEX BOLT M8X40", "POC*2*DI*40*40*BX*12.5**BP*A-2002", "CTT*2",
]
# hand-made: an 846 inventory advice (004010)
INV_004010 = [
    "BIA*00*DD*INV-20261120*20261120", "REF*IA*VENDOR77", "N1*WH*ACME DC*92*DC01", "LIN*1*BP*A-1001*VP*V-77",
    "PID*F****HEX BOLT M8X40", "QTY*33*1250*EA", "SCH*300*EA***002*20261201", "LIN*2*BP*A-2002", "QTY*33*80*BX",
]
# hand-made: a 204 motor carrier load tender (005010)
TENDER_005010 = [
    "B2**SCAC**LOAD-7781**PP", "B2A*00*LT", "L11*PO-45001*PO", "G62*64*20261121*1*0800", "AT5*400**PALLETIZED",
    "NTE*LOI*DOCK DOOR 4", "N1*BT*ACME MFG*93*ACME01", "N3*1 MAIN ST", "N4*DAYTON*OH*45402*US", "S5*1*LD",
    "G62*69*20261121*U*0900", "N1*SH*ACME PLANT 2*93*P2", "S5*2*UL", "G62*70*20261122*X*1400",
    "N1*CN*BETA ASSEMBLY*93*B7", "N4*TOLEDO*OH*43604*US", "L3*12000*G***1850.00",
]
# hand-made: an 856 whose orders come before their items (not depth first), 006020
ASN_006020 = [
    "BSN*00*SHP-1*20261120*1200", "HL*1**S", "TD1*PLT90*2", "REF*BM*BOL-55", "HL*2*1*O", "PRF*PO-45001",
    "HL*3*1*O", "PRF*PO-45002", "HL*4*2*I", "LIN*1*BP*A-1001", "SN1*1*120*EA", "HL*5*3*I", "LIN*1*BP*A-2002",
    "SN1*1*40*BX", "HL*6*2*I", "LIN*2*BP*A-3003", "SN1*2*10*EA", "CTT*6",
]
# hand-made: a 271 eligibility answer with a repeated EB03 (005010 repetition separator ^)
ELIGIBILITY_005010 = [
    "BHT*0022*11*REQ-1*20261120*1200", "HL*1**20*1", "NM1*PR*2*KEY INSURANCE*****PI*999996666", "HL*2*1*21*1",
    "NM1*1P*2*BEN KILDARE SERVICE*****XX*9876543210", "HL*3*2*22*0", "TRN*2*93175-012547*9877281234",
    "NM1*IL*1*SMITH*JANE****MI*JS00111223333", "DMG*D8*19430501*F", "EB*1*IND*30^1^33^35^AL",
]

SEPS5 = ("*", ":", "~", "^")
SAMPLES: dict[str, tuple[str, str, str, str, list[str], tuple[str, str, str, str]]] = {
    # name: (ST01, GS01, GS08, ISA12, body, separators)
    "850-003060": ("850", "PO", "003060", "00306", PO_003060, ("*", ">", "~", "U")),
    "850-006020": ("850", "PO", "006020", "00602", PO_006020, ("*", ">", "~", "^")),
    "860-004010": ("860", "PC", "004010", "00401", POC_004010, ("*", ">", "~", "U")),
    "846-004010": ("846", "IB", "004010", "00401", INV_004010, ("*", ">", "~", "U")),
    "204-005010": ("204", "SM", "005010", "00501", TENDER_005010, SEPS5),
    "856-006020": ("856", "SH", "006020", "00602", ASN_006020, ("*", ">", "~", "^")),
    "271-005010": ("271", "HB", "005010X279A1", "00501", ELIGIBILITY_005010, SEPS5),
}


def sample(name: str, control: int = 1) -> str:
    transaction, group, version, isa_version, body, seps = SAMPLES[name]
    return interchange([("0001", transaction, body)], control=control, version=version, functional_id=group,
                       isa_version=isa_version, seps=seps)


def no_guide(_transaction: str, _version: str) -> None:
    return None


def sets_of(data: bytes | str, unguided: str = "accept") -> list[SetResult]:
    return [e for e in walk(data, no_guide, unguided=unguided) if isinstance(e, SetResult)]


def normalised(segment: Segment) -> tuple[str, list[str]]:
    elements = list(segment.elements)
    while elements and elements[-1] == "":
        elements.pop()
    return segment.id, elements


def body_of(text: str | bytes) -> list[tuple[str, list[str]]]:
    segments = [normalised(s) for s in read_segments(text)]
    start = next(i for i, s in enumerate(segments) if s[0] == "ST")
    end = next(i for i, s in enumerate(segments) if s[0] == "SE")
    return segments[start + 1 : end]


PARTNER = """\
apiVersion: flowyard/v1
kind: Partner
metadata: {name: NAME}
interchange: {us: "ZZ:RECEIVER", them: "ZZ:SENDER", version: "ISA12", separators: {element: "*", component: ":", segment: "~", repetition: "^"}}
group: {version: "GS08"}
acknowledgments: {send: "997", ta1: errors}
duplicates: {action: allow}
unguided: POLICY
"""


def partner(folder: Path, name: str, policy: str, isa12: str = "00501", gs08: str = "005010") -> None:
    (folder / "partners").mkdir(exist_ok=True)
    text = PARTNER.replace("NAME", name).replace("POLICY", policy).replace("ISA12", isa12).replace("GS08", gs08)
    (folder / "partners" / f"{name}.yaml").write_text(text, encoding="utf-8")


def generator(folder: Path, **options: Any) -> X12Generate:
    return X12Generate(X12GenerateOptions.model_validate(options), FlowContext(flow_file=folder / "flow.yaml"))


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_sample_reads_structurally_and_writes_back_segment_identical(name: str, tmp_path: Path, x12_db: Any) -> None:
    text = sample(name)
    (result,) = sets_of(text)
    assert result.accepted and result.unguided and not result.codes and not result.problems
    assert "no guide" in result.unguided_note and SAMPLES[name][2] in result.unguided_note
    data = result.data or {}
    assert [s["id"] for s in data["segments"]] == [s.id for s in result.segments[1:-1]]
    _transaction, _group, version, _isa, _body, seps = SAMPLES[name]
    generated = generator(tmp_path, sender="ZZ:ROUNDTRIP", receiver="ZZ:CHECK", version=version, validate=False,
                          separators={"element": seps[0], "component": seps[1], "segment": seps[2],
                                      "repetition": seps[3] if seps[3] != "U" else "^"}).process(Message(payload=data))
    assert body_of(generated.payload) == body_of(text)


def test_elements_components_and_repetitions() -> None:
    (po,) = sets_of(sample("850-006020"))
    segments = (po.data or {})["segments"]
    assert segments[0] == {"id": "BEG", "BEG01": "00", "BEG02": "NE", "BEG03": "PO-60201", "BEG05": "20261120"}
    assert next(s for s in segments if s["id"] == "MEA")["MEA04"] == ["IN", "1"]
    (eligibility,) = sets_of(sample("271-005010"))
    eb = next(s for s in (eligibility.data or {})["segments"] if s["id"] == "EB")
    assert eb["EB03"] == [["30"], ["1"], ["33"], ["35"], ["AL"]]
    (claim,) = sets_of(CORPUS_837.read_bytes())
    hi = next(s for s in (claim.data or {})["segments"] if s["id"] == "HI")
    assert hi == {"id": "HI", "HI01": ["BK", "0340"], "HI02": ["BF", "V7389"]}


def test_hl_hierarchy_as_nested_loops() -> None:
    (asn,) = sets_of(sample("856-006020"))
    data = asn.data or {}
    (shipment,) = data["HL_loop"]
    assert shipment["HL"]["HL03"] == "S" and shipment["TD1"] == [{"id": "TD1", "TD101": "PLT90", "TD102": "2"}]
    orders = shipment["HL_loop"]
    assert [o["PRF"][0]["PRF01"] for o in orders] == ["PO-45001", "PO-45002"]
    # items follow both orders in the file, yet each sits under the order its HL02 names
    assert [[i["LIN"][0]["LIN03"] for i in o["HL_loop"]] for o in orders] == [["A-1001", "A-3003"], ["A-2002"]]
    assert "CTT" not in orders[0]["HL_loop"][1], "CTT closes the hierarchy"
    (claim,) = sets_of(CORPUS_837.read_bytes())
    (provider,) = (claim.data or {})["HL_loop"]
    subscriber = provider["HL_loop"][0]
    patient = subscriber["HL_loop"][0]
    assert (provider["HL"]["HL03"], subscriber["HL"]["HL03"], patient["HL"]["HL03"]) == ("20", "22", "23")
    assert len(patient["LX"]) == 4 and patient["CLM"][0]["CLM05"] == ["11", "B", "1"]


@pytest.mark.parametrize("version", ["002001", "003010", "003060", "004060", "005050", "006020", "007030", "008020"])
def test_any_version_from_002001_to_008020(version: str) -> None:
    text = interchange([("0001", "850", PO_003060)], version=version, isa_version="00" + version[1:4])
    (result,) = sets_of(text)
    assert result.accepted and result.unguided and (result.data or {})["ST"] == {"ST01": "850", "ST02": "0001"}
    assert len((result.data or {})["segments"]) == len(PO_003060)


def test_without_accept_an_unguided_set_is_refused_as_before() -> None:
    (result,) = sets_of(sample("860-004010"), unguided="refuse")
    assert not result.accepted and result.codes == ["1"] and not result.unguided
    assert "transaction set not supported" in result.reasons()[0]


def flow(folder: Path, steps: str) -> Any:
    path = folder / "flow.yaml"
    path.write_text("apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: unguided}\nsource:\n  file: {path: in}\n"
                    f"steps:\n{steps}\ntargets:\n  - file: {{path: out}}\n", encoding="utf-8")
    return load_flow(path)


def test_the_partner_decides_accept_or_refuse(tmp_path: Path, x12_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    partner(tmp_path, "open", "accept")
    partner(tmp_path, "strict", "refuse")
    data = (sample("271-005010", control=1) + sample("850-006020", control=2)).encode()
    with caplog.at_level(logging.WARNING, logger="flowyard.x12"):
        accepted = Pipeline(flow(tmp_path, '  - x12.parse: {partner: open, acknowledge: partner}')).run(Message(payload=data))
    sets = [m for m in accepted.outputs if not m.headers.get(ROUTE_TO_TARGETS)]
    acks = [s.text() for m in accepted.outputs if m.headers.get(ROUTE_TO_TARGETS) for s in read_segments(m.payload)]
    assert len(sets) == 2 and not accepted.failures
    assert all("no guide" in m.headers["x12.unguided"] and m.headers["x12.guide"] is None for m in sets)
    assert sets[0].payload["HL_loop"][0]["HL_loop"][0]["HL_loop"][0]["EB"][0]["EB03"][0] == ["30"]
    assert acks.count("AK5*A") == 2 and "AK9*A*1*1*1" in acks
    logged = [r.getMessage() for r in caplog.records if "has no guide" in r.getMessage()]
    assert any("271 version 005010X279A1" in m and "content not validated" in m for m in logged), logged

    refused = Pipeline(flow(tmp_path, '  - x12.parse: {partner: strict, acknowledge: partner}')).run(Message(payload=data))
    acks = [s.text() for m in refused.outputs if m.headers.get(ROUTE_TO_TARGETS) for s in read_segments(m.payload)]
    assert len(refused.failures) == 2 and "transaction set not supported" in str(refused.failures[0].error)
    assert acks.count("AK5*R*1") == 2


def test_generate_writes_an_unguided_set_when_the_partner_accepts_it(tmp_path: Path, x12_db: Any) -> None:
    partner(tmp_path, "open", "accept", isa12="00602", gs08="006020")
    partner(tmp_path, "strict", "refuse", isa12="00602", gs08="006020")
    (result,) = sets_of(sample("850-006020"))
    with pytest.raises(StepError, match="unguided: accept"):
        generator(tmp_path, partner="strict").process(Message(payload=result.data))
    out = generator(tmp_path, partner="open").process(Message(payload=result.data))
    assert "no guide" in out.headers["x12.unguided"]
    written = list(read_segments(out.payload))
    (again,) = sets_of(out.payload)  # the partner's component separator is ':', the sample's '>'
    assert (again.data or {})["segments"] == (result.data or {})["segments"]
    assert next(s for s in written if s.id == "GS").get(1) == "PO"  # GS01 from the functional group table
    with pytest.raises(StepError, match="no `segments`"):
        generator(tmp_path, partner="open").process(Message(payload={"ST": {"ST01": "850"}, "BEG": {"BEG01": "00"}}))


def test_validation_off_reads_an_unguided_set_and_says_so() -> None:
    results = [e for e in walk(sample("846-004010"), no_guide, validate=False) if isinstance(e, SetResult)]
    assert [(r.accepted, r.unguided, r.codes) for r in results] == [(True, True, [])]


def test_generate_refuses_a_set_of_no_known_functional_group_before_drawing_numbers(tmp_path: Path, x12_db: Any) -> None:
    partner(tmp_path, "open", "accept", isa12="00602", gs08="006020")
    data = {"ST": {"ST01": "000"}, "segments": [{"id": "ZZZ", "ZZZ01": "1"}]}
    with pytest.raises(StepError, match="no functional group"):
        generator(tmp_path, partner="open").process(Message(payload=data))
    out = generator(tmp_path, partner="open").process(Message(payload=(sets_of(sample("850-006020"))[0].data)))
    assert out.headers["x12.interchange"] == "000000001", "the refused set spent no control number"
    read_back = generator(tmp_path, partner="open").process(Message(payload={**data, "group": {"GS01": "ZZ"}}))
    assert next(s for s in read_segments(read_back.payload) if s.id == "GS").get(1) == "ZZ"  # the group it was read in
