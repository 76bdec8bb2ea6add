"""Indentation is stripped whatever the terminator, and never splits a value (issue 19 item 3)."""

from __future__ import annotations

import pytest

from flowyard.x12.reader import read_segments

from .conftest import interchange

BODY = ["BEG*00*SA*PO 1**20261118", "N1*ST*ACME MONTERREY PLANT 2*92*MX01", "PO1*1*40*EA*12.50*PE*BP*A 1001", "CTT*1"]


def indented(text: str, terminator: str, newline: str) -> str:
    """Each line after the ISA indented by its envelope depth, with spaces and a tab."""
    depth = {"ISA": 0, "IEA": 0, "GS": 1, "GE": 1, "ST": 2, "SE": 2}
    out = []
    for line in text.split(terminator + newline):
        if not line:
            continue
        seg_id = line.split("*", 1)[0]
        out.append(("  " * depth.get(seg_id, 3)).replace("      ", "    \t") + line)
    return (terminator + newline).join(out) + terminator + newline


def elements(data: str) -> list[tuple[str, list[str]]]:
    return [(s.id, s.elements) for s in read_segments(data.encode())]


@pytest.mark.parametrize(("terminator", "newline"), [("\n", ""), ("~", "\n"), ("~", "\r\n"), ("\n", "\r")])
def test_indented_lines_read_like_plain_ones(terminator: str, newline: str) -> None:
    if terminator == "\n" and newline == "\r":  # CR LF ending each segment whose terminator is the LF
        plain = interchange([("0001", "850", BODY)], seps=("*", ">", "\n", "U"), newline="").replace("\n", "\r\n")
        text = indented(plain, "\r\n", "")
    else:
        plain = interchange([("0001", "850", BODY)], seps=("*", ">", terminator, "U"), newline=newline)
        text = indented(plain, terminator, newline)
    assert "\n  GS*" in text and "\n    \tBEG*" in text
    read = elements(text)
    assert read == elements(plain)
    assert read[3] == ("BEG", ["00", "SA", "PO 1", "", "20261118"])
    assert read[4][1][1] == "ACME MONTERREY PLANT 2"
    assert read[-1][0] == "IEA"
