"""Issue 15 item 7: the main search box of the runs page finds business-key values and
source file names. The shipped PO flows declare keys; the shipped flows process the
example inputs in the real runtime, and `4711` and `PO-45001` find their messages."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from litestar import Litestar

from flowyard.loader import load_flow
from flowyard.message import Message
from flowyard.operations.deployments import deploy_paths
from flowyard.runtime.runtime import Runtime, RuntimeConfig
from flowyard.store.api import Store

from .conftest import UiClient

ROOT = Path(__file__).resolve().parents[2]
INPUTS = {
    "mx01-supplierx-po": ("examples/x12/erp/po-45001.json", "application/json"),
    "mx01-supplierx-asn": ("examples/x12/856-supplierx-2cartons.edi", "application/edi-x12"),
    "mx01-erp-production-orders": ("examples/erp/production-order-4711.json", "application/json"),
}


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """The shipped flows and examples (their paths are relative: ../examples, ../data)."""
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path / "flows"


def process_examples(store: Store, flows: Path) -> dict[str, str]:
    """Deploy the three flows through the gate and run each one's example input in the
    runtime, as a file its source picked up; message id by flow."""
    deploy_paths(store, [flows / f"{name}.yaml" for name in INPUTS], who="test")
    ids: dict[str, str] = {}
    for name, (rel, content_type) in INPUTS.items():
        state = store.flow_state(name)
        assert state is not None and state.version, name
        path = flows.parent / rel
        message = Message(payload=path.read_bytes(), content_type=content_type, flow=name,
                          flow_version=state.version, source={"connector": "file", "file": path.name},
                          headers={"labels": {"plant": "MX01", "partner": "X"}})
        store.accept(message)
        ids[name] = message.id

    async def run() -> None:
        runtime = Runtime(store, RuntimeConfig(flows_dir=flows, rescan=0.1, idle_poll=0.05,
                                               run_sources=False, grace=5.0))
        await runtime.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                details = [store.message(i) for i in ids.values()]
                if all(d is not None and d.summary.finished_at for d in details):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the runtime did not finish the examples")
        finally:
            await runtime.stop()

    asyncio.run(run())
    for name, message_id in ids.items():
        detail = store.message(message_id)
        assert detail is not None and detail.summary.state == "done", (name, detail and detail.summary.error)
    return ids


def found(client: UiClient, text: str) -> set[str]:
    rows = client.htmx_get("/runs", params={"q": text}, headers={"HX-Target": "run-rows"}).text
    return {i for i in rows.split('href="/runs/')[1:] for i in [i.split('"')[0]]}


def test_the_shipped_po_flows_declare_their_keys() -> None:
    for name in ("mx01-supplierx-po", "mx01-supplierx-asn", "mx01-erp-production-orders"):
        path = ROOT / "flows" / f"{name}.yaml"
        assert load_flow(path, path.read_text()).keys, name
    po = ROOT / "flows" / "mx01-supplierx-po.yaml"
    assert load_flow(po, po.read_text()).keys == {"po_number": "BEG.BEG03"}


def test_the_main_search_finds_key_values_and_file_names(app: Litestar, flows: Path, viewer: UiClient) -> None:
    ids = process_examples(app.state.ui.store, flows)
    po, asn, order = ids["mx01-supplierx-po"], ids["mx01-supplierx-asn"], ids["mx01-erp-production-orders"]
    # PO-45001 is the PO's number, and the ASN ships against it
    assert found(viewer, "PO-45001") == {po, asn}
    assert found(viewer, "po-45001") == {po, asn}  # case does not matter
    # 4711 is the production order's number (AUFNR 000000004711 in the ERP file)
    assert order in found(viewer, "4711")
    # a file name, or part of it
    assert found(viewer, "856-supplierx-2cartons.edi") == {asn}
    assert found(viewer, "production-order-47") == {order}
    assert found(viewer, "nothing-like-this") == set()
    # the search combines with the other filters
    rows = viewer.htmx_get("/runs", params={"q": "PO-45001", "flow": "mx01-supplierx-asn"},
                           headers={"HX-Target": "run-rows"}).text
    assert f"/runs/{asn}" in rows and f"/runs/{po}" not in rows
    # the business-key search by name finds the PO by its number in both flows
    rows = viewer.htmx_get("/runs", params={"key": "po_number", "value": "PO-45001"},
                           headers={"HX-Target": "run-rows"}).text
    assert f"/runs/{asn}" in rows and f"/runs/{po}" in rows
