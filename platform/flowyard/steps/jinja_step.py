"""jinja: render data to text (XML, JSON, fixed-width, EDI) with a sandboxed template."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError
from pydantic import Field, model_validator

from ..errors import InputLocation, StepError
from ..message import Message
from ..options import Options
from ..sandbox import RenderLimitError, make_environment, substitution, template_line
from ..step import FlowContext, OptionError, Step

INLINE = "<template>"


class JinjaOptions(Options):
    template: str | None = Field(None, description="the template text")
    template_file: str | None = Field(None, description="a template file, relative to the flow file")
    content_type: str = Field("text/plain", description="content type of the output; XML and HTML types turn autoescaping on")
    strict: bool = Field(False, description="a name missing from the data is an error instead of empty text")
    encoding: str = Field("utf-8", description="encoding of the output bytes")
    max_output: int = Field(10_000_000, ge=1, description="largest output, in characters")
    time_limit: float = Field(5.0, gt=0, le=300, description="longest rendering time, in seconds")

    @model_validator(mode="after")
    def _one_template(self) -> JinjaOptions:
        if (self.template is None) == (self.template_file is None):
            raise ValueError("give exactly one of `template` or `template_file`")
        return self


def autoescapes(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base.endswith("xml") or base.endswith("html") or base.endswith("+xml")


class Jinja(Step):
    """Render a sandboxed Jinja2 template. The data is `data` (its keys also at top level),
    message metadata is `message`.

    Autoescaping is on for XML and HTML content types; rendering is limited in time and size.
    """

    kind = "jinja"
    Options = JinjaOptions
    options: JinjaOptions
    main_option = "template"
    takes = "data"
    gives = "bytes"

    def __init__(self, options: JinjaOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.env = make_environment(
            autoescape=autoescapes(options.content_type),
            folder=context.base_dir,
            strict=options.strict,
            max_output=options.max_output,
            time_limit=options.time_limit,
        )
        self.env.filters["lookup"] = self._lookup
        try:
            if options.template is not None:
                self.filename = INLINE
                self.template = self.env.from_string(options.template)
                self.template.filename = INLINE
            else:
                assert options.template_file is not None
                path = context.resolve_path(options.template_file, "template_file")
                rel = path.relative_to(context.base_dir.resolve()).as_posix()
                self.template = self.env.get_template(rel)
                self.filename = self.template.filename or rel
        except TemplateSyntaxError as exc:
            if options.template is not None:
                raise OptionError(f"Jinja syntax error: {exc.message}", "template", line_in_value=exc.lineno) from exc
            raise OptionError(f"Jinja syntax error in {options.template_file}, line {exc.lineno}: {exc.message}", "template_file") from exc
        except TemplateNotFound as exc:
            raise OptionError(f"template file {options.template_file!r} not found beside the flow", "template_file") from exc
        self._new_context = self.template.new_context
        self._render = self.template.root_render_func
        self._fast = substitution(self.env, options.template) if options.template is not None else None

    def _lookup(self, code: Any, table: str, *default: Any) -> Any:
        try:
            value: Any = self.context.table(table).get(str(code))
        except KeyError:
            if default:
                return default[0]
            raise ValueError(f"code {code!r} is not in table {table!r}") from None
        return value

    def render(self, data: Any, metadata: dict[str, Any]) -> str:
        variables = dict(data) if isinstance(data, dict) else {}
        variables["data"] = data
        variables["message"] = metadata
        if self._fast is not None and (fast := self._fast(variables)) is not None:
            return fast
        context = self._new_context(variables)
        text: str = self.env.render_limited(lambda: self._render(context))
        return text

    def process(self, message: Message) -> Message:
        try:
            text = self.render(message.payload, message.metadata())
        except RenderLimitError as exc:
            raise StepError(f"template stopped: {exc}") from exc
        except (TemplateError, ValueError, TypeError, ArithmeticError, LookupError) as exc:
            line = template_line(exc.__traceback__, self.template)
            where = f"{self.options.template_file or 'template'} line {line}" if line else None
            raise StepError(f"template error: {exc}", where=InputLocation(path=where) if where else None) from exc
        message.payload = text.encode(self.options.encoding)
        message.content_type = self.options.content_type
        return message

    def output_content_type(self) -> str:
        return self.options.content_type
