"""lists_from_schema: the XSD decides which children are lists, per parent element."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyard.errors import DefinitionError
from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.step import FlowContext
from flowyard.xml.steps import XmlParse, XmlParseOptions

XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="urn:t" targetNamespace="urn:t"
    elementFormDefault="qualified">
  <xs:include schemaLocation="parts/base.xsd"/>
  <xs:group name="Notes"><xs:sequence><xs:element name="note" type="xs:string"/></xs:sequence></xs:group>
  <xs:element name="order">
    <xs:complexType><xs:complexContent><xs:extension base="Base"><xs:sequence>
      <xs:element name="line" maxOccurs="unbounded"><xs:complexType><xs:sequence>
        <xs:element name="id" type="xs:string"/>
        <xs:sequence maxOccurs="5"><xs:element name="serial" type="xs:string"/></xs:sequence>
      </xs:sequence></xs:complexType></xs:element>
      <xs:group ref="Notes" maxOccurs="unbounded"/>
      <xs:element name="total" type="xs:decimal"/>
    </xs:sequence></xs:extension></xs:complexContent></xs:complexType>
  </xs:element>
</xs:schema>"""
BASE = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  <xs:complexType name="Base"><xs:sequence>
    <xs:element name="id" type="xs:string"/>
    <xs:element name="ref" type="xs:string" maxOccurs="3"/>
  </xs:sequence></xs:complexType>
</xs:schema>"""
DOC = b"""<order xmlns="urn:t"><id>7</id><ref>A</ref>
  <line><id>1</id><serial>S1</serial></line><note>n</note><total>3</total></order>"""


def test_children_that_may_repeat_are_lists_even_once(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "t.xsd").write_text(XSD)
    (tmp_path / "parts" / "base.xsd").write_text(BASE)
    step = XmlParse(
        XmlParseOptions(namespaces={"": "urn:t"}, lists_from_schema="t.xsd"),
        FlowContext(flow_file=tmp_path / "flow.yaml"),
    )
    data = step.process(Message(DOC)).payload
    assert data == {
        "order": {
            "id": "7",  # inherited from Base by extension, once
            "ref": ["A"],  # inherited, maxOccurs=3
            "line": [{"id": "1", "serial": ["S1"]}],  # repeating element; serial in a repeating sequence
            "note": ["n"],  # in a group referenced with maxOccurs
            "total": "3",
        }
    }


def test_b2mml_lists_come_from_the_b2mml_schema(corpus: Path) -> None:
    folder = corpus / "xml" / "mtconnect__b2mml-gateway"
    step = XmlParse(
        XmlParseOptions(
            namespaces={"": "http://www.mesa.org/xml/B2MML-V0600"},
            lists_from_schema="B2MML-V0600-ProductionSchedule.xsd",
        ),
        FlowContext(flow_file=folder / "flow.yaml"),
    )
    sample = corpus / "xml" / "kannisto__Cocop.MessageSerialiser.Biz_spec" / "ProcessProductionSchedule.xml"
    data = step.process(Message(sample.read_bytes())).payload["ProcessProductionSchedule"]
    schedules = data["DataArea"]["ProductionSchedule"]
    assert isinstance(schedules, list) and len(schedules) == 1
    requests = schedules[0]["ProductionRequest"]
    assert requests[1] == {"ID": "my-identifier-2"}  # ID may not repeat under a request
    assert requests[0]["HierarchyScope"]["EquipmentID"] == "fsf"  # nor under a scope
    nested = requests[0]["SegmentRequirement"][1]["SegmentRequirement"]
    assert isinstance(nested, list) and len(nested) == 1


def test_schema_include_outside_the_folder_is_refused(write_flow, flow_text, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path.parent / f"{tmp_path.name}-base.xsd"
    outside.write_text(BASE)
    xsd = XSD.replace("parts/base.xsd", str(outside))
    path = write_flow(flow_text("  - xml.parse: {lists_from_schema: t.xsd}"), **{"t.xsd": xsd})
    with pytest.raises(DefinitionError) as info:
        load_flow(path)
    assert "lists_from_schema: refused to load" in str(info.value)
