"""The XML steps: xml.parse, xml.xpath, xml.xslt and xml.validate.

Every input document goes through `security.parse_document` or `security.iter_records`
(one hardened parser); stylesheets and schemas are compiled once when the flow loads,
and may load companion files from the flow's folder only.
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree
from pydantic import Field, field_validator, model_validator

from ..errors import InputLocation, StepError
from ..message import Message
from ..step import FlowContext, OptionError, Step
from .convention import Converter
from .options import LimitOptions, NamespaceOptions, check_namespaces
from .schema_lists import repeating_children
from .security import (
    DEFAULT_STREAM_MAX_SIZE,
    AccessRefused,
    FolderResolver,
    check_size,
    iter_records,
    make_parser,
    open_payload,
    parse_document,
    xslt_access_control,
)
from .where import element_path, resolve_libxml_path

DATA_TYPE = "application/json"


def flow_file(context: FlowContext, relative: str, option: str) -> Path:
    """A file named in the flow, which must lie inside the flow's folder."""
    path = context.resolve_path(relative)
    if not path.is_relative_to(context.base_dir.resolve()):
        raise OptionError(f"{option} must stay inside the flow's folder", option)
    if not path.is_file():
        raise OptionError(f"{option}: file {relative!r} not found beside the flow", option)
    return path


def _log_lines(log: Any, limit: int = 10) -> list[str]:
    lines = []
    for entry in list(log)[:limit]:
        where = f"{Path(entry.filename).name}:{entry.line}: " if entry.filename and entry.line else ""
        lines.append(f"{where}{entry.message}")
    return lines


def _refusals(resolver: FolderResolver) -> str:
    if not resolver.refused:
        return ""
    return (
        "; refused to load "
        + ", ".join(repr(u) for u in resolver.refused)
        + " (only files inside the flow's folder may be loaded)"
    )


# -- xml.parse ------------------------------------------------------------------------


class XmlParseOptions(NamespaceOptions, LimitOptions):
    strip_namespaces: bool = Field(False, description="drop namespaces and keep local names only (lossy)")
    lists: list[str] = Field(
        default_factory=list, description="element names that are always lists, even when they occur once"
    )
    keep_whitespace: bool = Field(False, description="keep whitespace-only text between elements")
    lists_from_schema: str | None = Field(
        None,
        description="an XSD beside the flow: every child element it lets repeat is always a list",
    )


