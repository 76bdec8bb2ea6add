"""Code tables: view and edit the lookup tables under `flows/tables/` as a grid of cells
(add, delete, sort, filter, paste rows from a spreadsheet) or as text, validated as you
type (duplicate or empty codes, ragged rows) and saved with a diff and an audit entry.
A saved table is a draft: running flows keep the copy they were deployed with until a
deployer deploys the change from the changes page, through the gate (the tests of every
deployed flow that holds the table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXTemplate
from litestar.response import Redirect, Template

from flowyard.loader import content_hash
from flowyard.tables import Table

from .. import auth, tablegrid
from ..auth import CurrentUser
from ..flowfiles import unified_diff
from ..services import Changes, Refused, check_table_text, table_files, table_path
from ..state import UiState
from .common import arg, form, form_lists, off_loop, page, toast


def _table_path(ui: UiState, file_name: str) -> Path:
    path = table_path(ui, file_name)
    if path is None:
        raise NotFoundException(f"{file_name!r} is not a table file name (NAME.csv or NAME.yaml)")
    return path


def _rows(table: Table | None, limit: int = 500) -> tuple[list[str], list[list[str]]]:
    if table is None:
        return [], []
    columns = table.columns or ["value"]
    rows = []
    for code, value in list(table.rows.items())[:limit]:
        if isinstance(value, dict):
            rows.append([code, *[str(value.get(c, "")) for c in columns]])
        else:
            rows.append([code, str(value)])
    return ["code", *columns], rows


@get("/tables")
async def tables_page(request: Request[Any, Any, Any], ui: NamedDependency[UiState]) -> Template:
    summaries = []
    for path in await off_loop(table_files, ui):
        table, issues = await off_loop(check_table_text, path.name, path.read_text(encoding="utf-8-sig"))
        summaries.append({"file": path.name, "codes": len(table.rows) if table else 0, "issues": issues})
    return page(request, "tables/list.html", tables=summaries, error=None)


@get("/tables/{file_name:str}")
async def table_page(
    request: Request[Any, Any, Any], file_name: FromPath[str], ui: NamedDependency[UiState], me: NamedDependency[CurrentUser]
) -> Template:
    path = _table_path(ui, file_name)
    if not path.is_file():
        raise NotFoundException(f"there is no table {file_name}")
    text = path.read_text(encoding="utf-8-sig")
    view = "text" if arg(request, "view") == "text" else "grid"
    table, issues = await off_loop(check_table_text, file_name, text)
    header, rows = _rows(table)
    grid, unsupported = None, ""
    try:
        grid = await off_loop(tablegrid.read_grid, file_name, text)
    except tablegrid.GridUnsupported as exc:
        unsupported = str(exc)
        view = "text"
    return page(
        request,
        "tables/edit.html",
        nav="tables",
        file=file_name,
        text=text,
        version=content_hash(text),
        issues=issues,
        header=header,
        rows=rows,
        count=len(table.rows) if table else 0,
        readonly=not me.can("analyst"),
        view=view,
        grid=grid,
        unsupported=unsupported,
        used_by=await off_loop(tablegrid.used_by, ui, file_name),
    )


@post("/tables/{file_name:str}/check")
async def table_check(request: Request[Any, Any, Any], file_name: FromPath[str], ui: NamedDependency[UiState]) -> Template:
    _table_path(ui, file_name)
    text = str((await form(request)).get("text") or "").replace("\r\n", "\n")
    table, issues = await off_loop(check_table_text, file_name, text)
    header, rows = _rows(table)
    return page(
        request,
        "tables/check.html",
        file=file_name,
        issues=issues,
        header=header,
        rows=rows,
        count=len(table.rows) if table else 0,
    )


@post("/tables/{file_name:str}/save", guards=[auth.require("analyst")])
async def table_save(
    request: Request[Any, Any, Any], file_name: FromPath[str], ui: NamedDependency[UiState], changes: NamedDependency[Changes]
) -> Template:
    path = _table_path(ui, file_name)
    data = await form(request)
    text = str(data.get("text") or "").replace("\r\n", "\n")
    try:
        diff, version = await off_loop(changes.save_table, path, text, base=str(data.get("base") or ""))
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    if not diff:
        return toast("Nothing to save: no change.")
    return page(request, "tables/saved.html", file=file_name, diff=diff, version=version)


@post("/tables", guards=[auth.require("analyst")])
async def table_create(request: Request[Any, Any, Any], ui: NamedDependency[UiState], changes: NamedDependency[Changes]) -> Any:
    data = await form(request)
    name = str(data.get("name") or "").strip()
    kind = "yaml" if data.get("kind") == "yaml" else "csv"
    try:
        file_name = changes.create_table(name, kind)
    except Refused as exc:
        summaries = [{"file": p.name, "codes": 0, "issues": []} for p in table_files(ui)]
        return page(request, "tables/list.html", status_code=exc.status_code, tables=summaries, error=exc.text)
    return Redirect(f"/tables/{file_name}", status_code=303)


# -- the grid ---------------------------------------------------------------------------


def _grid_edit(path: Path, file_name: str, data: dict[str, list[Any]]) -> tuple[tablegrid.GridEdit, str]:
    """The grid's rows written into the file's text (not saved) and the file's text;
    Refused when the file changed since the grid was read or the rows do not fit it."""
    text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
    base = str((data.get("base") or [""])[0])
    if base and base != content_hash(text):
        raise Refused("Not saved: the table changed since you opened it; reload and apply your change again.", 409)
    try:
        grid = tablegrid.read_grid(file_name, text)
        rows = tablegrid.sent_rows(data, len(grid.columns))
        return tablegrid.apply_grid(file_name, text, rows), text
    except tablegrid.GridOutOfDate as exc:
        raise Refused(f"Not saved: {exc}", 409) from exc
    except tablegrid.GridUnsupported as exc:
        raise Refused(f"Not saved: {exc}; use the Text tab.") from exc


def _result(request: Request[Any, Any, Any], file_name: str, edit: tablegrid.GridEdit, diff: str, **context: Any) -> Template:
    return page(
        request,
        "tables/grid_result.html",
        file=file_name,
        edit=edit,
        diff=diff,
        cell_errors=[{"row": e.row, "col": e.col, "message": e.message} for e in edit.errors],
        **context,
    )


@post("/tables/{file_name:str}/grid/check", guards=[auth.require("analyst")])
async def grid_check(request: Request[Any, Any, Any], file_name: FromPath[str], ui: NamedDependency[UiState]) -> Template:
    """The grid's changes as the file diff they make, and their problems at their cells;
    nothing is written."""
    path = _table_path(ui, file_name)
    try:
        edit, old = await off_loop(_grid_edit, path, file_name, await form_lists(request))
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    diff = unified_diff(old, edit.text, f"tables/{file_name}") if edit.ok else ""
    return _result(request, file_name, edit, diff)


@post("/tables/{file_name:str}/grid/save", guards=[auth.require("analyst")])
async def grid_save(
    request: Request[Any, Any, Any], file_name: FromPath[str], ui: NamedDependency[UiState], changes: NamedDependency[Changes]
) -> Template:
    """Save the grid as the table's new text (a draft: deployed from the changes page);
    with a problem, nothing is written and the problems are shown at their cells."""
    path = _table_path(ui, file_name)
    data = await form_lists(request)
    try:
        edit, _old = await off_loop(_grid_edit, path, file_name, data)
        if not edit.ok:
            return _result(request, file_name, edit, "")
        if not edit.changed:
            return toast("Nothing to save: no change.")
        base = str((data.get("base") or [""])[0])
        diff, version = await off_loop(changes.save_table, path, edit.text, base=base)
    except Refused as exc:
        return toast(exc.text, "error", status_code=exc.status_code)
    text = path.read_text(encoding="utf-8-sig")
    grid = await off_loop(tablegrid.read_grid, file_name, text)
    table, issues = await off_loop(check_table_text, file_name, text)
    return HTMXTemplate(
        template_name="tables/grid_pane.html",
        context={
            "current_user": request.user,
            "file": file_name,
            "grid": grid,
            "version": version,
            "readonly": False,
            "saved_diff": diff,
            "issues": issues,
            "count": len(table.rows) if table else 0,
            "used_by": await off_loop(tablegrid.used_by, ui, file_name),
        },
        re_target="#grid-pane",
        re_swap="outerHTML",
        after="receive",
    )


ROUTES = [tables_page, table_create, table_page, table_check, table_save, grid_check, grid_save]
