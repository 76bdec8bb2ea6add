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
The variants run in interleaved rounds (round 1: every variant once, round 2: every
variant again in a rotated order, ...), and each ratio is computed per round from the
runs of that round, so a burst of load on this shared machine hits both sides of a
ratio alike; inside a run, the timed work repeats until --min-seconds have passed and
the run reports the median repetition (a 100 MB input runs once). The flowyard child
compiles the guide before timing, as a long-running flow does once; its first
repetition (printed as "first run") also learns the guide's memoised validation.

Prints, per variant, the median MB/s and peak memory; per ratio (validate=false vs pyx12
reader and vs node-x12, validate=true vs validate=false), the median and the spread
(min-max) across rounds, from wall-clock time and from CPU time (user+system of the
timed section; node counts its GC threads too). Never pass/fail.

    .venv/bin/python bench/x12.py [--rounds 3] [--min-seconds 3] [--lines 20000] [--big-mb 100] [--no-node] [--no-validate-big]
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
const minSeconds = Number(process.argv[4]);
const walls = [], cpus = [];
let sets = 0;
while (true) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const interchange = new X12Parser(true).parse(text);
  sets = 0;
  for (const g of interchange.functionalGroups) sets += g.transactions.length;
  const t1 = process.hrtime.bigint();
  const c1 = process.cpuUsage(c0);
  walls.push(Number(t1 - t0) / 1e9);
  cpus.push((c1.user + c1.system) / 1e6);
  if (walls.reduce((a, b) => a + b, 0) >= minSeconds) break;
}
const median = (v) => { const o = [...v].sort((a, b) => a - b); const m = o.length >> 1; return o.length % 2 ? o[m] : (o[m - 1] + o[m]) / 2; };
console.log(JSON.stringify({seconds: median(walls), cpu: median(cpus), first: walls[0], reps: walls.length, sets,
                            peak_mb: process.resourceUsage().maxRSS / 1024}));
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


def repeated(run: Any, min_seconds: float) -> tuple[dict[str, Any], Any]:
    """Time run() until min_seconds have passed (at least once): the median of the
    repetitions smooths a short input's run over a burst of load; `first` is the first
    (for validate=true: with the guide's memo still cold)."""
    walls: list[float] = []
    cpus: list[float] = []
    while True:
        start, cpu = time.perf_counter(), time.process_time()
        out = run()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        if sum(walls) >= min_seconds:
            return {"seconds": median(walls), "cpu": median(cpus), "first": walls[0], "reps": len(walls)}, out


def child_pyx12(path: str, min_seconds: float) -> dict[str, Any]:
    import pyx12.x12file

    def run() -> int:
        count = 0
        for _segment in pyx12.x12file.X12Reader(path):
            count += 1
        return count

    timing, count = repeated(run, min_seconds)
    return {**timing, "segments": count, "peak_mb": peak_mb()}


def child_flowyard(path: str, validate: bool, min_seconds: float) -> dict[str, Any]:
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

    def run() -> tuple[RunResult, Counted]:
        result = RunResult()
        outputs = Counted()
        result.outputs = outputs
        message = Message(payload=data, content_type="application/edi-x12")
        message.flow, message.flow_version = flow.name, flow.version
        pipeline._run_from(0, message, result, None)
        return result, outputs

    timing, (result, outputs) = repeated(run, min_seconds)
    shutil.rmtree(folder, ignore_errors=True)
    failures = [str(f.error) for f in result.failures[:3]]
    return {**timing, "messages": outputs.seen, "failures": len(result.failures), "first_failures": failures,
            "peak_mb": peak_mb(), "sample": outputs.sample}


def run_child(kind: str, path: Path, min_seconds: float, validate: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, str(path), "--min-seconds", str(min_seconds)] + (["--validate"] if validate else [])
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


