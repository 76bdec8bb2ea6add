"""Deployed flows as the runtime holds them: compiled once per deployed version.

What runs is what was deployed (`flowyard.operations.deployments`), nothing else: the
runtime reads each flow's deployed version from the store, materializes its snapshot
under the data directory and compiles it from there. A message keeps the version it was
accepted under; a message of an older version runs with that version's snapshot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import registry
from ..connector import Target
from ..engine import Pipeline
from ..flow import ConnectorSpec, Flow
from ..loader import load_flow
from ..secrets import Secrets
from ..services import Services
from ..step import FlowContext

log = logging.getLogger("flowyard.runtime")


def endpoint_of(spec: ConnectorSpec, flow: Flow, io_dir: Path | None = None) -> str:
    """What a circuit breaker guards: the target's kind and address, without
    credentials or query strings (two flows posting to one ERP share one breaker)."""
    options = spec.options
    for attribute in ("url", "host", "server", "broker", "dsn", "path", "exchange", "subject"):
        value = getattr(options, attribute, None)
        if isinstance(value, str) and value and "${" not in value:
            if attribute == "path":
                value = str((io_dir or flow.path.parent) / value)
            value = value.split("?", 1)[0]
            if "@" in value and "://" in value:
                scheme, rest = value.split("://", 1)
                value = f"{scheme}://{rest.split('@', 1)[1]}"
            return f"{spec.kind}:{value}"
    return f"{spec.kind}:{flow.name}/{spec.name}"


@dataclass
class LoadedTarget:
    spec: ConnectorSpec
    target: Target[Any]
    endpoint: str


@dataclass
class LoadedFlow:
    flow: Flow
    pipeline: Pipeline
    targets: list[LoadedTarget]
    version: str  # the deployed version (the snapshot's), which messages carry
    labels: dict[str, str]

    @property
    def name(self) -> str:
        return self.flow.name

    def target(self, name: str) -> LoadedTarget | None:
        for t in self.targets:
            if t.spec.name == name:
                return t
        return None

    async def close(self) -> None:
        for t in self.targets:
            try:
                await t.target.close()
            except Exception as exc:  # closing must not stop a shutdown
                log.warning("closing target %s of %s failed: %s", t.spec.name, self.name, exc)


def context_for(flow: Flow, secrets: Secrets, services: Services, io_dir: Path | None = None) -> FlowContext:
    return FlowContext(flow_file=flow.path.resolve(), flow_name=flow.name, secrets=secrets,
                       services=services, io_dir=io_dir)


def compile_flow(path: Path, text: str, *, version: str, io_dir: Path | None = None,
                 secrets: Secrets | None = None, services: Services | None = None) -> LoadedFlow:
    """Load a flow file text and open its targets (connections open lazily on send).
    `io_dir` is where the folders its connectors read and write start (the folder the
    flow was deployed from, when `path` is its snapshot)."""
    secrets = secrets or Secrets()
    services = services or Services()
    flow = load_flow(path, text, secrets)
    for step in flow.steps:  # the runtime's services (its store) for every step
        step.step.context.services = services
    targets = []
    for spec in flow.targets:
        cls = registry.connector_class(spec.kind)
        if cls.target_class is None:
            raise ValueError(f"connector {spec.kind!r} cannot be a target")
        target = cls.target_class(spec.options, context_for(flow, secrets, services, io_dir))
        targets.append(LoadedTarget(spec, target, endpoint_of(spec, flow, io_dir)))
    return LoadedFlow(flow, Pipeline(flow), targets, version, dict(flow.labels))


def open_source(loaded: LoadedFlow, secrets: Secrets, services: Services, io_dir: Path | None = None) -> Any:
    spec = loaded.flow.source
    cls = registry.connector_class(spec.kind)
    if cls.source_class is None:
        raise ValueError(f"connector {spec.kind!r} cannot be a source")
    return cls.source_class(spec.options, context_for(loaded.flow, secrets, services, io_dir))
