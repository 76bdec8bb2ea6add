"""XML throughput and memory: flowyard's XML steps beside the bare lxml calls, same run.

1. Many small documents: N (10,000) purchase orders of about 5 KB each through
   `xml.parse -> jmespath -> jinja` in flowyard's engine (Pipeline over a loaded flow),
   and through the bare calls doing the same work (lxml.etree.fromstring, a plain
   element-to-dict walk, a compiled JMESPath expression, a sandboxed Jinja2 render).
   Prints messages/s, MB/s and the ratio.
2. One big document: a generated file of about 200 MB streamed through `xml.xpath` with
   `each:` (iterparse, two XPath values per record), each variant in its own subprocess
   so its peak memory (ru_maxrss) is its own:
   - `bare`: lxml.etree.iterparse over the open file, the same compiled XPaths, clearing
     each record (the usual idiom);
   - `step-file`: the step's streaming reader over the open file (a file-backed payload);
   - `engine-bytes`: the flow through the engine with the document as a bytes payload
     (as a source delivers it today), so one message per record, then a filter step
     keeping the few records with a large quantity.
   - `engine-batch`: the same through the engine with `batch: 1000` (one message per
     1,000 records) and a jmespath step keeping the records with a large quantity.
   Prints MB/s, the ratio to bare and the peak memory of each (VmHWM of the process).
   The engine variants load their flow (once per deployment) before the clock starts;
   reading the document into bytes is timed.

Rounds alternate between the sides compared, so background load hits them alike; the
figures are the median of the rounds (the ratio is of medians), the peak the highest.

    .venv/bin/python bench/xml.py [--messages 10000] [--big-mb 200]   (0 skips a part)
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named xml.py: keep its folder off sys.path so `import xml` stays the
# standard library's.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import jmespath  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402
from lxml import etree  # noqa: E402

from flowyard.engine import Pipeline  # noqa: E402
from flowyard.loader import load_flow  # noqa: E402
from flowyard.message import Message  # noqa: E402

EXPRESSION = (
    'order.{po: "@id", plant: header.plant, supplier: header.supplier, '
    'lines: line[].{n: "@n", item: item, qty: to_number(qty."#text"), uom: qty."@uom"}}'
)
TEMPLATE = (
    '<receipt po="{{ po }}" plant="{{ plant }}">\n'
    '{% for l in lines %}  <line n="{{ l.n }}" item="{{ l.item }}" qty="{{ l.qty }}" uom="{{ l.uom }}"/>\n{% endfor %}'
    "</receipt>\n"
)
SMALL_FLOW = f"""apiVersion: flowyard/v1
kind: Flow
metadata: {{name: bench-xml}}
source:
  file: {{path: in, pattern: "*.xml"}}
steps:
  - xml.parse: {{lists: [line]}}
  - jmespath: {json.dumps(EXPRESSION)}
  - jinja: {{template: {json.dumps(TEMPLATE)}, content_type: application/xml}}
targets:
  - file: {{path: out}}
"""
BIG_FLOW = """apiVersion: flowyard/v1
kind: Flow
metadata: {name: bench-xml-big}
source:
  file: {path: in, pattern: "*.xml"}
steps:
  - xml.xpath:
      each: /orders/order
      expressions: {id: string(@id), qty: sum(line/qty)}
  - filter: "qty > `390`"
targets:
  - file: {path: out}
"""
BATCH_FLOW = """apiVersion: flowyard/v1
kind: Flow
metadata: {name: bench-xml-batch}
source:
  file: {path: in, pattern: "*.xml"}
steps:
  - xml.xpath:
      each: /orders/order
      batch: 1000
      expressions: {id: string(@id), qty: sum(line/qty)}
  - jmespath: "[?qty > `390`]"
targets:
  - file: {path: out}
