"""Deploying a flow file, stopping a flow and going back to an earlier version."""

from __future__ import annotations

import os
from pathlib import Path

from ..loader import kind_of, load_flow
from ..store.api import DeploymentInfo, Store, StoreError


def deploy(store: Store, path: Path | str, *, who: str = "", note: str = "") -> DeploymentInfo:
    """Deploy the flow file as it is now (validated first); the running runtime starts
    or restarts the flow within a few seconds."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    flow = load_flow(path, text)
    info = store.record_deployment(
        flow=flow.name, version=flow.version, path=str(path.resolve()), text=text, who=who,
        note=note, kind=kind_of(text) or "Flow", labels=dict(flow.labels), dedupe=False,
    )
    assert info is not None  # dedupe=False always writes
    return info


def undeploy(store: Store, flow: str, *, who: str = "", note: str = "") -> DeploymentInfo:
    """Stop running a flow (its file stays; `deploy` starts it again)."""
    return store.undeploy(flow, who=who, note=note)


def rollback(store: Store, flow: str, version: str, *, who: str = "", note: str = "") -> DeploymentInfo:
    """Write a previously deployed version back to the flow file and deploy it."""
    found = store.version_text(flow, version)
    if found is None:
        raise StoreError(f"flow {flow!r} has no deployed version {version!r}")
    text, path = found
    state = store.flow_state(flow)
    if state is not None and state.path:
        path = state.path
    target = Path(path)
    tmp = target.with_name(f".{target.name}.rollback")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    info = store.record_deployment(
        flow=flow, version=version, path=path, text=text, who=who,
        note=note or f"rollback to {version}", action="rollback", kind=kind_of(text) or "Flow", dedupe=False,
    )
    assert info is not None
    return info
