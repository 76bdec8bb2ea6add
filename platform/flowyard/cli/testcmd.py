"""flowyard test [PATH...]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..definitions import definition_files, is_table
from ..errors import DefinitionError
from ..yamlio import YamlSyntaxError, load_file


def register(sub: Any) -> None:
    p = sub.add_parser("test", help="run the tests: of each flow")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("flows")], metavar="PATH")
    p.set_defaults(handler=handle)


def flow_files(paths: list[Path]) -> list[Path]:
    found = []
    for path in definition_files(paths):
        if path.suffix.lower() not in (".yaml", ".yml") or is_table(path):
            continue
        try:
            document = load_file(path)
        except YamlSyntaxError:
            found.append(path)  # reported as a broken flow below
            continue
        if isinstance(document, dict) and document.get("kind") in ("Flow", "FlowInstance", None):
            found.append(path)
    return found


def handle(args: argparse.Namespace) -> int:
    from ..store.engines import scratch_store  # the store's modules: not for `flowyard --help`

    with scratch_store():
        return run_all(args.paths)


def run_all(paths: list[Path]) -> int:
    from ..loader import load_flows  # steps and the store: not for `flowyard --help`
    from ..testing import run_tests
    passed = failed = broken = 0
    for path in flow_files(paths):
        try:
            flows = load_flows(path)
        except DefinitionError as exc:
            print(exc, file=sys.stderr)
            broken += 1
            continue
        for result in [r for flow in flows for r in run_tests(flow)]:
            if result.passed:
                passed += 1
                print(f"PASS {path}: {result.case.name}")
            else:
                failed += 1
                print(f"FAIL {path}: {result.case.name}")
                print(result.report)
    print(f"{passed} passed, {failed} failed" + (f", {broken} flow(s) invalid" if broken else ""))
    return 1 if failed or broken else 0
