"""Runs: messages searchable by flow, plant, partner, state, time, correlation id and
business key, and by a main search box that looks in ids, errors, source file names and
business-key values; a message's timeline with the payload at each step."""

from __future__ import annotations

import time
from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from flowyard.store import figures as queries
from flowyard.store.api import Store
from flowyard.store.models import MESSAGE_STATES

from ..flowfiles import list_flows, read_flow
from ..state import UiState
from .common import arg, off_loop, page, swaps_into

PAGE = 50
PERIODS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def flow_keys(state: UiState) -> dict[str, dict[str, str]]:
    """Each flow's business keys (`keys:` in the flow file)."""
    from flowyard.yamlio import load_text, to_plain

    found: dict[str, dict[str, str]] = {}
    for info in list_flows(state.flows_dir):
        try:
            document = to_plain(load_text(read_flow(info.path, state.flows_dir, check=False).text, info.rel))
        except Exception:
            continue
        keys = document.get("keys") if isinstance(document, dict) else None
        if isinstance(keys, dict):
            found[info.name] = {str(k): str(v) for k, v in keys.items()}
    return found


def search(state: UiState, params: dict[str, str]) -> dict[str, Any]:
    offset = int(params.get("offset") or 0) if (params.get("offset") or "0").isdigit() else 0
    since = time.time() - PERIODS[params["period"]] if params.get("period") in PERIODS else None
    keys = flow_keys(state)
    filters: dict[str, Any] = {
        "flow": params.get("flow") or None,
        "state": params.get("state") or None,
        "plant": params.get("plant") or None,
        "partner": params.get("partner") or None,
        "correlation_id": params.get("correlation") or None,
        "search": params.get("q") or None,
        "since": since,
    }
    rows: list[Any]
    key, value = params.get("key") or "", params.get("value") or ""
    if key and value:
        ids = queries.search_by_key(state.engine, keys, key, value, limit=PAGE * 4)
        rows = [d.summary for d in (state.store.message(i) for i in ids) if d is not None]
        rows = [r for r in rows if _matches(r, filters)][offset : offset + PAGE + 1]
    elif filters["search"]:
        rows = _search(state, keys, filters, offset)
    else:
        rows = state.store.list_messages(limit=PAGE + 1, offset=offset, **filters)
    return {
        "rows": rows[:PAGE],
        "more": len(rows) > PAGE,
        "offset": offset,
        "page_size": PAGE,
        "key_names": sorted({k for ks in keys.values() for k in ks}),
    }


def _search(state: UiState, keys: dict[str, dict[str, str]], filters: dict[str, Any], offset: int) -> list[Any]:
    """The main search box: messages whose id, correlation id, error or source file name
    holds the text, and messages of flows with business keys whose key value holds it
    (`4711` finds order 4711 and PO-4711), newest first."""
    direct = state.store.list_messages(limit=offset + PAGE + 1, offset=0, **filters)
    ids = queries.search_key_values(state.engine, keys, filters["search"], limit=offset + PAGE + 1)
    seen = {r.id for r in direct}
    keyed = [d.summary for d in (state.store.message(i) for i in ids if i not in seen) if d is not None]
    found = direct + [r for r in keyed if _matches(r, filters)]
    found.sort(key=lambda r: r.created_at, reverse=True)
    return found[offset : offset + PAGE + 1]


def _matches(row: Any, filters: dict[str, Any]) -> bool:
    for attr in ("flow", "state", "plant", "partner", "correlation_id"):
        if filters[attr] and getattr(row, attr) != filters[attr]:
            return False
    return not (filters["since"] and row.created_at < filters["since"])


@get("/runs")
async def runs_page(request: HTMXRequest, ui: NamedDependency[UiState]) -> Template:
    state = ui
    names = ("flow", "state", "plant", "partner", "period", "correlation", "q", "key", "value", "offset")
    params = {k: arg(request, k) for k in names}
    context = await off_loop(search, state, params)
    context["params"] = params
    if swaps_into(request, "run-rows"):
        return page(request, "runs/rows.html", **context)
    flows = await off_loop(list_flows, state.flows_dir)
    labels = {k: sorted({f.labels.get(k, "") for f in flows} - {""}) for k in ("plant", "partner")}
    return page(
        request,
        "runs/list.html",
        flows=[f.name for f in flows],
        states=MESSAGE_STATES,
        periods=PERIODS,
        labels=labels,
        **context,
    )


@get("/runs/{message_id:str}")
async def message_page(request: HTMXRequest, message_id: FromPath[str], store: NamedDependency[Store]) -> Template:
    detail = await off_loop(store.message, message_id)
    if detail is None:
        raise NotFoundException(f"no message {message_id} in the store (it may have been purged)")
    template = "runs/detail_body.html" if swaps_into(request, "message-body") else "runs/detail.html"
    return page(request, template, nav="runs", m=detail, s=detail.summary)


ROUTES = [runs_page, message_page]
