"""X12 throughput and memory: x12.parse through the engine beside bare pyx12 and node-x12.

Two inputs, generated into a temporary folder:

1. one 850 purchase order with 20,000 PO1 lines (one transaction set);
2. a multi-set file of about 100 MB (850 sets of 20 lines each, thousands of sets).

For each input, in the same run:

- `pyx12 reader`: the bare `pyx12.x12file.X12Reader` loop over the same bytes;
- `node-x12`: the Node.js `node-x12` parser (`X12Parser.parse`), installed from the npm
  registry into a temporary folder by this script; timed inside node (no start-up);
- `flowyard validate=false`: `x12.parse {validate: false} -> jmespath -> json.render`
  through the engine (a loaded flow, Pipeline); outputs are counted and dropped as a
  target would take them;
- `flowyard validate=true`: the same with guide validation by pyx12.

Each variant runs in its own subprocess so its peak memory (ru_maxrss) is its own.
Prints MB/s, the ratios asked for (validate=false vs pyx12 reader and vs node-x12,
validate=true vs validate=false) and the peak memory. Never pass/fail.

    .venv/bin/python bench/x12.py [--lines 20000] [--big-mb 100] [--no-node] [--no-validate-big]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds xml.py: keep this folder off sys.path so `import xml` stays the standard library's
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

FLOW = """\
apiVersion: flowyard/v1
kind: Flow
metadata: {name: bench-x12}
source:
  file: {path: in}
steps:
  - x12.parse: {validate: VALIDATE}
  - jmespath: "{po: BEG.BEG03, date: BEG.BEG05, ship_to: N1_loop[0].N1.N104, lines: length(PO1_loop), parts: PO1_loop[].PO1.PO107}"
  - json.render: {}
targets:
  - file: {path: out}
