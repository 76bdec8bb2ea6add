"""Code tables: view and edit the lookup tables under `flows/tables/`, validated as
you type (duplicate or empty codes, ragged rows) and saved with a diff and an audit
entry. Lookups pick up a saved table within a second, without a redeploy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from flowyard.loader import content_hash
from flowyard.tables import Table

from .. import auth
from ..auth import CurrentUser
from ..services import Changes, Refused, check_table_text, table_files, table_path
from ..state import UiState
from .common import form, off_loop, page, toast


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
    table, issues = await off_loop(check_table_text, file_name, text)
    header, rows = _rows(table)
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


ROUTES = [tables_page, table_create, table_page, table_check, table_save]
