"""Trying a flow in the playground spends no real X12 control number and records no
outbound set: each run has its own scratch store, also with previews running at once
beside the real store's users (the runtime shares the process with the UI)."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from flowyard.store import engines
from flowyard.store import x12_control as control
from flowyard.store.scratch import ScratchUnavailable
from flowyard_ui import playground

from .conftest import UiClient

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "examples" / "x12" / "erp" / "po-45001.json").read_bytes()


def _x12_flow(flows: Path) -> Path:
    (flows / "partners").mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "flows" / "partners" / "supplierx.yaml", flows / "partners" / "supplierx.yaml")
    text = (ROOT / "flows" / "mx01-supplierx-po.yaml").read_text(encoding="utf-8").split("\ntests:")[0] + "\n"
    path = flows / "mx01-supplierx-po.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def real_store(app: Litestar, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The app's store is also the process's default store, so a step that fell back to
    the default engine would count in it."""
    engine: Engine = app.state.ui.engine
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("FLOWYARD_DATABASE_URL", url)
    yield engine
    engines.dispose_engine(url)


def _counters(engine: Engine) -> dict[tuple[str, str], int]:
    table = control.ControlCounter.__table__
    with engine.connect() as connection:
        return {(r.partner, r.kind): r.value for r in connection.execute(select(table))}


def _outbound(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(control.OutboundSet.__table__)).scalar_one())


def _isa13(text: str) -> str:
    found = re.search(r"ISA(?:\*[^*]*){12}\*(\d{9})\*", text)
    assert found, text[:400]
    return found.group(1)


def test_trying_an_x12_generate_flow_leaves_the_real_counters_alone(
    analyst: UiClient, flows: Path, real_store: Engine
) -> None:
    path = _x12_flow(flows)
    for _ in range(3):
        control.next_number("supplierx", "ISA", real_store)
    before = _counters(real_store)
    assert before[("supplierx", "ISA")] == 3
    for _ in range(2):
        response = analyst.post(
            "/flows/mx01-supplierx-po/playground/run",
            {"yaml": path.read_text(encoding="utf-8"), "sample": SAMPLE.decode(), "sample_name": "po-45001.json"},
        )
        assert response.status_code == 200
        assert "All steps succeeded: 1 output" in response.text, response.text[:2000]
        assert _isa13(response.text.replace("&#42;", "*")) == "000000001"  # each run counts from its own start
    assert _counters(real_store) == before
    assert _outbound(real_store) == 0


def test_previews_at_once_beside_the_runtime_keep_to_their_own_store(flows: Path, real_store: Engine) -> None:
    path = _x12_flow(flows)
    text = path.read_text(encoding="utf-8")
    env_before = os.environ.get("FLOWYARD_DATABASE_URL")
    start = threading.Barrier(5)
    previews: list[Any] = []
    errors: list[BaseException] = []

    def preview() -> None:
        try:
            start.wait()
            for _ in range(3):
                previews.append(playground.run(path, text, SAMPLE, "po-45001.json"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=preview) for _ in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    taken = [control.next_number("supplierx", "ISA") for _ in range(20)]  # the runtime, on the default store
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert taken == list(range(1, 21))
    assert _counters(real_store)[("supplierx", "ISA")] == 20
    assert ("supplierx", "GS") not in _counters(real_store)
    assert _outbound(real_store) == 0
    assert len(previews) == 12
    for result in previews:
        assert result.ok, (result.failures, result.error)
        assert _isa13(result.outputs[0].text) == "000000001"
    assert os.environ.get("FLOWYARD_DATABASE_URL") == env_before


def test_a_playground_flow_cannot_reach_a_store_outside_a_run(flows: Path) -> None:
    path = _x12_flow(flows)
    flow = playground.compiled(path, path.read_text(encoding="utf-8"))
    services = flow.steps[-1].step.context.services
    with pytest.raises(ScratchUnavailable):
        services.control_numbers()
    with pytest.raises(ScratchUnavailable):
        services.state()


def _received(engine: Engine) -> int:
    with engine.connect() as connection:
        table = control.ReceivedInterchange.__table__
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_an_instance_of_a_template_tried_twice_records_no_interchange(flows: Path, real_store: Engine) -> None:
    """A FlowInstance renders through the templates' own loader; its x12.parse still
    records the interchanges it reads in the run's scratch store, not the real one."""
    onboarding = ROOT / "examples" / "onboarding"
    for folder in ("templates", "partners", "tables", "tests"):
        shutil.copytree(onboarding / folder, flows / folder, dirs_exist_ok=True)
    path = flows / "mx01-supplierx-x12.yaml"
    shutil.copyfile(onboarding / "mx01-supplierx-x12.yaml", path)
    sample = (onboarding / "tests" / "mx01-supplierx-x12" / "856.edi").read_bytes()
    text = path.read_text(encoding="utf-8")
    for _ in range(2):
        result = playground.run(path, text, sample, "856.edi")
        assert result.ok, (result.issues, result.error, result.failures)
        assert result.outputs and not any("duplicate" in lane.entries[0].text for lane in result.lanes if lane.entries)
    assert _received(real_store) == 0
    assert _counters(real_store) == {}
