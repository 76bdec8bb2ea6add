"""Route handlers, one small module per page family."""

from __future__ import annotations

from typing import Any


def all_routes() -> list[Any]:
    from . import (
        account,
        admin,
        changes,
        dashboard,
        deadletters,
        deploy,
        editor,
        flows,
        mapper,
        onboard,
        playground,
        runs,
        tables,
        templates,
        x12,
    )

    modules = (
        account,
        flows,
        editor,
        playground,
        mapper,
        deploy,
        changes,
        runs,
        deadletters,
        dashboard,
        tables,
        templates,
        x12,
        admin,
        onboard,
    )
    return [handler for module in modules for handler in module.ROUTES]
