"""split and filter."""

from __future__ import annotations

from jmespath import exceptions as jexc
from pydantic import Field

from ..errors import StepError
from ..expressions import compile_expression, truthy
from ..message import Message
from ..options import Options
from ..step import FlowContext, Step


class SplitOptions(Options):
    expression: str = Field(description="JMESPath giving a list; one message per element")


class Split(Step):
    """One message per element of a JMESPath result, in order, with the same correlation id.

    Each new message records `split_index` and `split_count` in its headers.
    """

    kind = "split"
    Options = SplitOptions
    main_option = "expression"
    fans_out = True

    def __init__(self, options: SplitOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.expression = compile_expression(options.expression, "expression")

    def process(self, message: Message) -> list[Message]:
        try:
            items = self.expression.search(message.payload)
        except (jexc.JMESPathError, ValueError) as exc:
            raise StepError(f"the expression could not be evaluated: {exc}") from exc
        if items is None:
            return []
        if not isinstance(items, list):
            raise StepError(f"split needs a list, the expression gave {type(items).__name__}")
        count = len(items)
        return [message.child(item, "application/json", split_index=i, split_count=count) for i, item in enumerate(items)]


class FilterOptions(Options):
    expression: str = Field(description="JMESPath condition; the message is dropped when it is falsy")


class Filter(Step):
    """Drop the message when the condition is falsy (null, false, empty)."""

    kind = "filter"
    Options = FilterOptions
    main_option = "expression"
    fans_out = True

    def __init__(self, options: FilterOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.expression = compile_expression(options.expression, "expression")

    def process(self, message: Message) -> Message | None:
        try:
            keep = truthy(self.expression.search(message.payload))
        except (jexc.JMESPathError, ValueError) as exc:
            raise StepError(f"the expression could not be evaluated: {exc}") from exc
        return message if keep else None
