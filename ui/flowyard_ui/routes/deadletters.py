"""Dead letters grouped by flow and reason; replay one, a selection or a whole group,
with the current version or the version the message failed on."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Template

from flowyard.operations.replay import replay as replay_messages

from .. import audit, auth
from ..state import hx_target_is, ui, user
from .common import arg, form_lists, off_loop, page, toast


def _context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    state = ui(request)
    flow, reason = arg(request, "flow"), arg(request, "reason")
    groups = state.store.dead_letter_groups(flow=flow or None, max_ids=5000)
    letters = state.store.dead_letters(flow=flow or None, reason=reason or None, limit=200)
    return {"groups": groups, "letters": letters, "flow": flow, "reason": reason}


@get("/dead-letters")
async def dead_letters_page(request: Request[Any, Any, Any]) -> Template:
    context = await off_loop(_context, request)
    if hx_target_is(request, "dead-body"):
        return page(request, "deadletters/body.html", **context)
    return page(request, "deadletters/list.html", **context)


@post("/dead-letters/replay", guards=[auth.require("deployer")])
async def replay(request: Request[Any, Any, Any]) -> Template:
    state = ui(request)
    me = user(request)
    data = await form_lists(request)
    version = (data.get("version") or ["current"])[0]
    if version not in ("current", "failed"):
        return toast("Choose the current version or the version it failed on.", "error", status_code=400)
    ids: list[int] = []
    for value in data.get("ids", []):
        ids += [int(v) for v in str(value).replace(",", " ").split() if v.isdigit()]
    flow, reason_kind = (data.get("group_flow") or [""])[0], (data.get("group_reason") or [""])[0]
    if flow and not ids:
        groups = await off_loop(state.store.dead_letter_groups, flow=flow, max_ids=100_000)
        ids = [i for g in groups if g.reason_kind == reason_kind for i in g.ids]
    if not ids:
        return toast("Nothing selected to replay.", "error", status_code=400)
    results = await off_loop(replay_messages, state.store, ids, version=version, who=me.username)
    done = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    audit.record(
        state.engine,
        me.username,
        "replay",
        flow or ", ".join(sorted({str(r.source_id) for r in results}))[:300],
        f"{len(done)} replayed with the {version} version"
        + "".join(f"\n{r.source_id} -> {r.message_id} ({r.version})" for r in done)
        + "".join(f"\n{r.source_id}: {r.error}" for r in failed),
    )
    text = f"Replayed {len(done)} dead letter(s) with the {version} version."
    if failed:
        text += " Not replayed: " + "; ".join(f"{r.source_id}: {r.error}" for r in failed[:5])
    response = toast(text, "error" if failed and not done else "ok")
    response.headers["HX-Trigger"] = "replayed"
    return response


@post("/dead-letters/discard", guards=[auth.require("deployer")])
async def discard(request: Request[Any, Any, Any]) -> Template:
    state = ui(request)
    data = await form_lists(request)
    ids = [int(v) for value in data.get("ids", []) for v in str(value).replace(",", " ").split() if v.isdigit()]
    if not ids:
        return toast("Nothing selected.", "error", status_code=400)
    count = await off_loop(state.store.discard_dead_letters, ids, user(request).username)
    audit.record(
        state.engine,
        user(request).username,
        "discard",
        ", ".join(map(str, ids))[:300],
        f"{count} dead letter(s) marked handled without replay",
    )
    response = toast(f"{count} dead letter(s) marked as handled.")
    response.headers["HX-Trigger"] = "replayed"
    return response


ROUTES = [dead_letters_page, replay, discard]
