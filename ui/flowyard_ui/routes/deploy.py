"""Deploy, undeploy and roll back a flow version, each with a note and an audit entry.

The store records the deployment; the running runtime (in `flowyard serve` or the
workers) notices it within seconds and starts, restarts or stops the flow.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from .. import auth
from ..auth import CurrentUser
from ..flowfiles import FlowFile
from ..services import Changes, Refused
from ..state import UiState, provide_flow
from .common import form, off_loop, page, toast
from .flows import flow_context


def _status(request: Request[Any, Any, Any], ui: UiState, me: CurrentUser, name: str, text: str) -> Template:
    """The flow page's live part, read again, and the `deployed` event for the page's
    listeners."""
    context = flow_context(ui, me, provide_flow(ui, name))
    return page(request, "flows/status.html", trigger="deployed", toast_text=text, **context)


async def _note(request: Request[Any, Any, Any]) -> str:
    return str((await form(request)).get("note") or "").strip()


@post("/flows/{name:str}/deploy", guards=[auth.require("deployer")])
async def deploy(
    request: Request[Any, Any, Any], name: FromPath[str], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile], changes: NamedDependency[Changes]
) -> Template:
    note = await _note(request)
    try:
        version = await off_loop(changes.deploy, flow, note)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    text = f"Deployed {flow.name} version {version}. The runtime starts it within a few seconds."
    return await off_loop(_status, request, ui, me, name, text)


@post("/flows/{name:str}/undeploy", guards=[auth.require("deployer")])
async def undeploy(
    request: Request[Any, Any, Any], name: FromPath[str], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile], changes: NamedDependency[Changes]
) -> Template:
    note = await _note(request)
    try:
        await off_loop(changes.undeploy, flow, note)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    return await off_loop(_status, request, ui, me, name, f"Undeployed {flow.name}. Stored messages stay.")


@post("/flows/{name:str}/rollback", guards=[auth.require("deployer")])
async def rollback(
    request: Request[Any, Any, Any], name: FromPath[str], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser], flow: NamedDependency[FlowFile], changes: NamedDependency[Changes]
) -> Template:
    data = await form(request)
    version = str(data.get("version") or "").strip()
    note = str(data.get("note") or "").strip()
    try:
        await off_loop(changes.rollback, flow, version, note)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    text = f"Rolled {flow.name} back to version {version}: it runs as it was deployed; the file (a draft) is untouched."
    return await off_loop(_status, request, ui, me, name, text)


ROUTES = [deploy, undeploy, rollback]
