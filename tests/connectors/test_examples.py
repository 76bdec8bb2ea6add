"""Every connector example is a valid flow, and together they use every connector."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyard.loader import check_flow, load_flow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "connectors"
FLOWS = sorted(EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("path", FLOWS, ids=[p.stem for p in FLOWS])
def test_example_is_valid(path: Path) -> None:
    assert [str(i) for i in check_flow(path)] == []


def test_examples_cover_every_connector() -> None:
    sources = {load_flow(p).source.kind for p in FLOWS}
    targets = {t.kind for p in FLOWS for t in load_flow(p).targets}
    assert {"http", "sftp", "sql", "mqtt", "amqp", "nats", "opcua", "schedule"} <= sources
    assert {"http", "sftp", "sql", "mqtt", "amqp", "nats"} <= targets
