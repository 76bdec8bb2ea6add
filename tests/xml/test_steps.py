"""xml.xpath, xml.xslt and xml.validate in real flows (loader + engine)."""

from __future__ import annotations

import pytest

from flowyard.errors import DefinitionError
from flowyard.loader import load_flow

ORDER = b"""<?xml version="1.0"?>
<o:order xmlns:o="urn:orders" xmlns:p="urn:parts" id="PO-7">
  <o:line n="1"><p:part>A-1</p:part><o:qty>5</o:qty></o:line>
  <o:line n="2"><p:part>B-2</p:part><o:qty>2.5</o:qty></o:line>
</o:order>"""


def test_xpath_named_values_with_prefixes(run_steps) -> None:  # type: ignore[no-untyped-def]
    steps = """  - xml.xpath:
      namespaces: {ord: "urn:orders", pt: "urn:parts"}
      expressions:
        id: string(/ord:order/@id)
        parts: /ord:order/ord:line/pt:part
        lines: count(//ord:line)
        total: sum(//ord:qty)
        big: boolean(//ord:qty[. > 3])
        missing: string(/ord:order/ord:nothing)"""
    result = run_steps(steps, ORDER)
    assert result.ok, [str(f.error) for f in result.failures]
    assert result.outputs[0].payload == {
        "id": "PO-7",
        "parts": ["A-1", "B-2"],
        "lines": 2,
        "total": 7.5,
        "big": True,
        "missing": "",
    }


def test_xpath_each_streams_one_message_per_record(run_steps) -> None:  # type: ignore[no-untyped-def]
    steps = """  - xml.xpath:
      namespaces: {ord: "urn:orders", pt: "urn:parts"}
      each: /ord:order/ord:line
      expressions: {n: string(@n), part: string(pt:part), qty: number(ord:qty)}"""
    result = run_steps(steps, ORDER)
    assert [m.payload for m in result.outputs] == [
        {"n": "1", "part": "A-1", "qty": 5},
        {"n": "2", "part": "B-2", "qty": 2.5},
    ]
    assert [m.headers["record_index"] for m in result.outputs] == [0, 1]
    assert len({m.correlation_id for m in result.outputs}) == 1


def test_xpath_each_without_split_gives_one_list(run_steps) -> None:  # type: ignore[no-untyped-def]
    steps = """  - xml.xpath: {namespaces: {ord: "urn:orders"}, each: "//ord:line", split: false, expressions: {n: string(@n)}}"""
    result = run_steps(steps, ORDER)
    assert [m.payload for m in result.outputs] == [[{"n": "1"}, {"n": "2"}]]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("  - xml.xpath: {expressions: {a: '//ord:line['}, namespaces: {ord: urn:o}}", "invalid XPath 1.0"),
        ("  - xml.xpath: {expressions: {a: '//x:line'}}", "invalid XPath 1.0"),
        ("  - xml.xpath: {expressions: {a: '.'}, namespaces: {'': urn:o}}", "XPath 1.0 has no default namespace"),
        ("  - xml.xpath: {expressions: {a: '.'}, each: 'a[1]'}", "each must be a path of element names"),
        ("  - xml.xslt: missing.xsl", "file 'missing.xsl' not found"),
        ("  - xml.validate: ../../etc/x.xsd", "must stay inside the flow's folder"),
    ],
)
def test_bad_options_are_definition_errors_with_a_position(steps, expected, write_flow, flow_text) -> None:  # type: ignore[no-untyped-def]
    path = write_flow(flow_text(steps))
    with pytest.raises(DefinitionError) as info:
        load_flow(path)
    text = str(info.value)
    assert expected in text
    assert f"{path}:7:" in text


REPORT_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:o="urn:orders" xmlns:p="urn:parts" exclude-result-prefixes="o p">
  <xsl:import href="lib/common.xsl"/>
  <xsl:output method="xml" indent="no"/>
  <xsl:param name="plant" select="'none'"/>
  <xsl:param name="factor" select="1"/>
  <xsl:template match="/o:order">
    <receipt plant="{$plant}" po="{@id}">
      <xsl:for-each select="o:line">
        <item part="{p:part}" qty="{o:qty * $factor}"><xsl:call-template name="stamp"/></item>
      </xsl:for-each>
      <xsl:if test="not(o:line)"><xsl:message terminate="yes">order <xsl:value-of select="@id"/> has no lines</xsl:message></xsl:if>
    </receipt>
  </xsl:template>
</xsl:stylesheet>"""
COMMON_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template name="stamp">ok</xsl:template>
</xsl:stylesheet>"""


