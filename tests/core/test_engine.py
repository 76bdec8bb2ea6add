"""The engine and the message: ids of derived messages, what children share and what
they own, and the step contract (bytes/data, when:, failures) through the faster loop."""

from __future__ import annotations

import re
from pathlib import Path

from flowyard.engine import Pipeline, RunResult
from flowyard.loader import load_flow
from flowyard.message import Message

from .conftest import FLOW

NESTED = "  - split: orders\n  - split: lines\n  - jmespath: '{n: n}'"
ORDERS = b'{"orders": [{"lines": [{"n": 1}, {"n": 2}]}, {"lines": [{"n": 3}]}, {"lines": []}]}'


def pipeline(tmp_path: Path, steps: str) -> Pipeline:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW.format(steps=steps), encoding="utf-8")
    return Pipeline(load_flow(path))


def run(tmp_path: Path, steps: str, payload: bytes, **fields: object) -> RunResult:
    return pipeline(tmp_path, steps).run(Message(payload, content_type="application/json", **fields))  # type: ignore[arg-type]


def test_a_new_message_has_a_random_id_and_is_its_own_correlation() -> None:
    a, b = Message(b"x"), Message(b"x")
    assert re.fullmatch(r"[0-9a-f]{32}", a.id) and a.id != b.id
    assert a.correlation_id == a.id
    assert Message(b"x", correlation_id="c").correlation_id == "c"


def test_children_of_nested_splits_are_numbered_within_the_family(tmp_path: Path) -> None:
    root = "f" * 32
    result = run(tmp_path, NESTED, ORDERS, id=root)
    assert [m.payload for m in result.outputs] == [{"n": 1}, {"n": 2}, {"n": 3}]
    ids = [m.id for m in result.outputs]
    assert len(set(ids)) == 3
    assert all(i.startswith(root + "-") for i in ids)
    assert {m.correlation_id for m in result.outputs} == {root}


def test_running_the_same_stored_message_again_gives_the_same_output_ids(tmp_path: Path) -> None:
    """A retry or a restart midway redoes the steps: the outputs keep their ids, so a
    target keying on message.id sees the same output again, not a new one."""
    flow = pipeline(tmp_path, NESTED)
    first = flow.run(Message(ORDERS, content_type="application/json", id="a" * 32))
    again = flow.run(Message(ORDERS, content_type="application/json", id="a" * 32))
    other = flow.run(Message(ORDERS, content_type="application/json", id="b" * 32))
    assert [m.id for m in first.outputs] == [m.id for m in again.outputs]
    assert not {m.id for m in first.outputs} & {m.id for m in other.outputs}


def test_child_ids_fit_the_store_column_even_for_a_long_upstream_id(tmp_path: Path) -> None:
    long_id = "upstream-" + "9" * 55  # 64 characters, as a source may take from a broker
    result = run(tmp_path, NESTED, ORDERS, id=long_id)
    ids = [m.id for m in result.outputs]
    assert len(set(ids)) == 3 and all(len(i) <= 64 for i in ids)
    assert {m.correlation_id for m in result.outputs} == {long_id}


def test_a_child_shares_the_source_and_owns_its_headers() -> None:
    parent = Message(b"x", source={"file": "in/a.json"}, headers={"labels": {"plant": "MX01"}})
    first = parent.child({"n": 1}, "application/json", split_index=0)
    second = parent.child({"n": 2}, split_index=1)
    assert first.source == {"file": "in/a.json"} and first.source is parent.source
    assert second.content_type == parent.content_type and first.content_type == "application/json"
    first.headers["mine"] = True
    assert "mine" not in second.headers and "mine" not in parent.headers
    assert second.headers == {"labels": {"plant": "MX01"}, "split_index": 1}
    assert first.id != second.id != parent.id
    grandchild = first.child({"n": 3})
    assert grandchild.id not in {parent.id, first.id, second.id}
    assert grandchild.correlation_id == parent.correlation_id


def test_metadata_is_what_templates_see() -> None:
    message = Message(b"x", content_type="text/plain", flow="f", flow_version="v1", source={"k": 1}, headers={"h": 2})
    assert message.metadata() == {
        "id": message.id, "correlation_id": message.id, "flow": "f", "flow_version": "v1",
        "source": {"k": 1}, "content_type": "text/plain", "attempt": 1, "headers": {"h": 2},
    }


def test_when_on_rendered_bytes_sees_the_data_before_the_render(tmp_path: Path) -> None:
    steps = (
        "  - jinja: {template: '{\"b\": {{ a }}}', content_type: application/json}\n"
        "  - json.parse: {}\n    when: 'a == `1`'"
    )
    kept = run(tmp_path, steps, b'{"a": 1}').outputs
    skipped = run(tmp_path, steps, b'{"a": 2}').outputs
    assert [m.payload for m in kept] == [{"b": 1}] and [m.payload for m in skipped] == [b'{"b": 2}']


def test_a_step_failing_names_itself_and_keeps_its_input(tmp_path: Path) -> None:
    result = run(tmp_path, "  - jmespath: '{n: n}'\n  - jmespath: 'to_int(n)'", b'{"n": "x"}')
    assert not result.outputs and len(result.failures) == 1
    failure = result.failures[0]
    assert failure.error.step_index == 1 and "'x' is not a number" in str(failure.error)
    assert failure.message.payload == {"n": "x"}


def test_filter_after_a_split_counts_what_it_drops(tmp_path: Path) -> None:
    result = run(tmp_path, "  - split: '@'\n  - filter: 'qty > `1`'", b'[{"qty": 1}, {"qty": 2}, {"qty": 3}]')
    assert [m.payload for m in result.outputs] == [{"qty": 2}, {"qty": 3}] and result.dropped == 1
