"""A JMESPath syntax tree turned into nested Python closures, evaluated without the
library's tree walk.

`jmespath.search` builds a new interpreter per call and dispatches every node through
`visit` (a method lookup and a dict access per node). `filter`, `when:` and `jmespath`
steps evaluate the same small expression once per message, and for a document split
into hundreds of thousands of records that walk cost more than the rest of the engine.
Each node here becomes one closure doing exactly what the interpreter's `visit_<type>`
method does (same helpers, same order, same results and errors); a node type not listed
is handed to the interpreter itself, so every expression still evaluates, only the
common shapes faster. tests/core/test_jmespath_closures.py compares both on many
expressions and generated data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmespath import visitor

Evaluate = Callable[[Any], Any]

_is_comparable = visitor._is_comparable
_is_actual_number = visitor._is_actual_number
_equals = visitor._equals
_PLAIN = (int, float, str)  # comparable without the slower checks (bool is not among them)


def _comparable(x: Any) -> bool:
    return type(x) in _PLAIN or _is_comparable(x)


def _is_false(value: Any) -> bool:
    # the interpreter's test, kept as written: equality, not Python truth
    return value == "" or value == [] or value == {} or value is None or value is False


def compile_tree(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    """A function of the current value giving what `interpreter.visit(node, value)` gives."""
    make = _BUILDERS.get(node["type"])
    if make is None:
        return lambda value: interpreter.visit(node, value)
    return make(node, interpreter)


def _children(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> list[Evaluate]:
    return [compile_tree(child, interpreter) for child in node["children"]]


def _field(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    key = node["value"]

    def field(value: Any) -> Any:
        try:
            return value.get(key)
        except AttributeError:
            return None

    return field


def _chain(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    steps = _children(node, interpreter)
    if len(steps) == 2:
        first, second = steps
        return lambda value: second(first(value))

    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return chain


def _literal(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    constant = node["value"]
    return lambda value: constant


def _current(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    return lambda value: value


def _comparator(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    left, right = _children(node, interpreter)
    op = node["value"]
    if op == "eq":
        return lambda value: _equals(left(value), right(value))
    if op == "ne":
        return lambda value: not _equals(left(value), right(value))
    compare = visitor.TreeInterpreter.COMPARATOR_FUNC[op]

    def ordering(value: Any) -> Any:
        a = left(value)
        b = right(value)
        if not (_comparable(a) and _comparable(b)):
            return None
        return compare(a, b)

    return ordering


def _and(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    left, right = _children(node, interpreter)

    def both(value: Any) -> Any:
        matched = left(value)
        if _is_false(matched):
            return matched
        return right(value)

    return both


def _or(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    left, right = _children(node, interpreter)

    def either(value: Any) -> Any:
        matched = left(value)
        if _is_false(matched):
            matched = right(value)
        return matched

    return either


def _not(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    (inner,) = _children(node, interpreter)

    def negate(value: Any) -> Any:
        result = inner(value)
        if _is_actual_number(result) and result == 0:
            return False
        return not result

    return negate


def _function(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    arguments = _children(node, interpreter)
    name = node["value"]
    call = interpreter._functions.call_function
    return lambda value: call(name, [argument(value) for argument in arguments])


def _select_dict(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    pairs = [(child["value"], compile_tree(child["children"][0], interpreter)) for child in node["children"]]
    make_dict = interpreter._dict_cls

    def select(value: Any) -> Any:
        if value is None:
            return None
        collected = make_dict()
        for key, evaluate in pairs:
            collected[key] = evaluate(value)
        return collected

    return select


def _select_list(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    items = _children(node, interpreter)

    def select(value: Any) -> Any:
        if value is None:
            return None
        return [item(value) for item in items]

    return select


def _projection(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    base, each = _children(node, interpreter)

    def project(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        collected = []
        for element in items:
            current = each(element)
            if current is not None:
                collected.append(current)
        return collected

    return project


def _filter_projection(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    base, each, condition = _children(node, interpreter)

    def project(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        collected = []
        for element in items:
            if not _is_false(condition(element)):
                current = each(element)
                if current is not None:
                    collected.append(current)
        return collected

    return project


def _flatten(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    (base,) = _children(node, interpreter)

    def flatten(value: Any) -> Any:
        items = base(value)
        if not isinstance(items, list):
            return None
        merged: list[Any] = []
        for element in items:
            if isinstance(element, list):
                merged.extend(element)
            else:
                merged.append(element)
        return merged

    return flatten


def _index(node: dict[str, Any], interpreter: visitor.TreeInterpreter) -> Evaluate:
    position = node["value"]

    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[position]
        except IndexError:
            return None

    return index


_BUILDERS: dict[str, Callable[[dict[str, Any], visitor.TreeInterpreter], Evaluate]] = {
    "field": _field,
    "subexpression": _chain,
    "index_expression": _chain,
    "pipe": _chain,
    "literal": _literal,
    "current": _current,
    "identity": _current,
    "comparator": _comparator,
    "and_expression": _and,
    "or_expression": _or,
    "not_expression": _not,
    "function_expression": _function,
    "multi_select_dict": _select_dict,
    "multi_select_list": _select_list,
    "projection": _projection,
    "filter_projection": _filter_projection,
    "flatten": _flatten,
    "index": _index,
}