def test_xslt_with_parameters_and_an_import(run_steps) -> None:  # type: ignore[no-untyped-def]
    steps = """  - xml.xslt: {stylesheet: report.xsl, parameters: {plant: "MX01 'north'", factor: 10}}"""
    result = run_steps(steps, ORDER, **{"report.xsl": REPORT_XSL, "lib__common.xsl": COMMON_XSL})
    assert result.ok, [str(f.error) for f in result.failures]
    out = result.outputs[0]
    assert out.content_type == "application/xml"
    assert out.payload.decode() == (
        """<?xml version="1.0"?>\n<receipt plant="MX01 'north'" po="PO-7"><item part="A-1" qty="50">ok</item><item part="B-2" qty="25">ok</item></receipt>"""
    )


def test_xslt_message_terminate_is_a_step_error(run_steps) -> None:  # type: ignore[no-untyped-def]
    empty = b'<o:order xmlns:o="urn:orders" id="PO-8"/>'
    result = run_steps("  - xml.xslt: report.xsl", empty, **{"report.xsl": REPORT_XSL, "lib__common.xsl": COMMON_XSL})
    assert len(result.failures) == 1
    text = str(result.failures[0].error)
    assert "report.xsl failed" in text
    assert "order PO-8 has no lines" in text


def test_xslt_then_validate_the_rendered_document(run_steps) -> None:  # type: ignore[no-untyped-def]
    xsd = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xs:element name="receipt"><xs:complexType><xs:sequence>
        <xs:element name="item" maxOccurs="unbounded"><xs:complexType mixed="true">
          <xs:attribute name="part" type="xs:string"/><xs:attribute name="qty" type="xs:decimal"/>
        </xs:complexType></xs:element>
      </xs:sequence><xs:attribute name="plant"/><xs:attribute name="po"/></xs:complexType></xs:element>
    </xs:schema>"""
    files = {"report.xsl": REPORT_XSL, "lib__common.xsl": COMMON_XSL, "receipt.xsd": xsd}
    ok = run_steps("  - xml.xslt: report.xsl\n  - xml.validate: receipt.xsd", ORDER, **files)
    assert ok.ok, [str(f.error) for f in ok.failures]
    bad = ORDER.replace(b"<o:qty>5</o:qty>", b"<o:qty>five</o:qty>")
    failed = run_steps("  - xml.xslt: report.xsl\n  - xml.validate: receipt.xsd", bad, **files)
    assert "2-xml.validate" in str(failed.failures[0].error)
    assert "'NaN' is not a valid value" in str(failed.failures[0].error)


def test_jinja_rendered_xml_can_be_validated(run_steps) -> None:  # type: ignore[no-untyped-def]
    xsd = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xs:element name="note"><xs:complexType><xs:simpleContent><xs:extension base="xs:string">
        <xs:attribute name="by" use="required"/></xs:extension></xs:simpleContent></xs:complexType></xs:element>
    </xs:schema>"""
    steps = """  - xml.parse: {}
  - jinja: {template: '<note by="{{ r.who }}">{{ r.text }}</note>', content_type: application/xml}
  - xml.validate: note.xsd"""
    doc = b"<r><who>A &amp; B</who><text>&lt;script&gt; &quot;x&quot;</text></r>"
    result = run_steps(steps, doc, **{"note.xsd": xsd})
    assert result.ok, [str(f.error) for f in result.failures]
    assert result.outputs[0].payload == b'<note by="A &amp; B">&lt;script&gt; &#34;x&#34;</note>'


NS_XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:orders"
    xmlns="urn:orders" elementFormDefault="qualified">
  <xs:include schemaLocation="types/qty.xsd"/>
  <xs:element name="order"><xs:complexType><xs:sequence>
    <xs:element name="line" maxOccurs="unbounded"><xs:complexType><xs:sequence>
      <xs:any namespace="urn:parts" processContents="skip"/>
      <xs:element name="qty" type="Qty"/>
    </xs:sequence><xs:attribute name="n" type="xs:positiveInteger" use="required"/></xs:complexType></xs:element>
  </xs:sequence><xs:attribute name="id" use="required"/></xs:complexType></xs:element>
</xs:schema>"""
QTY_XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:orders">
  <xs:simpleType name="Qty"><xs:restriction base="xs:decimal"><xs:minExclusive value="0"/></xs:restriction></xs:simpleType>
</xs:schema>"""


