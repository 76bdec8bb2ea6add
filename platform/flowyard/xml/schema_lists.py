"""Which child elements may repeat, read from an XSD: `xml.parse` makes them lists always.

Why: with lists chosen by what one document happens to contain, a mapping such as
`ProductionRequest[].ID` breaks on the day a schedule holds a single request. The schema
says what may repeat: a child declared with `maxOccurs` above 1 (or `unbounded`), or
inside a sequence, choice or group that may repeat, including what a type inherits by
extension. The answer is per parent element name and child name (both with their
namespace): `ProductionRequest` under `ProductionSchedule` is a list, while `ID` under
`ProductionRequest` stays a string even though some other B2MML element has several IDs.
When one parent name has several declarations, a child that may repeat in any is a list.

The schema and its includes/imports are read with the hardened parser from the flow's
folder only, like `xml.validate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lxml import etree

from .security import AccessRefused, make_parser

XS = "http://www.w3.org/2001/XMLSchema"
ELEMENT, GROUP, COMPLEX = f"{{{XS}}}element", f"{{{XS}}}group", f"{{{XS}}}complexType"
_MODEL = {f"{{{XS}}}sequence", f"{{{XS}}}choice", f"{{{XS}}}all"}
_CONTENT = {f"{{{XS}}}complexContent", f"{{{XS}}}simpleContent"}
_LINKS = {f"{{{XS}}}include", f"{{{XS}}}import", f"{{{XS}}}redefine"}


@dataclass(frozen=True)
class _Doc:
    namespace: str | None
    qualified: bool


def _repeats(node: Any) -> bool:
    value = (node.get("maxOccurs") or "1").strip()
    return value == "unbounded" or (value.isdigit() and int(value) > 1)


def _qname(node: Any, value: str) -> str:
    prefix, _, local = value.rpartition(":")
    uri = node.nsmap.get(prefix or None)
    return f"{{{uri}}}{local}" if uri else local


def _global(doc: _Doc, name: str) -> str:
    return f"{{{doc.namespace}}}{name}" if doc.namespace else name


class _Schema:
    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.parser, _ = make_parser(self.folder)
        self.seen: set[Path] = set()
        self.docs: list[tuple[Any, _Doc]] = []
        self.types: dict[str, tuple[Any, _Doc]] = {}
        self.groups: dict[str, tuple[Any, _Doc]] = {}

    def read(self, path: Path, target: str | None = None) -> None:
        path = path.resolve()
        if path in self.seen:
            return
        if not path.is_relative_to(self.folder):
            raise AccessRefused(f"refused to load {str(path)!r}: only files inside {self.folder} may be loaded")
        self.seen.add(path)
        root = etree.parse(str(path), self.parser).getroot()
        doc = _Doc(root.get("targetNamespace", target), root.get("elementFormDefault") == "qualified")
        self.docs.append((root, doc))
        for node in root:
            if node.tag == COMPLEX and node.get("name"):
                self.types[_global(doc, node.get("name"))] = (node, doc)
            elif node.tag == GROUP and node.get("name"):
                self.groups[_global(doc, node.get("name"))] = (node, doc)
            elif node.tag in _LINKS and node.get("schemaLocation"):
                location = urlparse(node.get("schemaLocation"))
                if location.scheme not in ("", "file") or location.netloc:
                    raise AccessRefused(
                        f"refused to load {node.get('schemaLocation')!r}: only files in the flow's folder"
                    )
                own = None if node.tag == f"{{{XS}}}import" else doc.namespace  # an include joins its includer
                self.read(path.parent / unquote(location.path), own)

    def element_name(self, element: Any, doc: _Doc) -> str:
        if element.get("ref"):
            return _qname(element, element.get("ref"))
        top = element.getparent().tag == f"{{{XS}}}schema"
        form = element.get("form") or ("qualified" if doc.qualified else "unqualified")
        name = element.get("name", "")
        return _global(doc, name) if top or form == "qualified" else name

    def children(self, node: Any, doc: _Doc, repeating: bool, depth: int = 0) -> Iterator[tuple[str, bool]]:
        """(child name, may repeat) for the content model under `node`."""
        if depth > 50:  # a type deriving from itself through many steps: stop
            return
        for child in node:
            tag = child.tag
            if tag == ELEMENT:
                yield self.element_name(child, doc), repeating or _repeats(child)
            elif tag in _MODEL:
                yield from self.children(child, doc, repeating or _repeats(child), depth + 1)
            elif tag == GROUP and child.get("ref"):
                found = self.groups.get(_qname(child, child.get("ref")))
                if found is not None:
                    yield from self.children(found[0], found[1], repeating or _repeats(child), depth + 1)
            elif tag in _CONTENT:
                yield from self.children(child, doc, repeating, depth + 1)
            elif tag == f"{{{XS}}}extension":
                base = self.types.get(_qname(child, child.get("base", "")))
                if base is not None:
                    yield from self.children(base[0], base[1], repeating, depth + 1)
                yield from self.children(child, doc, repeating, depth + 1)
            elif tag == f"{{{XS}}}restriction" and child.getparent().tag == f"{{{XS}}}complexContent":
                yield from self.children(child, doc, repeating, depth + 1)

    def pairs(self) -> dict[str, frozenset[str]]:
        found: dict[str, set[str]] = {}
        for root, doc in self.docs:
            for element in root.iter(ELEMENT):
                if not element.get("name"):
                    continue
                parent = self.element_name(element, doc)
                type_name = element.get("type")
                if type_name:
                    declared = self.types.get(_qname(element, type_name))
                    if declared is None:
                        continue
                    node, type_doc = declared
                else:
                    node, type_doc = element.find(COMPLEX), doc
                    if node is None:
                        continue
                for child, repeats in self.children(node, type_doc, False):
                    if repeats:
                        found.setdefault(parent, set()).add(child)
        return {parent: frozenset(children) for parent, children in found.items()}


def repeating_children(schema: Path, folder: Path) -> dict[str, frozenset[str]]:
    """Parent element name -> the child element names that may repeat under it (Clark
    notation), for the schema and everything it includes or imports."""
    reader = _Schema(folder)
    reader.read(schema)
    return reader.pairs()
