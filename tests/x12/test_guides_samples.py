"""Every shipped guide compiles, and each shipped set and version has two samples in
tests/x12/samples/: a valid one that validates, acknowledges with AK5/IK5 A and
round-trips through x12.generate (same segments between ST and SE), and a broken one
whose 997 (004010) or 999 (005010) carries the acknowledgment codes listed here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowyard.definitions import check_file
from flowyard.x12.acks import ack_set
from flowyard.x12.document import GroupResult, SetResult, walk
from flowyard.x12.guides import SHIPPED, default_guide, load_guide

from .test_corpus import round_trip

SAMPLES = Path(__file__).resolve().parent / "samples"
GUIDES = sorted(p.stem for p in SHIPPED.glob("*.yaml") if p.stem != "x12-elements")

# guide -> (AK5/IK5 status, the error segments of its acknowledgment, 997 form; the 999
# of a 005010 set has IK3/IK4/IK5 in their place) and what is broken
BROKEN: dict[str, tuple[str, list[str]]] = {
    "810": ("R", ["AK3*TDS*16**3", "AK5*R*5"]),  # the mandatory TDS left out
    "830": ("R", ["AK3*BFR*2**8", "AK4*8*373*1", "AK5*R*5"]),  # BFR08 (mandatory date) missing
    "850": ("R", ["AK3*PO1*21**8", "AK4*7*234*2", "AK5*R*5"]),  # PO106 without PO107 (P0607)
    "855": ("E", ["AK3*ACK*8**8", "AK4*5*373*8*20261232", "AK5*E*5"]),  # optional ACK05 is 32 December: noted
    "856": ("R", ["AK3*BSN*2**8", "AK4*4*337*9*0975", "AK5*R*5"]),  # BSN04 at minute 75
    "862": ("R", ["AK3*BSS*2**8", "AK4*7*328*2", "AK5*R*5"]),  # neither BSS07 nor BSS08 (R0708)
    "940": ("R", ["AK3*W01*15**8", "AK4*2*355*1", "AK5*R*5"]),  # W0102 (unit) missing
    "945": ("R", ["AK3*ZZZ*6**1", "AK3*W27*7**3", "AK5*R*5"]),  # an unknown segment where W27 must be
    "997": ("R", ["AK3*AK5*4**8", "AK4*1*717*7*Q", "AK5*R*5"]),  # AK501 Q is not a code
    "999": ("R", ["AK3*IK5*4**8", "AK4*1*717*7*Q", "AK5*R*5"]),  # IK501 Q is not a code
}


def test_every_shipped_guide_compiles_and_has_samples() -> None:
    assert check_file(SHIPPED / "x12-elements.yaml") == []
    for name in GUIDES:  # `flowyard validate` of each: tests/x12/test_guides.py
        guide = load_guide(SHIPPED / f"{name}.yaml")
        assert guide.pyx12_map().getnodebypath("/ISA_LOOP/GS_LOOP/ST_LOOP/SE") is not None, name
        assert (SAMPLES / f"{name}.valid.edi").is_file() and (SAMPLES / f"{name}.broken.edi").is_file(), name
    assert len(GUIDES) >= 19


def _read(path: Path) -> tuple[SetResult, GroupResult]:
    found = list(walk(path.read_bytes(), default_guide))
    (result,) = [e for e in found if isinstance(e, SetResult)]
    (group,) = [e for e in found if isinstance(e, GroupResult)]
    return result, group


def _ack_errors(name: str, result: SetResult, group: GroupResult) -> list[str]:
    kind = "999" if name.endswith("5010") else "997"
    ack = ack_set(kind, group, "0001", result.segments[0].separators)
    return [s for s in ack if s[:3] in ("AK3", "AK4", "AK5", "IK3", "IK4", "IK5")]


@pytest.mark.parametrize("name", GUIDES)
def test_valid_sample_validates_and_round_trips(name: str, tmp_path: Path, x12_db: Any) -> None:
    result, group = _read(SAMPLES / f"{name}.valid.edi")
    assert result.guide is not None and result.guide.name == name
    assert result.accepted and not result.problems, result.reasons()
    assert _ack_errors(name, result, group) == ["IK5*A" if name.endswith("5010") else "AK5*A"]
    original, generated = round_trip(result, tmp_path)
    assert generated == original


@pytest.mark.parametrize("name", GUIDES)
def test_broken_sample_gets_its_codes(name: str) -> None:
    result, group = _read(SAMPLES / f"{name}.broken.edi")
    assert result.guide is not None and result.guide.name == name
    status, expected = BROKEN[name.split("-")[0]]
    if name.endswith("5010"):
        expected = ["I" + s[1:] for s in expected]  # AK3/AK4/AK5 -> IK3/IK4/IK5 (the segment id only)
    assert ("R" if not result.accepted else "E" if result.problems else "A") == status, result.reasons()
    assert _ack_errors(name, result, group) == expected
