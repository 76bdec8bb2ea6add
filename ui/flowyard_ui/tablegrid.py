"""Code tables as a grid: a table file's rows as cells, and the grid an analyst edited
written back into the file with the smallest change.

- `read_grid` turns a table's text (CSV or YAML) into columns and rows of text cells.
- `apply_grid` takes the rows the browser sent back (each naming the row of the file it
  came from, or none for a new row) and writes them into the file's text: a row left as
  it was keeps its bytes, a changed row is rewritten in place, a deleted row goes, new
  rows are added at the end, in the order they were added. The grid's sort and filter are views: they never reorder
  the file. CSV stays CSV; YAML goes through ruamel's round trip, so its comments, key
  order and quoting stay. The result is checked the way lookups load a table
  (`services.check_table_text`), and every problem is placed at its row and cell.
- `used_by` lists the flows (and instances, rendered) that look codes up in a table, and
  the templates whose parameters take its codes.
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import ScalarString
from ruamel.yaml.tokens import CommentToken

from flowyard import semdiff
from flowyard.errors import FlowyardError
from flowyard.yamlio import YamlSyntaxError, dump_text, load_text

from . import fastyaml
from .flowfiles import flow_paths, read_flow
from .services import check_table_text
from .state import UiState

MAX_GRID_ROWS = 3000
"""More rows than this: the grid is not offered (the text tab is)."""


class GridUnsupported(Exception):
    """The table cannot be shown as a grid (the text tab can edit it); says why."""


class GridOutOfDate(Exception):
    """The rows sent back do not fit the file (it changed, or the form was tampered with)."""


@dataclass
class Grid:
    file: str
    format: str  # csv | yaml
    columns: list[str]  # the first one holds the code
    rows: list[list[str]]
    notes: list[tuple[str, str]] = field(default_factory=list)  # YAML: description, default


@dataclass
class CellError:
    row: int  # index of the row in the rows sent (their order in the grid)
    col: int
    message: str


@dataclass
class GridEdit:
    text: str  # the new file text
    changed: bool
    errors: list[CellError] = field(default_factory=list)  # at a cell
    general: list[str] = field(default_factory=list)  # problems no cell holds

    @property
    def ok(self) -> bool:
        return not self.errors and not self.general


@dataclass
class SentRow:
    """A row as the browser sent it: `origin` is the index of the file's row it shows
    (None for a new row)."""

    origin: int | None
    cells: list[str]
    added: int = 0  # a new row: the order it was added in (new rows go at the end in that order)


def is_csv(file_name: str) -> bool:
    return Path(file_name).suffix.lower() == ".csv"


# -- reading ------------------------------------------------------------------------------


@dataclass
class _CsvRecord:
    lines: str  # the record's text, as in the file
    cells: list[str] | None  # None: a blank line (kept, not shown)


def _csv_records(text: str) -> tuple[str, list[str], list[_CsvRecord]]:
    """The header's text and names, then every record with its own text."""
    lines = text.splitlines(keepends=True)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise GridUnsupported("the table is empty: its first line must name the columns") from None
    except csv.Error as exc:
        raise GridUnsupported(f"line 1 is not CSV: {exc}") from None
    consumed = reader.line_num
    head = "".join(lines[:consumed])
    records = []
    try:
        for row in reader:
            text_of = "".join(lines[consumed:reader.line_num])
            consumed = reader.line_num
            blank = not row or all(not c.strip() for c in row)
            records.append(_CsvRecord(text_of, None if blank else [c.strip() for c in row]))
    except csv.Error as exc:
        raise GridUnsupported(f"line {reader.line_num} is not CSV: {exc}") from None
    return head, [h.strip() for h in header], records


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _codes(document: Any) -> tuple[Any, list[tuple[str, str]]]:
    """The mapping of codes in a YAML table document and the notes around it."""
    if document is None:
        return None, []
    if not isinstance(document, dict):
        raise GridUnsupported("the table is not a mapping of code: value")
    if "codes" in document:
        notes = [(str(k), _cell(v)) for k, v in document.items() if k != "codes" and not isinstance(v, (dict, list))]
        codes = document["codes"]
        if codes is not None and not isinstance(codes, dict):
            raise GridUnsupported("`codes` is not a mapping of code: value")
        return codes, notes
    return document, []


