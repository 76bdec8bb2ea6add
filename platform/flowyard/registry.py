"""Steps and connectors are found by name through entry points.

`flowyard.steps` and `flowyard.connectors` are the groups; a third-party package adds
its own by declaring entry points in its pyproject. Loading is lazy so that a step that
needs an optional library costs nothing until a flow uses it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from .errors import FlowyardError

if TYPE_CHECKING:
    from .connector import Connector
    from .step import Step

STEP_GROUP = "flowyard.steps"
CONNECTOR_GROUP = "flowyard.connectors"


class UnavailableError(FlowyardError):
    """A registered step or connector could not be imported (missing optional library)."""


@cache
def _group(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


@cache
def _load(group: str, name: str) -> Any:
    entry = _group(group)[name]
    try:
        return entry.load()
    except ImportError as exc:
        raise UnavailableError(f"{name!r} cannot be loaded: {exc}; {install_hint(entry, name, exc)}") from exc
    except AttributeError as exc:
        raise UnavailableError(f"{name!r} is registered but cannot be loaded: {exc}") from exc


def install_hint(entry: Any, name: str, exc: ImportError) -> str:
    """The one command that brings what is missing: the extra named after the step or
    connector when its distribution declares one (`flowyard[sftp]`), else the module."""
    dist = getattr(entry, "dist", None)
    extras = (dist.metadata.get_all("Provides-Extra") or []) if dist is not None else []
    if dist is not None and name in extras:
        return f"install it with: pip install '{dist.metadata['Name']}[{name}]'"
    missing = (exc.name or "").split(".")[0]
    return f"install it with: pip install {missing}" if missing else "reinstall the package that provides it"


def step_names() -> list[str]:
    return sorted(_group(STEP_GROUP))


def connector_names() -> list[str]:
    return sorted(_group(CONNECTOR_GROUP))


def step_class(name: str) -> type[Step]:
    cls: type[Step] = _load(STEP_GROUP, name)
    return cls


def connector_class(name: str) -> type[Connector]:
    cls: type[Connector] = _load(CONNECTOR_GROUP, name)
    return cls


def available_steps() -> dict[str, type[Step]]:
    """Every step that loads on this installation."""
    found: dict[str, type[Step]] = {}
    for name in step_names():
        try:
            found[name] = step_class(name)
        except UnavailableError:
            continue
    return found


def available_connectors() -> dict[str, type[Connector]]:
    found: dict[str, type[Connector]] = {}
    for name in connector_names():
        try:
            found[name] = connector_class(name)
        except UnavailableError:
            continue
    return found
