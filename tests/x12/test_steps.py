"""x12.parse and x12.generate through the engine, with the store for control numbers,
duplicates and acknowledgment tracking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowyard.engine import Pipeline
from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.step import ROUTE_TO_TARGETS
from flowyard.store import x12_control as control
from flowyard.x12.reader import read_segments

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "x12"

PARTNER = """\
apiVersion: flowyard/v1
kind: Partner
metadata: {name: acme}
interchange:
  us: "ZZ:RECEIVER"
  them: "ZZ:SENDER"
  version: "00401"
  separators: {element: "*", component: ">", segment: "~", repetition: "^"}
group: {version: "004010"}
acknowledgments: {send: "997", expect: "997", deadline: 2h, ta1: errors}
duplicates: {action: DUPLICATES, window: 30d}
"""


def flow(tmp_path: Path, steps: str, duplicates: str = "reject") -> Any:
    (tmp_path / "partners").mkdir(exist_ok=True)
    (tmp_path / "partners" / "acme.yaml").write_text(PARTNER.replace("DUPLICATES", duplicates), encoding="utf-8")
    path = tmp_path / "flow.yaml"
    path.write_text(
        "apiVersion: flowyard/v1\nkind: Flow\nmetadata: {name: x12-test}\nsource:\n  file: {path: in}\n"
        f"steps:\n{steps}\ntargets:\n  - file: {{path: out}}\n",
        encoding="utf-8",
    )
    return load_flow(path)


def run(loaded: Any, payload: bytes | dict[str, Any]) -> Any:
    if isinstance(payload, bytes):
        message = Message(payload=payload, content_type="application/edi-x12")
    else:
        message = Message(payload=payload, content_type="application/json")
    return Pipeline(loaded).run(message)


def test_one_message_per_set_bad_set_dead_lettered_ack_routed(tmp_path: Path, x12_db: Any) -> None:
    loaded = flow(tmp_path, '  - x12.parse: {acknowledge: "997"}\n  - jmespath: "{shipment: BSN.BSN02, levels: length(HL_loop)}"')
    data = (EXAMPLES / "856-supplierx-one-bad-set.edi").read_bytes()
    result = run(loaded, data)
    acks = [m for m in result.outputs if m.headers.get(ROUTE_TO_TARGETS)]
    sets = [m for m in result.outputs if not m.headers.get(ROUTE_TO_TARGETS)]
    assert len(sets) == 1 and len(acks) == 1 and len(result.failures) == 1
    failure = result.failures[0].error
    assert failure.where is not None and failure.where.path == "SN103" and failure.where.segment == "SN1 #21"
    assert "mandatory data element missing" in str(failure)
    ack = [s.text() for s in read_segments(acks[0].payload)]
    assert "AK5*A" in ack and "AK5*R*5" in ack and "AK9*P*2*2*1" in ack
    assert "AK4*3*355*1" in ack
    correlation = {m.correlation_id for m in result.outputs} | {f.message.correlation_id for f in result.failures}
    assert len(correlation) == 1
    assert acks[0].content_type == "application/edi-x12"


def test_validate_false_reads_structure_only(tmp_path: Path, x12_db: Any) -> None:
    loaded = flow(tmp_path, "  - x12.parse: {validate: false}")
    result = run(loaded, (EXAMPLES / "856-supplierx-one-bad-set.edi").read_bytes())
    assert len(result.outputs) == 2 and not result.failures
    items = [h for h in result.outputs[1].payload["HL_loop"] if h["HL"]["HL03"] == "I"]
    assert items[1]["SN1"] == {"SN102": "25"}


def test_data_shape(tmp_path: Path, x12_db: Any) -> None:
    loaded = flow(tmp_path, "  - x12.parse: {}")
    result = run(loaded, (EXAMPLES / "850-5010-odd-separators.edi").read_bytes())
    (message,) = result.outputs
    data = message.payload
    assert data["BEG"]["BEG03"] == "PO-45001" and "BEG04" not in data["BEG"]
    assert [line["PO1"]["PO107"] for line in data["PO1_loop"]] == ["A-1001", "A-1002"]
    assert data["PO1_loop"][0]["PID_loop"][0]["PID"]["PID05"] == "BRACKET, STEEL"
    assert data["N1_loop"][0]["N4"][0]["N404"] == "MX"
    assert data["interchange"]["separators"] == {"element": "|", "component": "\\", "segment": "!", "repetition": "^"}
    assert data["group"]["GS08"] == "005010" and data["interchange"]["sender"] == "ZZ:ACMEBUYER"
    assert message.headers["x12.transaction"] == "850" and message.headers["x12.guide"] == "850-5010"


@pytest.mark.parametrize("action", ["reject", "warn", "allow"])
def test_duplicate_interchange(tmp_path: Path, x12_db: Any, action: str) -> None:
    loaded = flow(tmp_path, "  - x12.parse: {partner: acme}", duplicates=action)
    data = (EXAMPLES / "850-4010-two-sets.edi").read_bytes()
    first = run(loaded, data)
    assert len(first.outputs) == 2 and not first.failures
    second = run(loaded, data)
    if action == "reject":
        assert not [m for m in second.outputs if not m.headers.get(ROUTE_TO_TARGETS)]
        assert "duplicate interchange" in str(second.failures[0].error)
        ta1 = [s.text() for m in second.outputs for s in read_segments(m.payload) if s.id == "TA1"]
        assert ta1 and ta1[0].endswith("*R*025")
    else:
        assert len(second.outputs) == 2 and not second.failures
        assert bool(second.outputs[0].headers.get("x12.duplicate")) == (action == "warn")


def test_replaying_the_same_message_is_not_a_duplicate(tmp_path: Path, x12_db: Any) -> None:
    loaded = flow(tmp_path, "  - x12.parse: {partner: acme}")
    message = Message(payload=(EXAMPLES / "850-4010-two-sets.edi").read_bytes())
    assert len(Pipeline(loaded).run(message).outputs) == 2
    replay = Message(payload=message.payload, correlation_id=message.correlation_id, attempt=2)
    assert len(Pipeline(loaded).run(replay).outputs) == 2


def test_interchange_errors_get_a_ta1(tmp_path: Path, x12_db: Any, make_interchange: Any, po_body: list[str]) -> None:
    loaded = flow(tmp_path, "  - x12.parse: {partner: acme}")
    text = make_interchange([("0001", "850", po_body)], control=5).replace("IEA*1*000000005", "IEA*1*000000006")
    result = run(loaded, text.encode())
    ta1 = [s.text() for m in result.outputs if m.headers.get(ROUTE_TO_TARGETS) for s in read_segments(m.payload) if s.id == "TA1"]
    assert ta1 == ["TA1*000000005*261120*0930*E*001"]


def test_truncated_file_keeps_good_sets_and_fails_clearly(tmp_path: Path, x12_db: Any) -> None:
    loaded = flow(tmp_path, "  - x12.parse: {}")
    data = (EXAMPLES / "850-4010-two-sets.edi").read_text()
    cut = data[: data.rindex("CTT")]
    result = run(loaded, cut.encode())
    assert len(result.outputs) == 1
    assert "truncated" in str(result.failures[0].error)


def test_a_truncated_interchange_does_not_lock_out_the_complete_resend(tmp_path: Path, x12_db: Any) -> None:
    """Nothing of a cut-off interchange was accepted: its ISA13 is not kept as received,
    so the partner's complete resend is processed instead of refused as a duplicate."""
    loaded = flow(tmp_path, "  - x12.parse: {partner: acme}")
    data = (EXAMPLES / "850-4010-two-sets.edi").read_text()
    cut = run(loaded, data[: data.rindex("CTT")].encode())
    assert "truncated" in str(cut.failures[0].error)
    resend = run(loaded, data.encode())
    assert not resend.failures and len(resend.outputs) == 2
    again = run(loaded, data.encode())  # the complete one was accepted: now a copy is a duplicate
    assert "duplicate interchange" in str(again.failures[0].error)


