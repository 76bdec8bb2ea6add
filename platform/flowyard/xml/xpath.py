"""xml.xpath: named XPath 1.0 values, and streaming of big documents with `each`."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from lxml import etree
from pydantic import Field, field_validator

from ..errors import InputLocation, StepError
from ..message import Message
from ..step import FlowContext, OptionError, Step
from .common import DATA_TYPE
from .options import LimitOptions, check_namespaces
from .security import DEFAULT_STREAM_MAX_SIZE, LIBXML_MAX_VALUE, check_size, iter_records, open_payload, parse_document

_QNAME = r"[A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?"
_NO_PARENT = object()
_EACH = re.compile(rf"^(//|/)?({_QNAME})((?:/{_QNAME})*)$")


class XmlXPathOptions(LimitOptions):
    expressions: dict[str, str] = Field(description="output name -> XPath 1.0 expression")
    namespaces: dict[str, str] = Field(
        default_factory=dict, description="prefix -> namespace URI, used in the expressions and in `each`"
    )
    each: str | None = Field(
        None,
        description="stream the document and give one message per element on this path "
        "(`/a/b/record` or `//record`); expressions are then relative to each record",
    )
    split: bool = Field(True, description="with `each`: one message per record (false: one message with the list)")
    batch: int | None = Field(
        None,
        ge=1,
        description="with `each`: one message per this many records, each a list (fewer, larger messages)",
    )

    @field_validator("namespaces")
    @classmethod
    def _valid(cls, value: dict[str, str]) -> dict[str, str]:
        return check_namespaces(value, allow_default=False)


def xpath_value(result: Any) -> Any:
    """An XPath 1.0 result as data: numbers, strings and booleans as they are (integral
    numbers as integers); a node-set as the list of its nodes' string values."""
    kind = type(result)
    if kind is str or kind is bool:  # plain strings: the XPaths are compiled without smart strings
        return result
    if kind is float:
        if result != result or result in (math.inf, -math.inf):  # NaN or infinite: no number
            return None
        return int(result) if result.is_integer() else result
    if isinstance(result, str):
        return str(result)
    if isinstance(result, list):
        return [_node_value(node) for node in result]
    return result


def _node_value(node: Any) -> Any:
    if isinstance(node, str):
        return str(node)
    if isinstance(node, tuple):  # a namespace node: (prefix, uri)
        return node[1]
    if isinstance(node.tag, str):
        return "".join(node.itertext())
    return node.text or ""


class XmlXPath(Step):
    """Extract named XPath 1.0 values with namespace prefixes into data.

    With `each`, the document is streamed (iterparse): memory stays bounded by one record,
    so documents of hundreds of megabytes pass.
    """

    kind = "xml.xpath"
    Options = XmlXPathOptions
    takes = "bytes"
    gives = "data"
    fans_out = True

    def __init__(self, options: XmlXPathOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        if not options.expressions:
            raise OptionError("give at least one expression", "expressions")
        self.compiled: dict[str, Any] = {}
        for name, expression in options.expressions.items():
            try:
                self.compiled[name] = etree.XPath(expression, namespaces=options.namespaces, smart_strings=False)
            except etree.XPathSyntaxError as exc:
                raise OptionError(f"expression {name!r}: invalid XPath 1.0 ({exc})", "expressions") from exc
            try:  # unknown prefixes, functions and variables show only when evaluated
                self.compiled[name](etree.Element("probe"))
            except etree.XPathEvalError as exc:
                raise OptionError(f"expression {name!r}: invalid XPath 1.0 ({exc})", "expressions") from exc
        self.record_tag: str | None = None
        self.ancestors: list[str] | None = None
        if options.each is not None:
            self.record_tag, self.ancestors = self._compile_each(options.each, options.namespaces)
        self.limits = options.limits(DEFAULT_STREAM_MAX_SIZE, LIBXML_MAX_VALUE) if options.each else options.limits()

    @staticmethod
    def _compile_each(each: str, namespaces: dict[str, str]) -> tuple[str, list[str] | None]:
        match = _EACH.match(each.strip())
        if not match:
            raise OptionError("each must be a path of element names, like /orders/order or //order", "each")
        anchor, first, rest = match.groups()
        names = [first, *[n for n in rest.split("/") if n]]
        tags = []
        for name in names:
            if ":" in name:
                prefix, local = name.split(":", 1)
                if prefix not in namespaces:
                    raise OptionError(f"each: prefix {prefix!r} is not in namespaces", "each")
                tags.append(f"{{{namespaces[prefix]}}}{local}")
            else:
                tags.append(name)
        if anchor == "/":
            return tags[-1], list(reversed(tags[:-1]))
        if len(tags) > 1:
            raise OptionError(
                "each: `//` is allowed only as `//name`; write the full path from the root with a single `/`", "each"
            )
        return tags[-1], None

    def evaluate(self, node: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        name = ""
        try:
            for name, xpath in self.compiled.items():
                out[name] = xpath_value(xpath(node))
        except etree.XPathEvalError as exc:
            raise StepError(
                f"expression {name!r} failed: {exc}", where=InputLocation(getattr(node, "sourceline", None))
            ) from exc
        return out

    def process(self, message: Message) -> Any:
        if self.record_tag is None:
            tree = parse_document(message.payload, self.limits)
            message.payload = self.evaluate(tree)
            message.content_type = DATA_TYPE
            return message
        check_size(message.payload, self.limits)
        records = self.records(open_payload(message.payload), message.payload)
        if not self.options.split:
            message.payload = list(records)
            message.content_type = DATA_TYPE
            return message
        # Read up to the first record here, so a refused or broken document fails as a
        # whole (the message itself becomes the dead letter), not midway through a split.
        if self.options.batch:
            records = self._batches(records, self.options.batch)
        first = next(records, None)
        if first is None:
            return []
        return self._children(message, first, records, "batch_index" if self.options.batch else "record_index")

    @staticmethod
    def _batches(records: Iterator[dict[str, Any]], size: int) -> Iterator[Any]:
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(record)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    @staticmethod
    def _children(message: Message, first: Any, rest: Iterator[Any], header: str) -> Iterator[Message]:
        yield message.child(first, DATA_TYPE, **{header: 0})
        for index, record in enumerate(rest, 1):
            yield message.child(record, DATA_TYPE, **{header: index})

    def records(self, source: Any, raw: Any = None) -> Iterator[dict[str, Any]]:
        """The records of a streamed document (also used directly on an open file)."""
        ancestors = self.ancestors
        # Records are mostly siblings: once a parent is known to lie on the path, its
        # other children need no walk up. `is` is safe: holding the parent's proxy keeps
        # lxml from giving that proxy to another element.
        on_path: Any = _NO_PARENT
        try:
            for element in iter_records(source, self.record_tag, self.limits, raw):
                if ancestors is not None:
                    parent = element.getparent()
                    if parent is not on_path:
                        if not self._on_path(element, ancestors):
                            continue
                        on_path = parent
                yield self.evaluate(element)
        finally:
            if raw is not None and source is not raw:  # a stream this step opened
                source.close()

    @staticmethod
    def _on_path(element: Any, ancestors: list[str]) -> bool:
        node = element.getparent()
        for tag in ancestors:
            if node is None or node.tag != tag:
                return False
            node = node.getparent()
        return node is None