def _yaml_columns(codes: Any) -> list[str]:
    values = list(codes.values()) if codes else []
    if any(isinstance(v, list) for v in values):
        raise GridUnsupported("a code translates to a list: a grid cannot show it")
    mappings = [v for v in values if isinstance(v, dict)]
    if not mappings:
        return ["code", "value"]
    if len(mappings) != len(values):
        raise GridUnsupported("some codes translate to one value and others to several fields")
    columns: list[str] = ["code"]
    for value in mappings:
        for key, inner in value.items():
            if isinstance(inner, (dict, list)):
                raise GridUnsupported(f"field {key!r} holds a nested structure: a grid cannot show it")
            if str(key) not in columns:
                columns.append(str(key))
    return columns


def _yaml_row(columns: list[str], code: Any, value: Any) -> list[str]:
    if isinstance(value, dict):
        by_name = {str(k): v for k, v in value.items()}
        return [str(code), *[_cell(by_name.get(c)) for c in columns[1:]]]
    return [str(code), _cell(value)]


def _round_trip(file_name: str, text: str) -> Any:
    try:
        return load_text(text, file_name)
    except YamlSyntaxError as exc:
        raise GridUnsupported(f"line {exc.issue.position.line or '?'}: {exc.issue.message}") from None


def _yaml_grid(file_name: str, document: Any) -> Grid:
    codes, notes = _codes(document)
    columns = _yaml_columns(codes)
    rows = [_yaml_row(columns, k, v) for k, v in (codes or {}).items()]
    return Grid(file_name, "yaml", columns, rows, notes)


def read_grid(file_name: str, text: str) -> Grid:
    """The table's columns and rows as text cells; GridUnsupported when a grid cannot
    show it (then the text tab edits it)."""
    if is_csv(file_name):
        _head, header, records = _csv_records(text)
        width = len(header)
        rows = []
        for number, record in enumerate((r for r in records if r.cells is not None), start=1):
            assert record.cells is not None
            if len(record.cells) > width:
                raise GridUnsupported(f"row {number} has {len(record.cells)} cells, the header names {width} columns")
            rows.append(record.cells + [""] * (width - len(record.cells)))
        grid = Grid(file_name, "csv", header, rows)
    else:
        document = fastyaml.load(text)  # libyaml: the grid needs no comments
        grid = _yaml_grid(file_name, _round_trip(file_name, text) if document is None else document)
    if len(grid.rows) > MAX_GRID_ROWS:
        raise GridUnsupported(f"the table has {len(grid.rows)} rows, more than the grid shows ({MAX_GRID_ROWS})")
    return grid


# -- the rows sent back -------------------------------------------------------------------


def sent_rows(form: dict[str, list[Any]], width: int) -> list[SentRow]:
    """The grid's rows from its form fields: `row` (the file row each shows, empty for
    a new one) and `c0`...`cN` (its cells), each listed once per row, in grid order."""
    origins = [str(v) for v in form.get("row", [])]
    columns = [[str(v) for v in form.get(f"c{i}", [])] for i in range(width)]
    if any(len(c) != len(origins) for c in columns) or f"c{width}" in form:
        raise GridOutOfDate("the grid sent does not have the table's columns; reload the page")
    rows = []
    for i, origin in enumerate(origins):
        cells = [c[i].replace("\r\n", "\n").strip() for c in columns]
        if origin.isdigit():
            rows.append(SentRow(int(origin), cells))
        elif origin == "" or (origin[:1] == "+" and origin[1:].isdigit()):
            rows.append(SentRow(None, cells, int(origin[1:]) if origin else len(origins) + i))
        else:
            raise GridOutOfDate("the grid sent names a row that is not in the table; reload the page")
    return rows


def _added(rows: list[SentRow]) -> list[tuple[int, SentRow]]:
    """The new rows (with their grid index) in the order they were added."""
    return sorted(((i, r) for i, r in enumerate(rows) if r.origin is None), key=lambda found: found[1].added)


def _grid_checks(rows: list[SentRow]) -> list[CellError]:
    """Empty and duplicate codes, at their cell (what the file check would say by line)."""
    errors = []
    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        code = row.cells[0]
        if not code:
            if any(row.cells[1:]):
                errors.append(CellError(i, 0, "empty code: every row needs a code"))
            continue
        if code in first:
            errors.append(CellError(i, 0, f"code {code!r} appears twice"))
        else:
            first[code] = i
    return errors


