"""Real documents from the shared corpus (see corpus/SOURCES.tsv): every XML sample and
schema parses with the hardened parser, and the B2MML samples validate against the
B2MML V0600 schemas, which load with all their includes from their own folder.

Samples that are invalid on purpose (SOURCES.tsv notes): COCOP
`Neg_ProcessProductionSchedule_InvalidDate.xml` (a date 'dsf2019-...'),
`Neg_ProcessProductionSchedule_InvalidQuantityDataType.xml` (DataType 'Textsdf'), and
`ProcessProductionSchedule_SchedulingParams.xml` (a COCOP extension element the stock
schemas do not declare). `Neg_ProcessProductionSchedule_EndBeforeStart.xml` breaks a
business rule only, so it is schema-valid. The OAGIS instances have no schema here, the
UBL schemas are not in the corpus, and the cXML documents have DTDs (not loaded: DTDs
are never fetched), so those are parsed only.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from flowyard.errors import StepError
from flowyard.message import Message
from flowyard.step import FlowContext
from flowyard.xml.steps import XmlParse, XmlParseOptions, XmlValidate, XmlValidateOptions

HERE = Path(__file__).resolve()
CORPUS_XML = HERE.parents[3] / "shared" / "corpus" / "xml"
B2MML_FOLDER = "mtconnect__b2mml-gateway"
COCOP = "kannisto__Cocop.MessageSerialiser.Biz_spec"
UBL_NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
}
INVALID_ON_PURPOSE = {
    "Neg_ProcessProductionSchedule_InvalidDate.xml": (
        "EarliestStartTime",
        "'dsf2019-04-24T15:00:00Z' is not a valid value",
    ),
    "Neg_ProcessProductionSchedule_InvalidQuantityDataType.xml": (
        "DataType",
        "'Textsdf' is not an element of the set {'Amount', ",
    ),
    "ProcessProductionSchedule_SchedulingParams.xml": ("SchedulingParameters", "This element is not expected"),
}


def samples(suffixes: tuple[str, ...]) -> list[str]:
    if not CORPUS_XML.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS_XML)) for p in CORPUS_XML.rglob("*") if p.suffix in suffixes)


def sources() -> dict[str, dict[str, str]]:
    with (CORPUS_XML.parent / "SOURCES.tsv").open(encoding="utf-8") as handle:
        return {row["local_path"]: row for row in csv.DictReader(handle, delimiter="\t")}


def parse(path: Path, **options: Any) -> Any:
    step = XmlParse(XmlParseOptions(**options), FlowContext(flow_file=path.parent / "flow.yaml"))
    return step.process(Message(path.read_bytes(), "application/xml")).payload


def test_the_corpus_has_xml_samples(corpus: Path) -> None:
    assert len(samples((".xml",))) >= 30
    assert len(samples((".xsd",))) >= 10


@pytest.mark.parametrize("name", samples((".xml", ".xsd")))
def test_every_sample_parses(name: str, corpus: Path) -> None:
    path = corpus / "xml" / name
    data = parse(path)
    assert isinstance(data, dict) and len(data) == 1
    root = next(iter(data))
    local = root.rsplit("}", 1)[-1]
    row = sources().get(f"xml/{name}")
    if row is not None and "root " in row["notes"]:  # SOURCES names the root element
        assert local in row["notes"].split("root ", 1)[1].split(";", 1)[0]


def b2mml_validator(corpus: Path) -> XmlValidate:
    folder = corpus / "xml" / B2MML_FOLDER
    options = XmlValidateOptions(schema="B2MML-V0600-ProductionSchedule.xsd")
    return XmlValidate(options, FlowContext(flow_file=folder / "flow.yaml"))


@pytest.mark.parametrize("name", [n.split("/", 1)[1] for n in samples((".xml",)) if n.startswith(COCOP)])
def test_b2mml_samples_validate_against_the_b2mml_schemas(name: str, corpus: Path) -> None:
    validator = b2mml_validator(corpus)
    payload = (corpus / "xml" / COCOP / name).read_bytes()
    row = sources()[f"xml/{COCOP}/{name}"]
    if name in INVALID_ON_PURPOSE:
        element, text = INVALID_ON_PURPOSE[name]
        assert "INVALID" in row["notes"]
        with pytest.raises(StepError) as info:
            validator.process(Message(payload))
        error = info.value
        assert error.where is not None and error.where.line is not None
        assert error.where.path is not None and error.where.path.endswith(element)
        assert text in str(error)
        expected_line = row["notes"].split("INVALID (line ", 1)[1].split(":", 1)[0]
        assert error.where.line == int(expected_line)
    else:
        assert "VALID" in row["notes"] and "INVALID" not in row["notes"]
        assert validator.process(Message(payload)).payload == payload


def test_b2mml_schedule_reads_as_documented(corpus: Path) -> None:
    path = corpus / "xml" / COCOP / "ProcessProductionSchedule.xml"
    data = parse(
        path, namespaces={"": "http://www.mesa.org/xml/B2MML-V0600"}, lists=["ProductionRequest", "SegmentRequirement"]
    )
    schedule = data["ProcessProductionSchedule"]["DataArea"]["ProductionSchedule"]
    assert [r["ID"] for r in schedule["ProductionRequest"]] == ["my-identifier-1", "my-identifier-2"]
    material = schedule["ProductionRequest"][0]["SegmentRequirement"][0]["MaterialRequirement"][0]
    assert material["Quantity"][1] == {
        "QuantityString": "11.9",
        "DataType": "double",
        "UnitOfMeasure": "t",
        "Key": "ProdAmount",
    }


def test_ubl_prefixes_in_the_document_do_not_matter(corpus: Path) -> None:
    """NS1 uses odd prefixes (Harry:), NS4 re-declares default namespaces: same data."""
    folder = corpus / "xml" / "phax__ph-ubl"
    one = parse(folder / "UBL-Invoice-2.0-Example-NS1.xml", namespaces=UBL_NS)
    four = parse(folder / "UBL-Invoice-2.0-Example-NS4.xml", namespaces=UBL_NS)
    assert one == four
    assert one["Invoice"]["cbc:ID"] == "A00095678"


def test_cxml_doctype_is_kept_out_and_secrets_stay_data(corpus: Path) -> None:
    """cXML declares an external DTD on xml.cxml.org: parsing must not need it."""
    data = parse(corpus / "xml" / "FriendsOfCXML__cxml-php" / "ShipNoticeRequest.xml")
    notice = data["cXML"]["Request"]["ShipNoticeRequest"]
    assert notice["ShipNoticeHeader"]["@shipmentID"]


def dtd_cases() -> list[tuple[str, str, bool]]:
    """(sample, local DTD, valid) for every sample SOURCES.tsv checked against a DTD
    that the corpus holds."""
    if not CORPUS_XML.is_dir():
        return []
    cases = []
    for local, row in sources().items():
        notes = row["notes"]
        if "DTD check vs cXML " not in notes:
            continue
        version, name = notes.split("DTD check vs cXML ", 1)[1].split(":", 1)[0].split(" ", 1)
        dtd = Path(local).parent / f"{version}-{name}"
        if (CORPUS_XML.parent / dtd).is_file():
            cases.append((local.removeprefix("xml/"), dtd.name, "INVALID" not in notes))
    return sorted(cases)


def test_some_cxml_samples_have_their_dtd_in_the_corpus() -> None:
    assert len(dtd_cases()) >= 3


@pytest.mark.parametrize(("name", "dtd", "valid"), dtd_cases())
def test_cxml_samples_validate_against_their_dtd(name: str, dtd: str, valid: bool, corpus: Path) -> None:
    path = corpus / "xml" / name
    step = XmlValidate(XmlValidateOptions(dtd=dtd), FlowContext(flow_file=path.parent / "flow.yaml"))
    payload = path.read_bytes()
    assert valid
    assert step.process(Message(payload)).payload == payload
    broken = payload.replace(b"<Request", b"<Unexpected/><Request", 1)
    with pytest.raises(StepError) as info:
        step.process(Message(broken))
    error = info.value
    assert "No declaration for element Unexpected" in str(error)
    assert error.where is not None and error.where.path == "/cXML"
    assert any("/cXML/Unexpected" in d for d in error.details)
