"""Bounded XML work (issue 17 item 3): an XSLT transform stops at its time limit (its
worker process is killed, so no core keeps burning), and a document of more elements
than `max_elements` is refused before its tree is built. (The runaway stylesheets of the
issue through the real command: tests/hostile/test_xml_bounds.py.)"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flowyard.engine import RunResult
from flowyard.errors import StepError
from flowyard.xml.security import XmlLimits, check_elements, start_tags

RunSteps = Callable[..., RunResult]

# the dedupe idiom of XSLT 1.0 without keys: each line looks at every line before it
DEDUPE_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/">
    <skus><xsl:for-each select="//line[not(@sku = preceding::line/@sku)]">
      <sku><xsl:value-of select="@sku"/></sku></xsl:for-each></skus>
  </xsl:template>
</xsl:stylesheet>
"""

COPY_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><copied><xsl:copy-of select="/*"/></copied></xsl:template>
</xsl:stylesheet>
"""


def lines(count: int) -> bytes:
    return b"<order>" + b"".join(b'<line sku="S%d"/>' % (n % 5000) for n in range(count)) + b"</order>"


def workers() -> set[int]:
    """This process's XSLT worker processes (their pids)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"flowyard.xml.isolated" in cmdline:
            found.add(int(entry.name))
    return found


def only_error(result: RunResult) -> str:
    assert not result.outputs and len(result.failures) == 1
    return str(result.failures[0].error)


def test_a_worker_serves_many_documents_and_a_killed_one_is_replaced(
        run_steps: RunSteps, write_flow: Callable[..., Path]) -> None:
    from flowyard.engine import Pipeline
    from flowyard.loader import load_flow
    from flowyard.message import Message

    flow_file = write_flow(
        "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: x}\nsource: {file: {path: in}}\n"
        "steps:\n  - xml.xslt: {stylesheet: dedupe.xsl, time_limit: 1, parameters: {p: \"it's\"}}\n"
        "targets:\n  - file: {path: out}\n", **{"dedupe.xsl": DEDUPE_XSL})
    pipeline = Pipeline(load_flow(flow_file))

    def run(payload: bytes) -> RunResult:
        return pipeline.run(Message(payload, content_type="application/xml"))

    before = workers()  # other tests' steps may not be collected yet
    first = run(lines(10))
    assert first.outputs[0].payload.count(b"<sku>") == 10
    pids = workers() - before
    assert len(pids) == 1
    assert run(lines(20)).outputs[0].payload.count(b"<sku>") == 20
    assert workers() - before == pids  # the same worker, kept between messages
    started = time.monotonic()
    stopped = only_error(run(lines(20_000)))  # unbounded: 25 s on this machine under load
    assert time.monotonic() - started < 1 + 10  # the limit plus generous slack
    assert "the stylesheet ran longer than its time limit of 1s (option time_limit) and was stopped" in stopped
    assert "xml.xslt" in stopped  # the step is named
    assert not workers() & pids  # killed, not left burning a core
    assert run(lines(7)).outputs[0].payload.count(b"<sku>") == 7  # a fresh worker
    bad = only_error(run(b"<order><line></order>"))
    assert "not well-formed" in bad and "line 1" in bad  # the worker's parse error, with its place


# a string that doubles 40 times: a terabyte, asked for a few seconds in
GROWING_XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template name="grow"><xsl:param name="s"/><xsl:param name="n"/>
    <xsl:choose><xsl:when test="$n > 0"><xsl:call-template name="grow">
      <xsl:with-param name="s" select="concat($s, $s)"/><xsl:with-param name="n" select="$n - 1"/>
    </xsl:call-template></xsl:when><xsl:otherwise><xsl:value-of select="string-length($s)"/></xsl:otherwise>
    </xsl:choose></xsl:template>
  <xsl:template match="/"><r><xsl:call-template name="grow"><xsl:with-param name="s" select="'ab'"/>
    <xsl:with-param name="n" select="/r/@n"/></xsl:call-template></r></xsl:template>
