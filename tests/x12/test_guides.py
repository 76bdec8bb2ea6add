"""Guides: the compact YAML form, extending and tightening, compiling to pyx12 maps,
and `flowyard validate` for guides and partner profiles."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flowyard.definitions import check_file
from flowyard.x12.document import SetResult, walk
from flowyard.x12.guides import SHIPPED, GuideError, compile_to_directory, find_guide, load_guide, map_xml

ROOT = Path(__file__).resolve().parents[2]
FLOW_GUIDES = ROOT / "flows" / "guides"
ASN = ROOT / "examples" / "x12" / "856-supplierx-2cartons.edi"

REQUIRED = [f"{t}-{v}" for t in ("850", "855", "856", "810", "830", "862", "940", "945") for v in ("4010", "5010")]
REQUIRED += ["997-4010", "997-5010", "999-5010"]


@pytest.mark.parametrize("name", REQUIRED)
def test_shipped_guide_compiles_and_checks_clean(name: str) -> None:
    path = SHIPPED / f"{name}.yaml"
    assert check_file(path) == []
    guide = load_guide(path)
    assert guide.transaction == name.split("-")[0]
    assert guide.version.startswith("00" + name.split("-")[1][0])
    pyx12_map = guide.pyx12_map()
    assert pyx12_map.id == guide.transaction
    assert pyx12_map.getnodebypath("/ISA_LOOP/GS_LOOP/ST_LOOP/ST") is not None


def test_compiled_map_is_pyx12_xml(tmp_path: Path) -> None:
    guide = find_guide("856-4010")
    root = ET.fromstring(map_xml(guide))
    hl = root.find(".//loop[@xid='HL_loop']")
    assert hl is not None and hl.findtext("repeat") == "200000"
    assert root.find(".//segment[@xid='BSN']/element[@xid='BSN02']/data_ele").text == "396"  # type: ignore[union-attr]
    map_file = compile_to_directory(guide, tmp_path / "maps")
    assert map_file.is_file() and (tmp_path / "maps" / "dataele.xml").is_file()



def test_threads_compiling_the_same_guide_at_once_all_get_the_whole_map(tmp_path: Path) -> None:
    """Two processing loops met the same guide at once in a worker: one thread renamed
    the other's temporary map away (both used the process id in its name)."""
    guide = find_guide("850-4010")
    expected = map_xml(guide)
    for attempt in range(5):
        folder = tmp_path / f"maps{attempt}"
        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(compile_to_directory, [guide] * 8, [folder] * 8))
        assert {m.read_text(encoding="utf-8") for m in made} == {expected}
        assert sorted(p.name for p in folder.iterdir()) == ["850-4010.xml", "codes.xml", "dataele.xml"]

def _validate(guide_name: str, text: str) -> SetResult:
    guide = find_guide(guide_name, [FLOW_GUIDES])
    results = [e for e in walk(text, lambda _t, _v: guide) if isinstance(e, SetResult)]
    return results[0]


def test_partner_guide_tightens_the_base() -> None:
    text = ASN.read_text()
    assert _validate("856-4010", text).accepted
    assert _validate("856-4010-supplierx", text).accepted
    replacement = _validate("856-4010-supplierx", text.replace("BSN*00*", "BSN*05*"))
    assert not replacement.accepted
    assert [(p.path, p.code) for p in replacement.problems] == [("BSN01", "7")]
    assert _validate("856-4010", text.replace("BSN*00*", "BSN*05*")).accepted  # the base allows it
    with_td3 = text.replace("REF*BM*BOL-4471~", "TD3*TL**4471~\nREF*BM*BOL-4471~").replace("SE*23*", "SE*24*")
    assert _validate("856-4010", with_td3).accepted
    refused = _validate("856-4010-supplierx", with_td3)
    assert [(p.segment, p.code) for p in refused.problems] == [("TD3", "2")]  # unexpected: marked unused


def test_guide_errors_are_positioned(tmp_path: Path) -> None:
    folder = tmp_path / "guides"
    folder.mkdir()
    bad = folder / "856-bad.yaml"
    bad.write_text(
        "apiVersion: flowyard/v1\nkind: Guide\nmetadata: {name: 856-bad}\nextends: 856-4010\n"
        "segments:\n  BSN: 353 M, 9999999 M\nchanges:\n  TD9: unused\n  HL_loop: {max: 10}\n",
        encoding="utf-8",
    )
    issues = [str(i) for i in check_file(bad)]
    assert any(":6:" in i and "9999999" in i for i in issues), issues
    assert any(":8:" in i and "TD9" in i for i in issues), issues
    with pytest.raises(GuideError):
        load_guide(bad)


def test_guide_extending_an_unknown_guide(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("apiVersion: flowyard/v1\nkind: Guide\nmetadata: {name: x}\nextends: 999-nope\n", encoding="utf-8")
    (issue,) = check_file(path)
    assert issue.position.line == 4 and "999-nope" in issue.message


def test_partner_profiles_are_checked(tmp_path: Path) -> None:
    assert check_file(ROOT / "flows" / "partners" / "supplierx.yaml") == []
    folder = tmp_path / "partners"
    folder.mkdir()
    bad = folder / "acme.yaml"
    bad.write_text(
        "apiVersion: flowyard/v1\nkind: Partner\nmetadata: {name: acme}\ninterchange:\n  us: ACMEBUYER\n  them: \"ZZ:X\"\n  colour: red\n",
        encoding="utf-8",
    )
    issues = [str(i) for i in check_file(bad)]
    assert any(":5:" in i and "QUALIFIER:ID" in i for i in issues), issues
    assert any(":7:" in i and "unknown key" in i for i in issues), issues


def test_repeatable_elements_are_lists_of_repetitions(make_interchange: Any) -> None:
    body = ["AK1*HC*1*005010X222A1", "AK2*837*0001*005010X222A1", "IK3*CLM*22**8",
            "CTX*CLM01>1^SITUATIONAL TRIGGER>2", "IK4*2*782*1", "IK5*R*5", "AK9*R*1*1*0"]
    text = make_interchange([("0001", "999", body)], functional_id="FA", version="005010X231A1", isa_version="00501",
                            seps=("*", ">", "~", "^"))
    guide = find_guide("999-5010")
    (result,) = [e for e in walk(text, lambda _t, _v: guide) if isinstance(e, SetResult)]
    assert result.accepted, result.reasons()
    ctx = result.data["AK2_loop"][0]["IK3_loop"][0]["CTX"][0]  # type: ignore[index]
    assert ctx["CTX01"] == [["CLM01", "1"], ["SITUATIONAL TRIGGER", "2"]]