"""

NODE = """
const fs = require('fs');
const { X12Parser } = require(process.argv[3]);
const text = fs.readFileSync(process.argv[2], 'utf8');
const t0 = process.hrtime.bigint();
const interchange = new X12Parser(true).parse(text);
let sets = 0;
for (const g of interchange.functionalGroups) sets += g.transactions.length;
const t1 = process.hrtime.bigint();
console.log(JSON.stringify({seconds: Number(t1 - t0) / 1e9, sets, peak_mb: process.resourceUsage().maxRSS / 1024}));
"""


def po_set(number: int, lines: int) -> list[str]:
    segments = [f"ST*850*{number:04d}", f"BEG*00*SA*PO-{number}**20261118", "REF*DP*038", "DTM*002*20261201",
                "N1*ST*ACME MONTERREY*92*MX01", "N3*AV INDUSTRIAL 100", "N4*MONTERREY*NL*64000*MX"]
    for i in range(1, lines + 1):
        segments += [f"PO1*{i}*{(i % 50) + 1}*EA*{(i % 97) + 1}.25*PE*BP*A-{i % 5000}*VP*SX-{i % 700}", f"PID*F****PART {i % 300}"]
    segments.append(f"CTT*{lines}")
    segments.append(f"SE*{len(segments) + 1}*{number:04d}")
    return segments


def write_interchange(path: Path, sets: int, lines: int, target_bytes: int | None = None) -> int:
    """Write an interchange; with target_bytes, add sets until the file is that big."""
    with path.open("w", encoding="ascii", newline="") as out:
        out.write("ISA*00*          *00*          *ZZ*ACMEBUYER      *ZZ*SUPPLIERX      *261120*0930*U*00401*000000001*0*P*>~\n")
        out.write("GS*PO*ACMEBUYER*SUPPLIERX*20261120*0930*1*X*004010~\n")
        written, number = 0, 0
        while (target_bytes is None and number < sets) or (target_bytes is not None and written < target_bytes):
            number += 1
            chunk = "~\n".join(po_set(number, lines)) + "~\n"
            out.write(chunk)
            written += len(chunk)
        out.write(f"GE*{number}*1~\nIEA*1*000000001~\n")
    return number


# -- the variants, each run in a child process ---------------------------------------------


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_pyx12(path: str) -> dict[str, Any]:
    import pyx12.x12file

    start = time.perf_counter()
    count = 0
    for _segment in pyx12.x12file.X12Reader(path):
        count += 1
    return {"seconds": time.perf_counter() - start, "segments": count, "peak_mb": peak_mb()}


def child_flowyard(path: str, validate: bool) -> dict[str, Any]:
    from flowyard.engine import Pipeline, RunResult
    from flowyard.loader import load_flow
    from flowyard.message import Message

    folder = Path(tempfile.mkdtemp(prefix="flowyard-bench-x12-"))
    flow_file = folder / "flow.yaml"
    flow_file.write_text(FLOW.replace("VALIDATE", "true" if validate else "false"), encoding="utf-8")
    flow = load_flow(flow_file)
    pipeline = Pipeline(flow)
    # compile the guide before timing (it is compiled once per process in production)
    from flowyard.x12.guides import default_guide

    guide = default_guide("850", "004010")
    assert guide is not None
    guide.pyx12_map()

    class Counted(list):  # type: ignore[type-arg]
        """Outputs are counted and dropped, as the runtime hands each to its targets."""

        def __init__(self) -> None:
            super().__init__()
            self.seen = 0
            self.sample: Any = None

        def append(self, item: Any) -> None:
            self.seen += 1
            if self.sample is None:
                self.sample = item.payload_text(200)

    data = Path(path).read_bytes()
    start = time.perf_counter()
    result = RunResult()
    outputs = Counted()
    result.outputs = outputs
    message = Message(payload=data, content_type="application/edi-x12")
    message.flow, message.flow_version = flow.name, flow.version
    pipeline._run_from(0, message, result, None)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    failures = [str(f.error) for f in result.failures[:3]]
    return {"seconds": seconds, "messages": outputs.seen, "failures": len(result.failures), "first_failures": failures,
            "peak_mb": peak_mb(), "sample": outputs.sample}


def run_child(kind: str, path: Path, validate: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, str(path)] + (["--validate"] if validate else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def install_node_x12(folder: Path) -> Path | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("node-x12: node/npm not installed, skipped")
        return None
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "node-x12"], cwd=folder,
                          capture_output=True, text=True)
    module = folder / "node_modules" / "node-x12"
    if done.returncode != 0 or not module.is_dir():
        print(f"node-x12: npm install failed: {done.stderr.strip()[:200]}")
        return None
    version = json.loads((module / "package.json").read_text())["version"]
    print(f"node-x12 {version} installed from the npm registry into {folder}")
    return module


def run_node(module: Path, path: Path) -> dict[str, Any]:
    script = module.parent.parent / "bench.js"
    script.write_text(NODE, encoding="utf-8")
    done = subprocess.run(["node", "--max-old-space-size=8192", str(script), str(path), str(module)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:200]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def mbps(size: int, result: dict[str, Any]) -> float | None:
    seconds = result.get("seconds")
    return size / 1e6 / seconds if seconds else None


def report(title: str, path: Path, node_module: Path | None, validate: bool) -> None:
    size = path.stat().st_size
    print(f"\n== {title}: {size / 1e6:.1f} MB")
    results: dict[str, dict[str, Any]] = {
        "pyx12 reader": run_child("pyx12", path),
        "flowyard validate=false": run_child("flowyard", path, False),
    }
    if node_module is not None:
        results["node-x12"] = run_node(node_module, path)
    if validate:
        results["flowyard validate=true"] = run_child("flowyard", path, True)
    speeds = {name: mbps(size, r) for name, r in results.items()}
    for name, r in results.items():
        if "error" in r:
            print(f"  {name:26} failed: {r['error']}")
            continue
        extra = f"  messages {r['messages']}, failed {r['failures']}" if "messages" in r else ""
        extra += f"  sets {r['sets']}" if "sets" in r else ""
        print(f"  {name:26} {speeds[name] or 0:8.2f} MB/s  {r['seconds']:8.2f} s  peak {r.get('peak_mb', 0):7.0f} MB{extra}")
        if r.get("first_failures"):
            print(f"    first failures: {r['first_failures']}")
    off = speeds.get("flowyard validate=false")
    for other, label in (("pyx12 reader", "validate=false / pyx12 reader"), ("node-x12", "validate=false / node-x12")):
        if off and speeds.get(other):
            print(f"  {label:40} {off / speeds[other]:.2f}x")  # type: ignore[operator]
    on = speeds.get("flowyard validate=true")
    if on and off:
        print(f"  {'validate=true / validate=false':40} {on / off:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20000, help="PO1 lines of the single 850 (0 skips it)")
    parser.add_argument("--big-mb", type=float, default=100, help="size of the multi-set file (0 skips it)")
    parser.add_argument("--no-node", action="store_true", help="skip node-x12")
    parser.add_argument("--no-validate-big", action="store_true", help="skip validate=true on the big file (slow)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--validate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path = args.child
        result = child_pyx12(path) if kind == "pyx12" else child_flowyard(path, args.validate)
        print(json.dumps(result))
        return
    folder = Path(tempfile.mkdtemp(prefix="flowyard-bench-x12-"))
    try:
        node_module = None if args.no_node else install_node_x12(folder)
        if args.lines:
            path = folder / "850-lines.edi"
            write_interchange(path, 1, args.lines)
            report(f"one 850 with {args.lines} PO1 lines", path, node_module, True)
        if args.big_mb:
            path = folder / "850-many.edi"
            sets = write_interchange(path, 0, 20, int(args.big_mb * 1e6))
            report(f"{sets} 850 sets of 20 lines", path, node_module, not args.no_validate_big)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
