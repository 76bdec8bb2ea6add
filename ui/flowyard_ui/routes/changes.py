"""The changes page: drafts awaiting deployment, each with its diff in words and in
lines and the deploy gate's results; a deployer deploys one (from the draft, or a flow
as a git commit holds it) or sends it back to its author with a comment."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Template

from .. import auth, drafts, gitops
from ..services import Changes, Refused
from ..state import UiState
from .common import arg, form, off_loop, page, toast


def _context(ui: UiState) -> dict[str, Any]:
    repo = gitops.repo_root(ui.flows_dir)
    branches: dict[str, list[dict[str, str]]] = {}
    if repo is not None:
        for b in gitops.review_branches(repo, ui.git_branch_prefix):
            branches.setdefault(b["flow"], []).append(b)
    return {"drafts": drafts.list_drafts(ui), "git": repo is not None, "branches": branches}


@get("/changes")
async def changes_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState]) -> Template:
    context = await off_loop(_context, ui)
    return page(request, "changes/page.html", **context)


@get("/changes/gate")
async def gate_result(request: Request[Any, Any, Any], ui: NamedDependency[UiState]) -> Template:
    """The deploy gate's verdict on one draft (its tests), loaded after the page."""
    key = arg(request, "key")
    draft = await off_loop(drafts.find_draft, ui, key)
    if draft is None:
        return page(request, "changes/gate.html", result=None, draft=None)
    result = await off_loop(drafts.gate, ui, draft)
    return page(request, "changes/gate.html", result=result, draft=draft)


def _body(request: Request[Any, Any, Any], ui: UiState, text: str, kind: str = "ok", status_code: int = 200) -> Template:
    return page(request, "changes/body.html", status_code=status_code, trigger="deployed",
                toast_text=text, toast_kind=kind, **_context(ui))


@post("/changes/deploy", guards=[auth.require("deployer")])
async def deploy_draft(request: Request[Any, Any, Any], ui: NamedDependency[UiState], changes: NamedDependency[Changes]) -> Template:
    data = await form(request)
    key, version, note = (str(data.get(k) or "").strip() for k in ("key", "version", "note"))
    try:
        done = await off_loop(changes.deploy_draft, key, version, note)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    text = f"Deployed {key}: {', '.join(done)}. The runtime starts it within a few seconds."
    return await off_loop(_body, request, ui, text)


@post("/changes/send-back", guards=[auth.require("deployer")])
async def send_back(request: Request[Any, Any, Any], ui: NamedDependency[UiState], changes: NamedDependency[Changes]) -> Template:
    data = await form(request)
    key, version, comment = (str(data.get(k) or "").strip() for k in ("key", "version", "comment"))
    try:
        await off_loop(changes.send_back, key, version, comment)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    return await off_loop(_body, request, ui, f"Sent {key} back to its author with your comment.")


@post("/changes/deploy-commit", guards=[auth.require("deployer")])
async def deploy_commit(request: Request[Any, Any, Any], changes: NamedDependency[Changes]) -> Template:
    """Deploy a flow file as a git commit holds it (not the file on disk)."""
    data = await form(request)
    key, ref, note = (str(data.get(k) or "").strip() for k in ("key", "ref", "note"))
    try:
        version = await off_loop(changes.deploy_commit, key, ref, note)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    return toast(f"Deployed {key} as commit {ref} holds it: version {version}.", trigger="deployed")


ROUTES = [changes_page, gate_result, deploy_draft, send_back, deploy_commit]
