"""lookup: translate codes (units of measure, plant codes, item numbers) from a table."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..errors import InputLocation, StepError
from ..message import Message
from ..options import Options
from ..paths import PathSyntaxError, parse_path, visit
from ..step import FlowContext, OptionError, Step
from ..tables import Table

_UNSET: Any = object()


class LookupOptions(Options):
    table: str = Field(description="table name: tables/NAME.csv or tables/NAME.yaml beside the flow or above it")
    at: str = Field(description="where the codes are, e.g. `items[].uom` (`[]` visits every list element)")
    column: str | None = Field(None, description="which column of a multi-column table to use")
    on_missing: Literal["error", "default", "keep"] = Field("error", description="a code not in the table: fail the message, use `default`, or keep the code")
    default: Any = Field(None, description="the value used for a missing code when on_missing is `default` (else the table's default)")


class Lookup(Step):
    """Replace codes in the data by their translation from a code table.

    A missing code fails the message (naming the code, the table and where it was), unless
    the step or the table gives a default.
    """

    kind = "lookup"
    Options = LookupOptions

    def __init__(self, options: LookupOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        try:
            self.path = parse_path(options.at)
        except PathSyntaxError as exc:
            raise OptionError(str(exc), "at") from exc
        if not self.path:
            raise OptionError("`at` must name where the codes are, e.g. items[].uom", "at")
        table = context.table(options.table)  # fails at load when the table is missing
        if options.column is not None and table.columns and options.column not in table.columns:
            raise OptionError(f"table {options.table!r} has no column {options.column!r} (columns: {', '.join(table.columns)})", "column")

    def process(self, message: Message) -> Message:
        table: Table = self.context.table(self.options.table)
        missing: list[tuple[str, str]] = []

        def translate(code: Any, where: str) -> Any:
            if code is None:
                return None
            key = str(int(code)) if isinstance(code, float) and code.is_integer() else str(code)
            try:
                return table.get(key, self.options.column)
            except KeyError:
                if self.options.on_missing == "keep":
                    return code
                if self.options.on_missing == "default":
                    return self.options.default if self.options.default is not None else table.default
                if table.has_default:
                    return table.default
                missing.append((key, where))
                return code

        absent = list(visit(message.payload, self.path, translate))
        if missing:
            code, where = missing[0]
            raise StepError(
                f"code {code!r} is not in table {self.options.table!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                where=InputLocation(path=where),
                details=[f"code {c!r} at {w}" for c, w in missing[1:10]],
            )
        if absent and self.options.on_missing == "error" and all("not a list" in a for a in absent):
            raise StepError(f"{absent[0]}: expected a list of codes")
        return message
