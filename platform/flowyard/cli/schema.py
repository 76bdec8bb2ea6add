"""flowyard schema"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..definitions.grammar import KINDS


def register(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of definition files (every kind, told apart by `kind:`)")
    p.add_argument("--kind", choices=[*KINDS, "Table"], help="only this kind's files (Table: code tables, which have no kind)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..schema_gen import definition_schema  # every step and connector: not for `flowyard --help`

    print(json.dumps(definition_schema(args.kind), indent=2))
    return 0
