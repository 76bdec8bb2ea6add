"""Code translation tables (units of measure, plant codes, partner item numbers).

A table is a file under a `tables/` folder beside the flows: `NAME.csv` or `NAME.yaml`.

- CSV: a header row; the first column holds the code, the other columns the values
  (`code,value` or `code,uom,description`). Lookups return the `value` column, or the
  column named by the step, or the second column.
- YAML: either a plain mapping `code: value`, or `{description: ..., default: ..., codes:
  {code: value}}`. A value may be a mapping when a code translates to several fields.

Duplicate codes and empty codes are definition errors reported with their line.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from .definitions.grammar import TABLE_SUFFIXES, is_table
from .definitions.kinds import DefinitionKind, SchemaRef
from .errors import DefinitionError, IssueList
from .options import Options
from .yamlio import YamlSyntaxError, load_text, to_plain, value_position

__all__ = ["TABLE_SUFFIXES", "Table", "TableDefinition", "TableKind", "load_table", "tables"]


class TableDefinition(Options):
    """A YAML table with a description or a default: the codes go under `codes`. Without
    `codes`, the whole file is the mapping of code: value."""

    model_config = ConfigDict(title="Flowyard code table")

    description: str = Field("", description="what the table translates, in one line")
    default: Any = Field(None, description="the value of a code the table does not have (without it, a missing code is an error)")
    codes: dict[str, Any] = Field(description="code: value (a value may be a mapping when a code translates to several fields)")


@dataclass
class Table:
    name: str
    path: Path
    rows: dict[str, Any]
    columns: list[str] = field(default_factory=list)
    default: Any = None
    has_default: bool = False

    def get(self, code: str, column: str | None = None) -> Any:
        """The translation of `code`; KeyError when the table has no such code."""
        value = self.rows[code]
        if isinstance(value, dict):
            if column is not None:
                return value[column]
            if "value" in value:
                return value["value"]
            return next(iter(value.values())) if len(value) == 1 else value
        return value


def _load_csv(name: str, path: Path, text: str, issues: IssueList) -> Table:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        issues.add("the table is empty; the first row must name the columns", 1, 1)
        return Table(name, path, {})
    header = [h.strip() for h in header]
    if len(header) < 2:
        issues.add("a table needs at least two columns: the code and its translation", 1, 1)
    rows: dict[str, Any] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            issues.add(f"row has {len(row)} columns, the header has {len(header)}", line, 1)
            continue
        code = row[0].strip()
        if not code:
            issues.add("empty code in the first column", line, 1)
            continue
        if code in rows:
            issues.add(f"code {code!r} appears twice", line, 1)
            continue
        values = {header[i]: row[i].strip() for i in range(1, len(header))}
        rows[code] = values if len(values) > 1 else next(iter(values.values()), "")
    return Table(name, path, rows, columns=header[1:])


def _load_yaml(name: str, path: Path, text: str, issues: IssueList) -> Table:
    try:
        document = load_text(text, str(path))
    except YamlSyntaxError as exc:
        issues.issues.append(exc.issue)
        return Table(name, path, {})
    if document is None:
        issues.add("the table is empty", 1, 1)
        return Table(name, path, {})
    if not isinstance(document, dict):
        issues.add("a table must be a mapping of code: value", 1, 1)
        return Table(name, path, {})
    codes_node = document.get("codes", document) if "codes" in document else document
    if not isinstance(codes_node, dict):
        line, col = value_position(document, "codes")
        issues.add("`codes` must be a mapping of code: value", line, col)
        return Table(name, path, {})
    rows: dict[str, Any] = {}
    for key in codes_node:
        code = str(key)
        if not code.strip():
            line, col = value_position(codes_node, key)
            issues.add("empty code", line, col)
            continue
        rows[code] = to_plain(codes_node[key])
    table = Table(name, path, rows)
    if "codes" in document and "default" in document:
        table.default = to_plain(document["default"])
        table.has_default = True
    return table


def load_table(path: Path) -> Table:
    """Load and check a table file; DefinitionError lists every problem with its line."""
    issues = IssueList(str(path))
    text = path.read_text(encoding="utf-8-sig")
    name = path.stem
    if path.suffix.lower() == ".csv":
        table = _load_csv(name, path, text, issues)
    else:
        table = _load_yaml(name, path, text, issues)
    if issues.errors:
        raise DefinitionError(issues.issues)
    return table


class TableCache:
    """Tables loaded once per process and reloaded when their file changes (an edit in
    the UI takes effect without a redeploy). The file is looked at at most once a second
    so lookups stay off the disk."""

    RECHECK_SECONDS = 1.0

    def __init__(self) -> None:
        self._tables: dict[Path, tuple[float, float, Table]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> Table:
        now = time.monotonic()
        cached = self._tables.get(path)
        if cached and now - cached[1] < self.RECHECK_SECONDS:
            return cached[2]
        mtime = path.stat().st_mtime
        if cached and cached[0] == mtime:
            self._tables[path] = (mtime, now, cached[2])
            return cached[2]
        table = load_table(path)
        with self._lock:
            self._tables[path] = (mtime, now, table)
        return table


tables = TableCache()


class TableKind(DefinitionKind):
    """A code table: a CSV or YAML file in a `tables/` folder (no `kind:`)."""

    kind = "Table"
    model = TableDefinition
    order = 50

    @classmethod
    def recognises(cls, path: Path, kind: str | None) -> bool:
        return is_table(path)

    @classmethod
    def load(cls, path: Path, text: str) -> Table:
        return load_table(path)

    @classmethod
    def schema(cls, ref: SchemaRef) -> dict[str, Any]:
        return {
            "title": "Flowyard code table",
            "description": "a YAML file under tables/: code: value, or {description, default, codes}",
            "if": {"type": "object", "required": ["codes"]},
            "then": ref(TableDefinition),
            "else": {"type": "object", "description": "code: value (a value may be a mapping when a code translates to several fields)"},
        }
