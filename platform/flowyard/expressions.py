"""JMESPath, compiled once, with the extra functions analysts need for mappings.

Extra functions (documented with examples in docs/reference.md):

| function | example | result |
| --- | --- | --- |
| `upper(s)` / `lower(s)` / `trim(s)` | `upper('ea')` | `"EA"` |
| `replace(s, old, new)` | `replace('A-1', '-', '')` | `"A1"` |
| `split(s, sep)` | `split('a,b', ',')` | `["a", "b"]` |
| `concat(a, b, ...)` | `concat('PO', '-', '42')` | `"PO-42"` |
| `pad_left(v, width, char?)` | `pad_left('42', `6`, '0')` | `"000042"` |
| `pad_right(v, width, char?)` | `pad_right('AB', `4`)` | `"AB  "` |
| `to_date(s, format?)` | `to_date('20261122', '%Y%m%d')` | `"2026-11-22"` |
| `format_date(s, format)` | `format_date('2026-11-22T08:30:00', '%y%m%d')` | `"261122"` |
| `now(format?)` | `now('%Y-%m-%d')` | today, UTC |
| `to_int(v)` / `to_decimal(v, places?)` | `to_decimal('12.50', `1`)` | `12.5` |
| `format_number(n, places)` | `format_number(`3.14159`, `2`)` | `"3.14"` |
| `coalesce(a, b, ...)` | `coalesce(null, '', 'x')` | `"x"` (first non-empty) |
| `default(v, d)` | `default(null, 'EA')` | `"EA"` |
| `lookup(table, code, default?)` | `lookup('mx01-uom', 'CT')` | `"CTN"` |
| `from_items(pairs)` | built-in: list of [k, v] to an object | |
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import jmespath
from dateutil import parser as date_parser
from jmespath import exceptions as jexc
from jmespath import functions, visitor

from .errors import did_you_mean
from .jmespath_closures import compile_tree
from .step import OptionError

TableLookup = Callable[[str, str], Any]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_date(value: str, fmt: str | None) -> datetime:
    if fmt:
        return datetime.strptime(value, fmt)
    parsed: datetime = date_parser.isoparse(value) if "T" in value or "-" in value else date_parser.parse(value)
    return parsed


MAX_DIGITS = 400  # a business number (an amount, an order number) never comes close
MAX_PLACES = 30


def bounded_number(function: str, value: Any) -> Decimal:
    """The value as a decimal, refused when it is not a finite number of at most
    MAX_DIGITS digits before or after the point: `1e9999999999` would otherwise become an
    integer of ten billion digits (minutes of CPU and gigabytes) in `int()`."""
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"{function}: {value!r} is not a number") from exc
    if not number.is_finite():
        raise ValueError(f"{function}: {value!r} is not a finite number")
    if number and abs(number.adjusted()) > MAX_DIGITS:
        raise ValueError(f"{function}: {str(value)[:40]!r} is out of range (more than {MAX_DIGITS} digits)")
    return number


def bounded_places(function: str, places: Any) -> int:
    count = int(places)
    if not 0 <= count <= MAX_PLACES:
        raise ValueError(f"{function}: {places!r} decimal places; between 0 and {MAX_PLACES}")
    return count


class FlowFunctions(functions.Functions):
    """The extra JMESPath functions; `lookup` reads the flow's code tables."""

    def __init__(self, table_lookup: TableLookup | None = None) -> None:
        super().__init__()
        self._table_lookup = table_lookup

    def _validate_arguments(self, args: Any, signature: Any, function_name: str) -> Any:
        """jmespath has no optional arguments; ours are marked `"optional": True`."""
        optional = [s for s in signature if s.get("optional")]
        if optional:
            required = len(signature) - len(optional)
            if not required <= len(args) <= len(signature):
                raise jexc.ArityError(len(signature), len(args), function_name)
            return self._type_check(args, signature[: len(args)], function_name)
        return super()._validate_arguments(args, signature, function_name)

    @functions.signature({"types": ["string", "null"]})
    def _func_upper(self, s: str | None) -> str | None:
        return None if s is None else s.upper()

    @functions.signature({"types": ["string", "null"]})
    def _func_lower(self, s: str | None) -> str | None:
        return None if s is None else s.lower()

    @functions.signature({"types": ["string", "null"]})
    def _func_trim(self, s: str | None) -> str | None:
        return None if s is None else s.strip()

    @functions.signature({"types": ["string"]}, {"types": ["string"]}, {"types": ["string"]})
    def _func_replace(self, s: str, old: str, new: str) -> str:
        return s.replace(old, new)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_split(self, s: str, sep: str) -> list[str]:
        return s.split(sep)

    @functions.signature({"types": [], "variadic": True})
    def _func_concat(self, *parts: Any) -> str:
        return "".join(_as_text(p) for p in parts)

    @functions.signature({"types": ["string", "number", "null"]}, {"types": ["number"]}, {"types": ["string"], "optional": True})
    def _func_pad_left(self, value: Any, width: int, char: str = " ") -> str:
        return _as_text(value).rjust(int(width), (char or " ")[0])

    @functions.signature({"types": ["string", "number", "null"]}, {"types": ["number"]}, {"types": ["string"], "optional": True})
    def _func_pad_right(self, value: Any, width: int, char: str = " ") -> str:
        return _as_text(value).ljust(int(width), (char or " ")[0])

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"], "optional": True})
    def _func_to_date(self, value: str | None, fmt: str | None = None) -> str | None:
        if not value:
            return None
        try:
            return _parse_date(value, fmt).date().isoformat()
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"to_date: {value!r} is not a date in the form {fmt or 'ISO 8601'}") from exc

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_format_date(self, value: str | None, fmt: str) -> str | None:
        if not value:
            return None
        try:
            return _parse_date(value, None).strftime(fmt)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"format_date: {value!r} is not a date") from exc

    @functions.signature({"types": ["string"], "optional": True})
    def _func_now(self, fmt: str | None = None) -> str:
        moment = datetime.now(UTC)
        return moment.strftime(fmt) if fmt else moment.isoformat(timespec="seconds")

    @functions.signature({"types": ["string", "number", "null"]})
    def _func_to_int(self, value: Any) -> int | None:
        if value is None or value == "":
            return None
        return int(bounded_number("to_int", value))

    @functions.signature({"types": ["string", "number", "null"]}, {"types": ["number"], "optional": True})
    def _func_to_decimal(self, value: Any, places: int | None = None) -> float | None:
        if value is None or value == "":
            return None
        number = bounded_number("to_decimal", value)
        if places is not None:
            number = number.quantize(Decimal(1).scaleb(-bounded_places("to_decimal", places)), rounding=ROUND_HALF_UP)
        return float(number)

    @functions.signature({"types": ["number", "string"]}, {"types": ["number"]})
    def _func_format_number(self, value: Any, places: int) -> str:
        number = bounded_number("format_number", value)
        return str(number.quantize(Decimal(1).scaleb(-bounded_places("format_number", places)), rounding=ROUND_HALF_UP))

    @functions.signature({"types": [], "variadic": True})
    def _func_coalesce(self, *values: Any) -> Any:
        for value in values:
            if value not in (None, "", [], {}):
                return value
        return None

    @functions.signature({"types": []}, {"types": []})
    def _func_default(self, value: Any, fallback: Any) -> Any:
        return fallback if value in (None, "") else value

    @functions.signature({"types": ["string"]}, {"types": ["string", "number", "null"]}, {"types": [], "optional": True})
    def _func_lookup(self, table: str, code: Any, *default: Any) -> Any:
        if self._table_lookup is None:
            raise ValueError("lookup() is not available here")
        if code is None:
            return default[0] if default else None
        try:
            return self._table_lookup(table, _as_text(code))
        except KeyError:
            if default:
                return default[0]
            raise ValueError(f"code {code!r} is not in table {table!r}") from None


