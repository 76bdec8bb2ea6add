"""json.parse and json.render."""

from __future__ import annotations

import json

from pydantic import Field

from ..errors import InputLocation, StepError
from ..message import Message
from ..options import Options
from ..step import Step


class JsonParseOptions(Options):
    encoding: str = Field("utf-8", description="text encoding of the bytes")


class JsonParse(Step):
    """Decode JSON bytes into data.

    Invalid JSON fails the message with the line and column of the problem.
    """

    kind = "json.parse"
    Options = JsonParseOptions
    takes = "bytes"
    gives = "data"

    def process(self, message: Message) -> Message:
        try:
            text = message.payload.decode(self.options.encoding)
            message.payload = json.loads(text)
        except UnicodeDecodeError as exc:
            raise StepError(
                f"the input is not {self.options.encoding} text (byte {exc.start})",
                where=InputLocation(path=f"byte {exc.start}"),
            ) from exc
        except json.JSONDecodeError as exc:
            raise StepError(
                f"invalid JSON: {exc.msg}", where=InputLocation(exc.lineno, exc.colno)
            ) from exc
        message.content_type = "application/json"
        return message


class JsonRenderOptions(Options):
    indent: int | None = Field(2, ge=0, le=8, description="spaces of indentation; null for one line")
    sort_keys: bool = Field(False, description="sort object keys")
    ascii: bool = Field(False, description="escape every non-ASCII character")


class JsonRender(Step):
    """Encode data as JSON bytes (content type application/json)."""

    kind = "json.render"
    Options = JsonRenderOptions
    takes = "data"
    gives = "bytes"

    def process(self, message: Message) -> Message:
        o = self.options
        try:
            text = json.dumps(message.payload, indent=o.indent, sort_keys=o.sort_keys, ensure_ascii=o.ascii)
        except (TypeError, ValueError) as exc:
            raise StepError(f"the data cannot be written as JSON: {exc}") from exc
        message.payload = (text + "\n").encode()
        message.content_type = "application/json"
        return message

    def output_content_type(self) -> str:
        return "application/json"
