"""The flows list (filterable by plant, partner, domain) and a flow's page."""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Response, Template

from flowyard.errors import FlowyardError
from flowyard.loader import load_flow

from .. import audit, auth, diagram, gitops
from ..flowfiles import FlowFileError, find_flow, new_flow_path, skeleton, write_atomic
from ..flowstate import flow_rows, label_values, summary
from ..state import hx_target_is, ui, user
from ..yamldoc import parse_or_none
from .common import arg, form, off_loop, page, redirect_htmx


@get("/flows")
async def flows_page(request: Request[Any, Any, Any]) -> Template:
    plant, partner, domain, q = (arg(request, k) for k in ("plant", "partner", "domain", "q"))
    state = ui(request)
    rows = await off_loop(flow_rows, state, plant=plant, partner=partner, domain=domain, text=q)
    context: dict[str, Any] = {
        "rows": rows,
        "plant": plant,
        "partner": partner,
        "domain": domain,
        "q": q,
        "totals": summary(rows),
    }
    if hx_target_is(request, "flow-rows"):
        return page(request, "flows/rows.html", **context)
    return page(request, "flows/list.html", labels=await off_loop(label_values, state), **context)


def _flow_or_404(request: Request[Any, Any, Any], name: FromPath[str]) -> Any:
    try:
        return find_flow(ui(request).flows_dir, name)
    except FlowFileError as exc:
        raise NotFoundException(str(exc)) from exc


def flow_context(request: Request[Any, Any, Any], name: FromPath[str]) -> dict[str, Any]:
    state = ui(request)
    info = _flow_or_404(request, name)
    document = parse_or_none(info.text, info.rel)
    if info.kind != "Flow" and info.valid:  # an instance: show the flow it renders to
        with contextlib.suppress(FlowyardError):
            document = load_flow(info.path, info.text).document or document
    bad = {i.position.line for i in info.issues if i.position.line}
    deployed = state.store.flow_state(info.name)
    repo = gitops.repo_root(state.flows_dir)
    git: dict[str, Any] | None = None
    if repo is not None:
        branch = gitops.branch_name(state.git_branch_prefix, user(request).username, info.name)
        git = {
            "branch": gitops.current_branch(repo),
            "committed": gitops.committed_version(repo, info.path),
            "review_branch": branch,
            "review_commits": gitops.branch_commits(repo, branch, 5),
            "review_version": gitops.committed_version(repo, info.path, f"refs/heads/{branch}"),
        }
    return {
        "flow": info,
        "d": diagram.build(document, bad),
        "deployed": deployed,
        "git": git,
        "history": state.store.deployments(info.name, limit=20),
        "recent": state.store.list_messages(flow=info.name, limit=10),
    }


@get("/flows/{name:str}")
async def flow_page(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    context = await off_loop(flow_context, request, name)
    return page(request, "flows/flow.html", **context)


@get("/flows/{name:str}/status")
async def flow_status(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    """The live part of a flow page (deployment state, recent messages), polled."""
    context = await off_loop(flow_context, request, name)
    return page(request, "flows/status.html", **context)


@get("/flows/new", guards=[auth.require("analyst")], sync_to_thread=False)
def new_flow_page(request: Request[Any, Any, Any]) -> Template:
    return page(request, "flows/new.html", error=None, name="", plant="", partner="", domain="")


@post("/flows/new", guards=[auth.require("analyst")])
async def new_flow(request: Request[Any, Any, Any]) -> Response[Any]:
    data = await form(request)
    state = ui(request)
    name = str(data.get("name") or "").strip()
    labels = {k: str(data.get(k) or "").strip() for k in ("plant", "partner", "domain")}
    try:
        path = new_flow_path(state.flows_dir, name)
    except FlowFileError as exc:
        return page(request, "flows/new.html", status_code=400, error=str(exc), name=name, **labels)
    write_atomic(path, skeleton(name, **labels))
    audit.record(state.engine, user(request).username, "flow-created", name, path.name)
    location = f"/flows/{name}/edit"
    if request.headers.get("hx-request") == "true":
        return redirect_htmx(location)
    return Response("", status_code=303, headers={"Location": location})


ROUTES = [flows_page, new_flow_page, new_flow, flow_page, flow_status]
