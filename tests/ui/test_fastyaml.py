"""The UI's fast parse gives what the round trip gives: the same document with the same
positions, the same loaded flow, the same problems at the same lines, the same preview.

Compared on every flow and definition file in flows/ and examples/, on edge cases of
YAML, and on broken variants of real flows (each line removed, each value emptied).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from flowyard.definitions.kinds import kind_for
from flowyard.errors import DefinitionError
from flowyard.loader import FlowLoader
from flowyard.loader import load_flow as core_load_flow
from flowyard.onboarding.render import select_flow
from flowyard.yamlio import YamlSyntaxError, load_text
from flowyard_ui import fastyaml, playground

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(p for folder in ("flows", "examples") for p in (ROOT / folder).rglob("*.y*ml"))
FLOWS = [p for p in FILES if p.read_text(encoding="utf-8").count("\nkind: Flow") or p.read_text(encoding="utf-8").startswith("kind: Flow")]


@pytest.fixture
def round_trip_only() -> Iterator[None]:
    fastyaml.ENABLED = False
    try:
        yield
    finally:
        fastyaml.ENABLED = True


def _lc(node: Any, getter: str, key: Any) -> Any:
    try:
        return getattr(node.lc, getter)(key)
    except (KeyError, IndexError, TypeError):
        return None  # merged keys have no position of their own, in either parse


def same_document(slow: Any, fast: Any, path: str = "$") -> None:
    assert type(slow) is type(fast), path
    if isinstance(slow, CommentedMap):
        assert list(slow) == list(fast), path
        assert (slow.lc.line, slow.lc.col) == (fast.lc.line, fast.lc.col), path
        for key in slow:
            assert _lc(slow, "key", key) == _lc(fast, "key", key), f"{path}.{key} (key)"
            assert _lc(slow, "value", key) == _lc(fast, "value", key), f"{path}.{key} (value)"
            same_document(slow[key], fast[key], f"{path}.{key}")
    elif isinstance(slow, CommentedSeq):
        assert len(slow) == len(fast), path
        assert (slow.lc.line, slow.lc.col) == (fast.lc.line, fast.lc.col), path
        for index in range(len(slow)):
            assert _lc(slow, "item", index) == _lc(fast, "item", index), f"{path}[{index}]"
            same_document(slow[index], fast[index], f"{path}[{index}]")
    else:
        assert repr(slow) == repr(fast), path
        assert getattr(slow, "style", None) == getattr(fast, "style", None), path


def test_the_fast_parse_is_used_for_every_file_here() -> None:
    assert len(FILES) >= 25 and len(FLOWS) >= 12
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        fast = fastyaml.load(text)
        assert fast is not None, f"{path} fell back to the round trip"
        same_document(load_text(text, str(path)), fast)


EDGE_CASES = {
    "anchors, merges, scalars": """\
a: &x {b: 1, c: [1, 2, "three"], d: 'single', e: "dq \\u00e9 \\n"}
f: *x
g:
  <<: *x
  b: 2
h: |
  literal
    indented
i: >-
  folded
  text
j: 0x1F
k: 1.50
l: 2024-01-02
m: 2024-01-02T03:04:05Z
n: yes
o: ~
q: true
r: -.inf
s: 0o17
t: 017
u: 1_000
v: "multi
  line dq"
w: plain
  multi line
x: |+
  keep

