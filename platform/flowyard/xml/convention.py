"""The XML <-> data convention of `xml.parse`: lossless, and easy to map with JMESPath.

A document becomes one object with one key, the root element's name::

    <order id="7" xmlns="urn:acme">            {"order": {
      <line n="1"><qty uom="EA">5</qty></line>     "@id": "7",
      <line n="2"><qty uom="KG">2.5</qty></line>   "line": [{"@n": "1", "qty": {"@uom": "EA", "#text": "5"}},
      <note>rush <b>today</b>!</note>                       {"@n": "2", "qty": {"@uom": "KG", "#text": "2.5"}}],
    </order>                                       "note": {"#content": ["rush ", {"b": "today"}, "!"]}}}

(with the flow's namespace map `{"": "urn:acme"}`). The rules:

1. **Names.** An element or attribute in a namespace is written `prefix:local` with the
   prefix from the flow's `namespaces:` map (the document's own prefixes do not matter,
   so `<cbc:ID>` and `<Harry:ID>` read the same). A map entry with the empty prefix `""`
   makes that namespace's names bare. `xml` and `xsi` are known without a map entry. A
   namespace missing from the map is kept in full as `{uri}local`, so nothing is ever
   confused; `strip_namespaces: true` keeps only local names (the one lossy option).
   Namespace declarations themselves are not data: the map says what they were.
2. **Attributes** are keys `@name` (XML names cannot start with `@`, so an attribute
   never collides with a child element of the same name).
3. **A leaf element** (no child elements) without attributes is its text, always a
   string: `<qty>5</qty>` is `"5"`, `<qty/>` is `""`. No number or date guessing: the
   values are exactly the document's, and JMESPath's `to_number()` converts.
4. **An element with attributes** is an object: attributes as `@name`, its text (when
   not empty) under `#text`.
5. **Child elements** are keys in document order. A name that occurs more than once is a
   list of the values in order; a name listed in `lists:`, or a child the schema named
   by `lists_from_schema:` lets repeat under its parent (see `schema_lists.py`), is a list
   even when it occurs once (an absent element stays absent), so a mapping such as
   `ProductionRequest[].ID` works for one request as well as for ten.
6. **Mixed content and interleaving.** When an element has non-blank text between its
   children, or same-named children that are not next to each other (`<a/><b/><a/>`),
   the children cannot be keys without losing order; they are then given in order as
   `#content`: a list of strings and one-key objects `{name: value}`.
7. **Whitespace** between child elements is layout, not data, and is dropped (set
   `keep_whitespace: true` to keep it, which turns such elements into rule 6). Text of a
   leaf element is kept exactly, spaces included.
8. Comments and processing instructions are not data and are dropped. CDATA sections are
   text. Entities are refused before conversion (see `security.py`).

Rules 1-7 make the conversion reversible: `data_to_element` rebuilds an element that is
equal in every name, attribute, text and order (`tests/xml/test_convention.py` checks
the round trip with generated documents).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lxml import etree

from ..errors import InputLocation, StepError
from .where import element_path

_NONE: frozenset[str] = frozenset()
TEXT = "#text"
CONTENT = "#content"
ATTR = "@"
BUILTIN_NAMESPACES = {
    "xml": "http://www.w3.org/XML/1998/namespace",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}


class NameMap(dict[str, str]):
    """Clark-notation tag -> output name, filled lazily (a cache on the hot path)."""

    def __init__(self, namespaces: Mapping[str, str], strip: bool) -> None:
        super().__init__()
        merged = {**BUILTIN_NAMESPACES, **namespaces}
        self.by_uri = {uri: prefix for prefix, uri in merged.items()}
        self.strip = strip

    def __missing__(self, tag: str) -> str:
        if tag[:1] != "{":
            name = tag
        else:
            uri, local = tag[1:].split("}", 1)
            if self.strip:
                name = local
            elif uri in self.by_uri:
                prefix = self.by_uri[uri]
                name = f"{prefix}:{local}" if prefix else local
            else:
                name = tag
        self[tag] = name
        return name


class Converter:
    """Element -> data under the rules above; built once per step, reused per message."""

    def __init__(
        self,
        namespaces: Mapping[str, str] | None = None,
        *,
        strip_namespaces: bool = False,
        lists: Iterable[str] = (),
        keep_whitespace: bool = False,
        max_depth: int = 256,
        max_attribute: int = 1_000_000,
        repeating: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.names = NameMap(namespaces or {}, strip_namespaces)
        self.attr_names = NameMap(namespaces or {}, strip_namespaces)
        self.lists = frozenset(lists)
        self.repeating = dict(repeating or {})  # parent tag -> child tags that may repeat (XSD)
        self.keep_whitespace = keep_whitespace
        self.max_depth = max_depth
        self.max_attribute = max_attribute

    def document(self, root: Any) -> dict[str, Any]:
        return {self.names[root.tag]: self.value(root, 1)}

    def _blank(self, text: str | None) -> bool:
        return not text or (not self.keep_whitespace and text.isspace())

    def value(self, element: Any, depth: int) -> Any:
        # The hot path of xml.parse: one pass per element, leaf elements first.
        if depth > self.max_depth:
            raise StepError(
                f"elements are nested more than {self.max_depth} levels deep (option max_depth)",
                where=InputLocation(element.sourceline, path=element_path(element)),
            )
        items = element.items()
        result: dict[str, Any] | None = self._attributes(element, items) if items else None
        if not len(element):
            text = element.text or ""
            if result is None:
                return text
            if text:
                result[TEXT] = text
            return result
        keep = self.keep_whitespace
        text = element.text
        mixed = bool(text) and (keep or not text.isspace())
        children: list[Any] = []
        leaf_text = text or ""
        for child in element:
            tail = child.tail
            if isinstance(child.tag, str):
                children.append(child)
            elif tail:
                leaf_text += tail  # text after a comment or PI
            if tail and (keep or not tail.isspace()):
                mixed = True
        if not children:  # comments or PIs only: the text around them is the text
            if result is None:
                return leaf_text
            if leaf_text:
                result[TEXT] = leaf_text
            return result
        if result is None:
            result = {}
        names = self.names
        named = [(names[child.tag], child) for child in children]
        if not mixed and len(named) > 2:
            seen: set[str] = set()
            last = None
            for name, _child in named:
                if name != last:
                    if name in seen:
                        mixed = True  # interleaved: only an ordered list keeps the order
                        break
                    seen.add(name)
                    last = name
        if mixed:
            return self._ordered(element, result, depth)
        lists = self.lists
        may_repeat = self.repeating.get(element.tag, _NONE)
        repeated: set[str] = set()
        for name, child in named:
            val = self.value(child, depth + 1)
            if name in repeated:
                result[name].append(val)
            elif name in result:
                result[name] = [result[name], val]
                repeated.add(name)
            elif name in lists or child.tag in may_repeat:
                result[name] = [val]
                repeated.add(name)
            else:
                result[name] = val
        return result

    def _attributes(self, element: Any, items: list[tuple[str, str]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        attr_names = self.attr_names
        for key, val in items:
            if len(val) > self.max_attribute:
                raise StepError(
                    f"attribute {key} is {len(val):,} characters long, "
                    f"more than the limit of {self.max_attribute:,} (option max_attribute)",
                    where=InputLocation(element.sourceline, path=element_path(element)),
                )
            result[ATTR + attr_names[key]] = val
        return result

    def _ordered(self, element: Any, result: dict[str, Any], depth: int) -> dict[str, Any]:
        """Rule 6: the children and the text between them, in document order."""
        names = self.names
        content: list[Any] = []
        if not self._blank(element.text):
            content.append(element.text)
        for child in element:
            if isinstance(child.tag, str):
                content.append({names[child.tag]: self.value(child, depth + 1)})
            if not self._blank(child.tail):
                content.append(child.tail)
        result[CONTENT] = content
        return result


def data_to_element(data: Mapping[str, Any], namespaces: Mapping[str, str] | None = None) -> Any:
    """The inverse of `Converter.document`: rebuild the element from its data."""
    if len(data) != 1:
        raise ValueError("a document is an object with exactly one key, the root element's name")
    ((name, value),) = data.items()
    resolver = _QNames(namespaces or {})
    root = etree.Element(resolver.tag(name), nsmap=resolver.nsmap())
    _fill(root, value, resolver)
    return root


class _QNames:
    def __init__(self, namespaces: Mapping[str, str]) -> None:
        self.map = {**BUILTIN_NAMESPACES, **namespaces}

    def nsmap(self) -> dict[str | None, str]:
        return {(p or None): u for p, u in self.map.items() if p not in BUILTIN_NAMESPACES}

    def tag(self, name: str) -> str:
        if name.startswith("{"):
            return name
        if ":" in name:
            prefix, local = name.split(":", 1)
            return f"{{{self.map[prefix]}}}{local}"
        if "" in self.map:
            return f"{{{self.map['']}}}{name}"
        return name

    def attribute(self, name: str) -> str:
        if name.startswith("{") or ":" in name:
            return self.tag(name)
        return name  # unprefixed attributes are in no namespace


def _fill(element: Any, value: Any, names: _QNames) -> None:
    if isinstance(value, str):
        element.text = value or None
        return
    for key, item in value.items():
        if key.startswith(ATTR):
            element.set(names.attribute(key[1:]), item)
        elif key == TEXT:
            element.text = item
        elif key == CONTENT:
            last = None
            for part in item:
                if isinstance(part, str):
                    if last is None:
                        element.text = (element.text or "") + part
                    else:
                        last.tail = (last.tail or "") + part
                else:
                    ((child_name, child_value),) = part.items()
                    last = etree.SubElement(element, names.tag(child_name))
                    _fill(last, child_value, names)
        else:
            for each in item if isinstance(item, list) else [item]:
                child = etree.SubElement(element, names.tag(key))
                _fill(child, each, names)
