"""flowyard validate [PATH...]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..definitions import check_file, definition_files


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check flows, instances, templates, tables, guides")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("flows")], metavar="PATH")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    files = list(definition_files(args.paths))
    invalid = 0
    for path in files:
        issues = check_file(path)
        for issue in issues:
            print(issue)
        if any(i.severity == "error" for i in issues):
            invalid += 1
    print(f"{len(files)} file(s) checked, {invalid} invalid", file=sys.stderr)
    if not files:
        print("flowyard validate: no definition files found", file=sys.stderr)
        return 1
    return 1 if invalid else 0
