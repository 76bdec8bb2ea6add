"""Every segment carries the line where it starts, whatever the layout, deep in a big file.

The reader reads regular 32 KB chunks (one line break after each terminator, or none)
with one split and counts lines from the segment index: these tests hold it to the
plain definition, 1 + the newlines before the segment's first character."""

from __future__ import annotations

import pytest

from flowyard.x12.reader import X12InputError, read_segments

from .conftest import interchange

BODY = ["BEG*00*SA*PO-1**20261118",
        *[s for i in range(1, 3001) for s in (f"PO1*{i}*5*EA*1.25*PE*BP*A-{i}", f"PID*F****PART {i}")],
        "CTT*3000"]
LAYOUTS = {
    "tilde-lf": (("*", ">", "~", "U"), "\n"),
    "tilde-crlf": (("*", ">", "~", "U"), "\r\n"),
    "one-line": (("*", ">", "~", "U"), ""),
    "lf-terminated": (("*", ">", "\n", "U"), ""),
    "crlf-terminated": (("*", ">", "\n", "U"), "\r"),
}


def text_of(layout: str, body: list[str] = BODY) -> str:
    seps, newline = LAYOUTS[layout]
    if layout == "crlf-terminated":  # "\r" before each "\n" terminator
        return interchange([("0001", "850", body)], seps=seps, newline="").replace("\n", "\r\n")
    return interchange([("0001", "850", body)], seps=seps, newline=newline)


def starts(text: str, term: str) -> list[int]:
    """Each segment's first character, by walking the text the slow way."""
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos] in " \r\n":
            pos += 1
        if pos >= len(text):
            return out
        out.append(pos)
        pos = text.index(term, pos) + 1


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_segment_of_two_interchanges_has_its_line(layout: str) -> None:
    text = text_of(layout) + text_of(layout)
    term = LAYOUTS[layout][0][2]
    segments = list(read_segments(text.encode()))
    expected = [text.count("\n", 0, p) + 1 for p in starts(text, term)]
    assert len(segments) == len(expected) == 2 * (len(BODY) + 6)
    assert [s.line for s in segments] == expected
    assert segments[-1].id == "IEA" and segments[len(BODY) + 5].id == "IEA"


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_bad_segment_deep_in_the_file_names_its_line(layout: str) -> None:
    body = list(BODY)
    body[4500] = "P@1*1*5*EA"  # segment 4504 of the file (ISA, GS, ST, BEG before the body)
    text = text_of(layout, body)
    with pytest.raises(X12InputError) as info:
        list(read_segments(text.encode()))
    assert info.value.where is not None
    assert info.value.where.line == (1 if layout == "one-line" else 4504)
    assert "'P@1' is not a segment id" in str(info.value)
