"""Deploy, undeploy and roll back a flow version, each with a note and an audit entry.

The store records the deployment; the running runtime (in `flowyard serve` or the
workers) notices it within seconds and starts, restarts or stops the flow.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.params import FromPath
from litestar.response import Template

from flowyard.errors import DefinitionError, FlowyardError
from flowyard.operations import deployments

from .. import audit, auth
from ..flowfiles import _cache
from ..state import ui, user
from .common import form, off_loop, page, toast
from .flows import flow_context


def _status(request: Request[Any, Any, Any], name: str, text: str) -> Template:
    context = flow_context(request, name)
    response = page(request, "flows/status.html", toast_text=text, **context)
    response.headers["HX-Trigger"] = "deployed"
    return response


@post("/flows/{name:str}/deploy", guards=[auth.require("deployer")])
async def deploy(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    state = ui(request)
    context = await off_loop(flow_context, request, name)
    info = context["flow"]
    note = str((await form(request)).get("note") or "").strip()
    try:
        result = await off_loop(deployments.deploy, state.store, info.path, who=user(request).username, note=note)
    except DefinitionError as exc:
        lines = "; ".join(f"line {i.position.line}: {i.message}" for i in exc.issues[:5])
        return toast(f"Not deployed: the file has problems ({lines}).", "error", status_code=400)
    except FlowyardError as exc:
        return toast(f"Not deployed: {exc}", "error", status_code=400)
    audit.record(state.engine, user(request).username, "deploy", info.name, f"version {result.version}: {note}")
    return await off_loop(
        _status,
        request,
        name,
        f"Deployed {info.name} version {result.version}. The runtime starts it within a few seconds.",
    )


@post("/flows/{name:str}/undeploy", guards=[auth.require("deployer")])
async def undeploy(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    state = ui(request)
    context = await off_loop(flow_context, request, name)
    info = context["flow"]
    note = str((await form(request)).get("note") or "").strip()
    try:
        await off_loop(deployments.undeploy, state.store, info.name, who=user(request).username, note=note)
    except FlowyardError as exc:
        return toast(f"Not undeployed: {exc}", "error", status_code=400)
    audit.record(state.engine, user(request).username, "undeploy", info.name, note)
    return await off_loop(_status, request, name, f"Undeployed {info.name}. Stored messages stay.")


@post("/flows/{name:str}/rollback", guards=[auth.require("deployer")])
async def rollback(request: Request[Any, Any, Any], name: FromPath[str]) -> Template:
    state = ui(request)
    context = await off_loop(flow_context, request, name)
    info = context["flow"]
    data = await form(request)
    version = str(data.get("version") or "").strip()
    note = str(data.get("note") or "").strip()
    try:
        await off_loop(deployments.rollback, state.store, info.name, version, who=user(request).username, note=note)
    except FlowyardError as exc:
        return toast(f"Not rolled back: {exc}", "error", status_code=400)
    _cache.pop(info.path, None)
    audit.record(state.engine, user(request).username, "rollback", info.name, f"to version {version}: {note}")
    return await off_loop(
        _status, request, name, f"Rolled {info.name} back to version {version}; the file was rewritten and deployed."
    )


ROUTES = [deploy, undeploy, rollback]