def test_generate_round_trip_with_partner_and_counters(tmp_path: Path, x12_db: Any) -> None:
    parse = flow(tmp_path, "  - x12.parse: {}")
    parsed = run(parse, (EXAMPLES / "856-supplierx-2cartons.edi").read_bytes()).outputs[0].payload
    generate = flow(tmp_path, "  - x12.generate: {partner: acme}")
    outputs = [run(generate, dict(parsed)).outputs[0] for _ in range(3)]
    texts = [o.payload.decode() for o in outputs]
    segments = [[s for s in read_segments(t)] for t in texts]
    isa13 = [s[0].get(13) for s in segments]
    assert isa13 == ["000000001", "000000002", "000000003"]
    st02 = [next(x for x in s if x.id == "ST").get(2) for s in segments]
    assert len(set(st02)) == 3
    body = [(s.id, s.elements) for s in segments[0] if s.id not in ("ISA", "GS", "ST", "SE", "GE", "IEA")]
    original = [(s.id, s.elements) for s in read_segments((EXAMPLES / "856-supplierx-2cartons.edi").read_bytes())
                if s.id not in ("ISA", "GS", "ST", "SE", "GE", "IEA")]
    assert body == original
    first = segments[0]
    assert first[0].get(6).strip() == "RECEIVER" and first[0].get(8).strip() == "SENDER"
    assert next(x for x in first if x.id == "GS").get(1) == "SH"
    se = next(x for x in first if x.id == "SE")
    assert int(se.get(1)) == len(body) + 2
    assert next(x for x in first if x.id == "GE").get(1) == "1" and first[-1].get(1) == "1"


