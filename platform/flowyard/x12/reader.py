"""Reading real-world X12 bytes into segments, whatever the sender's habits.

pyx12's own reader refuses many files a trading partner really sends: a byte-order
mark, ISA12 versions other than 00401/00501, an ISA that is not fixed-width, a stream
wrapped into 80-column lines, several interchanges with different delimiters in one
file. This module normalises what a serious translator accepts and refuses the rest
(EBCDIC, binary data, a truncated or empty file) with an `X12InputError` that names the
problem and where it is.

The reader is a generator: it yields one `Segment` at a time (or, for the walk, the
segments of 32 KB of text at a time), so memory stays bounded on a 100 MB interchange. Each ISA restarts the delimiters, so interchanges with
different separators can follow each other in one file.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from ..errors import InputLocation, StepError

_CRLF = "\r\n"
_VERSION = re.compile(r"^\d{5}$")
_BINARY_CONTROL = frozenset(range(0, 32)) - {9, 10, 13}


class X12InputError(StepError):
    """The bytes are not an X12 interchange this translator can read.

    `note` is the TA105 interchange note code that names the cause in a TA1 (see
    flowyard.x12.document.INTERCHANGE_NOTES): 023 cut off, 004 the terminator the ISA
    declares never ends a segment, 022 envelopes out of order, 024 any other invalid
    content."""

    def __init__(self, message: str, *, where: InputLocation | None = None, details: list[str] | None = None,
                 note: str = "024") -> None:
        super().__init__(message, where=where, details=details)
        self.note = note


def bad_segment_id(seg_id: str, line: int) -> X12InputError:
    """The refusal of text where a segment id should be, naming the likely cause: a
    letters-and-digits id of the wrong length is a bad id; spaces, line breaks or a long
    run of other characters mean the terminators are not what the ISA says."""
    shown = seg_id[:20]
    where = InputLocation(line=line)
    if not seg_id:
        return X12InputError("a segment has no id: it begins with the element separator", where=where)
    if seg_id.isalnum():
        return X12InputError(f"{shown!r} is not a segment id: X12 segment ids have 2 or 3 letters and digits", where=where)
    if len(seg_id) > 3 or any(ch.isspace() for ch in seg_id):
        return X12InputError(f"{shown!r} is not a segment id (mixed or wrong segment terminators?)", where=where)
    odd = next(ch for ch in seg_id if not ch.isalnum())
    return X12InputError(f"{shown!r} is not a segment id: {odd!r} is not a letter or digit", where=where)


@dataclass(frozen=True, slots=True)
class Separators:
    """The delimiters of one interchange (ISA position 4, ISA11, ISA16, after ISA16)."""

    element: str
    component: str
    segment: str
    repetition: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"element": self.element, "component": self.component, "segment": self.segment, "repetition": self.repetition}

    def all(self) -> set[str]:
        chars = {self.element, self.component, self.segment}
        if self.repetition:
            chars.add(self.repetition)
        return chars


@dataclass(slots=True)
class Segment:
    """One segment: its id, its elements as raw strings (elements[0] is ID01), the
    1-based line where it starts, and the separators of its interchange."""

    id: str
    elements: list[str]
    line: int
    separators: Separators

    def get(self, position: int) -> str:
        """Element by 1-based position, '' when absent."""
        return self.elements[position - 1] if 0 < position <= len(self.elements) else ""

    def text(self) -> str:
        """The segment written back with its own separators, without terminator."""
        return self.separators.element.join([self.id, *self.elements])


def decode(data: bytes) -> str:
    """Bytes to text: refuse empty, EBCDIC and binary input; drop a byte-order mark."""
    if not data or (len(data) < 4096 and not data.strip()):
        raise X12InputError("the file is empty: there is no ISA interchange header")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data.decode("utf-16")
    else:
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        head = data[:4096].lstrip()[:3]
        if head == b"\xc9\xe2\xc1":
            raise X12InputError(
                "the file is EBCDIC-encoded (it starts with 'ISA' in code page 037); "
                "convert it to ASCII before sending it to Flowyard"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    start = text[:4096].lstrip()  # a slice: never copy a 100 MB text
    if not start and len(text) >= 4096:
        start = text.lstrip()[:4096]
    if not start:
        raise X12InputError("the file is empty: there is no ISA interchange header")
    if not start.startswith("ISA"):
        sample = start[:512]
        if "\x00" in sample or sum(1 for ch in sample if ord(ch) in _BINARY_CONTROL) > len(sample) // 20:
            raise X12InputError("the file is binary data, not X12 (it has control bytes and no ISA header)")
        raise X12InputError(f"not an X12 interchange: it must begin with 'ISA', it begins with {start[:20]!r}",
                            where=InputLocation(line=1))
    return text


def _read_isa(text: str, pos: int, line: int) -> tuple[Segment, int]:
    """Parse the ISA at pos, tolerating a non-fixed-width or wrapped header.

    Returns the ISA segment and the position just after its terminator."""
    element = text[pos + 3 : pos + 4]
    if not element or element.isalnum() or element in _CRLF + " ":
        raise X12InputError("the ISA header is truncated or has no element separator after 'ISA'",
                            where=InputLocation(line=line, segment="ISA"))
    fields: list[str] = []
    current: list[str] = []
    i = pos + 4
    n = len(text)
    while len(fields) < 15:
        if i >= n:
            raise X12InputError("the file is truncated inside the ISA header", where=InputLocation(line=line, segment="ISA"))
        ch = text[i]
        if ch == element:
            fields.append("".join(current))
            current = []
        elif ch not in _CRLF:
            current.append(ch)
        i += 1
    while i < n and text[i] in _CRLF:
        i += 1
    if i >= n:
        raise X12InputError("the file is truncated inside the ISA header", where=InputLocation(line=line, segment="ISA"))
    component = text[i]
    i += 1
    if i >= n:
        raise X12InputError("the file is truncated after the ISA header", where=InputLocation(line=line, segment="ISA"))
    terminator = text[i]
    if terminator in _CRLF:
        # either newline-terminated segments or a wrapped line right after ISA16
        j = i
        while j < n and text[j] in _CRLF:
            j += 1
        # an indented next line is not a terminator: skip the indentation before looking
        while j < n and text[j] in " \t":
            j += 1
        if j < n and not text[j].isalnum() and text[j] not in (element, component, " ", "\t") and text[j] not in _CRLF:
            terminator, i = text[j], j
        else:
            terminator = "\n"
    i += 1
    fields.append(component)
    version = fields[11].strip()
    if not _VERSION.match(version):
        raise X12InputError(
            f"ISA12 (interchange version) is {version!r}; expected 5 digits such as 00401 or 00501",
            where=InputLocation(line=line, segment="ISA", path="ISA12"),
        )
    if len({element, component, terminator}) < 3:
        raise X12InputError(
            f"the ISA header uses the same character for two separators "
            f"(element {element!r}, component {component!r}, segment {terminator!r})",
            where=InputLocation(line=line, segment="ISA"),
        )
    rep = fields[10]
    repetition = rep if version >= "00402" and len(rep) == 1 and not rep.isalnum() and rep not in (" ", element, component, terminator) else None
    seps = Separators(element, component, terminator, repetition)
    return Segment("ISA", fields, line, seps), i


CHUNK = 1 << 15  # split the text 32 KB at a time: fast, and bounded memory (a batch is a chunk's segments)


def read_segments(data: bytes | str) -> Iterator[Segment]:
    """Yield every segment of every interchange in the input, in order.

    Raises X12InputError for input that is not X12, and for a truncated interchange
    (after yielding the segments read so far)."""
    for batch in read_batches(data):
        yield from batch


def read_batches(data: bytes | str) -> Iterator[list[Segment]]:
    """read_segments a list at a time (the segments of up to 32 KB of text): the caller
    loops over a list instead of resuming two generators per segment."""
    text = decode(data) if isinstance(data, bytes) else data
    n = len(text)
    pos = 0
    line = 1
    while True:
        start = pos
        while pos < n and text[pos] in " \t\r\n\x00\x1a":
            pos += 1
        line += text.count("\n", start, pos)
        if pos >= n:
            return
        if not text.startswith("ISA", pos):
            raise X12InputError(
                f"expected an ISA header after the previous interchange, found {text[pos:pos + 20]!r}",
                where=InputLocation(line=line),
            )
        isa, end = _read_isa(text, pos, line)
        line += text.count("\n", pos, end)
        pos = end
        yield [isa]
        pos, line = yield from _interchange_body(text, pos, line, isa.separators)


def _interchange_body(text: str, pos: int, line: int, seps: Separators) -> Generator[list[Segment], None, tuple[int, int]]:
    """The segments after one ISA, up to and including IEA, in lists; returns (position,
    line) after it. An error is raised after the segments before it were yielded."""
    n = len(text)
    term, elem = seps.segment, seps.element
    strip_newlines = term not in _CRLF
    bin_prefix = "BIN" + elem
    while True:
        while pos < n and text[pos] in " \t\r\n\x00\x1a":
            line += text[pos] == "\n"
            pos += 1
        if pos >= n:
            raise X12InputError("the file is truncated: the interchange has no IEA trailer",
                                where=InputLocation(line=line + text.count("\n", pos), segment="IEA"), note="023")
        limit = pos + CHUNK
        cut = text.rfind(term, pos, limit) if limit < n else text.rfind(term, pos)
        if cut < 0:
            cut = text.find(term, limit)
        if cut < 0:
            tail = text[pos:]
            body = tail.lstrip("\r\n")
            seg_line = line + tail.count("\n", 0, len(tail) - len(body))
            rest = body.rstrip("\r\n")
            if rest.startswith("IEA" + elem):  # the last IEA without its terminator: common, and unambiguous
                parts = rest.split(elem)
                yield [Segment(parts[0], parts[1:], seg_line, seps)]
                return n, seg_line + body.count("\n")
            if "IEA" + elem in rest:  # the trailer is there: the segments end with another character than the ISA says
                raise X12InputError(f"the segment terminator the ISA declares ({term!r}, right after ISA16) does not end the "
                                    f"segments that follow: they end with another character",
                                    where=InputLocation(line=seg_line, segment=rest[:3]), note="004")
            raise X12InputError("the file is truncated: the last segment has no terminator and there is no IEA trailer",
                                where=InputLocation(line=seg_line, segment=rest[:3]), note="023")
        if strip_newlines:
            fast = yield from _plain_chunk(text, pos, cut, line, seps, bin_prefix)
            if fast is not None:
                if fast[0] >= 0:
                    return fast
                pos, line = cut + 1, fast[1]
                continue
        offset = pos
        restart = False
        batch: list[Segment] = []
        add = batch.append
        for raw in text[pos:cut].split(term):
            seg_start = offset
            offset += len(raw) + 1
            if raw[:1] == "\n" and raw[1:2] not in _CRLF:  # the usual "~\n": one newline
                raw = raw[1:]
                line += 1
                seg_start += 1
            elif raw[:1] in _CRLF and raw:
                stripped = raw.lstrip(_CRLF)
                line += raw.count("\n", 0, len(raw) - len(stripped))
                seg_start += len(raw) - len(stripped)
                raw = stripped
            seg_line = line
            if raw.startswith(bin_prefix):
                if batch:
                    yield batch
                    batch = []
                segment, pos = _read_bin(text, seg_start, seps, seg_line)
                line += text.count("\n", seg_start, pos)
                yield [segment]
                restart = True
                break
            if strip_newlines:
                if "\n" in raw or "\r" in raw:
                    line += raw.count("\n")
                    raw = raw.replace("\r", "").replace("\n", "")
            else:
                line += 1
                if raw.endswith("\r"):
                    raw = raw[:-1]
            if not raw:
                continue
            parts = raw.split(elem)
            seg_id = parts[0].strip()
            if not seg_id or len(seg_id) > 3 or not seg_id.isalnum():
                if batch:
                    yield batch
                raise bad_segment_id(seg_id, seg_line)
            del parts[0]
            add(Segment(seg_id, parts, seg_line, seps))
            if seg_id == "IEA":
                yield batch
                return offset, line
        if batch:
            yield batch
        if not restart:
            pos = cut + 1


def _plain_chunk(text: str, pos: int, cut: int, line: int, seps: Separators,
                 bin_prefix: str) -> Generator[list[Segment], None, tuple[int, int] | None]:
    """The segments of text[pos:cut] when every terminator is followed by the same line
    break (none, "\n" or "\r\n") and there is no other: one split, and the line of each
    segment counted from its index. None when the chunk is not that regular (the general
    loop reads it). Returns (position after IEA, its line) when the chunk ends the
    interchange, else (-1, line of the chunk's last segment)."""
    chunk = text[pos:cut]
    if bin_prefix in chunk:
        return None
    term = seps.segment
    if "\r" in chunk:
        sep = term + "\r\n"
    elif "\n" in chunk:
        sep = term + "\n"
    else:
        sep = term
    raws = chunk.split(sep)
    breaks = len(raws) - 1
    step = 0 if sep == term else 1
    if step and not (chunk.count("\n") == breaks and chunk.count(term) == breaks and chunk.count("\r") == breaks * (len(sep) - 2)):
        return None
    elem = seps.element
    batch: list[Segment] = []
    add = batch.append
    for k, raw in enumerate(raws):
        if not raw:
            continue
        parts = raw.split(elem)
        seg_id = parts[0]
        if len(seg_id) > 3 or not seg_id.isalnum():
            seg_id = seg_id.strip()
            if not seg_id or len(seg_id) > 3 or not seg_id.isalnum():
                if batch:
                    yield batch
                raise bad_segment_id(seg_id, line + k * step)
        del parts[0]
        add(Segment(seg_id, parts, line + k * step, seps))
        if seg_id == "IEA":
            yield batch
            return pos + sum(len(r) for r in raws[: k + 1]) + len(sep) * k + 1, line + k * step
    if batch:
        yield batch
    return -1, line + breaks * step


def _read_bin(text: str, pos: int, seps: Separators, line: int) -> tuple[Segment, int]:
    """BIN*LENGTH*DATA: the payload may hold any byte, so read it by its length."""
    start = pos + 4
    sep = text.find(seps.element, start)
    length_text = text[start:sep] if sep >= 0 else ""
    if not length_text.isdigit():
        raise X12InputError("BIN01 (length of binary data) is not a number", where=InputLocation(line=line, segment="BIN", path="BIN01"))
    payload_start = sep + 1
    payload_end = payload_start + int(length_text)
    if payload_end >= len(text) or text[payload_end] != seps.segment:
        raise X12InputError("BIN02 is not as long as BIN01 says", where=InputLocation(line=line, segment="BIN", path="BIN02"))
    return Segment("BIN", [length_text, text[payload_start:payload_end]], line, seps), payload_end + 1
