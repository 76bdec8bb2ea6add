"""Dead letters grouped by flow and reason; replay one, a selection or a whole group,
with the current version or the version the message failed on. A replay is previewed
first: the difference of output, as `flowyard replay --dry-run` shows it, and a button
that confirms."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.plugins.htmx import HTMXRequest, HTMXTemplate
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


def _replay_form(data: dict[str, list[Any]]) -> tuple[list[int], str, tuple[str, str], bool]:
    version = (data.get("version") or ["current"])[0]
    group = (data.get("group_flow") or [""])[0], (data.get("group_reason") or [""])[0]
    force = (data.get("force") or [""])[0] == "on"
    return _ids(data.get("ids", [])), version, group, force


@post("/dead-letters/replay/preview", guards=[auth.require("deployer")])
async def replay_preview(request: HTMXRequest, changes: NamedDependency[Changes]) -> Template:
    """What the replay would change (dry run), with the button that replays."""
    ids, version, group, force = _replay_form(await form_lists(request))
    try:
        preview = await off_loop(changes.replay_preview, ids, version, group=group, force=force)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    return page(request, "deadletters/preview.html", p=preview)


@post("/dead-letters/replay", guards=[auth.require("deployer")])
async def replay(request: Request[Any, Any, Any], changes: NamedDependency[Changes]) -> Template:
    ids, version, group, force = _replay_form(await form_lists(request))
    try:
        outcome = await off_loop(changes.replay, ids, version, group=group, force=force)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    text = f"Replayed {len(outcome.done)} dead letter(s) with the {version} version."
    if outcome.failed:
        text += " Not replayed: " + "; ".join(f"{r.source_id}: {r.error}" for r in outcome.failed[:5])
    return HTMXTemplate(template_name="deadletters/replayed.html",
                        context={"text": text, "kind": "error" if outcome.failed and not outcome.done else "ok"},
                        re_swap="none", trigger_event="replayed", after="receive")


@post("/dead-letters/discard", guards=[auth.require("deployer")])
async def discard(request: Request[Any, Any, Any], changes: NamedDependency[Changes]) -> Template:
    data = await form_lists(request)
    try:
        count = await off_loop(changes.discard, _ids(data.get("ids", [])))
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    return toast(f"{count} dead letter(s) marked as handled.", trigger="replayed")


ROUTES = [dead_letters_page, replay_preview, replay, discard]
