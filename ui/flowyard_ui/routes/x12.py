"""Outbound X12 sets: those waiting past their partner's deadline for a 997/999, and
those the partner's acknowledgment answered."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from flowyard.store import x12_control as control

from .. import auth, overdue
from ..state import UiState
from .common import off_loop, page, swaps_into


@get("/x12/overdue", guards=[auth.require("viewer")])
async def overdue_page(request: HTMXRequest, ui: NamedDependency[UiState]) -> Template:
    engine = ui.engine
    sets = await off_loop(overdue.overdue_sets, engine)
    counts = await off_loop(overdue.summary, engine)
    answered = await off_loop(control.acknowledged, engine)
    template = "x12/overdue_body.html" if swaps_into(request, "overdue-body") else "x12/overdue.html"
    return page(request, template, nav="dashboard", sets=sets, counts=counts, answered=answered)


ROUTES = [overdue_page]
