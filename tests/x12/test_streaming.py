"""A large interchange is processed set by set: the parse step is a generator and the
memory it holds does not grow with the number of transaction sets."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

from flowyard.message import Message
from flowyard.step import FlowContext
from flowyard.x12.steps import X12Parse, X12ParseOptions


def big_interchange(sets: int, lines: int = 10) -> bytes:
    out = ["ISA*00*          *00*          *ZZ*ACMEBUYER      *ZZ*SUPPLIERX      *261120*0930*U*00401*000000001*0*P*>",
           "GS*PO*ACMEBUYER*SUPPLIERX*20261120*0930*1*X*004010"]
    for n in range(1, sets + 1):
        body = [f"ST*850*{n:04d}", f"BEG*00*SA*PO-{n}**20261118", "N1*ST*ACME*92*MX01"]
        body += [f"PO1*{i}*{i}*EA*1.25*PE*BP*A-{n}-{i}" for i in range(1, lines + 1)]
        body += [f"CTT*{lines}", f"SE*{len(body) + 2}*{n:04d}"]
        out += body
    out += [f"GE*{sets}*1", "IEA*1*000000001"]
    return ("~\n".join(out) + "~\n").encode()


def peak_while_consuming(data: bytes, tmp_path: Path) -> tuple[int, int]:
    step = X12Parse(X12ParseOptions.model_validate({"validate": False}), FlowContext(flow_file=tmp_path / "flow.yaml"))
    message = Message(payload=data)
    tracemalloc.start()
    try:
        parts = step.process(message)
        assert not isinstance(parts, list)
        count = 0
        for part in parts:
            assert isinstance(part, Message)
            count += 1
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


def test_memory_does_not_grow_with_the_number_of_sets(tmp_path: Path, x12_db: Any) -> None:
    small = big_interchange(500)
    large = big_interchange(5000)
    count_small, peak_small = peak_while_consuming(small, tmp_path)
    count_large, peak_large = peak_while_consuming(large, tmp_path)
    assert (count_small, count_large) == (500, 5000)
    # the text of the input is held once (one byte per character); beyond it, what the
    # step holds is one chunk and one set at a time, so ten times the sets costs about
    # the same (holding every parsed set would cost many times the input)
    extra_small = peak_small - len(small)
    extra_large = peak_large - len(large)
    assert extra_large < 1.5 * extra_small + 512 * 1024, (extra_small, extra_large, len(large))


def test_the_first_set_comes_before_the_rest_is_read(tmp_path: Path, x12_db: Any) -> None:
    data = big_interchange(3).decode()
    # everything after the first set is garbage: the first set must already be out
    broken = data[: data.index("ST*850*0002")] + "\x00\x01 not x12 at all"
    step = X12Parse(X12ParseOptions.model_validate({"validate": False}), FlowContext(flow_file=tmp_path / "flow.yaml"))
    parts = iter(step.process(Message(payload=broken.encode())))  # type: ignore[arg-type]
    first = next(parts)
    assert isinstance(first, Message) and first.payload["BEG"]["BEG03"] == "PO-1"
