"""validate: check data against a JSON Schema (a canonical model or the flow's own)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..errors import InputLocation, StepError
from ..message import Message
from ..options import Options
from ..schemas import json_path, load_schema, make_validator
from ..step import FlowContext, Step


class ValidateOptions(Options):
    schema_: str | dict[str, Any] = Field(
        alias="schema",
        description="`canonical:NAME` (item, purchase-order, production-order, production-confirmation, "
        "inventory-movement, shipment, invoice, quality-hold), a schema file beside the flow, or an inline schema",
    )
    max_errors: int = Field(20, ge=1, description="how many violations to report at most")


class Validate(Step):
    """Check the data against a JSON Schema; every violation is reported with its path.

    The message passes through unchanged when valid.
    """

    kind = "validate"
    Options = ValidateOptions
    main_option = "schema"

    def __init__(self, options: ValidateOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.validator = make_validator(load_schema(options.schema_, context))

    def process(self, message: Message) -> Message:
        errors = sorted(self.validator.iter_errors(message.payload), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            described = [f"{json_path(e.absolute_path)}: {e.message}" for e in errors[: self.options.max_errors]]
            first = errors[0]
            raise StepError(
                f"the data does not match the schema: {len(errors)} problem(s); first: {described[0]}",
                where=InputLocation(path=json_path(first.absolute_path)),
                details=described[1:],
            )
        return message
