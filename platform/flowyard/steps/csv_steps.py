"""csv.parse and csv.render: delimited flat files from plants and legacy ERPs."""

from __future__ import annotations

import csv
import io
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import InputLocation, StepError
from ..expressions import compile_expression
from ..message import Message
from ..options import Options
from ..step import FlowContext, Step

ColumnType = Literal["string", "integer", "number", "boolean"]
_TRUE = {"1", "true", "yes", "y", "x"}
_FALSE = {"0", "false", "no", "n", ""}


class Dialect(Options):
    delimiter: str = Field(",", description="the field separator (use \"\\t\" for tab)")
    quotechar: str = Field('"', description="the quote character")

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _one_character(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("must be exactly one character")
        return value


class CsvParseOptions(Dialect):
    header: bool = Field(True, description="the first row names the columns")
    columns: list[str] | None = Field(None, description="column names; replaces the header row's names")
    encoding: str = Field("utf-8-sig", description="text encoding (utf-8-sig also accepts a byte-order mark)")
    skip_rows: int = Field(0, ge=0, description="rows to skip before the header")
    strict: bool = Field(True, description="a row with a different number of columns fails the message")
    trim: bool = Field(True, description="strip spaces around values")
    types: dict[str, ColumnType] = Field(default_factory=dict, description="convert columns: integer, number, boolean (others stay strings)")
    skip_empty: bool = Field(True, description="ignore blank lines")


def _convert(value: str, kind: ColumnType, column: str, line: int) -> Any:
    if kind == "string":
        return value
    if value == "":
        return None
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            number = Decimal(value)
            return int(number) if number == number.to_integral_value() and "." not in value else float(number)
    except (ValueError, InvalidOperation):
        raise StepError(f"column {column!r}: {value!r} is not a {kind}", where=InputLocation(line)) from None
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise StepError(f"column {column!r}: {value!r} is not a yes/no value", where=InputLocation(line))


class CsvParse(Step):
    """Read delimited text into a list of rows, one object per row keyed by column name.

    A row whose column count differs from the header fails with its line number.
    """

    kind = "csv.parse"
    Options = CsvParseOptions
    takes = "bytes"
    gives = "data"

    def __init__(self, options: CsvParseOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        unknown = set(options.types) - set(options.columns or options.types)
        if options.columns is not None and unknown:
            from ..step import OptionError

            raise OptionError(f"types names columns that are not listed: {', '.join(sorted(unknown))}", "types")

    def process(self, message: Message) -> Message:
        o = self.options
        try:
            text = bytes(message.payload).decode(o.encoding)
        except UnicodeDecodeError as exc:
            raise StepError(f"the input is not {o.encoding} text (byte {exc.start})") from exc
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=o.delimiter, quotechar=o.quotechar, strict=True)
        rows: list[dict[str, Any]] = []
        columns = list(o.columns) if o.columns else None
        try:
            for _ in range(o.skip_rows):
                next(reader, None)
            if o.header:
                names = next(reader, None)
                if names is None:
                    raise StepError("the input is empty: no header row")
                if columns is None:
                    columns = [n.strip() for n in names]
            for record in reader:
                line = reader.line_num
                if o.skip_empty and (not record or all(not v.strip() for v in record)):
                    continue
                if columns is None:
                    columns = [f"column{i + 1}" for i in range(len(record))]
                if len(record) != len(columns):
                    if o.strict:
                        raise StepError(
                            f"row has {len(record)} values but there are {len(columns)} columns",
                            where=InputLocation(line),
                        )
                    record = (record + [""] * len(columns))[: len(columns)]
                row: dict[str, Any] = {}
                for name, value in zip(columns, record, strict=True):
                    value = value.strip() if o.trim else value
                    kind = o.types.get(name)
                    row[name] = _convert(value, kind, name, line) if kind else value
                rows.append(row)
        except csv.Error as exc:
            raise StepError(f"malformed CSV: {exc}", where=InputLocation(reader.line_num)) from exc
        message.payload = rows
        message.content_type = "application/json"
        return message


class CsvRenderOptions(Dialect):
    rows: str | None = Field(None, description="JMESPath to the list of rows (default: the data itself)")
    columns: list[str] | None = Field(None, description="columns in order (default: the keys of the first row)")
    header: bool = Field(True, description="write a header row")
    line_terminator: Literal["\r\n", "\n"] = Field("\r\n", description="end of line")


class CsvRender(Step):
    """Write a list of objects as delimited text (content type text/csv)."""

    kind = "csv.render"
    Options = CsvRenderOptions
    takes = "data"
    gives = "bytes"

    def __init__(self, options: CsvRenderOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.rows = compile_expression(options.rows, "rows") if options.rows else None

    def process(self, message: Message) -> Message:
        o = self.options
        rows = self.rows.search(message.payload) if self.rows else message.payload
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise StepError("csv.render needs a list of objects (set `rows:` to select them)")
        columns = o.columns or (list(rows[0]) if rows else [])
        out = io.StringIO()
        writer = csv.writer(out, delimiter=o.delimiter, quotechar=o.quotechar, lineterminator=o.line_terminator)
        if o.header:
            writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
        message.payload = out.getvalue().encode()
        message.content_type = "text/csv"
        return message

    def output_content_type(self) -> str:
        return "text/csv"
