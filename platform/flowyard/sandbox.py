"""The sandboxed Jinja2 environment used by the `jinja` step (and anywhere a flow renders text).

Always the immutable sandbox: templates cannot reach Python internals or change the data.
Limits: rendering stops with a clear error past a time limit or an output size; every
loop checks the deadline at each turn (whatever it loops over), and widths (padding,
centring, `%` and `format` specs) are capped, so a template cannot hang a worker or fill
its memory. Autoescaping is on
for XML and HTML content types.

Filters (examples in docs/reference.md):

| filter | example | result |
| --- | --- | --- |
| `date(format, from=None)` | `"2026-11-22" \\| date("%Y%m%d")` | `20261122` |
| `number(places)` | `3.14159 \\| number(2)` | `3.14` |
| `pad_left(width, char=" ")` | `42 \\| pad_left(6, "0")` | `000042` |
| `pad_right(width, char=" ")` | `"AB" \\| pad_right(4)` | `AB␠␠` |
| `fixed(width, align="left", char=" ")` | `"ABCDEF" \\| fixed(4)` | `ABCD` (cut or padded to exactly width) |
| `x12_id(width)` | `"ACME" \\| x12_id(15)` | ISA-style id: upper-case, padded with spaces to width |
| `x12_num(width)` | `7 \\| x12_num(9)` | control number: zero-padded digits |
| `lookup(table, default=None)` | `"CT" \\| lookup("mx01-uom")` | the code's translation |
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any

from dateutil import parser as date_parser
from jinja2 import FileSystemLoader, StrictUndefined, Template, Undefined
from jinja2.compiler import CodeGenerator
from jinja2.filters import do_center, do_format, do_indent, do_wordwrap
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RANGE = 100_000
MAX_WIDTH = 100_000  # the widest a padded, centred or formatted value may be
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")
_WIDE_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class RenderLimitError(Exception):
    """Rendering went past the time or size limit."""


def check_width(what: str, width: Any) -> None:
    if isinstance(width, int) and width > MAX_WIDTH:
        raise RenderLimitError(f"{what}: a width of {width:,} is more than {MAX_WIDTH:,}")


def check_format(what: str, text: str) -> None:
    """Refuse a `%` or `format` string whose field width or precision is over MAX_WIDTH
    (`"%03000000000d" % 1` asks for three gigabytes)."""
    numbers = [n for m in _PERCENT_SPEC.finditer(text) for n in m.groups() if n]
    numbers += [n for m in _BRACE_SPEC.finditer(text) for n in re.findall(r"\d+", m.group(1))]
    for number in numbers:
        check_width(what, int(number))


def _text(value: Any) -> str:
    if value is None or isinstance(value, Undefined):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def f_date(value: Any, fmt: str = "%Y-%m-%d", source_format: str | None = None) -> str:
    if value in (None, "") or isinstance(value, Undefined):
        return ""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value)
        moment = datetime.strptime(text, source_format) if source_format else date_parser.parse(text)
    return moment.strftime(fmt)


def f_number(value: Any, places: int = 2) -> str:
    if value in (None, "") or isinstance(value, Undefined):
        return ""
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"number: {value!r} is not a number") from exc
    return str(number.quantize(Decimal(1).scaleb(-int(places)), rounding=ROUND_HALF_UP))


def f_pad_left(value: Any, width: int, char: str = " ") -> str:
    check_width("pad_left", width)
    return _text(value).rjust(width, char[:1] or " ")


def f_pad_right(value: Any, width: int, char: str = " ") -> str:
    check_width("pad_right", width)
    return _text(value).ljust(width, char[:1] or " ")


def f_fixed(value: Any, width: int, align: str = "left", char: str = " ") -> str:
    check_width("fixed", width)
    text = _text(value)
    if align == "right":
        return text[-width:].rjust(width, char[:1] or " ") if len(text) > width else text.rjust(width, char[:1] or " ")
    return text[:width].ljust(width, char[:1] or " ")


def f_x12_id(value: Any, width: int) -> str:
    check_width("x12_id", width)
    return _text(value).upper()[:width].ljust(width)


def f_x12_num(value: Any, width: int) -> str:
    text = _text(value)
    if not text.isdigit():
        raise ValueError(f"x12_num: {value!r} is not a whole number")
    check_width("x12_num", width)
    if len(text) > width:
        raise ValueError(f"x12_num: {value!r} does not fit in {width} digits")
    return text.zfill(width)


def f_center(value: Any, width: int = 80) -> str:
    check_width("center", width)
    return str(do_center(value, width))


def f_indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    check_width("indent", width if isinstance(width, int) else len(width))
    return str(do_indent(value, width, first, blank))


def f_wordwrap(environment: Any, value: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
    check_width("wordwrap", width)
    return str(do_wordwrap(environment, value, width, *args, **kwargs))


def f_format(value: str, *args: Any, **kwargs: Any) -> str:
    check_format("format", str(value))
    return str(do_format(value, *args, **kwargs))


f_wordwrap.jinja_pass_arg = do_wordwrap.jinja_pass_arg  # type: ignore[attr-defined]


class DeadlineCodeGenerator(CodeGenerator):
    """Jinja's code generator, with a check of the render's deadline at each turn of
    every loop: a loop that writes nothing (nested loops over a long text) would
    otherwise never reach the checks made as output is taken."""

    def writeline(self, x: str, node: Any = None, extra: int = 0) -> None:
        super().writeline(x, node, extra)
        if x == "_loop_vars = {}":  # the first line of a for loop's body
            super().writeline("environment.check_deadline()")


class FlowEnvironment(ImmutableSandboxedEnvironment):
    """Immutable sandbox with a deadline and an output cap."""

    intercepted_binops = frozenset(["*", "**", "%"])
    code_generator_class = DeadlineCodeGenerator

    def __init__(self, *, max_output: int, time_limit: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_output = max_output
        self.time_limit = time_limit
        self._renders = threading.local()  # each thread's render has its own deadline
        self.filters.update(
            date=f_date,
            number=f_number,
            pad_left=f_pad_left,
            pad_right=f_pad_right,
            fixed=f_fixed,
            x12_id=f_x12_id,
            x12_num=f_x12_num,
            center=f_center,
            indent=f_indent,
            wordwrap=f_wordwrap,
            format=f_format,
        )
        self.globals["range"] = self.checked_range
        self.globals["now"] = lambda fmt=None: (
            datetime.now(UTC).strftime(fmt) if fmt else datetime.now(UTC).isoformat(timespec="seconds")
        )

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as a plain dict, not Jinja's ChainMap over the
        environment's: every render copies them, and copying a ChainMap was two thirds of
        the render of a file name or routing key (11 us against 4 us per message). The
        environment's globals are complete once `__init__` ends, so nothing is missed."""
        return {**self.globals, **(d or {})}

    @property
    def deadline(self) -> float:
        """When the render running on this thread must end (0: none is running). Per
        thread: the runtime runs one flow's messages on several threads at once, and one
        render ending must not lift another's deadline."""
        return float(getattr(self._renders, "deadline", 0.0))

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._renders.deadline = value

    def check_deadline(self) -> None:
        deadline = self.deadline
        if deadline and time.monotonic() > deadline:
            raise RenderLimitError(f"the template ran longer than {self.time_limit:g}s")

    def checked_range(self, *args: int) -> Iterator[int]:
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise RenderLimitError(f"range() of more than {MAX_RANGE} numbers is not allowed")
        for n in numbers:
            if n % 1000 == 0:
                self.check_deadline()
            yield n

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and len(seq) * count > self.max_output:
                    raise RenderLimitError("repeating a text or list that many times would exceed the output limit")
        if operator == "**" and isinstance(right, int | float) and abs(right) > 1000:
            raise RenderLimitError("exponent too large")
        if operator == "%" and isinstance(left, str):
            check_format("%", left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Calls from templates: a text's padding methods (`"a".center(n)`, `ljust`,
        `zfill`...) are held to MAX_WIDTH like the filters."""
        name = getattr(__obj, "__name__", "")
        if name in _WIDE_METHODS and isinstance(getattr(__obj, "__self__", None), str):
            for value in args:
                check_width(name, value)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            check_format(value.__name__, value.__self__)
        return wrapped

    def render_limited(self, render: Callable[[], Iterator[str]]) -> str:
        """Consume a template's output, enforcing the size and time limits.

        Chunks are taken in batches (C-level islice/sum) so the checks cost little on
        the hot path; a runaway loop is also stopped by `checked_range`.
        """
        self.deadline = time.monotonic() + self.time_limit
        parts: list[str] = []
        size = 0
        chunks = render()
        try:
            while batch := list(islice(chunks, 512)):
                size += sum(map(len, batch))
                if size > self.max_output:
                    raise RenderLimitError(f"the output is larger than {self.max_output} characters")
                parts += batch
                self.check_deadline()
        finally:
            self.deadline = 0.0
        return "".join(parts)


def make_environment(
    *,
    autoescape: bool,
    folder: Path | None = None,
    strict: bool = False,
    max_output: int = 10_000_000,
    time_limit: float = 5.0,
) -> FlowEnvironment:
    return FlowEnvironment(
        max_output=max_output,
        time_limit=time_limit,
        autoescape=autoescape,
        loader=FileSystemLoader(str(folder)) if folder else None,
        undefined=StrictUndefined if strict else Undefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_PLAIN = (str, int, float)  # bool is an int
_DICT_ATTRIBUTES = frozenset(dir(dict))  # `d.items` is the method in Jinja, not d["items"]
_MISSING = object()


def substitution(env: FlowEnvironment, source: str) -> Callable[[Mapping[str, Any]], str | None] | None:
    """A faster renderer for a template made only of text and `{{ name }}` or
    `{{ name.key.key }}` (a file name, a routing key, a small JSON document), or None for
    any other template.

    Rendering such a template through Jinja's runtime (a context per call, the sandbox's
    attribute lookup, the output generator) took 10-12 us per message; this takes 2. The
    result is what Jinja gives, or None where it might not be (the caller then renders
    with Jinja): only values that are text or numbers, found among the variables and as
    keys of plain dicts, and only without autoescaping (which would escape them)."""
    from jinja2 import nodes

    if env.autoescape:
        return None
    body = env.parse(source).body
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts: list[str | tuple[str, ...]] = []
    for node in body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)
            continue
        path: list[str] = []
        while isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        if not isinstance(node, nodes.Name) or any(p in _DICT_ATTRIBUTES for p in path):
            return None
        parts.append((node.name, *reversed(path)))
    limit = env.max_output

    def render(variables: Mapping[str, Any]) -> str | None:
        out: list[str] = []
        for part in parts:
            if type(part) is str:
                out.append(part)
                continue
            value: Any = variables.get(part[0], _MISSING)
            for key in part[1:]:  # Jinja tries an attribute first: plain dicts have none
                if type(value) is not dict or key not in value:
                    return None
                value = value[key]
            if not isinstance(value, _PLAIN):  # also a missing name: Jinja says what it is
                return None
            out.append(value if type(value) is str else str(value))
        text = "".join(out)
        return text if len(text) <= limit else None  # Jinja's path says what is wrong

    return render


class TextTemplate:
    """A short template that a connector renders for every message (a file name, a topic,
    a subject, a routing key): Jinja in the sandbox, 1 s and 1,024 characters at most,
    through `substitution` where the template allows it."""

    def __init__(self, source: str) -> None:
        env = make_environment(autoescape=False, time_limit=1.0, max_output=1024)
        self.template = env.from_string(source)
        self.fast = substitution(env, source)

    def render(self, *args: Any, **kwargs: Any) -> str:
        """As Jinja's `Template.render`: a dict of variables, or them as keywords."""
        variables = dict(*args, **kwargs)
        if self.fast is not None and (text := self.fast(variables)) is not None:
            return text
        return self.template.render(variables)


def template_line(tb: TracebackType | None, template: Template) -> int | None:
    """The template line a rendering error happened on: the innermost frame of the
    template's compiled code, mapped back through Jinja's line table."""
    line = None
    filename = template.filename or "<template>"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line