def _origins(rows: list[SentRow], count: int) -> dict[int, int]:
    """File row -> index of the grid row that shows it; refuses rows out of the file."""
    seen: dict[int, int] = {}
    for i, row in enumerate(rows):
        if row.origin is None:
            continue
        if row.origin >= count or row.origin in seen:
            raise GridOutOfDate("the grid sent does not match the table on disk; reload the page")
        seen[row.origin] = i
    return seen


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def _apply_csv(text: str, rows: list[SentRow]) -> tuple[str, dict[int, int]]:
    """The new CSV text and, for each line of it holding a row, that row's grid index."""
    head, header, records = _csv_records(text)
    shown = [r for r in records if r.cells is not None]
    width = len(header)
    at = _origins(rows, len(shown))
    parts = [head]
    line_of: dict[int, int] = {}
    line = head.count("\n") + 1
    number = 0
    for record in records:
        if record.cells is None:
            parts.append(record.lines)
            line += record.lines.count("\n")
            continue
        index = at.get(number)
        number += 1
        if index is None:
            continue  # deleted
        cells = rows[index].cells
        written = record.lines if (record.cells + [""] * (width - len(record.cells))) == cells and len(record.cells) == width else _csv_line(cells)
        if not written.endswith("\n"):
            written += "\n"
        parts.append(written)
        line_of[line] = index
        line += written.count("\n")
    for index, row in _added(rows):
        if row.origin is None:
            written = _csv_line(row.cells)
            parts.append(written)
            line_of[line] = index
            line += written.count("\n")
    return "".join(parts), line_of


def _typed(text: str, like: Any) -> Any:
    """A cell's text as a YAML value of the kind it replaces (or of its column): a number
    stays a number, a quoted string stays quoted; else a string (quoted when needed)."""
    if isinstance(like, bool):
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
    elif isinstance(like, int):
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    elif isinstance(like, float):
        try:
            return float(text)
        except ValueError:
            pass
    elif like is None and text == "":
        return None
    if isinstance(like, ScalarString):
        return type(like)(text)
    return text


def _column_samples(codes: Any, columns: list[str]) -> list[Any]:
    """A value of each column (the first row's), whose kind new cells take."""
    samples: list[Any] = [None] * len(columns)
    for value in (codes or {}).values():
        if isinstance(value, dict):
            by_name = {str(k): v for k, v in value.items()}
            for i, column in enumerate(columns[1:], start=1):
                if samples[i] is None and by_name.get(column) is not None:
                    samples[i] = by_name[column]
        elif samples[1] is None:
            samples[1] = value
    return [s if not isinstance(s, str) or isinstance(s, ScalarString) else "" for s in samples]


def _new_value(columns: list[str], cells: list[str], old: Any, samples: list[Any], mapping: bool) -> Any:
    if not mapping:
        return _typed(cells[1], old if old is not None or not isinstance(samples[1], (int, float, ScalarString)) else samples[1])
    value = old if isinstance(old, CommentedMap) else CommentedMap()
    by_name = {str(k): k for k in value}
    for i, column in enumerate(columns[1:], start=1):
        key = by_name.get(column, column)
        before = value.get(key)
        if cells[i] == _cell(before):
            continue
        if cells[i] == "" and key in value:
            del value[key]
        elif cells[i] != "":
            value[key] = _typed(cells[i], before if before is not None else samples[i])
    return value


def _delete(codes: CommentedMap, key: Any) -> None:
    """Delete a code; the comment lines after it (ruamel keeps them on it: they are the
    next code's heading) move to the code before, so they stay where they were."""
    token = (codes.ca.items.pop(key, None) or [None, None, None, None])[2]
    keys = list(codes)
    position = keys.index(key)
    del codes[key]
    if token is None:
        return
    text = str(token.value)
    rest = text[text.index("\n") + 1:] if "\n" in text else ""
    if not rest.strip():
        return
    if position == 0:  # the lines go before the (new) first code
        column = len(rest) - len(rest.lstrip(" "))
        if codes.ca.comment is None:
            codes.ca.comment = [None, []]
        if codes.ca.comment[1] is None:
            codes.ca.comment[1] = []
        codes.ca.comment[1].append(CommentToken(rest[column:], CommentMark(column)))
        return
    previous = keys[position - 1]
    entry = codes.ca.items.setdefault(previous, [None, None, None, None])
    if entry[2] is not None:
        entry[2].value = str(entry[2].value) + rest
    else:
        token.value = "\n" + rest
        entry[2] = token


