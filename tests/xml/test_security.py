"""Hostile XML fails fast with a clear error, is kept as a dead letter, and never reads a
file, opens a connection or exhausts memory: for every XML step."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

STEP_USES = {
    "xml.parse": "  - xml.parse: {}",
    "xml.xpath": "  - xml.xpath: {expressions: {root: 'name(/*)'}}",
    "xml.xpath-stream": "  - xml.xpath: {expressions: {v: 'string(.)'}, each: '//r'}",
    "xml.xslt": "  - xml.xslt: copy.xsl",
    "xml.validate": "  - xml.validate: any.xsd",
}
COPY_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
</xsl:stylesheet>"""
ANY_XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="r"><xs:complexType mixed="true"><xs:sequence>
    <xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/>
  </xs:sequence><xs:anyAttribute processContents="skip"/></xs:complexType></xs:element>
</xs:schema>"""
FILES = {"copy.xsl": COPY_XSL, "any.xsd": ANY_XSD}


def only_failure(result):  # type: ignore[no-untyped-def]
    assert not result.outputs, [m.payload for m in result.outputs]
    assert len(result.failures) == 1
    return result.failures[0]


def test_fifo_watch_detects_a_reader(fifo) -> None:  # type: ignore[no-untyped-def]
    """Control for the XXE tests: the watched file notices an ordinary read."""
    watch = fifo()
    assert watch.path.read_bytes() == b"TOP-SECRET-CONTENT"
    assert watch.stop() is True


def test_http_spy_records_a_request(http_spy) -> None:  # type: ignore[no-untyped-def]
    """Control for the network tests: the spy does see a request when one is made."""
    with urllib.request.urlopen(f"{http_spy.url}/control.dtd") as response:
        assert b"ENTITY" in response.read()
    assert http_spy.requests == ["/control.dtd"]


@pytest.mark.parametrize("use", list(STEP_USES))
def test_xxe_file_read_is_refused_without_opening_the_file(use, run_steps, fifo) -> None:  # type: ignore[no-untyped-def]
    watch = fifo()
    doc = f'<?xml version="1.0"?>\n<!DOCTYPE r [\n  <!ENTITY xxe SYSTEM "file://{watch.path}">\n]>\n<r>&xxe;</r>'
    result = run_steps(STEP_USES[use], doc.encode(), **FILES)
    opened = watch.stop()
    failure = only_failure(result)
    text = str(failure.error)
    assert "declares entities (xxe)" in text
    assert "line 3" in text  # where the declaration is
    assert failure.error.step == "1-" + use.split("-")[0]
    assert failure.message.payload == doc.encode()  # kept as it arrived: a dead letter
    assert "TOP-SECRET" not in text
    assert opened is False


@pytest.mark.parametrize("use", list(STEP_USES))
def test_external_dtd_is_never_fetched(use, run_steps, http_spy) -> None:  # type: ignore[no-untyped-def]
    """A DOCTYPE with a SYSTEM id is accepted (cXML has one) but never loaded."""
    doc = f'<!DOCTYPE r SYSTEM "{http_spy.url}/evil.dtd"><r>ok</r>'.encode()
    result = run_steps(STEP_USES[use], doc, **FILES)
    assert result.ok, [str(f.error) for f in result.failures]
    assert http_spy.requests == []


@pytest.mark.parametrize("use", list(STEP_USES))
def test_external_dtd_file_is_never_read(use, run_steps, fifo) -> None:  # type: ignore[no-untyped-def]
    watch = fifo("evil.dtd")
    doc = f'<!DOCTYPE r SYSTEM "file://{watch.path}"><r>ok</r>'.encode()
    result = run_steps(STEP_USES[use], doc, **FILES)
    assert watch.stop() is False
    assert result.ok, [str(f.error) for f in result.failures]


@pytest.mark.parametrize("use", list(STEP_USES))
def test_external_parameter_entity_is_refused_and_never_fetched(use, run_steps, http_spy) -> None:  # type: ignore[no-untyped-def]
    doc = f'<!DOCTYPE r [<!ENTITY % ext SYSTEM "{http_spy.url}/ext.dtd"> %ext;]><r>&leaked;</r>'.encode()
    result = run_steps(STEP_USES[use], doc, **FILES)
    failure = only_failure(result)
    assert "refused" in str(failure.error) or "entit" in str(failure.error)
    assert "LEAKED" not in str(failure.error)
    assert http_spy.requests == []


def test_xinclude_is_not_processed(run_steps, http_spy, fifo) -> None:  # type: ignore[no-untyped-def]
    watch = fifo()
    doc = (
        f'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="{http_spy.url}/x.xml"/>'
        f'<xi:include href="file://{watch.path}" parse="text"/></r>'
    ).encode()
    result = run_steps("  - xml.parse: {namespaces: {xi: 'http://www.w3.org/2001/XInclude'}}", doc)
    assert result.ok
    assert result.outputs[0].payload["r"]["xi:include"][0] == {"@href": f"{http_spy.url}/x.xml"}
    assert watch.stop() is False
    assert http_spy.requests == []


def billion_laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return ("<!DOCTYPE r [" + "".join(entities) + "]><r>&lol9;</r>").encode()


def quadratic_blowup() -> bytes:
    return b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 50_000 + b'">]><r>' + b"&a;" * 50_000 + b"</r>"


@pytest.mark.parametrize("use", list(STEP_USES))
@pytest.mark.parametrize("bomb", [billion_laughs, quadratic_blowup])
def test_entity_bombs_are_refused(use, bomb, run_steps) -> None:  # type: ignore[no-untyped-def]
    result = run_steps(STEP_USES[use], bomb(), **FILES)
    failure = only_failure(result)
    text = str(failure.error)
    assert "entit" in text and "refused" in text
    assert "line 1" in text


def test_entity_bomb_fails_fast_without_expanding(run_steps) -> None:  # type: ignore[no-untyped-def]
    """The expanded billion laughs would be 3 GB; the refusal holds no expansion."""
    import tracemalloc

    tracemalloc.start()
    result = run_steps(STEP_USES["xml.parse"], billion_laughs())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not result.ok
    assert peak < 50_000_000, peak


@pytest.mark.parametrize("use", list(STEP_USES))
def test_huge_attribute_is_refused_with_its_path(use, run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = b'<r><a><b x="' + b"y" * 2_000_000 + b'"/></a></r>'
    steps = STEP_USES[use]
    if use == "xml.xpath-stream":  # streaming keeps the parser's 10,000,000 unless told
        steps = steps.replace("each: '//r'", "each: '//r', max_attribute: 1000000")
    result = run_steps(steps, doc, **FILES)
    failure = only_failure(result)
    text = str(failure.error)
    assert "attribute x is 2,000,000 characters long" in text
    assert "/r/a/b" in text


@pytest.mark.parametrize("use", ["xml.parse", "xml.xpath-stream"])
def test_attribute_past_libxml_limit_is_refused_by_the_parser(use, run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = b'<r x="' + b"y" * 12_000_000 + b'"/>'
    failure = only_failure(run_steps(STEP_USES[use], doc))
    assert "longer than 10,000,000 characters" in str(failure.error)


@pytest.mark.parametrize("use", list(STEP_USES))
def test_deep_nesting_is_refused(use, run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = b"<r>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</r>"
    failure = only_failure(run_steps(STEP_USES[use], doc, **FILES))
    assert "nested deeper than 256 levels" in str(failure.error)
    assert "line 1" in str(failure.error)


def test_depth_option_lowers_the_limit(run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = b"<r>" + b"<a>" * 20 + b"</a>" * 20 + b"</r>"
    assert run_steps("  - xml.parse: {max_depth: 30}", doc).ok
    failure = only_failure(run_steps("  - xml.parse: {max_depth: 10}", doc))
    assert "more than 10 levels deep" in str(failure.error)
    assert "/r/a/a/a/a/a/a/a/a/a/a" in str(failure.error)


def test_size_limit(run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = b"<r>" + b"<a>x</a>" * 1000 + b"</r>"
    failure = only_failure(run_steps("  - xml.parse: {max_size: 1KB}", doc))
    assert "8,007 bytes, more than the limit of 1,000" in str(failure.error)
    assert run_steps("  - xml.parse: {max_size: 1MB}", doc).ok


def test_malformed_xml_names_line_and_column(run_steps) -> None:  # type: ignore[no-untyped-def]
    failure = only_failure(run_steps(STEP_USES["xml.parse"], b"<r>\n  <a>\n  </b>\n</r>"))
    text = str(failure.error)
    assert "not well-formed XML" in text
    assert "line 3" in text
    assert "1-xml.parse" in text
    assert failure.error.where.path == "/r/a"  # the elements open where it broke


def test_malformed_xml_path_counts_siblings(run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = b"<orders>\n<order/>\n<order><line/><line><qty>1</qty>\n<qty>2</qtx></line></order></orders>"
    failure = only_failure(run_steps(STEP_USES["xml.parse"], doc))
    assert failure.error.where.line == 4
    assert failure.error.where.path == "/orders/order[2]/line[2]/qty[2]"


def test_malformed_xml_path_keeps_the_documents_own_prefixes(run_steps) -> None:  # type: ignore[no-untyped-def]
    doc = b'<p:r xmlns:p="urn:x">\n<p:a xmlns="urn:d"><b/><b><c></d></b></p:a></p:r>'
    failure = only_failure(run_steps(STEP_USES["xml.parse"], doc))
    assert failure.error.where.path == "/p:r/p:a/b[2]/c"


def test_xslt_document_outside_the_folder_is_refused(run_steps, fifo, http_spy) -> None:  # type: ignore[no-untyped-def]
    watch = fifo()
    xsl = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
      <xsl:param name="src"/>
      <xsl:template match="/"><out><xsl:copy-of select="document($src)"/></out></xsl:template>
    </xsl:stylesheet>"""
    files = {"read.xsl": xsl, "inside.xml": "<inside>fine</inside>"}
    ok = run_steps("  - xml.xslt: {stylesheet: read.xsl, parameters: {src: inside.xml}}", b"<r/>", **files)
    assert ok.ok and b"<inside>fine</inside>" in ok.outputs[0].payload
    for src in (str(watch.path), f"{http_spy.url}/x.xml", "../../etc/hostname"):
        steps = f"  - xml.xslt: {{stylesheet: read.xsl, parameters: {{src: '{src}'}}}}"
        failure = only_failure(run_steps(steps, b"<r/>", **files))
        assert "refused" in str(failure.error) or "denied" in str(failure.error), str(failure.error)
    assert watch.stop() is False
    assert http_spy.requests == []


