"""The dashboard: a tile per plant and partner, red when a flow breaks its SLA."""

from __future__ import annotations

import time
from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from flowyard.store import figures as queries
from flowyard.yamlio import load_text, to_plain

from .. import drafts, overdue
from ..flowfiles import list_flows
from ..state import UiState
from .common import arg, off_loop, page, swaps_into

WINDOWS = {"6": 6, "24": 24, "72": 72}


_slas: dict[tuple[str, str], dict[str, Any] | None] = {}


def slas(state: UiState) -> dict[str, dict[str, Any]]:
    """Each flow's `sla:` thresholds from its file (read again only when the file's
    version changes: the dashboard refreshes every few seconds)."""
    found: dict[str, dict[str, Any]] = {}
    for info in list_flows(state.flows_dir):
        key = (str(info.path), info.version)
        if key not in _slas:
            if len(_slas) > 1000:  # old versions of files edited all day
                _slas.clear()
            try:
                document = to_plain(load_text(info.text, info.rel))
            except Exception:
                document = None
            sla = document.get("sla") if isinstance(document, dict) else None
            _slas[key] = sla if isinstance(sla, dict) else None
        cached = _slas[key]
        if cached is not None:
            found[info.name] = cached
    return found


def build(state: UiState, hours: int) -> dict[str, Any]:
    now = time.time()
    figures, percentiles = queries.flow_figures(state.engine, hours, now, state.message_window)
    thresholds = slas(state)
    tiles = queries.tiles(figures, thresholds, hours, percentiles)
    overview = state.store.overview(state.message_window, recent_failures=8)
    acks = overdue.summary(state.engine)
    stale = drafts.stale_workers(overview.workers)
    return {"tiles": tiles, "overview": overview, "hours": hours, "slas": thresholds, "acks": acks,
            "stale": stale, "stale_after": drafts.STALE_AFTER}


def bars(values: list[int], width: int = 260, height: int = 46) -> dict[str, Any]:
    """Coordinates of a small bar chart (drawn as SVG in the template)."""
    top = max(values) if values and max(values) > 0 else 1
    step = width / max(1, len(values))
    rects = []
    for i, v in enumerate(values):
        h = 0 if v == 0 else max(2.0, (height - 12) * v / top)
        rects.append(
            {
                "x": round(i * step + 1, 1),
                "y": round(height - 12 - h, 1),
                "w": round(max(1.0, step - 2), 1),
                "h": round(h, 1),
                "v": v,
            }
        )
    return {"rects": rects, "width": width, "height": height, "top": top}


@get("/dashboard")
async def dashboard_page(request: HTMXRequest, ui: NamedDependency[UiState]) -> Template:
    hours = WINDOWS.get(arg(request, "hours"), 24)
    context = await off_loop(build, ui, hours)
    template = "dashboard/body.html" if swaps_into(request, "dash-body") else "dashboard/page.html"
    return page(request, template, bars=bars, **context)


ROUTES = [dashboard_page]
