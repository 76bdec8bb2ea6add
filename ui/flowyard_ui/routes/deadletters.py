"""Dead letters grouped by flow and reason; replay one, a selection or a whole group,
with the current version or the version the message failed on."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from flowyard.store.api import Store

from .. import auth
from ..services import Changes, Refused
from .common import arg, form_lists, off_loop, page, swaps_into, toast


def _context(store: Store, flow: str, reason: str) -> dict[str, Any]:
    groups = store.dead_letter_groups(flow=flow or None, max_ids=5000)
    letters = store.dead_letters(flow=flow or None, reason=reason or None, limit=200)
    return {"groups": groups, "letters": letters, "flow": flow, "reason": reason}


@get("/dead-letters")
async def dead_letters_page(request: HTMXRequest, store: NamedDependency[Store]) -> Template:
    context = await off_loop(_context, store, arg(request, "flow"), arg(request, "reason"))
    if swaps_into(request, "dead-body"):
        return page(request, "deadletters/body.html", **context)
    return page(request, "deadletters/list.html", **context)


def _ids(values: list[Any]) -> list[int]:
    return [int(v) for value in values for v in str(value).replace(",", " ").split() if v.isdigit()]


@post("/dead-letters/replay", guards=[auth.require("deployer")])
async def replay(request: Request[Any, Any, Any], changes: NamedDependency[Changes]) -> Template:
    data = await form_lists(request)
    version = (data.get("version") or ["current"])[0]
    group = (data.get("group_flow") or [""])[0], (data.get("group_reason") or [""])[0]
    try:
        force = (data.get("force") or [""])[0] == "on"
        outcome = await off_loop(changes.replay, _ids(data.get("ids", [])), version, group=group, force=force)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    text = f"Replayed {len(outcome.done)} dead letter(s) with the {version} version."
    if outcome.failed:
        text += " Not replayed: " + "; ".join(f"{r.source_id}: {r.error}" for r in outcome.failed[:5])
    return toast(text, "error" if outcome.failed and not outcome.done else "ok", trigger="replayed")


@post("/dead-letters/discard", guards=[auth.require("deployer")])
async def discard(request: Request[Any, Any, Any], changes: NamedDependency[Changes]) -> Template:
    data = await form_lists(request)
    try:
        count = await off_loop(changes.discard, _ids(data.get("ids", [])))
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    return toast(f"{count} dead letter(s) marked as handled.", trigger="replayed")


ROUTES = [dead_letters_page, replay, discard]
