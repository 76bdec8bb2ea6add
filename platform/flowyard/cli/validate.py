"""flowyard validate [PATH...]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..definitions import check_file, definition_files
from ..definitions.grammar import not_utf8


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check flows, instances, templates, tables, guides")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("flows")], metavar="PATH")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    # Files that are not definitions (a YAML without `apiVersion: flowyard/...`, a CSV
    # outside tables/) are skipped: a pre-commit hook passes every changed file.
    skipped: list[Path] = []
    files = list(definition_files(args.paths, skipped))
    invalid = 0
    for path in files:
        try:
            issues = check_file(path)
        except UnicodeDecodeError as exc:  # this file only: the others are still checked
            issues = [not_utf8(path, exc)]
        for issue in issues:
            print(issue)
        if any(i.severity == "error" for i in issues):
            invalid += 1
    for path in skipped:
        print(f"{path}: skipped, not a Flowyard definition (no apiVersion: flowyard/v1; a code table is a CSV or YAML file in a tables/ folder)", file=sys.stderr)
    summary = f"{len(files)} file(s) checked, {invalid} invalid"
    print(summary + (f", {len(skipped)} skipped" if skipped else ""), file=sys.stderr)
    if not files and not skipped:
        print("flowyard validate: no definition files found", file=sys.stderr)
        return 1
    return 1 if invalid else 0