y: [a, {b: c}, [d]]
"ünïcödé ✓ 🚀": {k: 🚀, k2: v}
after: unicode
""",
    "empty values before a key, a dedent and the end": "a:\nb:\n  c:\nd:\n  - e:\n  -\n  - f\ng:",
    "empty value at the end with a newline": "a: 1\nb:\n",
    "empty values in a list of steps": "steps:\n  - json.parse:\n  - name: x\n    jmespath:\n\n\ntargets:\n- file:\n",
    "unicode before an empty value": "é: ✓✓✓\nempty:\n  ünï:\nnext: 1\n",
    "document markers": "---\na: 1\nb:\n...\n",
}

FALLBACKS = {
    "comment after an empty value": "a:   # note\nb: 1\n",
    "comment line after an empty value": "a:\n# note\nb: 1\n",
    "an explicit tag": "a: !!str 1\n",
    "a directive": "%YAML 1.1\n---\na: yes\n",
    "a syntax error": "a: [1, 2\nb: 3\n",
    "a duplicate key": "a: 1\na: 2\n",
    "a tab": "a:\tb\n",
    "a carriage return": "a: 1\r\nb:\r\nc: 2\r\n",
    "a unicode line separator": "a: 'x\u2028y'\nb:\nc: 2\n",
    "a byte-order mark": "\ufeffa: 1\nb:\n",
    "empty flow entries": "a: {b: , c}\n",
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_parse_the_same(name: str) -> None:
    text = EDGE_CASES[name]
    fast = fastyaml.load(text)
    assert fast is not None, "the fast parse declined"
    same_document(load_text(text, "edge.yaml"), fast)


@pytest.mark.parametrize("name", sorted(FALLBACKS))
def test_uncertain_text_is_left_to_the_round_trip(name: str) -> None:
    text = FALLBACKS[name]
    assert fastyaml.load(text) is None
    if name in ("a syntax error", "a duplicate key"):
        with pytest.raises(YamlSyntaxError):
            load_text(text, "edge.yaml")


def _summary(flow: Any) -> Any:
    def options(spec: Any) -> Any:
        return spec.options.model_dump(mode="json") if spec.options is not None else None

    return {
        "name": flow.name,
        "version": flow.version,
        "metadata": flow.metadata.model_dump(mode="json"),
        "source": (flow.source.kind, str(flow.source.position), options(flow.source)),
        "steps": [(s.kind, s.name, s.when, str(s.position), s.index, type(s.step).__name__, options(s)) for s in flow.steps],
        "targets": [(t.kind, t.name, t.when, str(t.position), t.retry.model_dump(mode="json"), options(t)) for t in flow.targets],
        "tests": [t.model_dump(mode="json") for t in flow.tests],
        "keys": flow.keys,
        "sla": flow.sla,
    }


def _load_both(path: Path, text: str) -> tuple[Any, Any]:
    results = []
    for load in (core_load_flow, fastyaml.load_flow):
        try:
            results.append(_summary(load(path, text)))
        except DefinitionError as exc:
            results.append([(str(i.position), i.message, i.severity) for i in exc.issues])
    return results[0], results[1]


def _flow_texts() -> Iterator[tuple[Path, str, str]]:
    """Each example flow's text; a file standing for several flows (an instance of a
    template giving several) once per flow, as its deployments hold it."""
    for path in FLOWS:
        text = path.read_text(encoding="utf-8")
        kind = kind_for(path, str(load_text(text, str(path)).get("kind")))
        flows = kind.flows(path, text) if kind is not None else []
        if len(flows) > 1:
            for flow in flows:
                yield path, select_flow(text, flow.name), flow.name
        else:
            yield path, text, ""


@pytest.mark.parametrize(("path", "text", "name"), list(_flow_texts()),
                         ids=lambda v: v.relative_to(ROOT).as_posix() if isinstance(v, Path) else v if len(v) < 60 else "")
def test_example_flows_load_the_same(path: Path, text: str, name: str) -> None:
    slow, fast = _load_both(path, text)
    assert isinstance(slow, dict), f"{path} {name} does not load: {slow}"
    assert fast == slow


def _issues(loader_class: type[FlowLoader], path: Path, text: str) -> list[tuple[Any, ...]]:
    loader = loader_class(path, text)
    loader.load()
    return [(i.position.line, i.position.column, i.message, i.severity) for i in loader.issues.issues]


def _variants(text: str) -> Iterator[str]:
    lines = text.split("\n")
    for index, line in enumerate(lines):
        yield "\n".join(lines[:index] + lines[index + 1 :])  # a line removed
        if ":" in line and not line.rstrip().endswith(":"):
            key = line.split(":", 1)[0]
            yield "\n".join([*lines[:index], key + ":", *lines[index + 1 :]])  # its value emptied
        if line.strip():
            yield "\n".join([*lines[:index], line + "x", *lines[index + 1 :]])  # a typo at its end


BROKEN_FROM = [ROOT / "flows" / "mx01-erp-production-orders.yaml", ROOT / "flows" / "mx01-supplierx-asn.yaml",
               ROOT / "examples" / "connectors" / "line-counts-mqtt-to-sql.yaml"]


@pytest.mark.parametrize("path", BROKEN_FROM, ids=lambda p: p.name)
def test_broken_variants_report_the_same_problems_at_the_same_places(path: Path) -> None:
    compared = with_problems = parsed_fast = 0
    for text in _variants(path.read_text(encoding="utf-8")):
        slow = _issues(FlowLoader, path, text)
        fast = _issues(fastyaml.FastFlowLoader, path, text)
        assert fast == slow, text
        compared += 1
        with_problems += bool(slow)
        parsed_fast += fastyaml.load(text) is not None
    assert compared > 50 and with_problems > 20 and parsed_fast > compared / 2


def _preview_of(path: Path, text: str, sample: bytes, name: str) -> Any:
    preview = playground.run(path, text, sample, name)
    return {
        "issues": [(str(i.position), i.message) for i in preview.issues],
        "error": preview.error,
        "failures": preview.failures,
        "input": preview.input and (preview.input.status, preview.input.text, preview.input.content_type),
        "lanes": [(lane.index, lane.name, lane.kind, lane.line, [(e.status, e.text, e.content_type, e.error) for e in lane.entries]) for lane in preview.lanes],
        "outputs": [(o.text, o.content_type, o.targets) for o in preview.outputs],
        "dropped": preview.dropped,
    }


def _cases() -> Iterator[tuple[Path, Path]]:
    for path in FLOWS:
        try:
            flow = core_load_flow(path)
        except DefinitionError:
            continue
        for case in flow.tests:
            yield path, path.parent / case.input


@pytest.mark.parametrize("path,sample", list(_cases()), ids=lambda v: v.name)
def test_previews_of_the_example_flows_are_the_same(path: Path, sample: Path) -> None:
    text = path.read_text(encoding="utf-8")
    data = sample.read_bytes()
    fast = _preview_of(path, text, data, sample.name)
    playground.clear_cache()
    fastyaml.ENABLED = False
    try:
        slow = _preview_of(path, text, data, sample.name)
    finally:
        fastyaml.ENABLED = True
        playground.clear_cache()
    assert fast["lanes"] and fast["input"], json.dumps(fast, default=str)[:500]
    for key in ("lanes", "outputs", "failures"):  # a generated X12 control number differs per run
        fast[key] = _without_control_numbers(fast[key])
        slow[key] = _without_control_numbers(slow[key])
    assert fast == slow


def _without_control_numbers(value: Any) -> Any:
    return value


# -- generated documents, and the same text with one character removed ------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from flowyard.yamlio import dump_text  # noqa: E402

_keys = st.text(alphabet="abcxyz_-. é:#", min_size=1, max_size=6)
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet="ab :#-|>'\"\n{}[],&*!%@`é✓🚀", max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.dictionaries(_keys, _values, min_size=1, max_size=5), cut=st.integers(min_value=0))
def test_generated_text_parses_the_same_or_is_left_to_the_round_trip(document: dict[str, Any], cut: int) -> None:
    text = dump_text(document)
    broken = text[: cut % len(text)] + text[cut % len(text) + 1 :]
    for candidate in (text, broken, text.replace(": null", ":").replace(": ''", ":")):
        try:
            slow = load_text(candidate, "generated.yaml")
        except YamlSyntaxError:
            assert fastyaml.load(candidate) is None, candidate  # never accept what the round trip refuses
            continue
        fast = fastyaml.load(candidate)
        if fast is not None:
            same_document(slow, fast)
