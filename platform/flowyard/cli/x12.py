"""`flowyard x12 parse FILE [--guide G]` and `flowyard x12 ack FILE [--type 997|999] [--guide G]`.

Both read the file the way `x12.parse` does. `parse` prints the transaction sets as JSON
(invalid ones, and envelope findings such as IEA02 against ISA13, are listed on stderr
with where and why; exit 1 when there is any). `ack` prints the functional
acknowledgment, with a TA1 when the interchange envelope has errors (always with
`--ta1`); its control numbers start at 1 because
printing must not spend the partner's persistent counters. `overdue` lists outbound
sets still waiting for their acknowledgment past the partner's deadline.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import FlowyardError
from ..x12.acks import acknowledgment
from ..x12.document import GroupResult, InterchangeResult, SetResult, envelope_findings, walk
from ..x12.guides import Guide, GuideError, default_guide, find_guide


def register(sub: Any) -> None:
    x12 = sub.add_parser("x12", help="X12 tools: parse an interchange, print its acknowledgment")
    commands = x12.add_subparsers(dest="x12_command", metavar="COMMAND", required=True)
    parse = commands.add_parser("parse", help="print the parsed transaction sets as JSON")
    parse.add_argument("file", type=Path)
    parse.add_argument("--guide", help="guide name for every set (default: by transaction set and version)")
    parse.add_argument("--no-validate", action="store_true", help="read the structure only")
    parse.add_argument("--unguided", choices=["refuse", "accept"], default="refuse",
                       help="a set no guide covers: refuse it as not supported (default) or read it structurally")
    parse.set_defaults(handler=handle_parse)
    ack = commands.add_parser("ack", help="print the functional acknowledgment of an interchange")
    ack.add_argument("file", type=Path)
    ack.add_argument("--type", choices=["997", "999"], default="997", dest="ack_type")
    ack.add_argument("--guide", help="guide name for every set (default: by transaction set and version)")
    ack.add_argument("--ta1", action="store_true", help="include a TA1 interchange acknowledgment (default: when the interchange envelope has errors)")
    ack.set_defaults(handler=handle_ack)
    overdue = commands.add_parser("overdue", help="list outbound sets whose 997/999 did not come before the partner's deadline")
    overdue.set_defaults(handler=handle_overdue)


def _search(file: Path) -> list[Path]:
    folders = [file.resolve().parent, *file.resolve().parents, Path.cwd() / "flows", Path.cwd()]
    return [f / "guides" for f in folders if (f / "guides").is_dir()]


def _resolver(args: argparse.Namespace) -> Any:
    search = _search(args.file)
    named: Guide | None = None
    if args.guide:
        try:
            named = find_guide(args.guide, search)
        except GuideError as exc:
            raise FlowyardError(str(exc)) from None

    found: dict[tuple[str, str], Guide | None] = {}

    def resolve(transaction: str, version: str) -> Guide | None:
        if named is not None:
            return named if named.transaction == transaction else None
        if (transaction, version) not in found:
            try:
                found[(transaction, version)] = default_guide(transaction, version, search)
            except GuideError as exc:
                raise FlowyardError(str(exc)) from None
        return found[(transaction, version)]

    return resolve


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise FlowyardError(f"cannot read {file}: {exc.strerror}") from None


def handle_parse(args: argparse.Namespace) -> int:
    data = _read(args.file)
    sets: list[dict[str, Any]] = []
    invalid = 0
    try:
        for event in walk(data, _resolver(args), validate=not args.no_validate, unguided=args.unguided):
            if isinstance(event, (GroupResult, InterchangeResult)):
                for finding in envelope_findings(event, unread=False):  # a refusal is printed below
                    invalid += 1
                    print(f"{args.file}: {finding}", file=sys.stderr)
            elif isinstance(event, SetResult):
                if event.accepted:
                    if event.noted:
                        print(f"{args.file}:{event.line}: transaction set {event.transaction} {event.control_number} is accepted with errors noted", file=sys.stderr)
                        for reason in event.reasons():
                            print(f"  - {reason}", file=sys.stderr)
                    if event.unguided:
                        print(f"{args.file}:{event.line}: {event.unguided_note}", file=sys.stderr)
                    body = event.data or {}
                    body["interchange"] = event.interchange.as_data()
                    body["group"] = event.group.as_data()
                    sets.append(body)
                else:
                    invalid += 1
                    print(f"{args.file}:{event.line}: transaction set {event.transaction} {event.control_number} is invalid", file=sys.stderr)
                    for reason in event.reasons():
                        print(f"  - {reason}", file=sys.stderr)
    except FlowyardError as exc:
        print(json.dumps(sets, indent=2, ensure_ascii=False))
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(sets, indent=2, ensure_ascii=False))
    return 1 if invalid else 0


def handle_ack(args: argparse.Namespace) -> int:
    data = _read(args.file)
    numbers: dict[str, itertools.count[int]] = {}

    def counter(kind: str) -> int:
        return next(numbers.setdefault(kind, itertools.count(1)))

    printed = 0
    try:
        for event in walk(data, _resolver(args), validate=True, shape=False):
            if isinstance(event, InterchangeResult):
                text = acknowledgment(event, args.ack_type, ta1=args.ta1 or bool(event.notes), counter=counter)
                if text:
                    sys.stdout.write(text)
                    printed += 1
    except FlowyardError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    if not printed:
        print(f"{args.file}: nothing to acknowledge (only acknowledgment groups)", file=sys.stderr)
    return 0


def handle_overdue(args: argparse.Namespace) -> int:
    """Outbound sets past their acknowledgment deadline, oldest first (exit 1 when any)."""
    from ..store import x12_control as control

    late = control.overdue()
    for item in late:
        print(f"{item.partner}\t{item.receiver}\t{item.transaction}\tGS06 {item.group_control}\tST02 {item.set_control}\t"
              f"sent {item.sent_at:%Y-%m-%d %H:%M} UTC\tdue {item.deadline:%Y-%m-%d %H:%M} UTC")
    print(f"{len(late)} outbound set(s) overdue", file=sys.stderr)
    return 1 if late else 0
