"""xml.xslt: an XSLT 1.0 stylesheet with parameters, compiled once per flow version."""

from __future__ import annotations

import mmap
import weakref
from typing import Any

from lxml import etree
from pydantic import Field

from ..message import Message
from ..step import FlowContext, OptionError, Step
from .common import flow_file, log_lines, refusals
from .isolated import IsolatedXslt, Stylesheet
from .options import ByteSize, LimitOptions
from .security import AccessRefused, check_size, make_parser, open_payload, xslt_access_control

_METHOD_TYPES = {"xml": "application/xml", "html": "text/html", "text": "text/plain"}
XSL = "http://www.w3.org/1999/XSL/Transform"


class XmlXsltOptions(LimitOptions):
    stylesheet: str = Field(description="an XSLT 1.0 stylesheet file, relative to the flow file")
    parameters: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="stylesheet parameters (xsl:param); strings are passed as text, not as XPath"
    )
    content_type: str | None = Field(None, description="content type of the output (default: from xsl:output method)")
    time_limit: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="longest transform of one document, in seconds (parsing included); past it the "
        "transform's worker process is killed and the message fails",
    )
    max_memory: ByteSize = Field(
        "2GB",
        validate_default=True,
        description="most memory the transform's worker process may hold (its address space), e.g. 500MB; "
        "a transform that needs more fails the message",
    )


class XmlXslt(Step):
    """Apply an XSLT 1.0 stylesheet with parameters; compiled once per flow version.

    The stylesheet may import, include and `document()` files from the flow's folder only;
    it can never write files or reach the network. Each transform runs in a worker
    process that is killed past `time_limit` (libxslt cannot be stopped otherwise).
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
            detail = "; ".join(log_lines(exc.error_log)) or str(exc)
            raise OptionError(
                f"stylesheet {options.stylesheet} does not compile: {detail}{refusals(self.resolver)}", "stylesheet"
            ) from exc
        except AccessRefused as exc:
            raise OptionError(f"stylesheet {options.stylesheet}: {exc}", "stylesheet") from exc
        self.limits = options.limits()
        self.content_type = options.content_type or self._output_type(document)
        self.name = options.stylesheet
        stylesheet = Stylesheet(str(path), str(context.base_dir), self.limits, tuple(options.parameters.items()),
                                options.max_memory)
        self.isolated = IsolatedXslt(stylesheet, options.time_limit)  # workers start on first use
        weakref.finalize(self, self.isolated.close)

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
        check_size(message.payload, self.limits)  # refused here, without a worker
        payload = message.payload
        if isinstance(payload, bytearray | memoryview | mmap.mmap):
            payload = bytes(payload)
        elif not isinstance(payload, bytes):  # a file-backed payload
            stream = open_payload(payload)
            try:
                payload = stream.read()
            finally:
                stream.close()
        message.payload = self.isolated.transform(payload)
        message.content_type = self.content_type
        return message

    def output_content_type(self) -> str:
        return self.content_type
