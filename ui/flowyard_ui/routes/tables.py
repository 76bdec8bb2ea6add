"""Code tables: view and edit the lookup tables under `flows/tables/`, validated as
you type (duplicate or empty codes, ragged rows) and saved with a diff and an audit
entry. Lookups pick up a saved table within a second, without a redeploy."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from flowyard.errors import DefinitionError, Issue
from flowyard.loader import content_hash
from flowyard.tables import TABLE_SUFFIXES, Table, load_table

from .. import audit, auth
from ..flowfiles import unified_diff, write_atomic
from ..state import UiState, ui, user
from .common import form, off_loop, page, toast

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_TABLE = 5_000_000


def table_files(state: UiState) -> list[Path]:
    folder = state.tables_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)


def table_path(state: UiState, file_name: str) -> Path:
    if not NAME.match(file_name) or Path(file_name).suffix.lower() not in TABLE_SUFFIXES:
        raise NotFoundException(f"{file_name!r} is not a table file name (NAME.csv or NAME.yaml)")
    path = state.tables_dir / file_name
    if not path.resolve().is_relative_to(state.tables_dir.resolve()):
        raise NotFoundException("no such table")
    return path


def check_text(file_name: str, text: str) -> tuple[Table | None, list[Issue]]:
    """Validate table text the way lookups load it, without touching the real file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file_name
        path.write_text(text, encoding="utf-8")
        try:
            table = load_table(path)
        except DefinitionError as exc:
            return None, [
                Issue(type(i.position)(file_name, i.position.line, i.position.column), i.message, i.severity)
                for i in exc.issues
            ]
        except (UnicodeDecodeError, ValueError) as exc:
            return None, [Issue(type_position(file_name), str(exc))]
    return table, []


def type_position(file_name: str) -> Any:
    from flowyard.errors import Position

    return Position(file_name, 1, 1)


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
async def tables_page(request: Request[Any, Any, Any]) -> Template:
    state = ui(request)
    summaries = []
    for path in await off_loop(table_files, state):
        table, issues = await off_loop(check_text, path.name, path.read_text(encoding="utf-8-sig"))
        summaries.append({"file": path.name, "codes": len(table.rows) if table else 0, "issues": issues})
    return page(request, "tables/list.html", tables=summaries, error=None)


@get("/tables/{file_name:str}")
async def table_page(request: Request[Any, Any, Any], file_name: FromPath[str]) -> Template:
    path = table_path(ui(request), file_name)
    if not path.is_file():
        raise NotFoundException(f"there is no table {file_name}")
    text = path.read_text(encoding="utf-8-sig")
    table, issues = await off_loop(check_text, file_name, text)
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
        readonly=not user(request).can("analyst"),
    )


@post("/tables/{file_name:str}/check")
async def table_check(request: Request[Any, Any, Any], file_name: FromPath[str]) -> Template:
    table_path(ui(request), file_name)
    text = str((await form(request)).get("text") or "").replace("\r\n", "\n")
    table, issues = await off_loop(check_text, file_name, text)
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
async def table_save(request: Request[Any, Any, Any], file_name: FromPath[str]) -> Template:
    state = ui(request)
    path = table_path(state, file_name)
    data = await form(request)
    text = str(data.get("text") or "").replace("\r\n", "\n")
    if len(text) > MAX_TABLE:
        return toast("The table is larger than 5 MB.", "error", status_code=413)
    if not text.endswith("\n"):
        text += "\n"
    _table, issues = await off_loop(check_text, file_name, text)
    if issues:
        return toast(
            f"Not saved: {len(issues)} problem(s), first: line {issues[0].position.line}: {issues[0].message}",
            "error",
            status_code=400,
        )
    old = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
    if data.get("base") and path.is_file() and data.get("base") != content_hash(old):
        return toast(
            "Not saved: the table changed since you opened it; reload and apply your change again.",
            "error",
            status_code=409,
        )
    diff = unified_diff(old, text, f"tables/{file_name}")
    if not diff:
        return toast("Nothing to save: no change.")
    await off_loop(write_atomic, path, text)
    audit.record(state.engine, user(request).username, "table-saved", file_name, diff)
    return page(request, "tables/saved.html", file=file_name, diff=diff, version=content_hash(text))


@post("/tables", guards=[auth.require("analyst")])
async def table_create(request: Request[Any, Any, Any]) -> Any:
    state = ui(request)
    data = await form(request)
    name = str(data.get("name") or "").strip()
    kind = "yaml" if data.get("kind") == "yaml" else "csv"
    file_name = f"{name}.{kind}"
    if not NAME.match(name) or "." in name:
        summaries = [{"file": p.name, "codes": 0, "issues": []} for p in table_files(state)]
        return page(
            request,
            "tables/list.html",
            status_code=400,
            tables=summaries,
            error="a table name is letters, digits, dashes and underscores",
        )
    path = table_path(state, file_name)
    if path.exists():
        summaries = [{"file": p.name, "codes": 0, "issues": []} for p in table_files(state)]
        return page(request, "tables/list.html", status_code=400, tables=summaries, error=f"{file_name} already exists")
    starter = (
        "code,value\nEXAMPLE,example\n"
        if kind == "csv"
        else "description: what the codes mean\ncodes:\n  EXAMPLE: example\n"
    )
    write_atomic(path, starter)
    audit.record(state.engine, user(request).username, "table-created", file_name)
    from litestar.response import Redirect

    return Redirect(f"/tables/{file_name}", status_code=303)


ROUTES = [tables_page, table_create, table_page, table_check, table_save]
