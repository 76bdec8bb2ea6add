"""X12 test helpers: a private SQLite store per test and small interchange builders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from flowyard.store.engines import get_engine


@pytest.fixture
def x12_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A fresh SQLite store for control numbers and interchange records."""
    url = f"sqlite:///{tmp_path / 'x12.db'}"
    monkeypatch.setenv("FLOWYARD_DATABASE_URL", url)
    monkeypatch.setenv("FLOWYARD_DATA_DIR", str(tmp_path / "data"))
    yield get_engine(url)


def interchange(sets: list[tuple[str, str, list[str]]], *, control: int = 1, version: str = "004010",
                functional_id: str = "PO", seps: tuple[str, str, str, str] = ("*", ">", "~", "U"),
                isa_version: str = "00401", newline: str = "\n", sender: str = "SENDER", receiver: str = "RECEIVER") -> str:
    """An interchange with correct counts; body segments are written with * > ^ and
    converted to the separators asked for."""
    e, c, t, r = seps
    out = [e.join(["ISA", "00", " " * 10, "00", " " * 10, "ZZ", sender.ljust(15), "ZZ", receiver.ljust(15), "261120", "0930",
                   r, isa_version, f"{control:09d}", "0", "P", c])]
    out.append(e.join(["GS", functional_id, sender, receiver, "20261120", "0930", str(control), "X", version]))
    for set_control, transaction, body in sets:
        segments = [e.join(["ST", transaction, set_control])]
        segments += [s.replace("*", e).replace(">", c).replace("^", r) for s in body]
        segments.append(e.join(["SE", str(len(segments) + 1), set_control]))
        out += segments
    out.append(e.join(["GE", str(len(sets)), str(control)]))
    out.append(e.join(["IEA", "1", f"{control:09d}"]))
    return (t + newline).join(out) + t + newline


PO_BODY = [
    "BEG*00*SA*PO-1**20261118",
    "N1*ST*ACME MONTERREY*92*MX01",
    "PO1*1*40*EA*12.50*PE*BP*A-1001",
    "PO1*2*25*EA*7.10*PE*BP*A-1002",
    "CTT*2",
]


@pytest.fixture
def make_interchange():  # type: ignore[no-untyped-def]
    return interchange


@pytest.fixture
def po_body() -> list[str]:
    return list(PO_BODY)
