"""flowyard run FLOW --input FILE [--dry-run] [--output-dir DIR] [--trace]"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DefinitionError
from ..message import Message
from ..secrets import redactor

if TYPE_CHECKING:
    from ..flow import StepSpec

TRACE_LIMIT = 20_000


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run one flow on one input as if its source delivered it")
    p.add_argument("flow", type=Path)
    p.add_argument("--input", type=Path, required=True, metavar="FILE")
    p.add_argument("--dry-run", action="store_true", help="touch no target; write the final payloads instead")
    p.add_argument("--output-dir", type=Path, metavar="DIR", help="with --dry-run: write DIR/1, DIR/2, ...")
    p.add_argument("--trace", action="store_true", help="print every step's output to stderr")
    p.add_argument("--flow", dest="flow_name", metavar="NAME", help="of an instance whose template gives several flows: the one to run")
    p.set_defaults(handler=handle)


def trace(spec: StepSpec, out: Any, seconds: float) -> None:
    from ..step import Rejected

    if seconds < 0:
        print(f"== {spec.name}: skipped (when: {spec.when})", file=sys.stderr)
        return
    head = f"== {spec.name} ({spec.kind}, {seconds * 1000:.2f} ms)"
    if out is None:
        print(f"{head}: message dropped", file=sys.stderr)
    elif isinstance(out, list):
        print(f"{head}: {len(out)} message(s)", file=sys.stderr)
        for i, child in enumerate(out, 1):
            if isinstance(child, Rejected):
                print(f"-- {i} rejected: {child.error}", file=sys.stderr)
            else:
                print(f"-- {i}\n{redactor.redact(child.payload_text(TRACE_LIMIT))}", file=sys.stderr)
    else:
        print(f"{head}: {out.content_type}\n{redactor.redact(out.payload_text(TRACE_LIMIT))}", file=sys.stderr)


def handle(args: argparse.Namespace) -> int:
    from ..loader import load_flows  # steps and the store: not for `flowyard --help`
    from ..runner import run_flow
    from ..store.engines import scratch_store

    if args.output_dir and not args.dry_run:
        print("flowyard run: --output-dir goes with --dry-run", file=sys.stderr)
        return 2
    if not args.input.is_file():
        print(f"flowyard run: input file {args.input} not found", file=sys.stderr)
        return 2
    try:
        flows = load_flows(args.flow)
    except DefinitionError as exc:
        print(exc, file=sys.stderr)
        return 2
    names = [f.name for f in flows]
    if args.flow_name is not None:
        flows = [f for f in flows if f.name == args.flow_name]
        if not flows:
            print(f"flowyard run: {args.flow} gives no flow named {args.flow_name!r}; it gives: {', '.join(names)}", file=sys.stderr)
            return 2
    if len(flows) > 1:
        print(f"flowyard run: {args.flow} gives {len(flows)} flows ({', '.join(names)}); name one with --flow NAME", file=sys.stderr)
        return 2
    flow = flows[0]
    with scratch_store() if args.dry_run else contextlib.nullcontext():
        report = run_flow(flow, args.input, deliver=not args.dry_run, tracer=trace if args.trace else None)
    result = report.result
    for failure in result.failures:
        print(redactor.redact(f"FAILED {args.input}: {failure.error}"), file=sys.stderr)
    if args.dry_run:
        write_outputs(result.outputs, args.output_dir)
    for delivery in report.deliveries:
        state = f"delivered to {delivery.target}" if delivery.ok else f"NOT delivered to {delivery.target}: {delivery.error}"
        detail = f" ({delivery.detail})" if delivery.ok and delivery.detail else ""
        print(redactor.redact(f"message {delivery.message.id}: {state}{detail}"), file=sys.stderr)
    summary = f"{len(result.outputs)} message(s) out, {len(result.failures)} failed"
    if result.dropped:
        summary += f", {result.dropped} dropped by filter"
    print(summary, file=sys.stderr)
    return 0 if report.ok else 1


def write_outputs(outputs: list[Message], directory: Path | None) -> None:
    if directory is None:
        for i, message in enumerate(outputs, 1):
            if len(outputs) > 1:
                print(f"--- message {i} ({message.content_type})", file=sys.stderr)
            sys.stdout.buffer.write(message.payload_bytes())
            sys.stdout.buffer.flush()
        return
    directory.mkdir(parents=True, exist_ok=True)
    for i, message in enumerate(outputs, 1):
        (directory / str(i)).write_bytes(message.payload_bytes())