"""
RECORD_XPATHS = {"id": "string(@id)", "qty": "sum(line/qty)"}


def small_order(i: int) -> bytes:
    lines = "".join(
        f'<line n="{n}"><item>BRK-{n:04d}-{i % 97:02d}</item><qty uom="EA">{n * 10}</qty>'
        f"<note>deliver to dock {n % 4}, handle with care</note></line>"
        for n in range(1, 41)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<order id="PO-{i:08d}"><header><plant>MX01</plant>'
        f"<supplier>SUPPLIERX</supplier><created>2024-04-29T05:40:12Z</created></header>{lines}</order>"
    ).encode()


def bare_to_dict(element: Any) -> Any:
    """The plain walk a developer would write: attributes @x, text, repeated -> list."""
    children = [c for c in element if isinstance(c.tag, str)]
    if not children and not element.attrib:
        return element.text or ""
    out: dict[str, Any] = {f"@{k}": v for k, v in element.attrib.items()}
    if not children:
        if element.text:
            out["#text"] = element.text
        return out
    for child in children:
        value = bare_to_dict(child)
        if child.tag in out:
            existing = out[child.tag]
            if isinstance(existing, list):
                existing.append(value)
            else:
                out[child.tag] = [existing, value]
        else:
            out[child.tag] = [value] if child.tag == "line" else value
    return out


CPU_RATIOS: list[str] = []  # the same comparisons on CPU time, printed at the end


def medians(rounds: int, name: str, *sides: Any) -> list[float]:
    """Each side's median wall time over `rounds`, the sides alternating within each
    round; the ratio of the first two on CPU time is noted for the end."""
    wall: list[list[float]] = [[] for _ in sides]
    cpu: list[list[float]] = [[] for _ in sides]
    for _ in range(rounds):
        for w, c, fn in zip(wall, cpu, sides, strict=True):
            began, cpu_began = time.perf_counter(), time.process_time()
            fn()
            w.append(time.perf_counter() - began)
            c.append(time.process_time() - cpu_began)
    cpu_medians = [statistics.median(t) for t in cpu]
    CPU_RATIOS.append(f"{name} {cpu_medians[1] / cpu_medians[0]:.2f}x")
    return [statistics.median(t) for t in wall]


def small_documents(count: int, rounds: int) -> None:
    docs = [small_order(i) for i in range(count)]
    size = sum(map(len, docs)) / 1e6
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.yaml"
        path.write_text(SMALL_FLOW, encoding="utf-8")
        pipeline = Pipeline(load_flow(path))
    expression = jmespath.compile(EXPRESSION)
    environment = ImmutableSandboxedEnvironment(
        autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    template = environment.from_string(TEMPLATE)
    plain = etree.XMLParser()

    def engine() -> None:
        for doc in docs:
            result = pipeline.run(Message(doc, content_type="application/xml"))
            assert result.ok and result.outputs[0].payload.startswith(b"<receipt"), result.failures

    def bare() -> None:
        for doc in docs:
            root = etree.fromstring(doc, plain)
            data = {root.tag: bare_to_dict(root)}
            mapped = expression.search(data)
            out = template.render(mapped).encode()
            assert out.startswith(b"<receipt")

    # same result both ways, so the comparison is of equal work
    sample = pipeline.run(Message(docs[1], content_type="application/xml")).outputs[0].payload
    root = etree.fromstring(docs[1], plain)
    assert sample == template.render(expression.search({root.tag: bare_to_dict(root)})).encode()

    t_engine, t_bare = medians(rounds, "engine/bare", engine, bare)
    print(f"{count:,} documents of {size / count * 1e3:.1f} KB: xml.parse -> jmespath -> jinja")
    print(f"  flowyard engine  {count / t_engine:10,.0f} msg/s  {size / t_engine:7.1f} MB/s")
    print(f"  bare lxml calls  {count / t_bare:10,.0f} msg/s  {size / t_bare:7.1f} MB/s")
    print(f"  ratio engine/bare: {t_bare / t_engine:.2f}x")

    # the XML part alone: the xml.parse step against lxml.etree.fromstring + a plain walk
    step = pipeline.steps[0].step

    def step_only() -> None:
        for doc in docs:
            step.process(Message(doc, content_type="application/xml"))

    def bare_only() -> None:
        for doc in docs:
            root = etree.fromstring(doc, plain)
            {root.tag: bare_to_dict(root)}

    t_step, t_walk = medians(rounds, "xml.parse/bare", step_only, bare_only)
    print(f"  of which xml.parse alone {count / t_step:,.0f} msg/s, bare fromstring + walk {count / t_walk:,.0f} msg/s")
    print(f"  ratio xml.parse/bare: {t_walk / t_step:.2f}x")

    # the other two steps alone, on the data they get, to show where the rest goes
    parsed = [{etree.fromstring(d, plain).tag: bare_to_dict(etree.fromstring(d, plain))} for d in docs]
    mapped = [expression.search(d) for d in parsed]
    jmes_step, jinja_step = pipeline.steps[1].step, pipeline.steps[2].step
    pairs = {
        "jmespath": (
            lambda: [jmes_step.process(Message(d)) for d in parsed],
            lambda: [expression.search(d) for d in parsed],
        ),
        "jinja": (
            lambda: [jinja_step.process(Message(m)) for m in mapped],
            lambda: [template.render(m) for m in mapped],
        ),
    }
    for name, (ours, theirs) in pairs.items():
        t_ours, t_theirs = medians(rounds, f"{name}/bare", ours, theirs)
        print(f"  {name} step alone {count / t_ours:,.0f} msg/s, bare {count / t_theirs:,.0f} msg/s ({t_theirs / t_ours:.2f}x)")
    print("  CPU time ratios (a busy machine's waits left out): " + ", ".join(CPU_RATIOS))


def write_big(path: Path, megabytes: int) -> int:
    target = megabytes * 1_000_000
    written = 0
    with path.open("wb") as out:
        out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<orders>\n')
        i = 0
        while written < target:
            chunk = []
            for _ in range(1000):
                i += 1
                lines = "".join(
                    f'<line n="{n}"><item>BRK-{n:04d}</item><qty>{(i + n) % 50}</qty></line>' for n in range(1, 9)
                )
                chunk.append(f'<order id="{i}"><customer>Plant {i % 7}</customer>{lines}</order>\n')
            data = "".join(chunk).encode()
            out.write(data)
            written += len(data)
        out.write(b"</orders>\n")
    return path.stat().st_size


def child(mode: str, path: Path) -> None:
    """One variant, alone in this process; prints a JSON line with time, records, peak."""
    from flowyard.step import FlowContext
    from flowyard.xml.steps import XmlXPath, XmlXPathOptions

    # A flow is loaded once when it is deployed, not per document: the engine variants
    # load theirs before the clock starts (the bare variant compiles its XPaths timed).
    pipelines = {"engine-bytes": BIG_FLOW, "engine-batch": BATCH_FLOW}
    pipeline = None
    if mode in pipelines:
        flow_path = path.parent / f"{mode}.yaml"
        flow_path.write_text(pipelines[mode], encoding="utf-8")
        pipeline = Pipeline(load_flow(flow_path))
    began = time.perf_counter()
    cpu_began = time.process_time()
    records = 0
    if mode == "bare":
        compiled = {k: etree.XPath(v) for k, v in RECORD_XPATHS.items()}
        with path.open("rb") as source:
            for _event, element in etree.iterparse(source, tag="order"):
                _ = {k: x(element) for k, x in compiled.items()}
                records += 1
                element.clear(keep_tail=False)
                while element.getprevious() is not None:
                    del element.getparent()[0]
    elif mode == "step-file":
        options = XmlXPathOptions(expressions=RECORD_XPATHS, each="/orders/order")
        step = XmlXPath(options, FlowContext(flow_file=path.parent / "flow.yaml"))
        with path.open("rb") as source:
            for _record in step.records(source):
                records += 1
    elif pipeline is not None:
        payload = path.read_bytes()  # the document as a source hands it in: bytes, read timed
        result = pipeline.run(Message(payload, content_type="application/xml"))
        assert result.ok, [str(f.error) for f in result.failures]
        # engine-batch: messages of 1,000 records (the last one fewer)
        records = len(result.outputs) + result.dropped if mode == "engine-bytes" else len(result.outputs) * 1000
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    peak = peak_rss()
    print(json.dumps({"mode": mode, "seconds": elapsed, "cpu": cpu, "records": records, "peak": peak}))


def peak_rss() -> int:
    """This process's peak resident memory, in bytes. VmHWM, not ru_maxrss: Linux carries
    ru_maxrss over fork and exec, so a child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def baseline_peak() -> int:
    """Peak memory of a process that only imports what the children import."""
    code = (
        "import lxml.etree, jmespath, flowyard.engine, flowyard.loader, flowyard.xml.steps;"
        "from pathlib import Path;"
        "print(next(int(l.split()[1]) * 1024 for l in Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmHWM:')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout)


def big_document(megabytes: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.xml"
        size = write_big(path, megabytes)
        print(f"\none document of {size / 1e6:.0f} MB through xml.xpath (each: /orders/order), streamed")
        print(f"  (a process importing lxml and flowyard alone peaks at {baseline_peak() / 1e6:.0f} MB)")
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(rounds):  # alternating: median time and highest peak kept
            for mode in ("bare", "step-file", "engine-bytes", "engine-batch"):
                command = [sys.executable, __file__, "--child", mode, str(path)]
                out = subprocess.run(command, capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"  {mode}: failed\n{out.stderr}")
                    continue
                runs.setdefault(mode, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
        seconds = {mode: statistics.median(r["seconds"] for r in rs) for mode, rs in runs.items()}
        cpu = {mode: statistics.median(r["cpu"] for r in rs) for mode, rs in runs.items()}
        bare, bare_cpu = seconds.get("bare"), cpu.get("bare")
        for mode, rs in runs.items():
            ratio = f"  ratio to bare {bare / seconds[mode]:.2f}x" if bare else ""
            every = " ".join(f"{r['seconds']:.2f}" for r in rs)
            print(
                f"  {mode:13s} {size / 1e6 / seconds[mode]:7.1f} MB/s  {rs[0]['records']:>9,} records"
                f"  peak {max(r['peak'] for r in rs) / 1e6:6.0f} MB{ratio}  (runs: {every} s)"
            )
        if bare_cpu:  # on a busy machine wall time includes waiting for a core; CPU time does not
            print("  CPU time ratio to bare: " + ", ".join(f"{m} {bare_cpu / c:.2f}x" for m, c in cpu.items() if m != "bare"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating; median kept")
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--big-rounds", type=int, default=3, help="rounds of the big document, alternating; median kept")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    if args.messages:
        small_documents(args.messages, args.rounds)
    if args.big_mb:
        big_document(args.big_mb, args.big_rounds)


if __name__ == "__main__":
    main()
