"""Observability: one OpenTelemetry trace per message (trace id = message id) across
accept, steps and deliveries; JSON log lines with the message's ids, secrets redacted;
Prometheus metrics by flow, plant, partner and state."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from rthelp import order, runtime_for, until, write_flow

from flowyard.message import Message
from flowyard.runtime import tracing
from flowyard.runtime.logs import JsonFormatter, fields
from flowyard.runtime.runtime import RuntimeConfig
from flowyard.secrets import redactor
from flowyard.store.api import Store


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, sdk.TracerProvider):
        provider = sdk.TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setenv("FLOWYARD_OTEL", "1")
    tracing.reset()
    yield exporter
    exporter.shutdown()
    monkeypatch.delenv("FLOWYARD_OTEL")
    tracing.reset()


async def test_one_trace_per_message_across_accept_steps_and_delivery(
        tmp_path: Path, sqlite_store: Store, spans: object) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    runtime = runtime_for(sqlite_store, RuntimeConfig(flows_dir=flows, idle_poll=0.05))
    await runtime.start()
    try:
        message = Message(payload=order(3), content_type="application/json")
        await runtime.accept("orders", message)
        await until(lambda: sqlite_store.count_messages(state="done") == 1, what="done")
    finally:
        await runtime.stop()
    finished = spans.get_finished_spans()  # type: ignore[attr-defined]
    ours = [s for s in finished if s.context.trace_id == int(message.id, 16)]
    names = sorted(s.name for s in ours)
    assert names == sorted(["accept", "message", "step 1-json.parse", "step pick",
                            "step render", "deliver"])
    deliver = next(s for s in ours if s.name == "deliver")
    assert deliver.attributes["key"] == f"{message.id}.0.file-1"
    assert deliver.attributes["correlation_id"] == message.correlation_id


def test_json_log_lines_carry_ids_and_never_a_secret() -> None:
    redactor.remember("s3cr3t-token-value")
    message = Message(payload=b"{}", flow="orders", flow_version="v1")
    record = logging.LogRecord("flowyard.runtime", logging.WARNING, __file__, 1,
                               "delivery failed: 401 for token %s", ("s3cr3t-token-value",),
                               None)
    for key, value in fields(message, target="erp").items():
        setattr(record, key, value)
    line = json.loads(JsonFormatter().format(record))
    assert line["message_id"] == message.id and line["correlation_id"] == message.id
    assert line["flow"] == "orders" and line["target"] == "erp" and line["level"] == "warning"
    assert "s3cr3t-token-value" not in json.dumps(line) and "***" in line["msg"]


async def test_metrics_by_flow_plant_partner_and_state(tmp_path: Path,
                                                       sqlite_store: Store) -> None:
    flows = tmp_path / "flows"
    write_flow(flows)
    (flows / "inbox" / "good.json").write_bytes(order(1))
    (flows / "inbox" / "bad.json").write_bytes(b"{")
    runtime = runtime_for(sqlite_store, RuntimeConfig(flows_dir=flows, idle_poll=0.05,
                                                  rescan=0.2))
    await runtime.start()
    try:
        await until(lambda: sqlite_store.count_messages(state="done") == 1
                    and sqlite_store.count_messages(state="dead") == 1, what="both finished")
        text = runtime.metrics.render().decode()
    finally:
        await runtime.stop()
    labels = 'flow="orders",partner="ACME",plant="MX01"'
    assert f'flowyard_messages_total{{{labels},state="done"}} 1.0' in text
    assert f'flowyard_messages_total{{{labels},state="dead"}} 1.0' in text
    assert 'flowyard_dead_letters_open{flow="orders"} 1.0' in text
    assert "flowyard_dead_letter_oldest_age_seconds" in text
    assert 'flowyard_step_seconds_count{flow="orders",step="pick"} 1.0' in text
    assert 'flowyard_delivery_seconds_count{flow="orders",target="file-1"} 1.0' in text
    assert "# TYPE flowyard_x12_overdue_acknowledgments gauge" in text  # outbound X12 awaiting 997/999