class Expression:
    """A compiled JMESPath expression bound to the flow's functions, evaluated as
    closures (`jmespath_closures`: it runs once per message, often per record)."""

    __slots__ = ("_options", "_parsed", "search", "source")

    def __init__(self, source: str, table_lookup: TableLookup | None = None) -> None:
        self.source = source
        self._parsed = jmespath.compile(source)
        self._options = jmespath.Options(custom_functions=FlowFunctions(table_lookup))
        interpreter = visitor.TreeInterpreter(self._options)
        self.search: Callable[[Any], Any] = compile_tree(self._parsed.parsed, interpreter)


def compile_expression(
    source: str, option: str | None = None, table_lookup: TableLookup | None = None
) -> Expression:
    """Compile or raise OptionError pointing inside the expression (a function JMESPath
    and Flowyard do not have is reported here, at load, not at the first message)."""
    try:
        expression = Expression(source, table_lookup)
    except jexc.LexerError as exc:
        raise OptionError(
            f"JMESPath syntax error: {exc.msg} (near {exc.lexer_value!r})",
            option,
            offset=exc.lexer_position,
        ) from exc
    except jexc.IncompleteExpressionError as exc:
        raise OptionError(
            "JMESPath syntax error: the expression is incomplete", option, offset=len(source.rstrip())
        ) from exc
    except jexc.ParseError as exc:
        token = exc.token_value if exc.token_type != "eof" else "end of expression"
        raise OptionError(
            f"JMESPath syntax error: {exc.msg.rstrip('.').lower()} at {token!r}",
            option,
            offset=exc.lex_position,
        ) from exc
    for name in function_names(expression._parsed.parsed):
        if name not in FlowFunctions.FUNCTION_TABLE:
            raise OptionError(
                f"unknown JMESPath function {name}()" + did_you_mean(name, FlowFunctions.FUNCTION_TABLE),
                option,
                offset=max(0, source.find(f"{name}(")),
            )
    return expression


def function_names(node: Any) -> list[str]:
    """The names of the functions an expression's syntax tree calls."""
    names = []
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            if current.get("type") == "function_expression":
                names.append(str(current.get("value")))
            pending.extend(current.get("children") or [])
    return names


def truthy(value: Any) -> bool:
    """JMESPath's idea of truth: empty strings, lists and objects are false."""
    return value not in (None, False, "", [], {})
