"""The playground page: a sample in, every step's output side by side."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.response import Template

from flowyard.loader import content_hash
from flowyard.onboarding.render import select_flow
from flowyard.secrets import redactor
from flowyard.store.api import Store

from .. import auth, playground
from ..flowfiles import FlowFile, unified_diff
from ..services import Changes, Refused
from .common import off_loop, page, toast

MAX_SAMPLE = 5_000_000


async def _inputs(request: Request[Any, Any, Any], info: FlowFile) -> tuple[str, bytes, str, dict[str, Any]]:
    """The flow text, the sample bytes and its file name from a posted form (an
    uploaded file wins over the pasted text)."""
    data = await request.form()
    text = str(data.get("yaml") or info.text).replace("\r\n", "\n")
    sample = str(data.get("sample") or "").encode("utf-8")
    name = str(data.get("sample_name") or "")
    upload = data.get("upload")
    if isinstance(upload, UploadFile) and upload.filename:
        sample = await upload.read()
        name = upload.filename
    if len(sample) > MAX_SAMPLE:
        raise ValueError("the sample is larger than 5 MB; use a smaller one")
    return text, sample, name, {k: data.get(k) for k in data if k != "upload"}


@get("/flows/{name:str}/playground")
async def playground_page(request: Request[Any, Any, Any], store: NamedDependency[Store], flow: NamedDependency[FlowFile]) -> Template:
    info = flow
    recent = await off_loop(store.list_messages, flow=info.name, limit=20)
    return page(
        request,
        "flows/playground.html",
        nav="flows",
        flow=info,
        text=info.text,
        recent=recent,
        preview=None,
        sample="",
        sample_name="",
    )


@get("/flows/{name:str}/playground/sample")
async def recent_sample(request: Request[Any, Any, Any], store: NamedDependency[Store], flow: NamedDependency[FlowFile]) -> Template:
    """Fill the sample box with a recent real message of this flow."""
    info = flow
    message_id = str(request.query_params.get("message") or "")
    found = await off_loop(store.payload, message_id) if message_id else None
    if found is None:
        return toast("That message is not in the store any more.", "error", status_code=404)
    payload, _content_type = found
    detail = await off_loop(store.message, message_id)
    file_name = str((detail.summary.source or {}).get("file") or "") if detail else ""
    text = redactor.redact(payload.decode("utf-8", errors="replace"))
    return page(request, "flows/sample_box.html", trigger="pg-rerun", flow=info, sample=text, sample_name=file_name)


@post("/flows/{name:str}/playground/run", guards=[auth.require("analyst")])
async def run_preview(request: Request[Any, Any, Any], flow: NamedDependency[FlowFile]) -> Template:
    info = flow
    try:
        text, sample, sample_name, _ = await _inputs(request, info)
    except ValueError as exc:
        return toast(str(exc), "error", status_code=413)
    if info.flow is not None:  # one flow of an instance whose template gives several
        text = select_flow(text, info.flow)
    preview = await off_loop(playground.run, info.path, text, sample, sample_name)
    return page(request, "flows/lanes.html", flow=info, preview=preview)


@post("/flows/{name:str}/playground/test", guards=[auth.require("analyst")])
async def save_as_test(request: Request[Any, Any, Any], flow: NamedDependency[FlowFile], changes: NamedDependency[Changes]) -> Template:
    """Turn the sample and its current output into a `tests:` case, then show the diff
    of the flow file to confirm the save."""
    try:
        text, sample, sample_name, data = await _inputs(request, flow)
    except ValueError as exc:
        return toast(str(exc), "error", status_code=413)
    case_name = str(data.get("case_name") or "").strip()
    try:
        added = await off_loop(changes.add_test_case, flow, text, sample, sample_name, case_name)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    return page(
        request,
        "flows/diff.html",
        flow=flow,
        diff=unified_diff(added.current, added.new_text, flow.rel),
        new_text=added.new_text,
        base=content_hash(added.current),
        changed_on_disk=False,
        git=False,
        branch="",
        errors=[],
        note=f"Test case “{case_name}” added; files written: {added.files}. Save the flow to keep the case.",
    )


ROUTES = [playground_page, recent_sample, run_preview, save_as_test]