def test_generate_refuses_a_separator_in_data(tmp_path: Path, x12_db: Any) -> None:
    generate = flow(tmp_path, '  - x12.generate: {partner: acme, transaction: "850"}')
    data = {"BEG": {"BEG01": "00", "BEG02": "SA", "BEG03": "PO*1", "BEG05": "20261120"},
            "PO1_loop": [{"PO1": {"PO102": "1", "PO103": "EA"}}]}
    result = run(generate, data)
    assert not result.outputs
    error = result.failures[0].error
    assert "BEG03" in str(error) and "element separator" in str(error)
    assert error.where is not None and error.where.path == "BEG03"


@pytest.mark.parametrize("value", ["PO\r\nISA", "PO\n1", "PO\x001"])
def test_generate_refuses_line_breaks_and_control_characters_in_data(tmp_path: Path, x12_db: Any, value: str) -> None:
    generate = flow(tmp_path, '  - x12.generate: {partner: acme, transaction: "850"}')
    data = {"BEG": {"BEG01": "00", "BEG02": "SA", "BEG03": value, "BEG05": "20261120"},
            "PO1_loop": [{"PO1": {"PO102": "1", "PO103": "EA"}}]}
    result = run(generate, data)
    assert not result.outputs
    error = result.failures[0].error
    assert "BEG03" in str(error) and "control character" in str(error)
    assert error.where is not None and error.where.path == "BEG03"


def test_generate_validates_before_sending(tmp_path: Path, x12_db: Any) -> None:
    generate = flow(tmp_path, '  - x12.generate: {partner: acme, transaction: "850"}')
    data = {"BEG": {"BEG01": "00", "BEG02": "SA", "BEG03": "PO-1", "BEG05": "2026-11-20"},
            "PO1_loop": [{"PO1": {"PO102": "1", "PO103": "EA"}}]}
    result = run(generate, data)
    assert not result.outputs
    assert "BEG05" in str(result.failures[0].error)
    # no control number was spent on the refused set
    assert control.next_number("acme", "ISA") == 1


def test_outbound_sets_wait_for_their_997(tmp_path: Path, x12_db: Any, make_interchange: Any) -> None:
    parse = flow(tmp_path, "  - x12.parse: {}")
    parsed = run(parse, (EXAMPLES / "850-4010-two-sets.edi").read_bytes()).outputs
    generate = flow(tmp_path, '  - x12.generate: {partner: acme}')
    sent = [run(generate, dict(m.payload)).outputs[0] for m in parsed]
    gs = [next(s for s in read_segments(m.payload) if s.id == "GS").get(6) for m in sent]
    st = [next(s for s in read_segments(m.payload) if s.id == "ST").get(2) for m in sent]
    later = datetime.now(UTC) + timedelta(hours=3)
    assert len(control.overdue(now=later)) == 2
    # the partner acknowledges the first set only
    ack = make_interchange([("0001", "997", [f"AK1*PO*{gs[0]}", f"AK2*850*{st[0]}", "AK5*A", "AK9*A*1*1*1"])],
                           functional_id="FA", sender="SENDER", receiver="RECEIVER")
    result = run(parse, ack.encode())
    assert len(result.outputs) == 1
    still = control.overdue(now=later)
    assert [(o.group_control, o.set_control) for o in still] == [(gs[1], st[1])]
    assert control.overdue(now=datetime.now(UTC)) == []  # not overdue before the deadline


def test_overdue_collector_counts_per_partner(tmp_path: Path, x12_db: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    parse = flow(tmp_path, "  - x12.parse: {}")
    parsed = run(parse, (EXAMPLES / "850-4010-two-sets.edi").read_bytes()).outputs
    generate = flow(tmp_path, "  - x12.generate: {partner: acme}")
    for m in parsed:
        run(generate, dict(m.payload))
    with x12_db.begin() as connection:  # the deadline has passed
        connection.exec_driver_sql("UPDATE x12_outbound_set SET deadline = '2000-01-01 00:00:00'")
    registry = CollectorRegistry()
    registry.register(control.OverdueCollector(x12_db))
    text = generate_latest(registry).decode()
    assert 'flowyard_x12_overdue_acknowledgments{partner="acme"} 2.0' in text


def test_store_unreachable_fails_the_message_not_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWYARD_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    loaded = flow(tmp_path, "  - x12.parse: {partner: acme}")
    result = run(loaded, (EXAMPLES / "850-4010-two-sets.edi").read_bytes())
    assert not result.outputs
    assert "x12.parse could not finish" in str(result.failures[0].error)


def test_acknowledge_as_the_partner_profile_says(tmp_path: Path, x12_db: Any) -> None:
    loaded = flow(tmp_path, "  - x12.parse: {partner: acme, acknowledge: partner}", duplicates="allow")
    result = run(loaded, (EXAMPLES / "850-4010-two-sets.edi").read_bytes())
    acks = [m for m in result.outputs if m.headers.get(ROUTE_TO_TARGETS)]
    assert [m.headers["x12.ack"] for m in acks] == ["997"]  # acme's profile: send "997"
    assert "ST*997*" in acks[0].payload.decode()