class XmlParse(Step):
    """Turn an XML document into data under the documented lossless convention
    (`@attr`, `#text`, `#content`, lists for repeated elements, namespace prefixes from
    the flow's map).

    Safe by default: no external entities, no DTD or network loading, bounded size,
    depth and attribute length.
    """

    kind = "xml.parse"
    Options = XmlParseOptions
    takes = "bytes"
    gives = "data"

    def __init__(self, options: XmlParseOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        self.limits = options.limits()
        repeating = None
        if options.lists_from_schema is not None:
            path = flow_file(context, options.lists_from_schema, "lists_from_schema")
            try:
                repeating = repeating_children(path, context.base_dir)
            except (etree.XMLSyntaxError, AccessRefused, OSError) as exc:
                raise OptionError(f"lists_from_schema: {exc}", "lists_from_schema") from exc
        self.converter = Converter(
            options.namespaces,
            strip_namespaces=options.strip_namespaces,
            lists=options.lists,
            keep_whitespace=options.keep_whitespace,
            max_depth=options.max_depth,
            max_attribute=options.max_attribute,
            repeating=repeating,
        )

    def process(self, message: Message) -> Message:
        tree = parse_document(message.payload, self.limits, check=False)
        message.payload = self.converter.document(tree.getroot())
        message.content_type = DATA_TYPE
        return message


# -- xml.xpath ------------------------------------------------------------------------

_QNAME = r"[A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?"
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

    @field_validator("namespaces")
    @classmethod
    def _valid(cls, value: dict[str, str]) -> dict[str, str]:
        return check_namespaces(value, allow_default=False)


def xpath_value(result: Any) -> Any:
    """An XPath 1.0 result as data: numbers, strings and booleans as they are (integral
    numbers as integers); a node-set as the list of its nodes' string values."""
    if isinstance(result, bool):
        return result
    if isinstance(result, float):
        if math.isnan(result) or math.isinf(result):
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
        self.limits = options.limits(DEFAULT_STREAM_MAX_SIZE if options.each else 100_000_000)

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
        for name, xpath in self.compiled.items():
            try:
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
        first = next(records, None)
        if first is None:
            return []
        return self._children(message, first, records)

    @staticmethod
    def _children(message: Message, first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[Message]:
        yield message.child(first, DATA_TYPE, record_index=0)
        for index, record in enumerate(rest, 1):
            yield message.child(record, DATA_TYPE, record_index=index)

    def records(self, source: Any, raw: Any = None) -> Iterator[dict[str, Any]]:
        """The records of a streamed document (also used directly on an open file)."""
        ancestors = self.ancestors
        try:
            for element in iter_records(source, self.record_tag, self.limits, raw):
                if ancestors is not None and not self._on_path(element, ancestors):
                    continue
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


# -- xml.xslt -------------------------------------------------------------------------

_METHOD_TYPES = {"xml": "application/xml", "html": "text/html", "text": "text/plain"}
XSL = "http://www.w3.org/1999/XSL/Transform"


class XmlXsltOptions(LimitOptions):
    stylesheet: str = Field(description="an XSLT 1.0 stylesheet file, relative to the flow file")
    parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="stylesheet parameters (xsl:param); strings are passed as text, not as XPath"
    )
    content_type: str | None = Field(None, description="content type of the output (default: from xsl:output method)")


class XmlXslt(Step):
    """Apply an XSLT 1.0 stylesheet with parameters; compiled once per flow version.

    The stylesheet may import, include and `document()` files from the flow's folder only;
    it can never write files or reach the network.
    """

    kind = "xml.xslt"
    Options = XmlXsltOptions
    main_option = "stylesheet"
    takes = "bytes"
    gives = "bytes"

    def __init__(self, options: XmlXsltOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        path = flow_file(context, options.stylesheet, "stylesheet")
        parser, self.resolver = make_parser(context.base_dir)
        try:
            document = etree.parse(str(path), parser)
            self.transform = etree.XSLT(document, access_control=xslt_access_control())
        except etree.XMLSyntaxError as exc:
            raise OptionError(f"stylesheet {options.stylesheet} is not well-formed: {exc}", "stylesheet") from exc
        except etree.XSLTParseError as exc:
            detail = "; ".join(_log_lines(exc.error_log)) or str(exc)
            raise OptionError(
                f"stylesheet {options.stylesheet} does not compile: {detail}{_refusals(self.resolver)}", "stylesheet"
            ) from exc
        except AccessRefused as exc:
            raise OptionError(f"stylesheet {options.stylesheet}: {exc}", "stylesheet") from exc
        self.limits = options.limits()
        self.parameters = {
            name: etree.XSLT.strparam(value)
            if isinstance(value, str)
            else (("true()" if value else "false()") if isinstance(value, bool) else str(value))
            for name, value in options.parameters.items()
        }
        self.content_type = options.content_type or self._output_type(document)
        self.name = options.stylesheet

    @staticmethod
    def _output_type(document: Any) -> str:
        output = document.getroot().find(f"{{{XSL}}}output")
        if output is not None:
            media = output.get("media-type")
            if media:
                return str(media)
            return _METHOD_TYPES.get(output.get("method", "xml"), "application/xml")
        return "application/xml"

    def process(self, message: Message) -> Message:
        tree = parse_document(message.payload, self.limits)
        self.resolver.refused.clear()
        try:
            result = self.transform(tree, **self.parameters)
        except AccessRefused as exc:
            raise StepError(f"stylesheet {self.name}: {exc}") from exc
        except etree.XSLTApplyError as exc:
            details = _log_lines(self.transform.error_log)
            refused = _refusals(self.resolver)
            raise StepError(f"stylesheet {self.name} failed: {exc}{refused}", details=details) from exc
        message.payload = bytes(result)
        message.content_type = self.content_type
        return message

    def output_content_type(self) -> str:
        return self.content_type


# -- xml.validate ---------------------------------------------------------------------

_CLARK = re.compile(r"\{[^{}\s']+\}(?=[A-Za-z_])")  # {uri}name, not an enumeration set


_EXTERNAL_ENTITY = re.compile(rb"<!ENTITY\s+(?:%\s+)?\S+\s+(?:SYSTEM|PUBLIC)\b")


class XmlValidateOptions(LimitOptions):
    schema_: str | None = Field(
        None,
        alias="schema",
        description="an XSD file relative to the flow file; its imports and includes load from the flow's folder only",
    )
    dtd: str | None = Field(
        None,
        description="a DTD file relative to the flow file (cXML), used instead of an XSD; it must be self-contained",
    )
    max_errors: int = Field(100, ge=1, description="how many errors to list at most")

    @model_validator(mode="after")
    def _one_schema(self) -> XmlValidateOptions:
        if (self.schema_ is None) == (self.dtd is None):
            raise ValueError("give exactly one of `schema` (an XSD) or `dtd`")
        return self


class XmlValidate(Step):
    """Check the document against an XML Schema (XSD), or a DTD; every error is reported
    with its line and element path. The message passes through unchanged.

    The document's own DOCTYPE is never loaded: the flow names the schema it trusts.
    """

    kind = "xml.validate"
    Options = XmlValidateOptions
    main_option = "schema"
    takes = "bytes"
    gives = "bytes"

    def __init__(self, options: XmlValidateOptions, context: FlowContext) -> None:
        super().__init__(options, context)
        if options.schema_ is not None:
            self.name = options.schema_
            self.validator = self._load_xsd(options.schema_, context)
        else:
            assert options.dtd is not None
            self.name = options.dtd
            self.validator = self._load_dtd(options.dtd, context)
        self.limits = options.limits()
        self.lock = threading.Lock()  # a validator's error log is per object

    @staticmethod
    def _load_xsd(name: str, context: FlowContext) -> Any:
        path = flow_file(context, name, "schema")
        parser, resolver = make_parser(context.base_dir)
        try:
            return etree.XMLSchema(etree.parse(str(path), parser))
        except etree.XMLSyntaxError as exc:
            raise OptionError(f"schema {name} is not well-formed: {exc}", "schema") from exc
        except etree.XMLSchemaParseError as exc:
            detail = "; ".join(_log_lines(exc.error_log, 3)) or str(exc)
            raise OptionError(f"schema {name} does not load: {detail}{_refusals(resolver)}", "schema") from exc
        except AccessRefused as exc:
            raise OptionError(f"schema {name}: {exc}", "schema") from exc

    @staticmethod
    def _load_dtd(name: str, context: FlowContext) -> Any:
        path = flow_file(context, name, "dtd")
        text = path.read_bytes()
        if _EXTERNAL_ENTITY.search(text):
            raise OptionError(f"dtd {name} declares external entities; only a self-contained DTD is loaded", "dtd")
        try:
            return etree.DTD(io.BytesIO(text))
        except etree.DTDParseError as exc:
            raise OptionError(f"dtd {name} does not load: {exc}", "dtd") from exc

    def process(self, message: Message) -> Message:
        tree = parse_document(message.payload, self.limits)
        with self.lock:
            valid = self.validator.validate(tree)
            entries = [] if valid else list(self.validator.error_log)
        if valid:
            return message
        problems: list[tuple[InputLocation, str]] = []
        for entry in entries:
            element = resolve_libxml_path(tree, entry.path)
            path = element_path(element) if element is not None else entry.path
            where = InputLocation(entry.line or None, entry.column or None, path=path)
            problems.append((where, _CLARK.sub("", entry.message)))
        shown = [f"{where}: {text}" for where, text in problems[: self.options.max_errors]]
        if len(problems) > self.options.max_errors:
            shown.append(f"... and {len(problems) - self.options.max_errors} more")
        first_where, first_text = problems[0]
        raise StepError(
            f"the document does not match {self.name}: {len(problems)} error(s); first: {first_text}",
            where=first_where,
            details=shown if len(problems) > 1 else [],
        )
