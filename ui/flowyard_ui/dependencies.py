"""What route handlers are given by name (Litestar dependency injection): the UI's
state, the store, the user, the flow named in the URL and the service that makes
changes."""

from __future__ import annotations

from litestar.di import Provide

from .services import provide_changes
from .state import provide_flow, provide_store, provide_ui, provide_user


def dependencies() -> dict[str, Provide]:
    return {
        "ui": Provide(provide_ui, sync_to_thread=False),
        "store": Provide(provide_store, sync_to_thread=False),
        "me": Provide(provide_user, sync_to_thread=False),
        "flow": Provide(provide_flow, sync_to_thread=False),
        "changes": Provide(provide_changes, sync_to_thread=False),
    }