def test_validate_reports_every_error_with_line_and_path(run_steps) -> None:  # type: ignore[no-untyped-def]
    files = {"order.xsd": NS_XSD, "types__qty.xsd": QTY_XSD}
    assert run_steps("  - xml.validate: order.xsd", ORDER, **files).ok
    bad = ORDER.replace(b'n="2"', b'n="zero"').replace(b"<o:qty>5</o:qty>", b"<o:qty>-5</o:qty>")
    result = run_steps("  - xml.validate: order.xsd", bad, **files)
    error = result.failures[0].error
    assert error.step == "1-xml.validate"
    assert "2 error(s)" in error.message
    assert error.where is not None and error.where.line == 3
    assert error.where.path == "/o:order/o:line[1]/o:qty"
    assert len(error.details) == 2
    assert error.details[0].startswith("line 3, at /o:order/o:line[1]/o:qty: Element 'qty': ")
    assert error.details[1].startswith("line 4, at /o:order/o:line[2]: Element 'line', attribute 'n': 'zero'")
    assert result.failures[0].message.payload == bad  # unchanged: the dead letter is the input


def test_validate_passes_the_message_through_unchanged(run_steps) -> None:  # type: ignore[no-untyped-def]
    result = run_steps("  - xml.validate: order.xsd", ORDER, **{"order.xsd": NS_XSD, "types__qty.xsd": QTY_XSD})
    assert result.outputs[0].payload == ORDER
    assert result.outputs[0].content_type == "application/xml"


def test_bytes_step_after_a_data_step_is_a_definition_error(write_flow, flow_text) -> None:  # type: ignore[no-untyped-def]
    path = write_flow(
        flow_text("  - xml.parse: {}\n  - xml.validate: order.xsd"), **{"order.xsd": NS_XSD, "types__qty.xsd": QTY_XSD}
    )
    with pytest.raises(DefinitionError) as info:
        load_flow(path)
    assert "takes bytes but step '1-xml.parse' gives data" in str(info.value)


class FilePayload:
    """A file-backed payload as a source could hand it over: read as it is parsed."""

    def __init__(self, path) -> None:  # type: ignore[no-untyped-def]
        self.path = path
        self.size = path.stat().st_size
        self.opened = 0

    def open(self):  # type: ignore[no-untyped-def]
        self.opened += 1
        return self.path.open("rb")


def test_steps_read_file_backed_and_mmap_payloads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import mmap

    from flowyard.message import Message
    from flowyard.step import FlowContext
    from flowyard.xml.steps import XmlParse, XmlParseOptions, XmlXPath, XmlXPathOptions

    path = tmp_path / "order.xml"
    path.write_bytes(ORDER)
    context = FlowContext(flow_file=tmp_path / "flow.yaml")
    ns = {"ord": "urn:orders", "pt": "urn:parts"}
    stream = XmlXPath(
        XmlXPathOptions(expressions={"part": "string(pt:part)"}, namespaces=ns, each="//ord:line"), context
    )
    payload = FilePayload(path)
    assert [m.payload for m in stream.process(Message(payload))] == [{"part": "A-1"}, {"part": "B-2"}]
    assert payload.opened == 1
    parse = XmlParse(XmlParseOptions(namespaces={"": "urn:orders", "p": "urn:parts"}), context)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        data = parse.process(Message(mapped)).payload
        assert not mapped.closed
    assert data["order"]["line"][1]["p:part"] == "B-2"
    small = XmlParse(XmlParseOptions(max_size=10), context)
    with pytest.raises(Exception, match="more than the limit of 10"):
        small.process(Message(FilePayload(path)))


def test_stream_broken_midway_keeps_the_records_before_and_the_input_as_dead_letter(run_steps) -> None:  # type: ignore[no-untyped-def]
    good = "".join(f"<order id='{i}'/>\n" for i in range(1, 5001))
    doc = f"<orders>\n{good}<order id='5001'>\n</orders>".encode()
    result = run_steps("  - xml.xpath: {each: /orders/order, expressions: {id: string(@id)}}", doc)
    ids = [m.payload["id"] for m in result.outputs]
    # records the parser had passed before it met the error went on, in order; the ones
    # read together with the error (the same input chunk) are held back
    assert 0 < len(ids) < 5000
    assert ids == [str(i) for i in range(1, len(ids) + 1)]
    assert len(result.failures) == 1
    failure = result.failures[0]
    assert "not well-formed XML" in str(failure.error)
    assert failure.error.where.line == 5003  # where the mismatch shows: </orders>
    assert failure.error.where.path == "/orders/order[5001]"
    assert failure.message.payload == doc


