"""Deployed flows as the runtime holds them: compiled once per version.

The flows directory is the set of deployed flows: every top-level `*.yaml`/`*.yml` whose
`kind` is `Flow` or `FlowInstance` (a FlowInstance renders to a flow through the loader).
Its version is the loader's content hash of the file. A message keeps the version it
was accepted under; a message of an older version runs with that version's steps and
targets, rebuilt from the file text recorded at its deployment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import registry
from ..connector import Target
from ..engine import Pipeline
from ..flow import ConnectorSpec, Flow
from ..loader import load_flow
from ..secrets import Secrets
from ..step import FlowContext

log = logging.getLogger("flowyard.runtime")

FLOW_FILE_KINDS = ("Flow", "FlowInstance")


def file_kind(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("kind:"):
            return line.split(":", 1)[1].split("#", 1)[0].strip().strip("'\"")
    return None


def flow_files(flows_dir: Path) -> list[Path]:
    """The deployable files of a flows directory (top level only: `tables/`,
    `templates/`, `partners/` and `guides/` hold what flows use, not flows)."""
    if not flows_dir.is_dir():
        return []
    found = []
    for path in sorted(flows_dir.iterdir()):
        if path.is_file() and path.suffix in (".yaml", ".yml") and not path.name.startswith("."):
            try:
                kind = file_kind(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
            if kind in FLOW_FILE_KINDS:
                found.append(path)
    return found


def endpoint_of(spec: ConnectorSpec, flow: Flow) -> str:
    """What a circuit breaker guards: the target's kind and address, without
    credentials or query strings (two flows posting to one ERP share one breaker)."""
    options = spec.options
    for attribute in ("url", "host", "server", "broker", "dsn", "path", "exchange", "subject"):
        value = getattr(options, attribute, None)
        if isinstance(value, str) and value and "${" not in value:
            if attribute == "path":
                value = str((flow.path.parent / value).resolve())
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
    text: str
    path: Path
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.flow.name

    @property
    def version(self) -> str:
        return self.flow.version

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


def context_for(flow: Flow, secrets: Secrets, services: dict[str, Any]) -> FlowContext:
    return FlowContext(flow_file=flow.path.resolve(), flow_name=flow.name, secrets=secrets,
                       services=services)


def compile_flow(path: Path, text: str, secrets: Secrets | None = None,
                 services: dict[str, Any] | None = None) -> LoadedFlow:
    """Load a flow file text and open its targets (connections open lazily on send)."""
    secrets = secrets or Secrets()
    flow = load_flow(path, text, secrets)
    targets = []
    for spec in flow.targets:
        cls = registry.connector_class(spec.kind)
        if cls.target_class is None:
            raise ValueError(f"connector {spec.kind!r} cannot be a target")
        target = cls.target_class(spec.options, context_for(flow, secrets, services or {}))
        targets.append(LoadedTarget(spec, target, endpoint_of(spec, flow)))
    return LoadedFlow(flow, Pipeline(flow), targets, text, path, dict(flow.labels))


def open_source(loaded: LoadedFlow, secrets: Secrets, services: dict[str, Any]) -> Any:
    spec = loaded.flow.source
    cls = registry.connector_class(spec.kind)
    if cls.source_class is None:
        raise ValueError(f"connector {spec.kind!r} cannot be a source")
    return cls.source_class(spec.options, context_for(loaded.flow, secrets, services))
