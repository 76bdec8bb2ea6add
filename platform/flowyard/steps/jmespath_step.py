"""jmespath: reshape data with one JMESPath expression."""

from __future__ import annotations

from jmespath import exceptions as jexc
from pydantic import Field

from ..errors import StepError
from ..expressions import compile_expression
from ..message import Message
from ..options import Options
from ..step import FlowContext, Step


class JmesPathOptions(Options):
    expression: str = Field(description="a JMESPath expression; see the extra functions in the reference")


class JmesPath(Step):
    """Map data to new data with a JMESPath expression, compiled once.

    Extra functions cover dates, numbers, padding and code lookups (`lookup('table', code)`).
    """

    kind = "jmespath"
    Options = JmesPathOptions
    main_option = "expression"

    def __init__(self, options: JmesPathOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.expression = compile_expression(options.expression, "expression", self._lookup)

    def _lookup(self, table: str, code: str) -> object:
        return self.context.table(table).get(code)

    def process(self, message: Message) -> Message:
        try:
            message.payload = self.expression.search(message.payload)
        except (jexc.JMESPathError, ValueError) as exc:
            raise StepError(f"the expression could not be evaluated: {exc}") from exc
        return message
