"""The flows list (filterable by plant, partner, domain) and a flow's page."""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from flowyard.errors import FlowyardError
from flowyard.loader import load_flow

from .. import auth, diagram, drafts, flowtests, gitops
from ..auth import CurrentUser
from ..flowfiles import FlowFile
from ..flowstate import flow_rows, label_values, summary
from ..services import Changes, Refused
from ..state import UiState
from ..yamldoc import parse_or_none
from .common import arg, form, off_loop, page, redirect, swaps_into


@get("/flows")
async def flows_page(request: HTMXRequest, ui: NamedDependency[UiState]) -> Template:
    plant, partner, domain, q = (arg(request, k) for k in ("plant", "partner", "domain", "q"))
    rows = await off_loop(flow_rows, ui, plant=plant, partner=partner, domain=domain, text=q)
    context: dict[str, Any] = {
        "rows": rows,
        "plant": plant,
        "partner": partner,
        "domain": domain,
        "q": q,
        "totals": summary(rows),
    }
    if swaps_into(request, "flow-rows"):
        return page(request, "flows/rows.html", **context)
    broken = await off_loop(drafts.broken_files, ui.flows_dir)
    return page(request, "flows/list.html", labels=await off_loop(label_values, ui), broken=broken, **context)


def flow_context(ui: UiState, me: CurrentUser, info: FlowFile) -> dict[str, Any]:
    document = parse_or_none(info.text, info.rel)
    if info.is_instance and info.document is not None:  # an instance: the flow it renders to
        document = info.document
    elif info.kind != "Flow" and info.valid:
        with contextlib.suppress(FlowyardError):
            document = load_flow(info.path, info.text).document or document
    bad = {i.position.line for i in info.issues if i.position.line}
    deployed = ui.store.flow_state(info.name)
    repo = gitops.repo_root(ui.flows_dir)
    git: dict[str, Any] | None = None
    if repo is not None:
        branch = gitops.branch_name(ui.git_branch_prefix, me.username, info.name)
        git = {
            "branch": gitops.current_branch(repo),
            "committed": gitops.committed_version(repo, info.path),
            "review_branch": branch,
            "review_commits": gitops.branch_commits(repo, branch, 5),
            "review_version": gitops.committed_version(repo, info.path, f"refs/heads/{branch}"),
        }
        if me.can("deployer"):
            git["branches"] = gitops.review_branches(repo, ui.git_branch_prefix, info.name)
    st = drafts.flow_state(ui, info)
    return {
        "flow": info,
        "d": diagram.build(document, bad),
        "deployed": deployed,
        "st": st,
        "tests": flowtests.last(ui, info, st.draft_version),
        "git": git,
        "history": ui.store.deployments(info.name, limit=20),
        "recent": ui.store.list_messages(flow=info.name, limit=10),
    }


@get("/flows/{name:str}")
async def flow_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile]) -> Template:
    context = await off_loop(flow_context, ui, me, flow)
    return page(request, "flows/flow.html", **context)


@get("/flows/{name:str}/status")
async def flow_status(request: Request[Any, Any, Any], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile]) -> Template:
    """The live part of a flow page (deployment state, recent messages), polled."""
    context = await off_loop(flow_context, ui, me, flow)
    return page(request, "flows/status.html", **context)


@post("/flows/{name:str}/tests", guards=[auth.require("analyst")])
async def run_flow_tests(request: HTMXRequest, ui: NamedDependency[UiState], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile]) -> Template:
    """Run the flow's tests now, as the deploy gate would (nothing is deployed)."""
    status = await off_loop(flowtests.run, ui, flow, me.username)
    return page(request, "flows/tests.html", flow=flow, tests=status)


@get("/flows/new", guards=[auth.require("analyst")], sync_to_thread=False)
def new_flow_page(request: Request[Any, Any, Any]) -> Template:
    return page(request, "flows/new.html", error=None, name="", plant="", partner="", domain="")


@post("/flows/new", guards=[auth.require("analyst")])
async def new_flow(request: HTMXRequest, changes: NamedDependency[Changes]) -> Any:
    data = await form(request)
    name = str(data.get("name") or "").strip()
    labels = {k: str(data.get(k) or "").strip() for k in ("plant", "partner", "domain")}
    try:
        changes.create_flow(name, labels)
    except Refused as exc:
        return page(request, "flows/new.html", status_code=exc.status_code, error=exc.text, name=name, **labels)
    return redirect(request, f"/flows/{name}/edit")


ROUTES = [flows_page, new_flow_page, new_flow, flow_page, flow_status, run_flow_tests]
