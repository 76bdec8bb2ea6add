"""What every handler needs: the store's engine, the flows folder, the runtime; and the
dependencies the app injects into route handlers (`ui`, `store`, `me`, `flow`,
`changes`) instead of handlers looking them up on the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from sqlalchemy.engine import Engine

from flowyard.store.api import Store
from flowyard.store.window import MessageWindow

from .auth import CurrentUser
from .flowfiles import FlowFile, FlowFileError, find_flow


@dataclass
class UiState:
    engine: Engine
    flows_dir: Path
    runtime: Any = None  # flowyard.runtime's object when served by `flowyard serve`
    secure_cookies: bool = True
    git_branch_prefix: str = "flowyard"
    _store: Store | None = field(default=None, repr=False)
    _window: MessageWindow | None = field(default=None, repr=False)

    @property
    def tables_dir(self) -> Path:
        return self.flows_dir / "tables"

    @property
    def store(self) -> Store:
        """The runtime store's API on the same engine (the runtime's own when served by
        `flowyard serve`)."""
        if self._store is None:
            runtime_store = getattr(self.runtime, "store", None)
            self._store = runtime_store if isinstance(runtime_store, Store) else Store(engine=self.engine)
        return self._store

    @property
    def message_window(self) -> MessageWindow:
        """The dashboard's figures of the last 72 hours, kept between its refreshes."""
        if self._window is None:
            self._window = MessageWindow(self.engine)
        return self._window


def provide_ui(state: State) -> UiState:
    found: UiState = state.ui
    return found


def provide_store(ui: NamedDependency[UiState]) -> Store:
    return ui.store


def provide_user(request: Request[Any, Any, Any]) -> CurrentUser:
    current: CurrentUser = request.user
    return current


def provide_flow(ui: NamedDependency[UiState], name: FromPath[str]) -> FlowFile:
    """The flow file named in the path (`/flows/{name}/...`), or 404."""
    try:
        return find_flow(ui.flows_dir, name)
    except FlowFileError as exc:
        raise NotFoundException(str(exc)) from exc
