"""The playground marks what each step changed (issue 21 item 4): the fields a step
added, changed or removed against its input, and its output's lines marked."""

from __future__ import annotations

import json
from pathlib import Path

from flowyard_ui import playground

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {name: changes}
source:
  file: {path: inbox, pattern: "*.json"}
steps:
  - name: map
    jmespath: "{order: po, qty: to_number(qty), lines: lines, plant: 'MX01'}"
  - name: same again
    jmespath: "@"
  - json.render: {}
targets:
  - file: {path: outbox}
"""
SAMPLE = {"po": "PO-1", "qty": "12", "lines": [{"item": "A"}], "note": "dropped"}


def test_each_lane_says_what_its_step_added_changed_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "changes.yaml"
    path.write_text(FLOW)
    preview = playground.run(path, FLOW, json.dumps(SAMPLE).encode(), "s.json")
    assert preview.ok, preview.failures or preview.issues or preview.error
    mapped, same, rendered = preview.lanes
    entry = mapped.entries[0]
    assert entry.changes == [
        ("added", "order"),
        ("changed", "qty"),
        ("added", "plant"),
        ("removed", "po"),
        ("removed", "note"),
    ]
    marked = {text.strip().rstrip(","): mark for text, mark in entry.lines or []}
    assert marked['"order": "PO-1"'] == "added" and marked['"qty": 12'] == "changed"
    assert marked['"item": "A"'] == "" and marked['"plant": "MX01"'] == "added"
    # the lines are exactly the text the lane showed before
    assert "\n".join(text for text, _ in entry.lines or []) == entry.text
    assert same.entries[0].changes == [] and same.entries[0].lines is not None  # nothing changed
    assert rendered.entries[0].changes == []  # rendered JSON text: the same fields


def test_a_list_element_changed_is_marked_at_its_place() -> None:
    before = {"lines": [{"qty": "1"}, {"qty": "2"}]}
    after = {"lines": [{"qty": "1"}, {"qty": 2}]}
    assert playground.diff_data(before, after) == [("changed", ("lines", 1, "qty"))]
    assert playground.diff_data([1], [1, 2]) == [("changed", ())]