def test_xslt_cannot_write_files(run_steps, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "written.txt"
    xsl = f"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
        xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl">
      <xsl:template match="/"><exsl:document href="{target}" method="text">pwned</exsl:document><done/></xsl:template>
    </xsl:stylesheet>"""
    failure = only_failure(run_steps("  - xml.xslt: write.xsl", b"<r/>", **{"write.xsl": xsl}))
    assert "write" in str(failure.error).lower() or "denied" in str(failure.error)
    assert not target.exists()


def test_xslt_import_outside_the_folder_fails_at_load(write_flow, flow_text, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from flowyard.errors import DefinitionError
    from flowyard.loader import load_flow

    outside = tmp_path.parent / f"{tmp_path.name}-outside.xsl"
    outside.write_text('<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"/>')
    xsl = f"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
      <xsl:import href="{outside}"/></xsl:stylesheet>"""
    path = write_flow(flow_text("  - xml.xslt: imp.xsl"), **{"imp.xsl": xsl})
    with pytest.raises(DefinitionError) as info:
        load_flow(path)
    text = str(info.value)
    assert f"refused to load {str(outside)!r}" in text or "refused" in text
    assert ":7:" in text  # FILE:LINE:COL of the step's option


def test_xsd_include_outside_the_folder_and_network_import_fail_at_load(
    write_flow, flow_text, tmp_path: Path, http_spy
) -> None:  # type: ignore[no-untyped-def]
    from flowyard.errors import DefinitionError
    from flowyard.loader import load_flow

    outside = tmp_path.parent / f"{tmp_path.name}-types.xsd"
    outside.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:simpleType name="T"><xs:restriction base="xs:string"/></xs:simpleType></xs:schema>'
    )
    inc = f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:include schemaLocation="{outside}"/><xs:element name="r" type="T"/></xs:schema>'
    net = f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:import namespace="urn:n" schemaLocation="{http_spy.url}/n.xsd"/><xs:element name="r"/></xs:schema>'
    for name, xsd in (("inc.xsd", inc), ("net.xsd", net)):
        path = write_flow(flow_text(f"  - xml.validate: {name}"), **{name: xsd})
        with pytest.raises(DefinitionError) as info:
            load_flow(path)
        assert "refused to load" in str(info.value)
    assert http_spy.requests == []
