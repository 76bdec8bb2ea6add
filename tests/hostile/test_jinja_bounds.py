"""Hostile templates (issue 17): loops that write nothing, and widths of gigabytes, end
within the step's time limit (plus slack) with a clear error instead of hanging the
worker or filling its memory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flowyard.engine import Pipeline
from flowyard.loader import load_flow
from flowyard.message import Message

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {{name: hostile}}
source:
  file: {{path: in}}
steps:
  - json.parse: {{}}
  - jinja:
      template: {template}
      time_limit: 1
targets:
  - file: {{path: out}}
"""


def render(tmp_path: Path, template: str, payload: bytes = b'{"items": []}') -> tuple[str, float]:
    """The error a template ends with, and how long it took."""
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW.format(template=repr(template)), encoding="utf-8")
    flow = load_flow(path)
    started = time.monotonic()
    result = Pipeline(flow).run(Message(payload=payload, content_type="application/json"))
    elapsed = time.monotonic() - started
    assert not result.outputs, "the template should not have rendered"
    return str(result.failures[0].error), elapsed


@pytest.mark.parametrize("template, payload", [
    ('{% for a in "a"|center(8000) %}{% for b in "b"|center(8000) %}{% endfor %}{% endfor %}', b"{}"),
    ("{% for a in items %}{% for b in items %}{% for c in items %}{% endfor %}{% endfor %}{% endfor %}",
     b'{"items": [' + b",".join([b"1"] * 8000) + b"]}"),
])
def test_loops_that_write_nothing_stop_at_the_time_limit(tmp_path: Path, template: str, payload: bytes) -> None:
    error, elapsed = render(tmp_path, template, payload)
    assert "ran longer than 1s" in error
    assert elapsed < 10  # the limit plus generous slack (it ran 6.5 s to over a minute before)


@pytest.mark.parametrize("template, what", [
    ('{{ "a" | pad_left(3000000000) }}', "pad_left: a width of 3,000,000,000 is more than 100,000"),
    ('{{ "a" | center(3000000000) }}', "center: a width of 3,000,000,000"),
    ('{{ "%03000000000d" | format(1) }}', "format: a width of 3,000,000,000"),
    ('{{ "%03000000000d" % 1 }}', "%: a width of 3,000,000,000"),
    ('{{ "a".center(3000000000) }}', "center: a width of 3,000,000,000"),
    ('{{ "a".zfill(3000000000) }}', "zfill: a width of 3,000,000,000"),
    ('{{ "{:>3000000000}".format(1) }}', "format: a width of 3,000,000,000"),
    ('{{ 7 | x12_num(3000000000) }}', "x12_num: a width of 3,000,000,000"),
])
def test_widths_of_gigabytes_are_refused(tmp_path: Path, template: str, what: str) -> None:
    error, elapsed = render(tmp_path, template)
    assert what in error and "MemoryError" not in error
    assert elapsed < 5


def test_ordinary_widths_and_loops_still_render(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    template = '{% for i in items %}{{ i | pad_left(4, "0") }}{{ "%05d" % i }}{% endfor %}|{{ "x".center(5) }}|'
    path.write_text(FLOW.format(template=repr(template)), encoding="utf-8")
    result = Pipeline(load_flow(path)).run(Message(payload=b'{"items": [1, 22]}', content_type="application/json"))
    assert not result.failures and result.outputs[0].payload_text() == "000100001002200022|  x  |"


def test_a_render_ending_on_another_thread_does_not_lift_this_ones_deadline() -> None:
    """The runtime runs one flow's messages on several threads: each render keeps its own
    deadline while the same step renders other messages."""
    import threading
    import time

    from flowyard.sandbox import RenderLimitError, make_environment

    env = make_environment(autoescape=False, time_limit=0.5)
    endless = env.from_string('{% for a in "a"|center(8000) %}{% for b in "b"|center(8000) %}{% endfor %}{% endfor %}')
    quick = env.from_string("{{ x }}")
    stop = threading.Event()

    def others() -> None:  # short renders ending all the time
        while not stop.is_set():
            env.render_limited(lambda: quick.generate(x=1))

    helper = threading.Thread(target=others)
    helper.start()
    started = time.monotonic()
    try:
        with pytest.raises(RenderLimitError, match=r"longer than 0\.5s"):
            env.render_limited(lambda: endless.generate())
        took = time.monotonic() - started
    finally:
        stop.set()
        helper.join()
    assert 0.45 < took < 5  # stopped at its own deadline: not at another's, nor never