def test_stream_small_broken_document_fails_as_a_whole(run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = b"<orders>\n<order id='1'/>\n<order id='2'/>\n<order id='3'>\n</orders>"
    result = run_steps("  - xml.xpath: {each: /orders/order, expressions: {id: string(@id)}}", doc)
    assert result.outputs == []
    assert result.failures[0].message.payload == doc
    assert "line 4" in str(result.failures[0].error)


def test_validate_with_a_dtd_and_its_guards(run_steps, write_flow, flow_text, http_spy) -> None:  # type: ignore[no-untyped-def]
    dtd = "<!ELEMENT r (a+)>\n<!ELEMENT a (#PCDATA)>\n<!ATTLIST a n CDATA #REQUIRED>"
    ok = run_steps("  - xml.validate: {dtd: r.dtd}", b'<r><a n="1">x</a></r>', **{"r.dtd": dtd})
    assert ok.ok
    bad = run_steps("  - xml.validate: {dtd: r.dtd}", b"<r>\n<a>x</a>\n<b/></r>", **{"r.dtd": dtd})
    error = bad.failures[0].error
    assert "3 error(s)" in error.message
    assert any(d.startswith("line 2, at /r/a: ") and "attribute n" in d for d in error.details)
    evil = f'<!ENTITY % ext SYSTEM "{http_spy.url}/x.dtd">\n%ext;\n' + dtd
    for steps, files, expected in (
        ("  - xml.validate: {dtd: evil.dtd}", {"evil.dtd": evil}, "declares external entities"),
        ("  - xml.validate: {dtd: r.dtd, schema: r.xsd}", {"r.dtd": dtd, "r.xsd": "<x/>"}, "exactly one of"),
    ):
        with pytest.raises(DefinitionError) as info:
            load_flow(write_flow(flow_text(steps), **files))
        assert expected in str(info.value)
    assert http_spy.requests == []


def test_xslt_text_output_takes_its_content_type_from_xsl_output(run_steps) -> None:  # type: ignore[no-untyped-def]
    xsl = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:o="urn:orders">
      <xsl:output method="text" encoding="UTF-8"/>
      <xsl:template match="/">PO;<xsl:value-of select="/o:order/@id"/>;Größe</xsl:template>
    </xsl:stylesheet>"""
    result = run_steps("  - xml.xslt: csv.xsl", ORDER, **{"csv.xsl": xsl})
    out = result.outputs[0]
    assert out.content_type == "text/plain"
    assert out.payload == "PO;PO-7;Größe".encode()


def test_xpath_each_in_batches(run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = ("<orders>" + "".join(f"<order id='{i}'/>" for i in range(1, 8)) + "</orders>").encode()
    steps = """  - xml.xpath: {each: /orders/order, batch: 3, expressions: {id: string(@id)}}
  - jmespath: "[?id != '5']" """
    result = run_steps(steps, doc)
    assert [[r["id"] for r in m.payload] for m in result.outputs] == [["1", "2", "3"], ["4", "6"], ["7"]]
    assert [m.headers["batch_index"] for m in result.outputs] == [0, 1, 2]


def test_xpath_each_keeps_only_records_on_the_path_among_siblings_and_cousins(run_steps) -> None:  # type: ignore[no-untyped-def]
    """Several records share each parent (the step remembers a parent it checked); the
    same tag elsewhere, before and after, in a sibling group or nested, is not a record."""
    doc = (
        b"<orders><order id='1'/><order id='2'><order id='nested'/></order>"
        b"<archive><order id='old-1'/><order id='old-2'/></archive>"
        b"<order id='3'/><order id='4'/></orders>"
    )
    result = run_steps("  - xml.xpath: {each: /orders/order, expressions: {id: string(@id)}}", doc)
    assert [m.payload["id"] for m in result.outputs] == ["1", "2", "3", "4"]
    archive = run_steps("  - xml.xpath: {each: /orders/archive/order, expressions: {id: string(@id)}}", doc)
    assert [m.payload["id"] for m in archive.outputs] == ["old-1", "old-2"]
    root_only = run_steps("  - xml.xpath: {each: /order, expressions: {id: string(@id)}}", b"<order id='r'/>")
    assert [m.payload["id"] for m in root_only.outputs] == ["r"]
    root_is_not_under = run_steps("  - xml.xpath: {each: /orders/order, expressions: {id: string(@id)}}", b"<order id='r'/>")
    assert root_is_not_under.outputs == []
    not_root = run_steps("  - xml.xpath: {each: /orders, expressions: {n: count(order)}}", b"<x><orders/><orders/></x>")
    assert not_root.outputs == []