</xsl:stylesheet>
"""


def test_a_transform_past_its_memory_limit_fails_and_the_next_one_runs(
        run_steps: RunSteps, write_flow: Callable[..., Path]) -> None:
    from flowyard.engine import Pipeline
    from flowyard.loader import load_flow
    from flowyard.message import Message

    flow_file = write_flow(
        "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: x}\nsource: {file: {path: in}}\n"
        "steps:\n  - xml.xslt: {stylesheet: grow.xsl, max_memory: 200MB}\n"
        "targets:\n  - file: {path: out}\n", **{"grow.xsl": GROWING_XSL})
    pipeline = Pipeline(load_flow(flow_file))
    started = time.monotonic()
    error = only_error(pipeline.run(Message(b'<r n="40"/>', content_type="application/xml")))
    assert "the transform needed more memory than its limit (option max_memory: 200 MB)" in error
    assert time.monotonic() - started < 30
    ok = pipeline.run(Message(b'<r n="3"/>', content_type="application/xml"))
    assert b"<r>16</r>" in ok.outputs[0].payload  # a fresh worker


class Stopped(Exception):
    """What a message's budget raises in the thread of a step that went over."""


def test_a_transform_stopped_from_outside_kills_its_worker(tmp_path: Path) -> None:
    """A budget stops a step by raising in its thread (PyThreadState_SetAsyncExc): the
    wait for the worker gives way within a slice and the worker goes with it."""
    import ctypes
    import threading

    from flowyard.xml.isolated import IsolatedXslt, Stylesheet

    (tmp_path / "dedupe.xsl").write_text(DEDUPE_XSL)
    isolated = IsolatedXslt(Stylesheet(str(tmp_path / "dedupe.xsl"), str(tmp_path), XmlLimits(), ()), 60.0)
    before = workers()  # other tests' steps may not be collected yet
    isolated.transform(lines(3))  # the worker is up
    pids = workers() - before
    assert len(pids) == 1
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            isolated.transform(lines(30_000))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)  # the transform is under way in the worker
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0), ctypes.py_object(Stopped))
    thread.join(10)
    assert not thread.is_alive() and isinstance(outcome[0], Stopped)
    assert not workers() & pids  # killed with the step, not left burning until its own limit
    isolated.close()


def test_errors_inside_the_worker_read_as_before(run_steps: RunSteps) -> None:
    terminate = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
      <xsl:template match="/"><xsl:message terminate="yes">no lines in <xsl:value-of select="name(/*)"/>
      </xsl:message></xsl:template></xsl:stylesheet>"""
    error = only_error(run_steps("  - xml.xslt: stop.xsl", b"<order/>", **{"stop.xsl": terminate}))
    assert "stylesheet stop.xsl failed" in error and "no lines in order" in error
    refused = only_error(run_steps("  - xml.xslt: {stylesheet: copy.xsl, max_elements: 3}",
                                   lines(5), **{"copy.xsl": COPY_XSL}))
    assert "the document has 6 elements, more than the limit of 3 (option max_elements)" in refused


def test_max_elements_refuses_a_document_before_its_tree_is_built(run_steps: RunSteps) -> None:
    ok = run_steps("  - xml.parse: {max_elements: 6}", lines(5))
    assert not ok.failures
    error = only_error(run_steps("  - xml.parse: {max_elements: 5}", lines(5)))
    assert "the document has 6 elements, more than the limit of 5 (option max_elements)" in error
    for step in ("xml.validate: {schema: s.xsd, max_elements: 5}", "xml.xpath: {expressions: {n: count(//line)}, max_elements: 5}"):
        xsd = '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="order"/></xs:schema>'
        assert "more than the limit of 5" in only_error(run_steps(f"  - {step}", lines(5), **{"s.xsd": xsd}))


def test_the_count_is_not_fooled_by_markup_that_is_not_an_element() -> None:
    tricky = (b'<?xml version="1.0"?><!DOCTYPE r><r><!-- <a><a><a> --><![CDATA[<b><b></b>]]>'
              b"<?pi <c><c>?><x/>text &lt;y&gt;</r>")
    assert start_tags(tricky, limit=1) == 2
    check_elements(tricky, XmlLimits(max_elements=2))
    with pytest.raises(StepError, match="has 2 elements, more than the limit of 1"):
        check_elements(tricky, XmlLimits(max_elements=1))


def test_a_file_backed_document_is_counted_streaming_and_the_line_named(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    path.write_bytes(b"<r>\n" + b"<a/>\n" * 100 + b"</r>\n")
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        check_elements(mapped, XmlLimits(max_elements=101))
        with pytest.raises(StepError) as refused:
            check_elements(mapped, XmlLimits(max_elements=50))
    assert "more than 50 elements" in str(refused.value) and "line 52" in str(refused.value)
