"""Expressions evaluated as closures give exactly what the JMESPath interpreter gives:
same value (and type: 1 is not True), or the same error."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowyard.expressions import FlowFunctions, compile_expression

KEYS = ["a", "b", "c", "foo", "bar"]

EXPRESSIONS = [
    "a",
    "a.b.c",
    "foo.bar",
    "a[0]",
    "a[-1]",
    "a[1].b",
    "a[*]",
    "a[*].b",
    "a[].b",
    "a[][]",
    "a[*][*]",
    "a[0:2]",
    "a[::-1]",
    "a[1:].b",
    "*.b",
    "a.*",
    "a.* | [0]",
    "a | b",
    "a || b",
    "a && b",
    "!a",
    "!(a == b)",
    "a == b",
    "a != b",
    "a > b",
    "a >= `1`",
    "a < `2.5`",
    "a <= 'x'",
    "a == `0`",
    "a == `false`",
    "a == `1`",
    "a == `true`",
    "a == `[]`",
    "a == `{}`",
    "a == null",
    "a[?b > `1`]",
    "a[?b == 'x'].c",
    "a[?!b]",
    "a[?b && c]",
    "a[?b || c].foo",
    "{x: a, y: b.c, z: `3`}",
    "[a, b, c]",
    "a[*].{x: b, y: c}",
    "a[].[b, c]",
    "@",
    "@.a",
    "`\"lit\"`",
    "'raw'",
    "length(a)",
    "keys(@)",
    "values(@)",
    "type(a)",
    "to_number(a)",
    "to_string(a)",
    "sort_by(a, &b)",
    "max_by(a, &b)",
    "map(&b, a)",
    "sum(a)",
    "contains(a, 'x')",
    "starts_with(a, 'f')",
    "not_null(a, b, c)",
    "join(',', a)",
    "merge(a, b)",
    "upper(a)",
    "concat(a, '-', b)",
    "pad_left(a, `4`, '0')",
    "coalesce(a, b, 'none')",
    "default(a, 'EA')",
    "to_decimal(a, `1`)",
    "a.b > `390`",
    "foo[?bar > `1`] | length(@)",
    "a[*].b | [?@ != null]",
    "a.b[0].c || 'none'",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from(["", "x", "foo", "1", "2.5"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5)


def interpreted(source: str, data: Any) -> tuple[str, Any]:
    options = jmespath.Options(custom_functions=FlowFunctions())
    try:
        return "value", jmespath.compile(source).search(data, options=options)
    except Exception as exc:  # the error itself is what is compared
        return type(exc).__name__, str(exc)


def closures(source: str, data: Any) -> tuple[str, Any]:
    expression = compile_expression(source)
    try:
        return "value", expression.search(data)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    """Equal with types: JSON-wise True == 1 would hide a difference."""
    return repr(a) == repr(b)


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_fixed_documents(source: str) -> None:
    cases: list[Any] = [
        None,
        {},
        {"a": [{"b": 2, "c": "x"}, {"b": 0, "c": None}, {"b": "x"}], "b": 1},
        {"a": {"b": {"c": [1, 2]}}, "b": {"c": False}, "foo": [{"bar": 2}, {"bar": 1}]},
        {"a": 0, "b": False},
        {"a": 1, "b": True},
        {"a": "foo", "b": "bar", "c": "baz"},
        {"a": [[1, 2], [3, [4]]], "b": [5]},
        {"a": [3, 1, 2]},
        {"a": 2.5, "b": 2},
    ]
    for data in cases:
        assert same(closures(source, data), interpreted(source, data)), (source, data)


@settings(max_examples=150, deadline=None)
@given(documents)
def test_generated_documents(data: dict[str, Any]) -> None:
    for source in EXPRESSIONS:
        assert same(closures(source, data), interpreted(source, data)), (source, data)


def test_results_are_fresh_objects() -> None:
    """A projection's list is built per call: one message's result is not another's."""
    expression = compile_expression("a[*].b")
    first = expression.search({"a": [{"b": 1}]})
    first.append(99)
    assert expression.search({"a": [{"b": 1}]}) == [1]
