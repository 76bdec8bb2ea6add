"""Outbound X12 sets waiting past their partner's deadline for a 997/999."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from .. import auth, overdue
from ..state import hx_target_is, ui
from .common import off_loop, page


@get("/x12/overdue", guards=[auth.require("viewer")])
async def overdue_page(request: Request[Any, Any, Any]) -> Template:
    engine = ui(request).engine
    sets = await off_loop(overdue.overdue_sets, engine)
    counts = await off_loop(overdue.summary, engine)
    template = "x12/overdue_body.html" if hx_target_is(request, "overdue-body") else "x12/overdue.html"
    return page(request, template, nav="dashboard", sets=sets, counts=counts)


ROUTES = [overdue_page]
