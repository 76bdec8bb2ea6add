"""What every handler needs: the store's engine, the flows folder, the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar import Request
from sqlalchemy.engine import Engine

from .auth import CurrentUser


@dataclass
class UiState:
    engine: Engine
    flows_dir: Path
    runtime: Any = None  # flowyard.runtime's object when served by `flowyard serve`
    secure_cookies: bool = True
    git_branch_prefix: str = "flowyard"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tables_dir(self) -> Path:
        return self.flows_dir / "tables"

    @property
    def store(self) -> Any:
        """The runtime store's API (flowyard.store.api.Store) on the same engine."""
        found = self.extra.get("store")
        if found is None and getattr(self.runtime, "store", None) is not None:
            found = self.extra["store"] = self.runtime.store
        if found is None:
            from flowyard.store.api import Store

            found = self.extra["store"] = Store(engine=self.engine)
        return found


def ui(request: Request[Any, Any, Any]) -> UiState:
    state: UiState = request.app.state.ui
    return state


def user(request: Request[Any, Any, Any]) -> CurrentUser:
    current: CurrentUser = request.user
    return current


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def hx_target_is(request: Request[Any, Any, Any], element_id: str) -> bool:
    """Whether htmx will swap the answer into the element with this id: htmx 2 sends
    `HX-Target: id`, htmx 4 sends `HX-Target: tag#id`."""
    target = request.headers.get("hx-target") or ""
    return target == element_id or target.endswith("#" + element_id)