def run_node(module: Path, path: Path, min_seconds: float) -> dict[str, Any]:
    script = module.parent.parent / "bench.js"
    script.write_text(NODE, encoding="utf-8")
    done = subprocess.run(["node", "--max-old-space-size=8192", str(script), str(path), str(module), str(min_seconds)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:200]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def spread(values: list[float]) -> str:
    return f"{median(values):.2f}x (min {min(values):.2f}, max {max(values):.2f}, {len(values)} rounds)"


RATIOS = (  # (label, numerator variant, denominator variant): numerator speed / denominator speed
    ("validate=false / pyx12 reader", "flowyard validate=false", "pyx12 reader"),
    ("validate=false / node-x12", "flowyard validate=false", "node-x12"),
    ("validate=true / validate=false", "flowyard validate=true", "flowyard validate=false"),
)


def report(title: str, path: Path, node_module: Path | None, validate: bool, rounds: int, min_seconds: float) -> None:
    size = path.stat().st_size
    print(f"\n== {title}: {size / 1e6:.1f} MB, {rounds} interleaved rounds, each run repeated for {min_seconds:g} s (median)", flush=True)
    variants: list[tuple[str, Any]] = [
        ("pyx12 reader", lambda: run_child("pyx12", path, min_seconds)),
        ("flowyard validate=false", lambda: run_child("flowyard", path, min_seconds, False)),
    ]
    if node_module is not None:
        variants.append(("node-x12", lambda: run_node(node_module, path, min_seconds)))
    if validate:
        variants.append(("flowyard validate=true", lambda: run_child("flowyard", path, min_seconds, True)))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for number in range(rounds):
        shift = number % len(variants)  # rotate the order: no variant always runs first or last
        line = []
        for name, run in variants[shift:] + variants[:shift]:
            result = run()
            runs[name].append(result)
            line.append(f"{name} {'failed' if 'error' in result else format(size / 1e6 / result['seconds'], '.2f')}")
        print(f"  round {number + 1}: " + ", ".join(line), flush=True)
    for name, results in runs.items():
        good = [r for r in results if "error" not in r]
        if not good:
            print(f"  {name:26} failed: {results[0]['error']}")
            continue
        r = good[-1]
        extra = f"  messages {r['messages']}, failed {r['failures']}" if "messages" in r else ""
        extra += f"  sets {r['sets']}" if "sets" in r else ""
        speed = median([size / 1e6 / g["seconds"] for g in good])
        seconds = median([g["seconds"] for g in good])
        peak = max(g.get("peak_mb", 0) for g in good)
        reps = sum(g.get("reps", 1) for g in good)
        cold = median([size / 1e6 / g["first"] for g in good if g.get("first")])
        print(f"  {name:26} {speed:8.2f} MB/s  {seconds:8.2f} s (medians, {reps} runs)  first run {cold:.2f} MB/s  peak {peak:7.0f} MB{extra}")
        if r.get("first_failures"):
            print(f"    first failures: {r['first_failures']}")
    for label, top, bottom in RATIOS:
        if top not in runs or bottom not in runs:
            continue
        pairs = [(a, b) for a, b in zip(runs[top], runs[bottom], strict=True) if "error" not in a and "error" not in b]
        if not pairs:
            continue
        wall = [b["seconds"] / a["seconds"] for a, b in pairs]
        print(f"  {label:32} wall {spread(wall)}")
        cpu = [b["cpu"] / a["cpu"] for a, b in pairs if a.get("cpu") and b.get("cpu")]
        if cpu:
            print(f"  {'':32} cpu  {spread(cpu)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per input (ratios: median and spread across them)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="repeat each timed run until this long (median of the repetitions)")
    parser.add_argument("--lines", type=int, default=20000, help="PO1 lines of the single 850 (0 skips it)")
    parser.add_argument("--big-mb", type=float, default=100, help="size of the multi-set file (0 skips it)")
    parser.add_argument("--no-node", action="store_true", help="skip node-x12")
    parser.add_argument("--no-validate-big", action="store_true", help="skip validate=true on the big file (slow)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--validate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path = args.child
        result = child_pyx12(path, args.min_seconds) if kind == "pyx12" else child_flowyard(path, args.validate, args.min_seconds)
        print(json.dumps(result))
        return
    folder = Path(tempfile.mkdtemp(prefix="flowyard-bench-x12-"))
    try:
        node_module = None if args.no_node else install_node_x12(folder)
        if args.lines:
            path = folder / "850-lines.edi"
            write_interchange(path, 1, args.lines)
            report(f"one 850 with {args.lines} PO1 lines", path, node_module, True, args.rounds, args.min_seconds)
        if args.big_mb:
            path = folder / "850-many.edi"
            sets = write_interchange(path, 0, 20, int(args.big_mb * 1e6))
            report(f"{sets} 850 sets of 20 lines", path, node_module, not args.no_validate_big, args.rounds, args.min_seconds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
