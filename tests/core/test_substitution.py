"""The fast path for templates of plain substitutions gives what Jinja gives, or steps
aside: every case below is rendered both ways and compared."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError

from flowyard.sandbox import TextTemplate, make_environment, substitution

DATA: dict[str, Any] = {
    "id": 7, "qty": 2.5, "whole": 3.0, "ok": True, "nothing": None, "item": "ÄB-€ <x> \"q\"",
    "nested": {"deep": {"code": "MX01"}, "list": [1, 2]}, "items": "shadowed key",
    "empty": "",
}

TEMPLATES = [
    '{"order": {{ id }}, "qty": {{ qty }}, "item": "{{ item }}"}\n',
    "{{ data.id }}.json",
    "{{ nested.deep.code }}/{{ data.nested.deep.code }}-{{ whole }}-{{ ok }}",
    "  {{ id }}  \n\n",
    "{{ empty }}",
    "plain text only",
    "{{ nothing }}",  # None: Jinja writes "None"; the fast path steps aside
    "{{ nested }}",  # a dict: steps aside
    "{{ nested.list }}",
    "{{ missing }}",  # undefined: Jinja decides
    "{{ nested.missing }}",
    "{{ data.items }}",  # the dict method in Jinja, not the key: no fast path
    "{{ range }}",  # a global, not a variable
    "{{ id | string }}",  # filters, expressions, statements: not substitutions
    "{{ id + 1 }}",
    "{% if ok %}yes{% endif %}",
]


def variables() -> dict[str, Any]:
    return {**DATA, "data": DATA, "message": {"id": "m1"}}


@pytest.mark.parametrize("source", TEMPLATES)
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_the_fast_path_renders_what_jinja_renders(source: str, strict: bool) -> None:
    env = make_environment(autoescape=False, strict=strict)
    try:
        expected: str | None = env.from_string(source).render(variables())
    except UndefinedError:
        expected = None  # Jinja refuses: the fast path must not answer either
    fast = substitution(env, source)
    answer = fast(variables()) if fast is not None else None
    if answer is not None:
        assert answer == expected
    plain = not any(mark in source for mark in ("|", "+", "{%", ".items"))
    assert (fast is not None) == plain, "every plain substitution gets a fast path"


def test_what_the_fast_path_answers() -> None:
    """Not only stepping aside: it answers the common cases itself."""
    env = make_environment(autoescape=False)
    answered = [s for s in TEMPLATES
                if (f := substitution(env, s)) is not None and f(variables()) is not None]
    assert answered == TEMPLATES[:6]


def test_no_fast_path_where_values_are_escaped() -> None:
    assert substitution(make_environment(autoescape=True), "{{ item }}") is None


def test_the_output_limit_holds_on_the_fast_path_too() -> None:
    env = make_environment(autoescape=False, max_output=10)
    fast = substitution(env, "{{ item }}{{ item }}")
    assert fast is not None and fast({"item": "12345678"}) is None  # Jinja's path reports it


def test_a_connector_template_renders_keywords_like_jinja() -> None:
    template = TextTemplate("{{ data.id }}{{ ext }}")
    assert template.render(data={"id": 5}, ext=".json") == "5.json"
    assert template.render({"data": {"id": [1]}, "ext": ""}) == "[1]"  # through Jinja
