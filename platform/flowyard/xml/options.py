"""Options shared by the XML steps: input limits and namespace maps, declared once."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator

from ..options import Options
from .security import (
    DEFAULT_MAX_ATTRIBUTE,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_MAX_SIZE,
    LIBXML_MAX_VALUE,
    XmlLimits,
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?\s*$", re.IGNORECASE)
_FACTORS = {None: 1, "b": 1, "kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000}
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_size(value: Any) -> int:
    """A number of bytes, or '500KB', '100MB', '2GB'."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            return int(float(match.group(1)) * _FACTORS[(match.group(2) or "").lower() or None])
    raise ValueError(f"{value!r} is not a size; write it like 500KB, 100MB or 2GB (or a number of bytes)")


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "type": ["string", "integer"],
            "pattern": r"^\d+(\.\d+)?\s*(B|KB|MB|GB)?$",
            "description": "a size such as 500KB, 100MB, 2GB",
        }
    ),
]


class LimitOptions(Options):
    max_size: ByteSize | None = Field(
        None, description="largest document accepted, e.g. 500MB (default 100MB; 10GB for xml.xpath with `each`)"
    )
    max_depth: int = Field(
        DEFAULT_MAX_DEPTH, ge=1, le=DEFAULT_MAX_DEPTH, description="deepest element nesting accepted (at most 256)"
    )
    max_attribute: int | None = Field(
        None,
        ge=1,
        le=LIBXML_MAX_VALUE,
        description="longest attribute value accepted, in characters (default 1,000,000; "
        "10,000,000, the parser's own limit, for xml.xpath with `each`)",
    )

    max_elements: int = Field(
        DEFAULT_MAX_ELEMENTS,
        ge=1,
        le=1_000_000_000,
        description="most elements in a document read whole, refused before its tree is built "
        "(each element costs memory; not applied to the records of xml.xpath with `each`)",
    )

    def limits(self, default_size: int = DEFAULT_MAX_SIZE, default_attribute: int = DEFAULT_MAX_ATTRIBUTE) -> XmlLimits:
        return XmlLimits(
            self.max_size if self.max_size is not None else default_size,
            self.max_depth,
            self.max_attribute if self.max_attribute is not None else default_attribute,
            self.max_elements,
        )


def check_namespaces(value: dict[str, str], allow_default: bool) -> dict[str, str]:
    for prefix, uri in value.items():
        if prefix == "" and not allow_default:
            raise ValueError(
                "XPath 1.0 has no default namespace: give every namespace a prefix and use it in the expressions"
            )
        if prefix and not _NCNAME.match(prefix):
            raise ValueError(f"{prefix!r} is not a valid namespace prefix")
        if not uri:
            raise ValueError(f"namespace prefix {prefix!r} needs a URI")
    if len(set(value.values())) != len(value):
        raise ValueError("two prefixes name the same namespace URI")
    return value


class NamespaceOptions(Options):
    namespaces: dict[str, str] = Field(
        default_factory=dict,
        description="prefix -> namespace URI; names are written with these prefixes whatever the document uses",
    )

    @field_validator("namespaces")
    @classmethod
    def _valid(cls, value: dict[str, str]) -> dict[str, str]:
        return check_namespaces(value, allow_default=True)