def _apply_yaml(document: Any, rows: list[SentRow]) -> str:
    """The document with the grid's rows written into it, dumped (the round trip)."""
    codes, _notes = _codes(document)
    columns = _yaml_columns(codes)
    keys = list(codes or {})
    at = _origins(rows, len(keys))
    if codes is None:
        codes = CommentedMap()
        if document is None:
            document = codes
        else:
            document["codes"] = codes
    mapping = len(columns) > 2 or any(isinstance(v, dict) for v in codes.values())
    samples = _column_samples(codes, columns)
    for number, key in enumerate(keys):
        index = at.get(number)
        if index is None:
            _delete(codes, key)
            continue
        cells = rows[index].cells
        old = codes[key]
        if cells == _yaml_row(columns, key, old):
            continue
        value = _new_value(columns, cells, old, samples, mapping)
        if cells[0] != str(key):
            position = list(codes).index(key)
            comment = codes.ca.items.pop(key, None)
            del codes[key]
            codes.insert(position, cells[0], value)
            if comment is not None:
                codes.ca.items[cells[0]] = comment
        else:
            codes[key] = value
    flow = any(isinstance(v, CommentedMap) and v.fa.flow_style() for v in codes.values())
    for _index, row in _added(rows):
        if row.origin is None:
            value = _new_value(columns, row.cells, None, samples, mapping)
            if isinstance(value, CommentedMap) and flow:
                value.fa.set_flow_style()
            codes[row.cells[0]] = value
    return dump_text(document)


def _yaml_lines(file_name: str, text: str, rows: list[SentRow]) -> dict[int, int]:
    """The line of each code in the YAML text -> its row in the grid."""
    line_of: dict[int, int] = {}
    try:
        codes, _ = _codes(load_text(text, file_name))
    except (YamlSyntaxError, GridUnsupported):
        return line_of
    index_of = {row.cells[0]: i for i, row in enumerate(rows)}
    for key in codes or {}:
        if str(key) in index_of:
            line_of[codes.lc.key(key)[0] + 1] = index_of[str(key)]
    return line_of


def apply_grid(file_name: str, text: str, rows: list[SentRow]) -> GridEdit:
    """The file's text with the grid's rows written into it, checked as lookups load it.
    Nothing is written here. A new row left empty is no row."""
    sent = [i for i, r in enumerate(rows) if r.origin is not None or any(r.cells)]
    edit = _apply(file_name, text, [rows[i] for i in sent])
    for error in edit.errors:
        error.row = sent[error.row]  # back to the grid's own row numbers
    return edit


def _apply(file_name: str, text: str, rows: list[SentRow]) -> GridEdit:
    errors = _grid_checks(rows)
    document = None if is_csv(file_name) else _round_trip(file_name, text)
    grid = read_grid(file_name, text) if document is None else _yaml_grid(file_name, document)
    if max(len(grid.rows), len(rows)) > MAX_GRID_ROWS:
        count = max(len(grid.rows), len(rows))
        raise GridUnsupported(f"the table would have {count} rows, more than the grid shows ({MAX_GRID_ROWS})")
    if any(len(r.cells) != len(grid.columns) for r in rows):
        raise GridOutOfDate("the grid sent does not have the table's columns; reload the page")
    at = _origins(rows, len(grid.rows))
    unchanged = len(at) == len(grid.rows) == len(rows) and all(
        grid.rows[r.origin] == r.cells for r in rows if r.origin is not None
    )
    if unchanged:
        return GridEdit(text, False)
    if errors:
        return GridEdit(text, True, errors)
    if document is None:
        new_text, line_of = _apply_csv(text, rows)
    else:
        new_text, line_of = _apply_yaml(document, rows), {}
    _table, issues = check_table_text(file_name, new_text)
    edit = GridEdit(new_text, new_text != text)
    if issues and document is not None:
        line_of = _yaml_lines(file_name, new_text, rows)
    for issue in issues:
        line = issue.position.line
        if line is not None and line in line_of:
            edit.errors.append(CellError(line_of[line], 0, issue.message))
        else:
            edit.general.append(f"line {line or '?'}: {issue.message}")
    return edit


# -- which flows use a table --------------------------------------------------------------


@dataclass
class UsedBy:
    flow: str  # the flow's name
    file: str  # its file under the flows folder
    kind: str  # Flow | FlowInstance | Template
    how: str  # lookup step, jmespath/jinja lookup()
    deployed: bool  # deployed and enabled
    holds_this: bool  # the deployed version holds the table as it is now (False: a draft awaits)


