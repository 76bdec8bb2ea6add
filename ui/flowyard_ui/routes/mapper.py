"""The mapper pages: the object-building steps of a flow, one step field by field, the
live preview of its values (htmx, debounced) and saving the mapping as a draft."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from flowyard import mapping
from flowyard.errors import FlowyardError
from flowyard.loader import content_hash

from .. import auth, mapper, playground
from ..flowfiles import FlowFile, unified_diff
from ..services import Changes, Refused, table_files
from ..state import UiState
from .common import form_lists, off_loop, page, toast

MAX_SAMPLE = 5_000_000


def _tables(ui: UiState) -> list[str]:
    return sorted({p.stem for p in table_files(ui)})


def _first(data: dict[str, list[Any]], key: str) -> str:
    values = data.get(key) or [""]
    return str(values[0] or "")


@get("/flows/{name:str}/mapper")
async def mapper_steps(request: Request[Any, Any, Any], flow: NamedDependency[FlowFile]) -> Template:
    """The flow's jmespath steps, each with a link to map it field by field."""
    steps = await off_loop(mapper.mapping_steps, flow.path, flow.text)
    return page(request, "mapper/steps.html", nav="flows", flow=flow, steps=steps)


@get("/flows/{name:str}/mapper/{index:int}")
async def mapper_page(
    request: Request[Any, Any, Any], ui: NamedDependency[UiState], flow: NamedDependency[FlowFile], index: FromPath[int]
) -> Template:
    def build() -> tuple[mapper.View, str, str]:
        mapper.find_step(flow.path, flow.text, index - 1)
        try:
            sample, sample_name = mapper.default_sample(playground.compiled(flow.path, flow.text))
        except FlowyardError:  # the view says the flow does not load
            sample, sample_name = "", ""
        return mapper.view(flow.path, flow.text, index - 1, sample.encode(), sample_name), sample, sample_name

    try:
        view, sample, sample_name = await off_loop(build)
    except mapper.MapperError as exc:
        return page(request, "error.html", status_code=404, nav="flows", title="Not a mapping step", detail=str(exc))
    return page(
        request,
        "mapper/page.html",
        nav="flows",
        flow=flow,
        v=view,
        number=index,
        sample=sample,
        sample_name=sample_name,
        tables=_tables(ui),
        functions=mapper.FUNCTION_LABELS,
        readonly=not request.user.can("analyst"),
    )


async def _posted(request: Request[Any, Any, Any]) -> tuple[dict[str, list[Any]], list[mapper.Row]]:
    data = await form_lists(request)
    if len(_first(data, "sample").encode()) > MAX_SAMPLE:
        raise mapper.MapperError("the sample is larger than 5 MB; use a smaller one")
    rows = mapper.rows_posted(data)
    action = _first(data, "action")
    at = _first(data, "at")
    if action == "wrap":
        row = next((r for r in rows if r.path == at and r.kind == "value"), None)
        if row is None:
            raise mapper.MapperError("that field is not in the mapping any more; reload the page")
        row.expression = mapper.wrap(row.expression, _first(data, f"fn-{row.id}"), _first(data, f"arg-{row.id}").strip())
    elif action == "add":
        key = _first(data, "new_key").strip()
        if not key:
            raise mapper.MapperError("give the new field a name")
        path = mapper.pointer([key])
        if any(r.path == path for r in rows):
            raise mapper.MapperError(f"there is a field {key!r} already")
        rows.append(mapper.Row(path, key, 0, "value", _first(data, "new_expr").strip() or "@"))
    elif action == "remove":
        rows = [r for r in rows if r.path != at and not r.path.startswith(at + "/")]
    return data, rows


@post("/flows/{name:str}/mapper/{index:int}/preview", guards=[auth.require("viewer")])
async def mapper_preview(
    request: Request[Any, Any, Any], ui: NamedDependency[UiState], flow: NamedDependency[FlowFile], index: FromPath[int]
) -> Template:
    """The targets with their values on the sample, for the rows as they are now."""
    try:
        data, rows = await _posted(request)
        view = await off_loop(
            mapper.view,
            flow.path,
            flow.text,
            index - 1,
            _first(data, "sample").replace("\r\n", "\n").encode(),
            _first(data, "sample_name"),
            rows,
            _first(data, "base"),
            _first(data, "many") == "1",
        )
    except mapper.MapperError as exc:
        return toast(str(exc), "error", status_code=400)
    structural = _first(data, "action") != ""
    return page(
        request,
        "mapper/targets.html" if structural else "mapper/values.html",
        refreshed=structural,
        flow=flow,
        v=view,
        number=index,
        tables=_tables(ui),
        functions=mapper.FUNCTION_LABELS,
        readonly=not request.user.can("analyst"),
    )


@post("/flows/{name:str}/mapper/{index:int}/save", guards=[auth.require("analyst")])
async def mapper_save(
    request: Request[Any, Any, Any], flow: NamedDependency[FlowFile], changes: NamedDependency[Changes], index: FromPath[int]
) -> Template:
    """Write the mapping back into the flow file (a draft until deployed) and show what
    changed: the fields (semantic diff) and the lines."""
    try:
        data, rows = await _posted(request)
        base = _first(data, "version")
        if base and base != flow.version:
            raise Refused(
                "Not saved: someone saved this flow since you opened the mapper. Reload it and map again.", 409
            )
        text, expression = await off_loop(
            mapper.new_text, flow.path, flow.text, index - 1, rows, _first(data, "base"), _first(data, "many") == "1"
        )
        if text == flow.text:
            return page(request, "mapper/saved.html", flow=flow, note="Nothing to save: the mapping is unchanged.",
                        diff="", fields=[], version=flow.version)
        saved = await off_loop(changes.save_flow, flow, text, base=flow.version, commit=False, message="")
    except mapper.MapperError as exc:
        return toast(str(exc), "error", status_code=400)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    new = flow.path.read_text(encoding="utf-8")
    step = mapper.find_step(flow.path, flow.text, index - 1)
    fields = mapping.field_changes(step.expression, expression) or []
    return page(
        request,
        "mapper/saved.html",
        flow=flow,
        note=saved.message,
        diff=unified_diff(flow.text, new, flow.rel),
        fields=fields,
        version=content_hash(new),
    )


ROUTES = [mapper_steps, mapper_page, mapper_preview, mapper_save]
