"""Running one flow on one input outside the durable runtime: `flowyard run`,
`flowyard test`, the playground and the examples use this."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .connector import Target
from .engine import Pipeline, RunResult, Tracer, target_applies
from .errors import DeliveryError, FlowyardError
from .flow import ConnectorSpec, Flow
from .message import Message


def input_message(flow: Flow, payload: bytes, name: str, source: dict[str, Any] | None = None) -> Message:
    """The message the flow's source would deliver for this input."""
    connector = registry.connector_class(flow.source.kind)
    message = connector.input_message(flow.source.options, payload, name)
    message.source.update(source or {})
    message.flow, message.flow_version = flow.name, flow.version
    return message


@dataclass
class Delivery:
    target: str
    message: Message
    ok: bool
    detail: Any = None
    error: str | None = None


@dataclass
class RunReport:
    result: RunResult
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result.ok and all(d.ok for d in self.deliveries)


def open_target(flow: Flow, spec: ConnectorSpec) -> Target[Any]:
    from .step import FlowContext

    cls = registry.connector_class(spec.kind)
    assert cls.target_class is not None
    return cls.target_class(spec.options, FlowContext(flow_file=flow.path.resolve(), flow_name=flow.name))


async def deliver_all(flow: Flow, outputs: list[Message]) -> list[Delivery]:
    """Send every output to every target whose `when:` holds, one attempt each."""
    deliveries: list[Delivery] = []
    targets = [(spec, open_target(flow, spec)) for spec in flow.targets]
    try:
        for message in outputs:
            for spec, target in targets:
                if not target_applies(spec, message):
                    continue
                key = f"{message.id}-{spec.name}"
                try:
                    detail = await target.send(message, key)
                    deliveries.append(Delivery(spec.name, message, True, detail))
                except DeliveryError as exc:
                    deliveries.append(Delivery(spec.name, message, False, error=str(exc)))
                except FlowyardError as exc:
                    deliveries.append(Delivery(spec.name, message, False, error=str(exc)))
    finally:
        for _spec, target in targets:
            await target.close()
    return deliveries


def run_flow(
    flow: Flow,
    input_path: Path,
    *,
    deliver: bool,
    tracer: Tracer | None = None,
    source: dict[str, Any] | None = None,
) -> RunReport:
    message = input_message(flow, input_path.read_bytes(), input_path.name, source)
    result = Pipeline(flow).run(message, tracer)
    report = RunReport(result)
    if deliver and result.outputs:
        report.deliveries = asyncio.run(deliver_all(flow, result.outputs))
    return report