_LOOKUP_CALL = re.compile(r"lookup\s*\(([^()]*)\)")
_QUOTED = re.compile(r"""['"`]([^'"`]+)['"`]""")


def tables_named(document: Any) -> dict[str, str]:
    """The code tables a flow (as plain data) looks codes up in, and how: a `lookup`
    step's `table`, or a quoted name in a `lookup(...)` call of a jmespath expression or
    a Jinja template."""
    found: dict[str, str] = {}

    def walk(node: Any) -> Iterator[None]:
        if isinstance(node, dict):
            step = node.get("lookup")
            if isinstance(step, dict) and isinstance(step.get("table"), str):
                found.setdefault(step["table"], "lookup step")
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)
        elif isinstance(node, str) and "lookup" in node:
            for call in _LOOKUP_CALL.finditer(node):
                for name in _QUOTED.findall(call.group(1)):
                    found.setdefault(name, "lookup() in an expression")

    for _ in walk(document):
        pass
    return found


_named_cache: dict[Path, tuple[Any, dict[str, str]]] = {}
_named_lock = threading.Lock()


def _mark(path: Path) -> tuple[Any, ...]:
    """What the tables a flow names may change with: its file and, for an instance, the
    templates (sizes and times only)."""
    st = path.stat()
    marks: list[Any] = [st.st_mtime_ns, st.st_size]
    templates = path.parent / "templates"
    if templates.is_dir():
        marks += [(str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(templates.rglob("*")) if f.is_file()]
    return tuple(marks)


def _named_in(path: Path, text: str) -> dict[str, str]:
    mark = _mark(path)
    with _named_lock:
        cached = _named_cache.get(path)
    if cached is not None and cached[0] == mark:
        return cached[1]
    try:
        names = tables_named(semdiff.flow_document(path, text))
    except (FlowyardError, OSError, ValueError):
        names = {}
    with _named_lock:
        _named_cache[path] = (mark, names)
    return names


def used_by(ui: UiState, file_name: str) -> list[UsedBy]:
    """The flows and instances in the flows folder that use the table `file_name`, with
    whether their deployed version holds the table as it is now."""
    name = Path(file_name).stem
    flows_dir = ui.flows_dir.resolve()
    rel = f"tables/{file_name}"
    deployed = {f.flow: f for f in ui.store.flows()}
    current = (ui.tables_dir / file_name).read_bytes() if (ui.tables_dir / file_name).is_file() else None
    found = []
    for path in flow_paths(flows_dir):
        try:
            info = read_flow(path, flows_dir, check=False)
        except (OSError, UnicodeDecodeError):
            continue
        if info.kind not in ("Flow", "FlowInstance"):
            continue
        how = _named_in(path, info.text).get(name)
        if how is None:
            continue
        state = deployed.get(info.name)
        running = state is not None and state.enabled and bool(state.version)
        holds = False
        if running and state is not None:
            snapshot = ui.store.snapshot(info.name, state.version)
            holds = snapshot is not None and snapshot.files.get(rel) == current
        found.append(UsedBy(info.name, info.rel, info.kind, how, running, holds))
    return found + _templates_using(flows_dir, name)


def _templates_using(flows_dir: Path, name: str) -> list[UsedBy]:
    """Templates with a parameter whose values must be codes of the table (`x-table`:
    the onboarding form's pick-list)."""
    folder = flows_dir / "templates"
    found = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            text = path.read_text(encoding="utf-8")
            document = fastyaml.load(text)
            document = load_text(text, path.name) if document is None else document
        except (OSError, UnicodeDecodeError, YamlSyntaxError):
            continue
        if name in _x_tables(document):
            meta = document.get("metadata") if isinstance(document, dict) else None
            title = str(meta.get("name") or path.stem) if isinstance(meta, dict) else path.stem
            found.append(UsedBy(title, path.relative_to(flows_dir).as_posix(), "Template",
                                "pick-list of a parameter (x-table)", False, False))
    return found


def _x_tables(node: Any) -> set[str]:
    if isinstance(node, dict):
        names = {str(node["x-table"])} if isinstance(node.get("x-table"), str) else set()
        for value in node.values():
            names |= _x_tables(value)
        return names
    if isinstance(node, list):
        return set().union(*(_x_tables(v) for v in node)) if node else set()
    return set()


