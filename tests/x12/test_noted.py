"""Accepted with errors noted: AK5/IK5 "E" per set, AK9 "E" or "P" for the group.

A non-fatal problem (a bad value in an element the guide marks optional, a segment the
guide marks unused) leaves the set accepted: it goes on as a message carrying the notes,
and its acknowledgment says E with the AK3/AK4 that say what. A fatal one (a mandatory
element, a syntax note) rejects it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowyard.engine import Pipeline
from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.step import ROUTE_TO_TARGETS
from flowyard.x12.acks import acknowledgment
from flowyard.x12.document import InterchangeResult, SetResult, walk
from flowyard.x12.guides import default_guide, load_guide
from flowyard.x12.reader import read_segments

from .conftest import interchange

GOOD = ["BEG*00*SA*PO-1**20261118", "N1*ST*ACME MONTERREY*92*MX01", "PO1*1*40*EA*12.50*PE*BP*A-1001", "CTT*1"]
# PO101 (350, optional, AN 1/20) 25 characters long: noted
NOTED = ["BEG*00*SA*PO-2**20261118", "N1*ST*ACME MONTERREY*92*MX01", "PO1*LINE-NUMBER-TOO-LONG-25*40*EA*12.50*PE*BP*A-1001", "CTT*1"]
# BEG03 (324, mandatory, AN 1/22) too long: rejected
REJECTED = ["BEG*00*SA*PO-3-THIS-NUMBER-IS-MUCH-TOO-LONG**20261118", "N1*ST*ACME MONTERREY*92*MX01", "PO1*1*40*EA*12.50*PE*BP*A-1001", "CTT*1"]
# PO106 without PO107 (syntax note P0607) on optional elements: still rejected
SYNTAX = ["BEG*00*SA*PO-4**20261118", "N1*ST*ACME MONTERREY*92*MX01", "PO1*1*40*EA*12.50*PE*BP", "CTT*1"]


def ack_of(text: str, kind: str = "997", resolve: Any = None) -> list[str]:
    resolver = resolve or (lambda t, v: default_guide(t, v))
    results = [e for e in walk(text, resolver) if isinstance(e, InterchangeResult)]
    numbers = iter(range(1, 100))
    ack = acknowledgment(results[0], kind, ta1=False, counter=lambda _k: next(numbers))
    assert ack is not None
    return [s.text() for s in read_segments(ack)]


def sets_of(text: str, resolve: Any = None) -> list[SetResult]:
    resolver = resolve or (lambda t, v: default_guide(t, v))
    return [e for e in walk(text, resolver) if isinstance(e, SetResult)]


def test_a_bad_optional_element_is_accepted_with_errors_noted() -> None:
    text = interchange([("0002", "850", NOTED)])
    (result,) = sets_of(text)
    assert result.accepted and result.noted and result.status == "E"
    assert result.codes == []
    assert [(p.path, p.code, p.fatal) for p in result.problems] == [("PO101", "5", False)]
    ack = ack_of(text)
    assert "AK2*850*0002" in ack
    assert "AK3*PO1*4**8" in ack and "AK4*1*350*5*LINE-NUMBER-TOO-LONG-25" in ack
    assert "AK5*E*5" in ack
    assert "AK9*E*1*1*1" in ack


def test_a_group_with_accepted_noted_and_rejected_sets_is_partially_accepted() -> None:
    text = interchange([("0001", "850", GOOD), ("0002", "850", NOTED), ("0003", "850", REJECTED), ("0004", "850", SYNTAX)])
    statuses = [(r.control_number, r.status) for r in sets_of(text)]
    assert statuses == [("0001", "A"), ("0002", "E"), ("0003", "R"), ("0004", "R")]
    ack = ack_of(text)
    assert [s for s in ack if s.startswith("AK5")] == ["AK5*A", "AK5*E*5", "AK5*R*5", "AK5*R*5"]
    assert "AK4*3*324*5*PO-3-THIS-NUMBER-IS-MUCH-TOO-LONG" in ack
    assert "AK9*P*4*4*2" in ack  # two accepted: the clean one and the noted one


def test_accepted_and_noted_sets_only_make_the_group_e_and_a_clean_group_a() -> None:
    assert "AK9*E*2*2*2" in ack_of(interchange([("0001", "850", GOOD), ("0002", "850", NOTED)]))
    assert "AK9*A*2*2*2" in ack_of(interchange([("0001", "850", GOOD), ("0005", "850", GOOD)]))
    assert "AK9*R*1*1*0" in ack_of(interchange([("0003", "850", REJECTED)]))


def test_999_says_ik5_e() -> None:
    text = interchange([("0002", "850", NOTED)], version="005010", isa_version="00501")
    ack = ack_of(text, "999")
    assert "IK3*PO1*4**8" in ack and "IK4*1*350*5*LINE-NUMBER-TOO-LONG-25" in ack
    assert "IK5*E*5" in ack and "AK9*E*1*1*1" in ack


def test_a_segment_marked_unused_is_noted_not_rejected(tmp_path: Path) -> None:
    (tmp_path / "850-nocur.yaml").write_text(
        "apiVersion: flowyard/v1\nkind: Guide\nmetadata: {name: 850-nocur}\nextends: 850-4010\nchanges:\n  CUR: unused\n",
        encoding="utf-8")
    guide = load_guide(tmp_path / "850-nocur.yaml")
    body = [GOOD[0], "CUR*BY*USD", *GOOD[1:]]
    text = interchange([("0006", "850", body)])
    (result,) = sets_of(text, lambda t, v: guide)
    assert result.status == "E"
    assert [(p.segment, p.code, p.fatal) for p in result.problems] == [("CUR", "2", False)]
    ack = ack_of(text, resolve=lambda t, v: guide)
    assert "AK3*CUR*3**2" in ack and "AK5*E*5" in ack and "AK9*E*1*1*1" in ack


def test_x12_parse_passes_a_noted_set_on_with_its_notes_and_acknowledges_e(tmp_path: Path, x12_db: Any) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: noted}\nsource:\n  file: {path: in}\n"
        'steps:\n  - x12.parse: {acknowledge: "997"}\n  - jmespath: "{po: BEG.BEG03}"\ntargets:\n  - file: {path: out}\n',
        encoding="utf-8")
    text = interchange([("0002", "850", NOTED), ("0003", "850", REJECTED)])
    result = Pipeline(load_flow(path)).run(Message(payload=text.encode(), content_type="application/edi-x12"))
    acks = [m for m in result.outputs if m.headers.get(ROUTE_TO_TARGETS)]
    sets = [m for m in result.outputs if not m.headers.get(ROUTE_TO_TARGETS)]
    assert [m.payload for m in sets] == [{"po": "PO-2"}]
    assert "PO101" in sets[0].headers["x12.noted"][0] and "too long" in sets[0].headers["x12.noted"][0]
    assert len(result.failures) == 1 and "BEG03" in str(result.failures[0].error.where)
    ack = [s.text() for s in read_segments(acks[0].payload)]
    assert "AK5*E*5" in ack and "AK5*R*5" in ack and "AK9*P*2*2*1" in ack
