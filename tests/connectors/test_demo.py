"""`bin/demo --check`: the whole way, through the real runtime and store.

The demo makes an ERP database in this machine's PostgreSQL, starts Supplier X's SFTP
server and the WMS stub, renders the example flows of examples/connectors/ for them and
runs `flowyard serve` on its own SQLite store; it plays the supplier (a 997 for one 850,
none for the other, the 856 and then the same interchange again). Here the outcome is
read back independently: the store's tables, the supplier's SFTP folders, the WMS stub's
record, the runtime's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture
def erp_database(require_service: Any) -> Iterator[str]:
    """A database of its own for the demo's ERP table, dropped afterwards."""
    require_service("postgresql")
    name = f"flowyard_demo_{uuid.uuid4().hex[:8]}"
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    admin = sa.create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_demo(folder: Path, database: str) -> subprocess.CompletedProcess[str]:
    # the suite's environment is installed already (.venv, or .venv-latest under --latest)
    env = {**os.environ, "FLOWYARD_SKIP_SETUP": "1", "FLOWYARD_PYTHON": sys.executable}
    env.pop("FLOWYARD_DATABASE_URL", None)
    command = [str(ROOT / "bin" / "demo"), "--check", "--quiet", "--dir", str(folder), "--database-url", database,
               "--ack-deadline", "8s", "--timeout", "50"]
    # its own process group: on a timeout, the demo and the `flowyard serve` it started stop together
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=40)
        pytest.fail(f"bin/demo --check did not finish in 90 s\n{out}\n{err}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def rows(engine: sa.Engine, query: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query)))


def po_number(text: str) -> str | None:
    for segment in text.replace("\n", "").split("~"):
        if segment.startswith("BEG*"):
            return segment.split("*")[3]
    return None


def test_demo_check_goes_the_whole_way(tmp_path: Path, erp_database: str) -> None:
    folder = tmp_path / "demo"
    result = run_demo(folder, erp_database)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["passed"] is True and all(c["ok"] for c in summary["checks"]), report

    sftp = folder / "sftp"
    # ERP -> 850 over SFTP: both released Supplier X orders, nothing else
    orders = {po_number(p.read_text()): p for p in (sftp / "inbound" / "850").glob("*.850")}
    assert set(orders) == {"PO-45001", "PO-45002"}, report
    po_850 = orders["PO-45001"].read_text()
    assert po_850.startswith("ISA*00*") and "*ZZ*ACMEBUYER      *ZZ*SUPPLIERX      *" in po_850
    assert "PO1*1*40*EA*12.50*PE*BP*A-1001*VP*SX-778" in po_850

    # the embedded store under FLOWYARD_DATA_DIR (found by its header, whatever the runtime names it)
    [database] = [p for p in (folder / "store").iterdir() if p.is_file() and p.read_bytes()[:16] == b"SQLite format 3\x00"]
    store = sa.create_engine(f"sqlite:///{database}")
    try:
        # the outbound sets were recorded; the supplier's 997 acknowledged PO-45001's, PO-45002's is overdue
        sets = {r.interchange_control: r for r in rows(store, "SELECT * FROM x12_outbound_set")}
        assert len(sets) == 2, sets
        acknowledged = sets[orders["PO-45001"].stem]
        forgotten = sets[orders["PO-45002"].stem]
        assert (acknowledged.partner, acknowledged.receiver, acknowledged.transaction) == ("supplierx", "ZZ:SUPPLIERX", "850")
        assert acknowledged.ack_status == "A" and acknowledged.acknowledged_at is not None
        assert forgotten.ack_status is None and forgotten.deadline is not None
        [[overdue]] = rows(store, "SELECT count(*) FROM x12_outbound_set WHERE ack_status IS NULL AND deadline < datetime('now')")
        assert overdue == 1
        # the duplicate interchange was refused: one dead letter, at x12.parse, and nothing else went wrong
        dead = rows(store, "SELECT flow, kind, step, reason FROM fy_dead_letters")
        assert [(d.flow, d.kind, d.step) for d in dead] == [("supplierx-856-to-wms", "step", "read ship notice")], dead
        assert "duplicate interchange: ISA13 000000101 from ZZ:SUPPLIERX was already received" in dead[0].reason
        flows = {r.flow: r.n for r in rows(store, "SELECT flow, count(*) AS n FROM fy_messages GROUP BY flow")}
        assert flows == {"erp-po-to-supplierx-850": 2, "supplierx-856-to-wms": 2, "supplierx-997-in": 1}, flows
        unfinished = rows(store, "SELECT flow, state FROM fy_deliveries WHERE state != 'done'")
        assert unfinished == [], unfinished
        targets = {(r.flow, r.target): r.n for r in rows(
            store, "SELECT flow, target, count(*) AS n FROM fy_deliveries GROUP BY flow, target")}
        assert targets[("supplierx-856-to-wms", "wms")] == 1  # the refused duplicate was not posted
        assert targets[("supplierx-856-to-wms", "acknowledgments")] == 2  # the 997, then the TA1
    finally:
        store.dispose()

    # 856 -> canonical shipment -> the WMS, once, with the bearer token and an Idempotency-Key
    [receipt] = [json.loads(line) for line in (folder / "wms" / "receipts.jsonl").read_text().splitlines()]
    assert receipt["method"] == "PUT" and receipt["path"] == "/api/receipts/ASN-77812"
    assert receipt["idempotency_key"]
    shipment = receipt["shipment"]
    assert shipment["po_numbers"] == ["PO-45001"] and shipment["plant"] == "MX01"
    assert [(i["item_id"], i["quantity"]) for i in shipment["items"]] == [("A-1001", 40), ("A-1002", 25)]

    # what went back to Supplier X: the 997 for the 856, and the TA1 025 for the duplicate
    back = {p.name.split("-", 1)[0]: p.read_text() for p in (sftp / "inbound" / "997").iterdir()}
    assert sorted(back) == ["997", "TA1"], back
    assert "ST*997*" in back["997"] and "AK1*SH*101" in back["997"] and "AK9*A*1*1*1" in back["997"]
    assert "TA1*000000101*" in back["TA1"] and "*R*025" in back["TA1"]
    # both 856 files were taken and archived; the supplier's 997 was taken (after: delete)
    assert sorted(p.name for p in (sftp / "outbound" / "archive").iterdir()) == ["asn-77812-sent-again.856", "asn-77812.856"]
    assert list((sftp / "outbound" / "997").glob("*.997")) == []

    log = (folder / "serve.log").read_text()
    assert "Traceback" not in log and "internal error" not in log
    assert not [line for line in log.splitlines() if '"level": "error"' in line or '"level": "critical"' in line]
