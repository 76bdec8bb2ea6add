"""The reader normalises what real partners send and refuses the rest by name."""

from __future__ import annotations

import os

import pytest

from flowyard.x12.reader import X12InputError, read_segments


def ids(data: bytes | str) -> list[str]:
    return [s.id for s in read_segments(data)]


def test_odd_separators_and_crlf(make_interchange, po_body) -> None:
    text = make_interchange([("0001", "850", po_body)], seps=("|", "\\", "!", "U"), newline="\r\n")
    segments = list(read_segments(text.encode()))
    assert [s.id for s in segments][:4] == ["ISA", "GS", "ST", "BEG"]
    beg = segments[3]
    assert beg.elements == ["00", "SA", "PO-1", "", "20261118"]
    assert beg.separators.element == "|" and beg.separators.segment == "!" and beg.separators.component == "\\"
    assert not any("\r" in e or "\n" in e for s in segments for e in s.elements)


def test_newline_as_terminator_without_final_newline(make_interchange, po_body) -> None:
    text = make_interchange([("0001", "850", po_body)], seps=("*", ">", "\n", "U"), newline="")
    assert text.endswith("\n")
    segments = list(read_segments(text.rstrip("\n").encode()))
    assert segments[-1].id == "IEA" and segments[-1].elements == ["1", "000000001"]
    crlf = text.replace("\n", "\r\n")
    assert ids(crlf.encode()) == ids(text.encode())


def test_byte_order_mark_is_dropped(make_interchange, po_body) -> None:
    text = make_interchange([("0001", "850", po_body)])
    assert ids(b"\xef\xbb\xbf" + text.encode()) == ids(text.encode())


def test_lines_wrapped_at_80_columns_read_like_the_stream(make_interchange, po_body) -> None:
    stream = make_interchange([("0001", "850", po_body)], newline="")
    wrapped = "\n".join(stream[i : i + 80] for i in range(0, len(stream), 80))
    assert "\n" in wrapped[:106]  # the ISA itself is cut
    a = [(s.id, s.elements) for s in read_segments(wrapped.encode())]
    b = [(s.id, s.elements) for s in read_segments(stream.encode())]
    assert a == b


def test_several_interchanges_with_different_delimiters(make_interchange, po_body) -> None:
    first = make_interchange([("0001", "850", po_body)], control=1)
    second = make_interchange([("0002", "850", po_body)], control=2, seps=("|", "^", "\n", "U"))
    segments = list(read_segments((first + second).encode()))
    isas = [s for s in segments if s.id == "ISA"]
    assert [s.separators.element for s in isas] == ["*", "|"]
    assert [s.get(2) for s in segments if s.id == "ST"] == ["0001", "0002"]


@pytest.mark.parametrize("version", ["00200", "00400", "00401", "00406", "00501", "00801"])
def test_any_five_digit_isa12_is_read(make_interchange, po_body, version) -> None:
    text = make_interchange([("0001", "850", po_body)], isa_version=version)
    assert ids(text.encode())[-1] == "IEA"


def test_repetition_separator_only_from_00402(make_interchange, po_body) -> None:
    five = make_interchange([("0001", "850", po_body)], isa_version="00501", seps=("*", ":", "~", "^"))
    four = make_interchange([("0001", "850", po_body)], isa_version="00401", seps=("*", ":", "~", "^"))
    assert next(read_segments(five)).separators.repetition == "^"
    assert next(read_segments(four)).separators.repetition is None


def test_isa_not_fixed_width_is_read(po_body) -> None:
    text = "ISA*00**00**ZZ*SHORT*ZZ*OTHER*261120*0930*U*00401*1*0*P*>~GS*PO*S*R*20261120*0930*1*X*004010~ST*850*0001~BEG*00*SA*1**20261120~SE*3*0001~GE*1*1~IEA*1*1~"
    segments = list(read_segments(text))
    assert segments[0].get(6) == "SHORT" and segments[0].separators.segment == "~"


def test_isa12_not_a_version_is_refused_by_name() -> None:
    text = "ISA*00*          *00*          *ZZ*A              *ZZ*B              *261120*0930*U*0040X*000000001*0*P*>~"
    with pytest.raises(X12InputError) as info:
        list(read_segments(text.encode()))
    assert "ISA12" in str(info.value)


def test_empty_file_is_refused() -> None:
    for data in (b"", b"   \r\n"):
        with pytest.raises(X12InputError, match="empty"):
            list(read_segments(data))


def test_ebcdic_is_refused(make_interchange, po_body) -> None:
    data = make_interchange([("0001", "850", po_body)]).encode("cp037")
    with pytest.raises(X12InputError, match="EBCDIC"):
        list(read_segments(data))


def test_binary_garbage_is_refused() -> None:
    data = b"\x00\x01\x02PK\x03\x04" + bytes(range(256)) * 4
    with pytest.raises(X12InputError, match="binary"):
        list(read_segments(data))
    with pytest.raises(X12InputError):
        list(read_segments(os.urandom(4096).replace(b"ISA", b"XXX")))


def test_truncated_file_says_so_with_the_line(make_interchange, po_body) -> None:
    text = make_interchange([("0001", "850", po_body)])
    cut = text[: text.index("CTT")]
    seen: list[str] = []
    with pytest.raises(X12InputError) as info:
        for segment in read_segments(cut.encode()):
            seen.append(segment.id)
    assert "truncated" in str(info.value)
    assert info.value.where is not None and info.value.where.line is not None
    assert seen[-1] == "PO1"  # what was complete was read


def test_truncated_inside_isa() -> None:
    with pytest.raises(X12InputError, match="truncated"):
        list(read_segments(b"ISA*00*          *00*    "))


def test_bin_segment_may_hold_any_character(make_interchange) -> None:
    payload = "line1\nline2~with*seps"
    body = [f"BIN*{len(payload)}*{payload}"]
    text = make_interchange([("0001", "999", ["AK1*PO*1"])])
    text = text.replace("AK1*PO*1~", "AK1*PO*1~\n" + body[0] + "~")
    segments = list(read_segments(text))
    binary = next(s for s in segments if s.id == "BIN")
    assert binary.elements == [str(len(payload)), payload]
    assert segments[-1].id == "IEA"


def test_not_x12_text_names_what_it_starts_with() -> None:
    with pytest.raises(X12InputError, match="must begin with 'ISA'"):
        list(read_segments(b"GS*PO*A*B~ST*850*0001~"))
