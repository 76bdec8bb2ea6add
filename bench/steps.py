"""Engine overhead: a 10-line order through json.parse -> jmespath -> jinja.

Runs N messages through flowyard's engine (Pipeline over a loaded flow) and through the
bare library calls doing the same work (json.loads, a compiled JMESPath expression, a
sandboxed Jinja2 template render), in one run, and prints messages/s and their ratio.
Also prints the bare rate with a non-sandboxed Jinja2 environment, for information.
Rounds alternate between the sides; each rate is the median of its rounds.

    .venv/bin/python bench/steps.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import jinja2
import jmespath
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowyard.engine import Pipeline
from flowyard.loader import load_flow
from flowyard.message import Message

EXPRESSION = "{po: header.po, plant: header.plant, lines: lines[].{n: line, item: item, qty: qty, uom: uom}}"
TEMPLATE = (
    '<order po="{{ po }}" plant="{{ plant }}">\n'
    "{% for l in lines %}  <line n=\"{{ l.n }}\" item=\"{{ l.item }}\" qty=\"{{ l.qty }}\" uom=\"{{ l.uom }}\"/>\n{% endfor %}"
    "</order>\n"
)
FLOW = f"""apiVersion: flowyard/v1
kind: Flow
metadata: {{name: bench-steps}}
source:
  file: {{path: in, pattern: "*.json"}}
steps:
  - json.parse: {{}}
  - jmespath: "{EXPRESSION}"
  - jinja: {{template: {json.dumps(TEMPLATE)}, content_type: application/xml}}
targets:
  - file: {{path: out}}
"""


def order() -> bytes:
    lines = [{"line": i, "item": f"BRK-{i:04d}", "qty": i * 10, "uom": "EA", "note": "x" * 20} for i in range(1, 11)]
    return json.dumps({"header": {"po": "4500012345", "plant": "MX01", "supplier": "SUPPLIERX"}, "lines": lines}).encode()


def rate(n: int, fn: object) -> float:
    began = time.perf_counter()
    fn()  # type: ignore[operator]
    return n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side, alternating; median kept")
    n = parser.parse_args().messages
    rounds = parser.parse_args().rounds
    payload = order()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "flow.yaml"
        path.write_text(FLOW)
        pipeline = Pipeline(load_flow(path))

        def engine() -> None:
            for _ in range(n):
                result = pipeline.run(Message(payload=payload, content_type="application/json"))
                assert result.outputs

        compiled = jmespath.compile(EXPRESSION)
        sandboxed = ImmutableSandboxedEnvironment(autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True).from_string(TEMPLATE)
        plain = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True).from_string(TEMPLATE)

        def bare(template: jinja2.Template) -> None:
            for _ in range(n):
                data = compiled.search(json.loads(payload))
                template.render(data=data, **data).encode()

        # the outputs must be the same work: compare one message each way
        check = pipeline.run(Message(payload=payload, content_type="application/json")).outputs[0].payload
        data = compiled.search(json.loads(payload))
        assert check == sandboxed.render(data=data, **data).encode(), "engine and bare outputs differ"

        engine_rates, bare_rates, plain_rates = [], [], []
        for _ in range(rounds):  # interleaved, so background load hits all sides alike
            engine_rates.append(rate(n, engine))
            bare_rates.append(rate(n, lambda: bare(sandboxed)))
            plain_rates.append(rate(n, lambda: bare(plain)))
        engine_rate, bare_rate, plain_rate = (statistics.median(r) for r in (engine_rates, bare_rates, plain_rates))
    print(f"messages per run: {n}, median of {rounds} rounds")
    print(f"engine (json.parse -> jmespath -> jinja): {engine_rate:10.0f} msg/s")
    print(f"bare library calls (sandboxed jinja):    {bare_rate:10.0f} msg/s")
    print(f"bare library calls (plain jinja):        {plain_rate:10.0f} msg/s")
    print(f"ratio engine / bare (sandboxed): {engine_rate / bare_rate:.2f}  (target >= 0.80)")
    print(f"ratio engine / bare (plain):     {engine_rate / plain_rate:.2f}")


if __name__ == "__main__":
    main()
