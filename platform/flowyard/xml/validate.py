"""xml.validate: XSD (or self-contained DTD) validation, every error with line and path."""

from __future__ import annotations

import io
import re
import threading
from typing import Any

from lxml import etree
from pydantic import Field, model_validator

from ..errors import InputLocation, StepError
from ..message import Message
from ..step import FlowContext, OptionError, Step
from .common import flow_file, log_lines, refusals
from .options import LimitOptions
from .security import AccessRefused, make_parser, parse_document
from .where import element_path, resolve_libxml_path

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
            detail = "; ".join(log_lines(exc.error_log, 3)) or str(exc)
            raise OptionError(f"schema {name} does not load: {detail}{refusals(resolver)}", "schema") from exc
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
