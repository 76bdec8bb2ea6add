"""The XML steps: xml.parse, xml.xpath, xml.xslt and xml.validate (the entry points
name this module; xml.xpath, xml.xslt and xml.validate live in their own modules).

Every input document goes through `security.parse_document` or `security.iter_records`
(one hardened parser); stylesheets and schemas are compiled once when the flow loads,
and may load companion files from the flow's folder only.
"""

from __future__ import annotations

from lxml import etree
from pydantic import Field

from ..message import Message
from ..step import FlowContext, OptionError, Step
from .common import DATA_TYPE, flow_file
from .convention import Converter
from .options import LimitOptions, NamespaceOptions
from .schema_lists import repeating_children
from .security import AccessRefused, parse_document
from .validate import XmlValidate, XmlValidateOptions
from .xpath import XmlXPath, XmlXPathOptions, xpath_value
from .xslt import XmlXslt, XmlXsltOptions

__all__ = [
    "XmlParse",
    "XmlParseOptions",
    "XmlValidate",
    "XmlValidateOptions",
    "XmlXPath",
    "XmlXPathOptions",
    "XmlXslt",
    "XmlXsltOptions",
    "xpath_value",
]


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
            max_attribute=self.limits.max_attribute,
            repeating=repeating,
        )

    def process(self, message: Message) -> Message:
        tree = parse_document(message.payload, self.limits, check=False)
        message.payload = self.converter.document(tree.getroot())
        message.content_type = DATA_TYPE
        return message
