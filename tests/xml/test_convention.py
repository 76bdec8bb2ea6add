"""The xml.parse convention: the documented examples, and a round trip on generated
documents proving nothing is lost (names, namespaces, attributes, text, order)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from flowyard.xml.convention import Converter, data_to_element

ACME = "urn:acme"


def parse(xml: bytes, **options: Any) -> Any:
    return Converter(**options).document(etree.fromstring(xml))


def test_docstring_example() -> None:
    doc = b"""<order id="7" xmlns="urn:acme">
      <line n="1"><qty uom="EA">5</qty></line>
      <line n="2"><qty uom="KG">2.5</qty></line>
      <note>rush <b>today</b>!</note>
    </order>"""
    assert parse(doc, namespaces={"": ACME}) == {
        "order": {
            "@id": "7",
            "line": [
                {"@n": "1", "qty": {"@uom": "EA", "#text": "5"}},
                {"@n": "2", "qty": {"@uom": "KG", "#text": "2.5"}},
            ],
            "note": {"#content": ["rush ", {"b": "today"}, "!"]},
        }
    }


def test_prefixes_come_from_the_flow_not_the_document() -> None:
    a = b'<x:r xmlns:x="urn:acme" xmlns:y="urn:other"><y:id>1</y:id></x:r>'
    b = b'<Harry:r xmlns:Harry="urn:acme" xmlns="urn:other"><id>1</id></Harry:r>'
    options = {"namespaces": {"a": ACME, "o": "urn:other"}}
    assert parse(a, **options) == parse(b, **options) == {"a:r": {"o:id": "1"}}


def test_unmapped_namespace_is_kept_in_full_and_strip_drops_it() -> None:
    doc = b'<r xmlns="urn:acme" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="T"><v>1</v></r>'
    assert parse(doc) == {"{urn:acme}r": {"@xsi:type": "T", "{urn:acme}v": "1"}}
    assert parse(doc, strip_namespaces=True) == {"r": {"@type": "T", "v": "1"}}


def test_lists_option_makes_a_single_element_a_list() -> None:
    doc = b"<r><item>a</item><other>b</other></r>"
    assert parse(doc) == {"r": {"item": "a", "other": "b"}}
    assert parse(doc, lists=["item"]) == {"r": {"item": ["a"], "other": "b"}}


def test_interleaved_siblings_keep_their_order() -> None:
    assert parse(b"<r><a>1</a><b>2</b><a>3</a></r>") == {"r": {"#content": [{"a": "1"}, {"b": "2"}, {"a": "3"}]}}


def test_leaf_text_is_kept_exactly_and_empty_is_an_empty_string() -> None:
    assert parse(b"<r><a>  padded </a><b/><c x='1'/></r>") == {"r": {"a": "  padded ", "b": "", "c": {"@x": "1"}}}


def test_comments_and_processing_instructions_are_dropped_cdata_is_text() -> None:
    assert parse(b"<r><!-- c --><a>x<!-- c -->y</a><?pi data?><b><![CDATA[<raw>]]></b></r>") == {
        "r": {"a": "xy", "b": "<raw>"}
    }


# -- round trip ---------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "item", "x:code", "y:val"])
ATTRS = st.sampled_from(["id", "x:unit", "xml:lang"])
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8).filter(
    lambda t: not t.isspace()
)
NS = {"x": "urn:x", "y": "urn:y", "": ACME}


@st.composite
def elements(draw: Any, depth: int = 0) -> Any:
    name = draw(NAMES)
    element = etree.Element(_clark(name))
    for attr in draw(st.lists(ATTRS, max_size=2, unique=True)):
        element.set(_clark_attr(attr), draw(TEXT))
    if depth < 3 and draw(st.booleans()):
        element.text = draw(st.one_of(st.none(), TEXT))
        for _ in range(draw(st.integers(0, 3))):
            child = draw(elements(depth + 1))
            child.tail = draw(st.one_of(st.none(), TEXT))
            element.append(child)
    else:
        element.text = draw(st.one_of(st.none(), TEXT))
    return element


def _clark(name: str) -> str:
    if ":" in name:
        prefix, local = name.split(":")
        return f"{{{NS[prefix]}}}{local}"
    return f"{{{ACME}}}{name}"


def _clark_attr(name: str) -> str:
    if name == "xml:lang":
        return "{http://www.w3.org/XML/1998/namespace}lang"
    return _clark(name) if ":" in name else name


def canonical(element: Any) -> Any:
    """Names (in Clark notation), attributes, text and order; prefixes are not data and
    whitespace-only text between elements is layout (rule 7)."""

    def text(value: str | None, between_elements: bool) -> str:
        if value is None or (between_elements and value.isspace()):
            return ""
        return value

    return (
        element.tag,
        sorted(element.attrib.items()),
        text(element.text, len(element) > 0),
        [(canonical(child), text(child.tail, True)) for child in element],
    )


@settings(max_examples=300, deadline=None)
@given(elements())
def test_round_trip_is_lossless(element: Any) -> None:
    converter = Converter(NS)
    data = converter.document(element)
    rebuilt = data_to_element(data, NS)
    assert canonical(rebuilt) == canonical(element)
    assert converter.document(rebuilt) == data
