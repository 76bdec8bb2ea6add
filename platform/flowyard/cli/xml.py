"""`flowyard xml parse|xpath|validate FILE ...`: the XML steps on one file, for analysts
writing a mapping (what does `xml.parse` make of this document?) or checking a document.

Each command builds the same step a flow would, with the same hardened parser; a schema
or its includes load from the schema's own folder only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import FlowyardError, StepError
from ..message import Message
from ..step import FlowContext, OptionError
from ..xml.steps import (
    XmlParse,
    XmlParseOptions,
    XmlValidate,
    XmlValidateOptions,
    XmlXPath,
    XmlXPathOptions,
)


def register(sub: Any) -> None:
    xml = sub.add_parser("xml", help="XML tools: parse to data, evaluate XPath, validate against an XSD")
    commands = xml.add_subparsers(dest="xml_command", metavar="COMMAND", required=True)
    parse = commands.add_parser("parse", help="print the data xml.parse makes of a document (JSON)")
    parse.add_argument("file", type=Path)
    _namespaces(parse)
    parse.add_argument(
        "--list", action="append", default=[], metavar="NAME", help="an element name that is always a list"
    )
    parse.add_argument(
        "--lists-from-schema", type=Path, metavar="XSD", help="lists where this schema lets elements repeat"
    )
    parse.add_argument("--strip-namespaces", action="store_true", help="local names only")
    parse.set_defaults(handler=handle_parse)
    xpath = commands.add_parser("xpath", help="print named XPath 1.0 values (JSON)")
    xpath.add_argument("file", type=Path)
    xpath.add_argument("expressions", nargs="+", metavar="NAME=XPATH")
    _namespaces(xpath)
    xpath.add_argument("--each", help="one result per element on this path (streamed)")
    xpath.set_defaults(handler=handle_xpath)
    validate = commands.add_parser("validate", help="check a document against an XSD; every error with line and path")
    validate.add_argument("file", type=Path)
    which = validate.add_mutually_exclusive_group(required=True)
    which.add_argument("--schema", type=Path, metavar="XSD")
    which.add_argument("--dtd", type=Path, metavar="DTD", help="a self-contained DTD (cXML)")
    validate.set_defaults(handler=handle_validate)


def _namespaces(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ns", action="append", default=[], metavar="PREFIX=URI", help="a namespace prefix (repeatable)"
    )


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep:
            raise FlowyardError(f"{what} {value!r}: write it as NAME=VALUE")
        pairs[key] = rest
    return pairs


def _build(cls: Any, options_cls: Any, folder: Path, **options: Any) -> Any:
    try:
        return cls(options_cls(**options), FlowContext(flow_file=folder.resolve() / "command-line"))
    except ValidationError as exc:
        raise FlowyardError("; ".join(str(e["msg"]) for e in exc.errors())) from None
    except OptionError as exc:
        raise FlowyardError(exc.message) from None


def _run(step: Any, file: Path) -> Any:
    try:
        out = step.process(Message(file.read_bytes(), "application/xml"))
        return out.payload if isinstance(out, Message) else [m.payload for m in out]
    except StepError as exc:
        print(f"{file}: {exc}", file=sys.stderr)
        return None


def handle_parse(args: argparse.Namespace) -> int:
    folder = args.lists_from_schema.parent if args.lists_from_schema else args.file.parent
    step = _build(
        XmlParse,
        XmlParseOptions,
        folder,
        namespaces=_pairs(args.ns, "--ns"),
        lists=args.list,
        strip_namespaces=args.strip_namespaces,
        lists_from_schema=args.lists_from_schema.name if args.lists_from_schema else None,
    )
    data = _run(step, args.file)
    if data is None:
        return 1
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def handle_xpath(args: argparse.Namespace) -> int:
    expressions = _pairs(args.expressions, "expression")
    step = _build(
        XmlXPath,
        XmlXPathOptions,
        args.file.parent,
        expressions=expressions,
        namespaces=_pairs(args.ns, "--ns"),
        each=args.each,
    )
    data = _run(step, args.file)
    if data is None:
        return 1
    print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def handle_validate(args: argparse.Namespace) -> int:
    against: Path = args.schema or args.dtd
    kind = "schema" if args.schema else "dtd"
    step = _build(XmlValidate, XmlValidateOptions, against.parent, **{kind: against.name})
    if _run(step, args.file) is None:
        return 1
    print(f"{args.file}: valid against {against}")
    return 0
